#!/usr/bin/env bash
# Server against Offline on one GPU, side by side on one machine (issue 19): the tuned ResNet-v1-50
# (fp16, channels_last, compiled) Offline beside the throughput task, then the Server search at
# MLPerf's 15 ms bound with each number of batches in flight in IN_FLIGHT (default "2 1"). COMPILE picks
# the torch.compile mode (default "default"; "reduce-overhead" replays the padded batch as a CUDA graph).
# OWN_STREAMS=1 gives each Server batch in flight a CUDA stream of its own (--own-streams); Offline
# stays on one stream, its best measured form. PAD_SIZES=16,32,64 pads each Server batch up to the
# smallest of these (and the batcher's size) that holds it (--pad-sizes), not always to the full batch.
# SWITCH_MS="5 0.2" runs each Server search once per GIL switch interval listed, in that order
# (--gil-switch-interval-ms; unset: the interpreter's own); REPEAT=2 runs the whole list twice, so that
# the settings alternate on one machine. GC_FREEZE="off on" runs each search with --no-gc-freeze and
# with dlmark's default (the heap frozen), in that order. OFFLINE_BATCHES="256 128" runs Offline (and
# the throughput task) at each batch listed (default 256; a batch other than 256 names its folder
# offline-bN); OFFLINE_LIMIT_S=0 skips Offline. SRC runs another source tree's
# dlmark (default: this tree's src), as scripts/gpu_server_ab.sh does to alternate two trees.
#
#   bash scripts/gpu_server_inflight.sh RESULTS_DIR     # OUT: pack there; SERVER_LIMIT_S per search
set -euo pipefail
RESULTS=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="${SRC:-$PWD/src}${PYTHONPATH:+:$PYTHONPATH}"
pack() { [[ -n "${OUT:-}" ]] && tar czf "$OUT/$(basename "$RESULTS").tgz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"; true; }
trap pack EXIT
COMMON=(--models ResNet-v1-50 --device cuda:0 --batch-sizes 256 --precision fp16 --layout channels_last
        --compile "${COMPILE:-default}" --pad-batches --serving-min-time 5)
{ echo "# $(date -u +%FT%TZ) git $(git rev-parse --short HEAD 2>/dev/null || echo ?)"; nvidia-smi --query-gpu=name,driver_version,power.limit --format=csv,noheader || true; } >> "$RESULTS/summary.txt"
SUFFIX=""
[[ "${COMPILE:-default}" != default ]] && SUFFIX="-$COMPILE"
if [[ "${OFFLINE_LIMIT_S:-150}" != 0 ]]; then
    for b in ${OFFLINE_BATCHES:-256}; do
        [[ "$b" == 256 ]] && dir="$RESULTS/offline$SUFFIX" || dir="$RESULTS/offline$SUFFIX-b$b"
        timeout --signal=INT --kill-after=15 "${OFFLINE_LIMIT_S:-150}" "$PYTHON" -m dlmark.cli run "${COMMON[@]}" \
            --batch-sizes "$b" --out "$dir" --task throughput --scenario offline --batches-in-flight 2 \
            || echo "$(basename "$dir"): exit $?" >> "$RESULTS/summary.txt"
        pack
    done
fi
STREAMS=()
[[ -n "${OWN_STREAMS:-}" ]] && STREAMS=(--own-streams) && SUFFIX="$SUFFIX-own-streams"
[[ -n "${PAD_SIZES:-}" ]] && STREAMS+=(--pad-sizes "$PAD_SIZES") && SUFFIX="$SUFFIX-pad$PAD_SIZES"
for rep in $(seq "${REPEAT:-1}"); do
    [[ "${REPEAT:-1}" -gt 1 ]] && REP="-r$rep" || REP=""
    for ms in ${SWITCH_MS:-interpreter}; do
        SWITCH=(); SWITCH_SUFFIX=""
        [[ "$ms" != interpreter ]] && SWITCH=(--gil-switch-interval-ms "$ms") && SWITCH_SUFFIX="-switch$ms"
        for gcf in ${GC_FREEZE:-on}; do
            GC=(); GC_SUFFIX=""
            [[ "$gcf" == off ]] && GC=(--no-gc-freeze) && GC_SUFFIX="-nogcfreeze"
            for n in ${IN_FLIGHT:-2 1}; do
                dir="$RESULTS/server-inflight$n$SUFFIX$SWITCH_SUFFIX$GC_SUFFIX$REP"
                timeout --signal=INT --kill-after=15 "${SERVER_LIMIT_S:-190}" "$PYTHON" -m dlmark.cli run "${COMMON[@]}" \
                    "${STREAMS[@]}" "${SWITCH[@]}" "${GC[@]}" --out "$dir" --scenario server --latency-bound-ms 15 \
                    --batches-in-flight "$n" --max-queue-delay-ms "${QUEUE_DELAY_MS:-4}" --max-batch "${MAX_BATCH:-128}" \
                    || echo "server $(basename "$dir"): exit $?" >> "$RESULTS/summary.txt"
                pack
            done
        done
    done
done
"$PYTHON" -m dlmark.cli ls "$RESULTS" >> "$RESULTS/summary.txt" 2>&1 || true
