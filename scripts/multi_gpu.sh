#!/usr/bin/env bash
# One sweep on one GPU, then the same sweep on every GPU of this host, timed in one session.
#
#   bash scripts/multi_gpu.sh RESULTS_DIR
#
# Needs: two or more NVIDIA GPUs, torch + torchvision, nvidia-ml-py (pynvml: dlmark names
# and pins GPUs through NVML). Runs from the source tree (PYTHONPATH=src), so neither an
# install nor internet, Ray or Bokeh is needed. Set PYTHON to pick the interpreter.
#
# The sweep: throughput of 14 torchvision CNNs at batch 1..256, fp32, 0.4 s of timed blocks
# per job: 126 jobs in 14 groups (one per model), about 3 minutes on one H200. A group is
# what a lane takes at a time, so the two-GPU run ends when its last group does. Models are
# listed heaviest first, by their group times in the first H200 run (BENCHMARKS.md: VGG-11
# 26 s ... ResNet-v1-34 7 s), so that the long groups start first and the tail is short. A lane
# takes the next model of the family it ran last when there is one (VGG-16 after VGG-11): cuDNN's
# autotuning results live in the worker and a family shares most convolution shapes.
# Target (issue 7): the two-GPU run takes at most 0.6 of the one-GPU time.
#
# RESULTS_DIR gets: one_gpu/ and all_gpus/ (the records), warmup/, one_gpu.log,
# all_gpus.log, summary.txt (commands, wall times, ratio, per-job agreement).
set -euo pipefail

if [[ $# -ne 1 ]]; then
    echo "usage: bash scripts/multi_gpu.sh RESULTS_DIR" >&2
    exit 2
fi
RESULTS=$(mkdir -p "$1" && cd "$1" && pwd)
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}"

MODELS="VGG-11,DenseNet-121,VGG-16,ResNet-v1-50,DenseNet-169,ResNet-v1-152,ResNet-v1-18,ResNet-v1-101,AlexNet,MobileNet-v2,SqueezeNet-1.1,ResNet-v1-34,SqueezeNet-1.0,MobileNet-v3-Small"
SWEEP=(cnn --task throughput --models "$MODELS" --batch-sizes 1:256 --min-time 0.4 --precision fp32 --quiet)

# Fail now, not after the first run, if something the runs need is missing.
"$PYTHON" - <<'EOF'
import importlib.util, sys
missing = [m for m in ("torch", "torchvision", "pynvml") if importlib.util.find_spec(m) is None]
if missing:
    sys.exit(f"missing Python modules: {', '.join(missing)} (pynvml comes from the nvidia-ml-py package)")
from dlmark import devices
gpus = devices.gpus()
if len(gpus) < 2:
    sys.exit(f"this needs two GPUs; NVML sees {len(gpus)}: {[g.name for g in gpus]}")
print("GPUs:", ", ".join(f"{g.spec} {g.name}" for g in gpus))
EOF

{
    echo "# dlmark multi-GPU scaling, $(date -u +%Y-%m-%dT%H:%M:%SZ) on $(hostname)"
    echo "git: $(git rev-parse --short HEAD 2>/dev/null || echo unknown)"
    nvidia-smi -L 2>/dev/null || true
    "$PYTHON" -c "import sys, torch, torchvision; print('python', sys.version.split()[0], '| torch', torch.__version__, '| torchvision', torchvision.__version__, '| cuda', torch.version.cuda)"
    echo "sweep: dlmark run ${SWEEP[*]}"
} > "$RESULTS/summary.txt"

# Untimed: brings torch, CUDA and the weights-free model code into the page cache, so the
# first timed run does not pay for a cold disk that the second would not.
"$PYTHON" -m dlmark.cli run cnn --task throughput --models ResNet-v1-18 --batch-sizes 1 --min-time 0.1 \
    --device cuda:all --quiet --out "$RESULTS/warmup" > "$RESULTS/warmup.log" 2>&1

timed_run() {  # NAME DEVICE -> wall seconds on stdout; the run's own output in NAME.log
    local name=$1 device=$2 began ended
    rm -rf "${RESULTS:?}/$name"
    began=$(date +%s.%N)
    "$PYTHON" -m dlmark.cli run "${SWEEP[@]}" --device "$device" --out "$RESULTS/$name" > "$RESULTS/$name.log" 2>&1
    ended=$(date +%s.%N)
    "$PYTHON" -c "print(f'{$ended - $began:.1f}')"
}

echo "one GPU (cuda:0) ..."
ONE=$(timed_run one_gpu cuda:0)
echo "  ${ONE} s"
echo "every GPU (cuda:all) ..."
ALL=$(timed_run all_gpus cuda:all)
echo "  ${ALL} s"

"$PYTHON" - "$RESULTS" "$ONE" "$ALL" <<'EOF' | tee -a "$RESULTS/summary.txt"
import statistics, sys
from collections import Counter
from dlmark.benchmark import load_records

results, one, every = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
runs = {name: load_records(f"{results}/{name}") for name in ("one_gpu", "all_gpus")}
for name, rows in runs.items():
    statuses = Counter(r["status"] for r in rows)
    lanes = Counter(r["device_spec"] for r in rows)
    print(f"{name}: {len(rows)} records, statuses {dict(statuses)}, records per GPU {dict(lanes)}")
# The same job on either run should measure the same: a lane must not slow another down.
one_by = {(r["model"], r["batch_size"]): r for r in runs["one_gpu"] if r["status"] == "ok"}
ratios = [r["throughput"] / one_by[(r["model"], r["batch_size"])]["throughput"]
          for r in runs["all_gpus"] if r["status"] == "ok" and (r["model"], r["batch_size"]) in one_by]
if ratios:
    print(f"per-job throughput, all GPUs / one GPU: median {statistics.median(ratios):.3f}, "
          f"min {min(ratios):.3f}, max {max(ratios):.3f} over {len(ratios)} jobs")
# Host-side interference shows first in warm-up (first passes, cuDNN autotuning), not in timed blocks.
for name, rows in runs.items():
    warm = sum(r.get("warmup_s") or 0 for r in rows)
    timed = sum(sum(r.get("block_times_s") or []) for r in rows)
    print(f"{name}: warm-up {warm:.1f} s, timed blocks {timed:.1f} s in total")
print(f"wall time: one GPU {one:.1f} s, all GPUs {every:.1f} s")
print(f"ratio all/one = {every / one:.3f}  (target <= 0.6)")
EOF
echo "results in $RESULTS (summary.txt)"
