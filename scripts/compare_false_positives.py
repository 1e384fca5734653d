"""False positives of `dlmark compare`, measured for real.

Runs one suite twice on the CPU, one run after the other (same command), and
compares the two runs: identical code should read `same`. Prints the
comparison, the share of pairs with a verdict other than `same`, the share
called faster or slower, and what competed with each run (ContentionProbe
around the whole run: the run's processes are "own", everything else "other").

    PYTHONPATH=src python scripts/compare_false_positives.py [WORKDIR] [--suite quick] [-- extra run args]

WORKDIR (default: a new temporary folder) receives A/ and B/; `dlmark run`
skips jobs already there, so a second call with the same WORKDIR only
repeats the comparison. DLMARK_RUN_PYTHONPATH, when set, is the PYTHONPATH of
the two `dlmark run` processes (to measure with another checkout's code).
"""
from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workdir", nargs="?")
    parser.add_argument("--suite", default="quick")
    parser.add_argument("--threshold", type=float, default=0.02)
    parser.add_argument("--power", default="", metavar="F,G",
                        help="also compare A with B's records slowed by each factor (block times and throughput "
                             "scaled): how many pairs each slowdown is found in")
    parser.add_argument("run_args", nargs="*", help="after --: extra `dlmark run` arguments")
    args = parser.parse_args()

    from dlmark.analysis.compare import compare, format_terminal
    from dlmark.records.load import load_records
    from dlmark.measure.contention import ContentionProbe

    work = Path(args.workdir or tempfile.mkdtemp(prefix="dlmark-fp-"))
    work.mkdir(parents=True, exist_ok=True)
    env = dict(os.environ)
    if os.environ.get("DLMARK_RUN_PYTHONPATH"):
        env["PYTHONPATH"] = os.environ["DLMARK_RUN_PYTHONPATH"]
    for side in ("A", "B"):
        probe = ContentionProbe()
        probe.start()
        t = time.time()
        subprocess.run([sys.executable, "-m", "dlmark.cli", "run", args.suite, "--device", "cpu",
                        "--out", str(work / side), "--quiet", *args.run_args], check=True, env=env)
        f = probe.stop()
        if f["window_s"]:
            share = f["other_cpu_s"] / (f["window_s"] * f["cpus_usable"])
            print(f"run {side}: {time.time() - t:.0f} s; load average {f['loadavg_1m_before']} -> "
                  f"{f['loadavg_1m_after']}; other processes used {share:.0%} of {f['cpus_usable']} CPUs; "
                  f"steal {f['cpu_steal_s']:.1f} s")

    result = compare(load_records(work / "A"), load_records(work / "B"), threshold=args.threshold)
    print(format_terminal(result, colour=False))
    pairs = result.pairs
    other = [p for p in pairs if p.verdict != "same"]
    called = [p for p in pairs if p.verdict in ("faster", "slower")]
    judged = [p for p in pairs if p.verdict is not None]
    print(f"pairs: {len(pairs)}; verdict other than 'same': {len(other)} ({len(other) / max(1, len(pairs)):.1%}); "
          f"called faster/slower: {len(called)} of {len(judged)} with a verdict "
          f"({len(called) / max(1, len(judged)):.1%}); results in {work}")
    for factor in [float(f) for f in args.power.split(",") if f]:
        slowed = compare(load_records(work / "A"), [slowed_by(r, factor) for r in load_records(work / "B")],
                         threshold=args.threshold)
        verdicts = [p.verdict for p in slowed.pairs]
        widths = sorted(p.ci_high / p.ci_low for p in slowed.pairs if p.ci_low and p.ci_high)
        print(f"B slowed {factor:g}x: slower in {verdicts.count('slower')} of {len(verdicts)} pairs, "
              f"faster in {verdicts.count('faster')}; median interval high / low {widths[len(widths) // 2]:.2f}")
    return 0


def slowed_by(record: dict, factor: float) -> dict:
    """A copy whose code ran ``factor`` times slower: block times and throughput scaled."""
    out = dict(record)
    if record.get("throughput"):
        out["throughput"] = record["throughput"] / factor
    if record.get("block_times_s"):
        out["block_times_s"] = [t * factor for t in record["block_times_s"]]
    return out


if __name__ == "__main__":
    sys.exit(main())
