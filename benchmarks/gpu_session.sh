#!/usr/bin/env bash
# Everything issue 12 measures on a GPU, in one run (for the lent H200: torch, timm and
# transformers preinstalled, no internet). Before calling it, copy the CIFAR-10 mosaic into
# an ignored folder of the checkout:
#     mkdir -p .gpu-data && cp -r ../shared/data/cifar10-mosaic .gpu-data/ && \
#       echo .gpu-data >> .git/info/exclude
# then run it with the device tool (carry .gpu-data):  bash benchmarks/gpu_session.sh
# It prints a short table last; the lines also go to /tmp/gpu-results.md.
set -euo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src
OUT=${OUT:-/tmp}
results=$OUT/gpu-results.md
python .gpu-data/cifar10-mosaic/unpack.py /tmp/cifar10 >/dev/null
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee "$results"
python benchmarks/trainer_efficiency.py --device cuda --compile off --steps 200 \
    --batch-size 512 --results "$results"
python benchmarks/trainer_efficiency.py --device cuda --compile on --steps 200 \
    --batch-size 512 --results "$results"
timeout 400 python benchmarks/cifar10_speedrun.py --device cuda --minutes 2 --data /tmp/cifar10 \
    --out /tmp/speedrun --results "$results" || echo "speedrun stopped by its timeout"
python benchmarks/throughput.py --results "$results" --model vit_base_patch16_224 \
    --batch-size 256 --mode inference train --precision bf16 --peers timm --compile || true
python benchmarks/loader_throughput.py --device cuda --count 1000 --results "$results" || true
echo; echo "== results"; cat "$results"
