"""Model-only against end-to-end (JPEG to logits) throughput on this machine's CPU, measured in one run.

    python scripts/pipeline_table.py --out runs/pipeline-cpu.json

For each model, batch size and number of data workers: the model alone on a
random batch (as dlmark's throughput task times it), then the whole pipeline
(``dlmark.inputs.pipeline.measure_runner``: every stage alone and end to end,
in rounds), back to back in one process so that all see the same machine.
Prints the markdown table of docs/pipeline.md, with the load average before
and after; writes every record to --out (``--from FILE`` prints the table again).
"Model alone" is the pipeline's model stage (a real batch, timed in the same rounds
as end to end); the throughput task's figure on random input is beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time

from dlmark.models import zoo
from dlmark.backends import RunConfig
from dlmark.backends.pytorch import PyTorchRunner
from dlmark.inputs import jpegs, pipeline
from dlmark.measure.timing import TimingConfig, time_callable


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="ResNet-v1-18,SqueezeNet-1.1")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--data-workers", default="1,2")
    parser.add_argument("--decoder", default="pil")
    parser.add_argument("--images", type=int, default=jpegs.DEFAULT_COUNT, help="size of the generated set")
    parser.add_argument("--input", default=None, help="a JPEG folder instead of the generated set")
    parser.add_argument("--min-time", type=float, default=1.5, help="seconds of timed blocks per figure and round")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None, help="torch intra-op threads (default: torch's)")
    parser.add_argument("--out", default=None, help="write the records here (JSON)")
    parser.add_argument("--from", dest="saved", default=None, help="print the table of records written by --out")
    args = parser.parse_args(argv)
    if args.saved:
        with open(args.saved) as f:
            saved = json.load(f)
        if isinstance(saved, list):  # the first version of this script wrote the records alone
            saved = {"records": saved, "meta": _meta_of(saved)}
        print_table(saved["records"], saved["meta"])
        return 0

    timing = TimingConfig(min_run_s=args.min_time, min_blocks=4, max_run_s=10 * args.min_time, warmup_min_iters=2,
                          warmup_min_s=0.3, warmup_max_s=4 * args.min_time)
    images = jpegs.open_folder(args.input) if args.input else jpegs.generate(args.images)
    load_before = os.getloadavg()
    began = time.time()
    records = []
    for name in args.models.split(","):
        spec = zoo.get(name)
        runner = PyTorchRunner(zoo.build(spec, pretrained="never"), RunConfig(device="cpu", threads=args.threads))
        for workers in (int(w) for w in args.data_workers.split(",")):
            x = runner.make_inputs(args.batch_size)
            alone = time_callable(lambda: runner.run(x), runner.timer(), timing).summary(args.batch_size)
            fields = pipeline.measure_runner(runner, images, decoder=args.decoder, batch_size=args.batch_size,
                                             data_workers=workers, timing=timing, rounds=args.rounds)
            fields.update(model=spec.name, model_only_throughput=alone["throughput"],
                          model_only_throughput_ci95_low=alone["throughput_ci95_low"],
                          model_only_throughput_ci95_high=alone["throughput_ci95_high"])
            records.append(fields)
            print(f"# {spec.name} workers={workers}: model-only {alone['throughput']:.1f}/s, "
                  f"e2e {fields['e2e_throughput']:.1f}/s, bottleneck {fields['bottleneck']}", file=sys.stderr)
        runner.close()
    load_after = os.getloadavg()
    meta = {"images": images.describe(), "decoder": args.decoder, "batch_size": args.batch_size,
            "rounds": args.rounds, "load_before": load_before, "load_after": load_after,
            "minutes": (time.time() - began) / 60, "cpus": os.cpu_count()}
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"meta": meta, "records": records}, f, indent=1, default=str)
    print_table(records, meta)
    return 0


def _meta_of(records) -> dict:
    r = records[0]
    return {"images": {k: v for k, v in r.items() if k.startswith("input_")}, "decoder": r["decoder"],
            "batch_size": r["batch_size"], "rounds": r["pipeline_rounds"],
            "load_before": [r["loadavg_1m_before"], float("nan"), float("nan")],
            "load_after": [r["loadavg_1m_after"], float("nan"), float("nan")], "minutes": float("nan"),
            "cpus": os.cpu_count()}


def _paired(a: list[float], b: list[float]) -> float:
    """Median over rounds of a/b: each round's two figures were measured next to each other."""
    import statistics

    return statistics.median(x / y for x, y in zip(a, b))


def print_table(records, meta) -> None:
    d, lb, la = meta["images"], meta["load_before"], meta["load_after"]
    print(f"{d['input_images']} {d['input_source']} JPEGs (median {d['input_width_median']:.0f}x"
          f"{d['input_height_median']:.0f}, {d['input_file_kb_median']:.0f} KB, qualities {d['input_qualities']}), "
          f"decoder {meta['decoder']}, batch {meta['batch_size']}, {records[0]['threads']} torch threads, "
          f"{meta['rounds']} rounds; load average (1/5/15 min) {lb[0]:.2f}/{lb[1]:.2f}/{lb[2]:.2f} before, "
          f"{la[0]:.2f}/{la[1]:.2f}/{la[2]:.2f} after, {meta['minutes']:.1f} min on {meta['cpus']} CPUs\n")
    print("| model | data workers | model alone (img/s) | end to end (img/s) | end to end / model alone "
          "| decode | transform | loader | bottleneck | end to end / bottleneck | CPU cores used "
          "| throughput task, random input (img/s) |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---|---:|---:|---:|")
    for r in records:
        print(f"| {r['model']} | {r['data_workers']} | {r['stage_model_per_s']:.1f} | {r['e2e_throughput']:.1f} "
              f"[{r['e2e_throughput_ci95_low']:.1f}, {r['e2e_throughput_ci95_high']:.1f}] "
              f"| {_paired(r['e2e_throughput_rounds'], r['stage_model_per_s_rounds']):.2f} "
              f"| {r['stage_decode_per_s']:.0f} | {r['stage_transform_per_s']:.0f} | {r['stage_loader_per_s']:.0f} "
              f"| {r['bottleneck']} | {r['e2e_of_bottleneck']:.2f} | {r['cpu_cores_used']:.2f} "
              f"| {r['model_only_throughput']:.1f} |")


if __name__ == "__main__":
    sys.exit(main())
