#!/usr/bin/env bash
# Server against Offline on one GPU, side by side on one machine (issue 19): the tuned ResNet-v1-50
# (fp16, channels_last, compiled) Offline beside the throughput task, then the Server search at
# MLPerf's 15 ms bound with each number of batches in flight in IN_FLIGHT (default "2 1"). COMPILE picks
# the torch.compile mode (default "default"; "reduce-overhead" replays the padded batch as a CUDA graph).
# OWN_STREAMS=1 gives each Server batch in flight a CUDA stream of its own (--own-streams); Offline
# stays on one stream, its best measured form. PAD_SIZES=16,32,64 pads each Server batch up to the
# smallest of these (and the batcher's size) that holds it (--pad-sizes), not always to the full batch.
# SWITCH_MS=0.2 sets Python's GIL switch interval during each Server test (--gil-switch-interval-ms).
#
#   bash scripts/gpu_server_inflight.sh RESULTS_DIR     # OUT: pack there; SERVER_LIMIT_S per search
set -euo pipefail
RESULTS=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
pack() { [[ -n "${OUT:-}" ]] && tar czf "$OUT/$(basename "$RESULTS").tgz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"; true; }
trap pack EXIT
COMMON=(--models ResNet-v1-50 --device cuda:0 --batch-sizes 256 --precision fp16 --layout channels_last
        --compile "${COMPILE:-default}" --pad-batches --serving-min-time 5)
{ echo "# $(date -u +%FT%TZ) git $(git rev-parse --short HEAD 2>/dev/null || echo ?)"; nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader || true; } >> "$RESULTS/summary.txt"
timeout --signal=INT --kill-after=15 "${OFFLINE_LIMIT_S:-150}" "$PYTHON" -m dlmark.cli run "${COMMON[@]}" \
    --out "$RESULTS/offline" --task throughput --scenario offline --batches-in-flight 2 || echo "offline: exit $?" >> "$RESULTS/summary.txt"
STREAMS=(); SUFFIX=""
[[ -n "${OWN_STREAMS:-}" ]] && STREAMS=(--own-streams) && SUFFIX="-own-streams"
[[ -n "${SWITCH_MS:-}" ]] && STREAMS+=(--gil-switch-interval-ms "$SWITCH_MS") && SUFFIX="$SUFFIX-switch$SWITCH_MS"
[[ -n "${PAD_SIZES:-}" ]] && STREAMS+=(--pad-sizes "$PAD_SIZES") && SUFFIX="$SUFFIX-pad$PAD_SIZES"
for n in ${IN_FLIGHT:-2 1}; do
    timeout --signal=INT --kill-after=15 "${SERVER_LIMIT_S:-190}" "$PYTHON" -m dlmark.cli run "${COMMON[@]}" "${STREAMS[@]}" \
        --out "$RESULTS/server-inflight$n$SUFFIX" --scenario server --latency-bound-ms 15 --batches-in-flight "$n" \
        --max-queue-delay-ms "${QUEUE_DELAY_MS:-4}" --max-batch "${MAX_BATCH:-128}" || echo "server $n: exit $?" >> "$RESULTS/summary.txt"
done
"$PYTHON" -m dlmark.cli ls "$RESULTS" >> "$RESULTS/summary.txt" 2>&1 || true
