#!/usr/bin/env bash
# The GPU run's input-pipeline part (issue 19, item 3): ResNet-v1-50 from JPEG to logits on one GPU,
# decoded on the host's cores by DataLoader workers (PIL, and torchvision's libjpeg-turbo) and on
# the GPU by nvJPEG, each beside the model alone on random input (the throughput task) and on a
# real batch (the pipeline's model stage), with the stage that bounds it named.
#
#   bash scripts/gpu_pipeline.sh RESULTS_DIR [DEVICE]     # with LIMIT_S and OUT as in gpu_sweep.sh
#
# WORKERS (default: every core) DataLoader workers for the CPU decoders; nvJPEG decodes in the
# main process. PRECISION etc. as `dlmark run` takes them, through EXTRA (e.g. the tuned
# configuration: EXTRA="--precision fp16 --layout channels_last --compile default").
set -euo pipefail
RESULTS=$(mkdir -p "$1" && cd "$1" && pwd)
DEVICE=${2:-cuda:0}
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
pack() { [[ -n "${OUT:-}" ]] && tar czf "$OUT/$(basename "$RESULTS").tgz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"; true; }
trap pack EXIT
limit=()
[[ -n "${LIMIT_S:-}" ]] && limit=(timeout --signal=INT --kill-after=20 "$LIMIT_S")
WORKERS=${WORKERS:-$(nproc)}
read -r -a extra <<< "${EXTRA:-}"
COMMON=(--models "${MODEL:-ResNet-v1-50}" --device "$DEVICE" --out "$RESULTS" --batch-sizes "${BATCH:-256}"
        --task throughput --input images --images "${IMAGES:-1024}" --min-time "${MIN_TIME:-1}" "${extra[@]}")
{
    echo "# dlmark pipeline on $(hostname), $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader 2>/dev/null || true
    "$PYTHON" -c "import sys, torch, torchvision, PIL; print('python', sys.version.split()[0], '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| pillow', PIL.__version__)"
    echo "cores $(nproc); workers $WORKERS"
} >> "$RESULTS/summary.txt"
began=$(date +%s)
status=0
run_all() {
    "$PYTHON" -m dlmark.cli run "${COMMON[@]}" --decoder nvjpeg --pipeline-workers 0
    "$PYTHON" -m dlmark.cli run "${COMMON[@]}" --decoder torchvision --pipeline-workers "$WORKERS"
    "$PYTHON" -m dlmark.cli run "${COMMON[@]}" --decoder pil --pipeline-workers "$WORKERS"
}
export -f run_all; export PYTHON WORKERS
"${limit[@]}" bash -c "$(declare -p COMMON); set -e; run_all" > "$RESULTS/pipeline.log" 2>&1 || status=$?
echo "commands: dlmark run ${COMMON[*]} {--decoder nvjpeg --pipeline-workers 0 | --decoder torchvision --pipeline-workers $WORKERS | --decoder pil --pipeline-workers $WORKERS}" >> "$RESULTS/summary.txt"
echo "wall time $(( $(date +%s) - began )) s, exit status $status" >> "$RESULTS/summary.txt"
"$PYTHON" -m dlmark.cli ls "$RESULTS" --task pipeline >> "$RESULTS/summary.txt" 2>&1 || true
"$PYTHON" -m dlmark.cli ls "$RESULTS" --task throughput >> "$RESULTS/summary.txt" 2>&1 || true
tail -n 40 "$RESULTS/summary.txt"
