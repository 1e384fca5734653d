#!/usr/bin/env bash
# The core issue's GPU reference run (issue 2): ResNet-v1-50 throughput at batch 1..256 in fp32 and
# bf16, the largest batch of three models, and the GPU tests. Run from the repo root on a CUDA host:
#   bash scripts/gpu_core.sh results/h200
set -euo pipefail
out=${1:-results/h200}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
dlmark() { python3 -m dlmark.cli "$@"; }
nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv
python3 -c 'import torch, torchvision, timm; print("torch", torch.__version__, "torchvision", torchvision.__version__, "timm", timm.__version__)'
time dlmark run cnn --device cuda --models ResNet-v1-50 --task throughput --precision fp32,bf16 --out "$out"
time dlmark run cnn --device cuda --models ResNet-v1-50,SqueezeNet-1.1,VGG-16 --task max-batch-size --timeout 120 --out "$out"
dlmark ls "$out"
