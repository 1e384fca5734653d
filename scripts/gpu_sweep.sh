#!/usr/bin/env bash
# Issue 6's fast sweep: the whole `cnn` suite on one GPU (19 seed CNNs, throughput at batch
# 1..256 and the exact largest batch of each), timed from the command's start to its end.
#
#   bash scripts/gpu_sweep.sh RESULTS_DIR [DEVICE]      # DEVICE defaults to cuda:0
#
# Runs from the source tree (PYTHONPATH=src): no install, internet, Ray or Bokeh needed.
# RESULTS_DIR gets the records, sweep.log (what dlmark printed) and summary.txt (machine,
# versions, command, wall time, where the time went, the largest-batch searches).
#
# On a machine that stops commands after a while (the lent GPU machine: 600 s), set
# LIMIT_S below that: the sweep is stopped there, the summary still written, and the same
# command later resumes where it stopped. With OUT set, RESULTS_DIR is also packed into
# $OUT/<name>.tgz (such machines return only so many files one by one):
#   LIMIT_S=570 OUT=$OUT bash scripts/gpu_sweep.sh /tmp/h200-cnn-sweep cuda:0
set -euo pipefail
if [[ $# -lt 1 ]]; then
    echo "usage: bash scripts/gpu_sweep.sh RESULTS_DIR [DEVICE]" >&2
    exit 2
fi
RESULTS=$(mkdir -p "$1" && cd "$1" && pwd)
DEVICE=${2:-cuda:0}
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"
SWEEP=(cnn --device "$DEVICE" --out "$RESULTS")
# For a quick check of this script only, e.g. EXTRA_ARGS="--models SqueezeNet-1.1 --batch-sizes 1,2".
# shellcheck disable=SC2206
[[ -n "${EXTRA_ARGS:-}" ]] && SWEEP+=($EXTRA_ARGS)

{
    echo "# dlmark cnn sweep, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi --query-gpu=index,name,driver_version,memory.total,power.limit --format=csv,noheader 2>/dev/null || true
    "$PYTHON" -c "import sys, torch, torchvision, timm; print('python', sys.version.split()[0], '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| timm', timm.__version__, '| cuda', torch.version.cuda)"
    echo "command: dlmark run ${SWEEP[*]}"
} >> "$RESULTS/summary.txt"  # appended: a resumed sweep keeps each part's wall time

# Packed on any exit, so a summary that fails to print (a closed pipe) cannot cost the records.
pack() {
    if [[ -n "${OUT:-}" ]]; then
        tar czf "$OUT/$(basename "$RESULTS").tgz" -C "$(dirname "$RESULTS")" "$(basename "$RESULTS")"
    fi
}
trap pack EXIT
summary_from=$(wc -l < "$RESULTS/summary.txt")

began=$(date +%s.%N)
limit=()
[[ -n "${LIMIT_S:-}" ]] && limit=(timeout --signal=INT --kill-after=20 "$LIMIT_S")
status=0
"${limit[@]}" "$PYTHON" -m dlmark.cli run "${SWEEP[@]}" > "$RESULTS/sweep.log" 2>&1 || status=$?
ended=$(date +%s.%N)
if [[ $status -ne 0 ]]; then
    echo "the sweep stopped with exit status $status (124 or 130: LIMIT_S=${LIMIT_S:-} reached; run again to resume)" \
        >> "$RESULTS/summary.txt"
fi

"$PYTHON" - "$RESULTS" "$began" "$ended" >> "$RESULTS/summary.txt" <<'EOF'
import sys
from collections import Counter
from dlmark.benchmark import load_records

results, began, ended = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
rows = load_records(results)
throughput = [r for r in rows if r["task"] == "throughput"]
largest = sorted((r for r in rows if r["task"] == "max_batch_size"), key=lambda r: r["model"])
print(f"wall time: {ended - began:.1f} s ({(ended - began) / 60:.2f} min; target < 10 min)")
print(f"records: {len(rows)}, statuses {dict(Counter(r['status'] for r in rows))}, models {len({r['model'] for r in rows})}")
ok = [r for r in throughput if r["status"] == "ok"]
noisy = [f"{r['model']} b={r['batch_size']}" for r in ok if r.get("noisy")]
print(f"throughput: {len(ok)} ok, warm-up {sum(r['warmup_s'] for r in ok):.1f} s, "
      f"timed blocks {sum(sum(r['block_times_s']) for r in ok):.1f} s, "
      f"min blocks {min((r['num_blocks'] for r in ok), default='-')}, noisy {len(noisy)}: {', '.join(noisy) or '-'}")
print(f"largest batch: searches {sum(r.get('search_s') or 0 for r in largest):.1f} s in total")
for r in largest:
    trials = r.get("trials") or []
    costly = sum(t["seconds"] for t in trials if t["status"] == "ok" and t["batch_size"] > (r["max_batch_size"] or 0) // 2)
    how = Counter(t.get("chosen_by", "?") for t in trials)
    whole = [t["seconds"] for t in trials if t["status"] == "ok" and not t.get("partial") and t["batch_size"] > 1024]
    print(f"  {r['model']:15s} {r['status']:5s} {r['max_batch_size'] or 0:6d} (first failing {r['first_failing_batch']}) "
          f"{len(trials):2d} trials {dict(how)}, {r.get('search_s') or 0:5.1f} s, {costly:5.1f} s of them near-limit successes, "
          f"{len(whole)} whole above 1024 ({sum(whole):.1f} s), stop {r.get('early_exit_call_profiled')}->{r.get('early_exit_call')}/{r.get('leaf_calls')}")
EOF
tail -n +"$((summary_from + 1))" "$RESULTS/summary.txt" || true  # this part's summary
echo "results in $RESULTS (summary.txt)" || true
