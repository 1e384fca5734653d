#!/usr/bin/env bash
# GPU section of BENCHMARKS.md: measured peaks, then `dlmark tune` of three seed models.
# Each step fits in ~8 minutes of wall time on one H200 (the budgets below include compilation).
#
#   scripts/gpu_tune.sh OUT peak        # dlmark peak                       (~1 min)
#   scripts/gpu_tune.sh OUT resnet50    # tune ResNet-v1-50 + independent fp32 check (~7.5 min)
#   scripts/gpu_tune.sh OUT squeezenet  # tune SqueezeNet-1.1               (~5.5 min)
#   scripts/gpu_tune.sh OUT vgg16       # tune VGG-16                       (~7 min)
#
# Run `peak` first: the tunes then hold MFU against the measured peaks (else the datasheet's).
# Results: one JSON record per measurement in OUT/, plus OUT/*.log with what was printed.
set -euo pipefail
OUT=${1:?usage: scripts/gpu_tune.sh OUT [peak|resnet50|squeezenet|vgg16]}
STEP=${2:?usage: scripts/gpu_tune.sh OUT [peak|resnet50|squeezenet|vgg16]}
PY=${PYTHON:-python3}
DEVICE=${DEVICE:-cuda:0}
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
dlmark() { "$PY" -m dlmark.cli "$@"; }

case "$STEP" in
  peak)
    dlmark peak --device "$DEVICE" --out "$OUT" 2>&1 | tee "$OUT/peak.log"
    ;;
  resnet50)
    # keep 1: only the fastest eager precision/layout goes on to compilation (budget for batch growth).
    dlmark tune ResNet-v1-50 --device "$DEVICE" --out "$OUT" --budget-s 400 --keep 1 \
      --max-batch 2048 --slow-mode-timeout-s 120 2>&1 | tee "$OUT/tune_resnet50.log"
    # fp32 eager at batch 256, timed independently of dlmark in the same run (target: within 3%).
    "$PY" scripts/gpu_peer_check.py "$OUT" --device "$DEVICE" 2>&1 | tee "$OUT/fp32_check.log"
    ;;
  squeezenet)
    dlmark tune SqueezeNet-1.1 --device "$DEVICE" --out "$OUT" --budget-s 300 --keep 1 \
      --max-batch 4096 --slow-mode-timeout-s 90 2>&1 | tee "$OUT/tune_squeezenet.log"
    ;;
  vgg16)
    dlmark tune VGG-16 --device "$DEVICE" --out "$OUT" --budget-s 400 --keep 1 \
      --max-batch 1024 --slow-mode-timeout-s 120 2>&1 | tee "$OUT/tune_vgg16.log"
    ;;
  *)
    echo "unknown step $STEP; use peak, resnet50, squeezenet or vgg16" >&2; exit 2 ;;
esac
