"""Model-only against end-to-end (JPEG to logits) throughput on this machine's CPU: BENCHMARKS.md's table.

    python scripts/pipeline_table.py --out runs/pipeline-cpu

One ``dlmark run`` with the throughput task and the pipeline task (``--input``)
for each model at one batch size and each number of data workers: the model on
random input as the throughput task times it, then the whole pipeline (every
stage alone and end to end, in rounds), model by model, so that both see the
same machine. The records go to --out like any run's (a second call resumes);
the load average before and after goes beside them (``pipeline-table/meta.json``).
Prints the markdown table of docs/pipeline.md; ``--from DIR`` prints it again.
"Model alone" is the pipeline's model stage (a real batch, timed in the same
rounds as end to end); the throughput task's figure on random input is beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

from dlmark.cli import main as dlmark_main
from dlmark.records.load import load_records

META = Path("pipeline-table") / "meta.txt"  # JSON, but not a .json: readers take every *.json for a record


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ResNet-v1-18,SqueezeNet-1.1")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--pipeline-workers", default="1,2")
    parser.add_argument("--decoder", default="pil")
    parser.add_argument("--input", default="images", help="images (the generated set) or images:DIR")
    parser.add_argument("--images", type=int, default=256, help="the generated set's size, or a folder's limit")
    parser.add_argument("--min-time", type=float, default=1.5, help="seconds of timed blocks per figure and round")
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default="runs/pipeline-cpu", help="results folder")
    parser.add_argument("--from", dest="saved", default=None, help="print the table of a results folder")
    args = parser.parse_args(argv)
    if args.saved:
        print_table(args.saved)
        return 0

    run = ["run", "--models", args.models, "--task", "throughput", "--input", args.input, "--images", str(args.images),
           "--batch-sizes", str(args.batch_size), "--pipeline-workers", args.pipeline_workers,
           "--decoder", args.decoder, "--device", "cpu", "--min-time", str(args.min_time), "--out", args.out]
    if args.threads:
        run += ["--threads", str(args.threads)]
    load_before = os.getloadavg()
    began = time.time()
    code = dlmark_main(run)
    if code:
        return code
    meta = {"load_before": load_before, "load_after": os.getloadavg(), "minutes": (time.time() - began) / 60,
            "cpus": os.cpu_count(), "command": "dlmark " + " ".join(run)}
    path = Path(args.out) / META
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(meta, indent=1))
    print()
    print_table(args.out)
    return 0


def print_table(folder: str) -> None:
    records = [r for r in load_records(folder, derive=False) if r.get("status") == "ok"]
    pipes = sorted((r for r in records if r["task"] == "pipeline"), key=lambda r: (r["model"], r["data_workers"]))
    if not pipes:
        print(f"no pipeline records in {folder}", file=sys.stderr)
        return
    random_input = {(r["model"], r["batch_size"], r.get("threads")): r for r in records if r["task"] == "throughput"}
    meta_path = Path(folder) / META
    meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
    r = pipes[0]
    line = (f"{r['input_images']} {r['input_source']} JPEGs (median {r['input_width_median']:.0f}x"
            f"{r['input_height_median']:.0f}, {r['input_file_kb_median']:.0f} KB, qualities {r['input_qualities']}), "
            f"decoder {r['decoder']}, batch {r['batch_size']}, {r['threads']} torch threads, "
            f"{r['pipeline_rounds']} rounds")
    if meta:
        lb, la = meta["load_before"], meta["load_after"]
        line += (f"; load average (1/5/15 min) {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f} before, "
                 f"{la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} after, {meta['minutes']:.1f} min on {meta['cpus']} CPUs")
    print(line + "\n")
    print("| model | data workers | model alone (img/s) | end to end (img/s) [95% interval] | end to end / model alone "
          "| decode | transform | loader | bottleneck | end to end / bottleneck | CPU cores used "
          "| throughput task, random input (img/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in pipes:
        alone = random_input.get((r["model"], r["batch_size"], r.get("threads")))
        random_figure = f"{alone['throughput']:.1f}" if alone else "-"
        print(f"| {r['model']} | {r['data_workers']} | {r['stage_model_per_s']:.1f} | {r['e2e_throughput']:.1f} "
              f"[{r['e2e_throughput_ci95_low']:.1f}, {r['e2e_throughput_ci95_high']:.1f}] "
              f"| {_paired(r['e2e_throughput_rounds'], r['stage_model_per_s_rounds']):.2f} "
              f"| {r['stage_decode_per_s']:.0f} | {r['stage_transform_per_s']:.0f} | {r['stage_loader_per_s']:.0f} "
              f"| {r['bottleneck']} | {r['e2e_of_bottleneck']:.2f} | {r['cpu_cores_used']:.2f} "
              f"| {random_figure} |")


def _paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b: each round's two figures were measured next to each other."""
    return statistics.median(x / y for x, y in zip(a, b))


if __name__ == "__main__":
    sys.exit(main())
