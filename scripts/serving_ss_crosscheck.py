"""SingleStream's p90 against the throughput task's batch-1 p90, in paired rounds in one process.

    PYTHONPATH=src python scripts/serving_ss_crosscheck.py [--models ResNet-v1-18,SqueezeNet-1.1]
        [--backends pytorch,onnxruntime] [--threads 1] [--rounds 3] [--queries 256]

Issue 13's check: LoadGen SingleStream p90 within 10% of the batch-1 latency p90. Each round runs
LoadGen's SingleStream (``--queries`` queries, at least 5 s) and the throughput task's own timing
(``measure_throughput`` at batch 1) with blocks of one call, as many blocks as queries, so both
p90s are of single calls over a similar stretch of time; the order alternates between rounds. The
ratio is the median of the rounds' ratios. (The throughput task's default blocks hold several
calls for a fast model: the p90 of block means is narrower than that of calls.)
"""
from __future__ import annotations

import argparse
import statistics
import tempfile

from dlmark.backends import RunConfig, load
from dlmark.measure.loadgen import run_scenario
from dlmark.tasks.throughput import measure_throughput


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--models", default="ResNet-v1-18,SqueezeNet-1.1")
    ap.add_argument("--backends", default="pytorch,onnxruntime")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--queries", type=int, default=256)
    a = ap.parse_args()
    print("| model | runtime | threads | round | SingleStream p50 / p90 ms (verdict) | batch-1 p50 / p90 ms, blocks | p90 ratio |")
    print("|---|---|---:|---:|---|---|---:|")
    for model in a.models.split(","):
        for backend in a.backends.split(","):
            runner = load(backend, model, RunConfig(threads=a.threads))
            ratios = []
            with tempfile.TemporaryDirectory() as logs:
                for i in range(a.rounds):
                    figures = {}
                    for what in (("loadgen", "task") if i % 2 == 0 else ("task", "loadgen")):
                        if what == "loadgen":
                            figures[what] = run_scenario(runner, "single-stream", logs, min_duration_s=5.0,
                                                         min_query_count=a.queries)
                        else:
                            figures[what] = measure_throughput(runner, 1, {
                                "min_run_s": 5.0, "min_blocks": a.queries, "max_run_s": 120.0})
                    ss, task = figures["loadgen"], figures["task"]
                    ratio = ss["latency_ms_p90"] / task["latency_ms_p90"]
                    ratios.append(ratio)
                    print(f"| {model} | {backend} | {a.threads} | {i + 1} | {ss['latency_ms_p50']:.2f} / "
                          f"{ss['latency_ms_p90']:.2f} ({'VALID' if ss['valid'] else 'INVALID'}) | "
                          f"{task['latency_ms_median']:.2f} / {task['latency_ms_p90']:.2f}, {task['num_blocks']} "
                          f"x {task['iters_per_block']} | {ratio:.3f} |", flush=True)
            print(f"| {model} | {backend} | {a.threads} | median | | | **{statistics.median(ratios):.3f}** |",
                  flush=True)


if __name__ == "__main__":
    main()
