"""Throughput benchmarks: vitkit against timm and Hugging Face in one process, as ratios."""
