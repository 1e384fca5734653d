"""Runtimes side by side on this machine's CPU, as ratios to PyTorch eager, measured in one run.

    python scripts/runtime_table.py runs/runtimes-cpu

runs one sweep (every runtime of each model and batch size back to back, so
that all see the same machine state) into the folder given, then prints the
markdown table of BENCHMARKS.md: throughput of each runtime divided by PyTorch
eager fp32's, with a mark where outputs do not agree or are not comparable. Re-running resumes; --force re-measures.
"""
from __future__ import annotations

import argparse
import sys

from dlmark.analysis import runtimes as compare
from dlmark.measure import environment
from dlmark.benchmark import load_records
from dlmark.cli import main as dlmark_main

RUNTIMES = ["pytorch", "pytorch-compile", "onnxruntime", "openvino", "mxnet"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", help="results folder")
    parser.add_argument("--models", default="ResNet-v1-50,SqueezeNet-1.1")
    parser.add_argument("--batch-sizes", default="1,32")
    parser.add_argument("--backends", default=",".join(RUNTIMES))
    parser.add_argument("--threads", type=int, default=environment.usable_cpus())
    parser.add_argument("--min-time", type=float, default=2.0, help="seconds of timed blocks per figure")
    parser.add_argument("--force", action="store_true")
    args = parser.parse_args(argv)
    code = dlmark_main(["run", "quick", "--device", "cpu", "--task", "throughput", "--models", args.models,
                        "--batch-sizes", args.batch_sizes, "--backend", args.backends, "--threads", str(args.threads),
                        "--min-time", str(args.min_time), "--out", args.out, *(["--force"] if args.force else [])])
    if code != 0:
        return code
    print_table(args.out, args.models.split(","), args.threads)
    return 0


def print_table(out: str, models: list[str], threads: int) -> None:
    rows = [r for r in load_records(out) if r.get("model") in models and r.get("threads") == threads]
    table, names = compare.ratio_table(rows)
    table.sort(key=lambda r: (models.index(r["model"]), r["batch_size"]))
    # Ratios only: a CPU's absolute figures depend on what else the machine runs (DESIGN.md).
    columns = [("model", "model"), ("batch_size", "batch")]
    columns += [(n, n) for n in names]
    print()
    print(f"CPU: {environment.cpu_model()}, {environment.usable_cpus()} usable cores, {threads} threads per runtime; "
          "cells: throughput / PyTorch eager fp32 throughput (same model, batch, run); "
          "~: either figure noisy (IQR > 10% of the median); n/c: outputs not comparable (different network)")
    print()
    print(compare.markdown(table, columns))


if __name__ == "__main__":
    sys.exit(main())
