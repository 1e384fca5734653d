#!/usr/bin/env bash
# The seed's accuracy/throughput trade-off on one device: throughput of the 19 seed CNNs at
# batch size 64, their published ImageNet top-1 (or measured, if IMAGENET_DIR is set and the
# pretrained weights are cached), and the Pareto-optimal models.
#
#   scripts/accuracy_tradeoff.sh OUT_DIR [DEVICE]      # DEVICE defaults to cuda
#   IMAGENET_DIR=/data/imagenet/val LIMIT=5000 scripts/accuracy_tradeoff.sh OUT_DIR cuda
set -euo pipefail
out=${1:?usage: $0 OUT_DIR [DEVICE]}
device=${2:-cuda}
cd "$(dirname "$0")/.."
dlmark=${DLMARK:-.venv/bin/dlmark}
[ -x "$dlmark" ] || dlmark=dlmark
models=()
[ -n "${MODELS:-}" ] && models=(--models "$MODELS")   # e.g. MODELS=AlexNet,ResNet-v1-50

"$dlmark" run cnn --task throughput --batch-sizes 64 --device "$device" --out "$out" "${models[@]}" ${EXTRA_ARGS:-}
accuracy_args=()
if [ -n "${IMAGENET_DIR:-}" ]; then
  accuracy_args+=(--imagenet "$IMAGENET_DIR")
  [ -n "${LIMIT:-}" ] && accuracy_args+=(--limit "$LIMIT")
fi
"$dlmark" run cnn --task accuracy --device "$device" --out "$out" "${models[@]}" "${accuracy_args[@]}"
"$dlmark" pareto "$out" --batch-size 64 | tee "$out/pareto.txt"
"$dlmark" pareto "$out" --batch-size 64 --min-accuracy 76 | tee "$out/pareto_min76.txt"
