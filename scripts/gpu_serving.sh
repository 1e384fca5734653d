#!/usr/bin/env bash
# The GPU run's serving part (issue 19): ResNet-v1-50 on one GPU through MLPerf LoadGen, fp32 eager
# and the configuration `dlmark tune` found fastest (fp16, channels_last, torch.compile default),
# beside the throughput task at the same batch for the cross-check.
#
#   bash scripts/gpu_serving.sh RESULTS_DIR [DEVICE]     # with LIMIT_S and OUT as in gpu_sweep.sh
#
# Offline at batch 256; SingleStream; Server: the largest QPS whose p99 stays within MLPerf's
# 15 ms bound for ResNet-50, the batcher padding every batch to --max-batch (one input shape).
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
COMMON=(--models "${MODEL:-ResNet-v1-50}" --device "$DEVICE" --out "$RESULTS" --batch-sizes 256)
# The batcher's largest batch must run well inside the bound: about 5 ms for fp32 eager at 8,
# 4 ms for the tuned configuration at 64 (BENCHMARKS.md, H200 throughput by batch).
SERVING=(--scenario offline,single-stream,server --latency-bound-ms 15 --pad-batches --serving-min-time "${SERVING_MIN_S:-5}")
TUNED=(--precision fp16 --layout channels_last --compile default)
{
    echo "# dlmark serving on $(hostname), $(date -u +%Y-%m-%dT%H:%M:%SZ), git $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=name,driver_version,memory.total,power.limit --format=csv,noheader 2>/dev/null || true
    "$PYTHON" -c "import sys, torch, mlperf_loadgen; print('python', sys.version.split()[0], '| torch', torch.__version__, '| loadgen', mlperf_loadgen.__version__ if hasattr(mlperf_loadgen, '__version__') else '?')"
} >> "$RESULTS/summary.txt"
began=$(date +%s)
status=0
dlmark() { "$PYTHON" -m dlmark.cli "$@"; }
run_all() {  # the tuned configuration first: it is the headline, and the limit may cut the second
    dlmark run "${COMMON[@]}" "${TUNED[@]}" --task throughput --quiet
    dlmark run "${COMMON[@]}" "${TUNED[@]}" "${SERVING[@]}" --max-batch "${TUNED_MAX_BATCH:-64}" --batches-in-flight 2
    dlmark run "${COMMON[@]}" --task throughput --quiet
    dlmark run "${COMMON[@]}" "${SERVING[@]}" --max-batch "${MAX_BATCH:-8}"
}
export -f run_all dlmark; export PYTHON
"${limit[@]}" bash -c "$(declare -p COMMON TUNED SERVING); set -e; run_all" > "$RESULTS/serving.log" 2>&1 || status=$?
echo "commands: dlmark run ${COMMON[*]} [${TUNED[*]}] {--task throughput | ${SERVING[*]} --max-batch 64 --batches-in-flight 2 (tuned) / 8 (fp32)}" >> "$RESULTS/summary.txt"
echo "wall time $(( $(date +%s) - began )) s, exit status $status" >> "$RESULTS/summary.txt"
"$PYTHON" -m dlmark.cli ls "$RESULTS" --scenario offline,single-stream,multi-stream,server >> "$RESULTS/summary.txt" 2>&1 || true
"$PYTHON" -m dlmark.cli ls "$RESULTS" --task throughput >> "$RESULTS/summary.txt" 2>&1 || true
tail -n 40 "$RESULTS/summary.txt"
