#!/usr/bin/env bash
# What issues 12 and 24 measure on a GPU (for the lent H200: torch, timm and transformers
# preinstalled, no torchao, no internet). Before calling it, copy the CIFAR-10 mosaic and a
# torchao wheel (for float8; 0.18.0 is the release paired with torch 2.11) into .gpu-data/,
# which .gitignore keeps out of git:
#     mkdir -p .gpu-data/whl && cp -r ../shared/data/cifar10-mosaic .gpu-data/ && \
#       python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
#         --implementation cp --platform manylinux_2_28_x86_64 -d .gpu-data/whl torchao==0.18.0
# then run it with the device tool (carry .gpu-data), in two calls of about 5 minutes each so
# that each fits a call's 10 minutes with room to spare:
#     bash benchmarks/gpu_session.sh train      # trainer efficiency, CIFAR-10 speed run, loader
#     bash benchmarks/gpu_session.sh infer      # ViT-B/16 beside timm compiled: bf16, CUDA
#                                               # graphs, fp8; training at batch 256 too
# (no argument: both). Each step has its own time limit, so a slow one cannot take the rest
# down. It prints a short table last; the lines also go to $OUT/gpu-results.md.
set -uo pipefail
cd "$(dirname "$0")/.."
export PYTHONPATH=$PWD/src
OUT=${OUT:-/tmp}
part=${1:-all}
results=$OUT/gpu-results.md
nvidia-smi --query-gpu=name,memory.total --format=csv,noheader | tee -a "$results"
if ls .gpu-data/whl/torchao-*.whl >/dev/null 2>&1; then
    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site \
        .gpu-data/whl/torchao-*.whl && export PYTHONPATH=$PYTHONPATH:/tmp/site
fi
# float8 rows appear only where torchao imports; say so when it does not
python3 -c "import torchao.float8, torchao.quantization" 2>/dev/null \
    || echo "torchao does not import here: no fp8 rows" | tee -a "$results"

step() {  # step SECONDS COMMAND...: run one measurement under its own limit
    local limit=$1; shift
    timeout "$limit" "$@" || echo "stopped or failed (limit ${limit} s): $*" | tee -a "$results"
}

if [[ $part == all || $part == train ]]; then
    python .gpu-data/cifar10-mosaic/unpack.py /tmp/cifar10 >/dev/null
    step 60 python benchmarks/trainer_efficiency.py --device cuda --compile off --steps 200 \
        --batch-size 512 --results "$results"
    step 90 python benchmarks/trainer_efficiency.py --device cuda --compile on --steps 200 \
        --batch-size 512 --results "$results"
    step 170 python benchmarks/cifar10_speedrun.py --device cuda --minutes 2 --data /tmp/cifar10 \
        --out /tmp/speedrun --results "$results"
    step 40 python benchmarks/loader_throughput.py --device cuda --count 1000 --results "$results"
fi
if [[ $part == all || $part == infer ]]; then
    # vitkit, compiled, compiled with CUDA graphs, fp8 compiled, beside timm and timm compiled
    step 200 python benchmarks/throughput.py --results "$results" --model vit_base_patch16_224 \
        --batch-size 256 --mode inference train --precision bf16 --peers timm --compile \
        --rounds 2 --min-time 1
    # latency: batch 8, where kernel launches weigh and CUDA graphs pay
    step 90 python benchmarks/throughput.py --results "$results" --model vit_base_patch16_224 \
        --batch-size 8 --mode inference --precision bf16 --peers timm --compile \
        --rounds 2 --min-time 1 --title "vit_base_patch16_224, batch 8, on the GPU"
fi
echo; echo "== results"; cat "$results"
