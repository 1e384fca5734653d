#!/usr/bin/env bash
# Server at one batch in flight from two source trees, alternating on one machine (issue 19): the
# machine's own spread (13% between machines for one command) must not decide between them.
# Each tree's worker timeline (scripts/gpu_server_timeline.py), then Offline beside the throughput
# task (this tree), then the Server search (scripts/gpu_server_inflight.sh) this, other, this, other.
#
#   bash scripts/gpu_server_ab.sh OTHER_SRC RESULTS_DIR    # OTHER_SRC: e.g. `git archive REV src`
#                                                           # unpacked; OUT: pack there after each step
set -uo pipefail
OTHER=$(cd "$1" && pwd)
RESULTS=$(mkdir -p "$2" && cd "$2" && pwd)
cd "$(dirname "$0")/.."
THIS=$PWD/src
BASE=${PYTHONPATH:-}
pack() { [[ -n "${OUT:-}" ]] && tar czf "$OUT/$(basename "$RESULTS").tgz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"; true; }
trap pack EXIT
timeline() {  # SRC LIMIT_S LOG ARGS...
    local src=$1 limit=$2 log=$3; shift 3
    PYTHONPATH="$src${BASE:+:$BASE}" timeout --signal=INT --kill-after=10 "$limit" python3 scripts/gpu_server_timeline.py "$@" \
        > "$RESULTS/$log" 2>&1 || echo "$log: exit $?" >> "$RESULTS/summary.txt"
    pack
}
timeline "$THIS" "${TIMELINE_LIMIT_S:-110}" timeline-this.log --qps 19000,24000 --switch-ms 5 --seconds 4
timeline "$OTHER" "${OTHER_TIMELINE_LIMIT_S:-80}" timeline-other.log --qps 24000 --switch-ms 5 --seconds 4
for rep in 1 2; do
    for side in this other; do
        [[ $side == this ]] && src=$THIS || src=$OTHER
        offline=0; [[ $side == this && $rep == 1 ]] && offline=${OFFLINE_LIMIT_S:-60}
        OUT= SRC=$src OFFLINE_LIMIT_S=$offline SERVER_LIMIT_S=${SERVER_LIMIT_S:-75} IN_FLIGHT=1 \
            bash scripts/gpu_server_inflight.sh "$RESULTS/$side-r$rep" || echo "$side-r$rep: exit $?" >> "$RESULTS/summary.txt"
        pack
    done
done
