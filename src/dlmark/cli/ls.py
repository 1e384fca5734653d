"""``dlmark ls RESULTS``: stored results as a table, filtered; ``--compare``: runtimes side by side."""
from __future__ import annotations

import argparse
from pathlib import Path

from dlmark.cli.args import split_list
from dlmark.errors import UserError

_COLUMNS = [
    ("model", "model"), ("device", "device"), ("runtime", "runtime"), ("task", "task"), ("precision", "precision"),
    ("int8_label", "int8 FLOPs"), ("in_flight_label", "in flight"),
    ("layout", "layout"), ("batch_size", "batch"), ("throughput_label", "img/s [95% CI]"),
    ("latency_ms_median", "latency ms"), ("device_mem", "mem MB"), ("status", "status"),
    ("agreement_label", "agrees"),  # output agreement with PyTorch fp32 eager: yes / NO / n/c (not comparable)
]
#: Columns shown only when a listed record says something there: the value that says nothing
#: (no int8 account; one request in flight, as every record before --in-flight).
_OPTIONAL = {"int8_label": None, "in_flight_label": 1, "in_flight": 1}
_FILTERS = ("model", "device", "task", "status", "precision", "backend", "scenario")


def register(commands) -> None:
    ls = commands.add_parser("ls", help="print stored results as a table")
    ls.add_argument("results", help="results folder, file or glob")
    for flag in _FILTERS:
        ls.add_argument(f"--{flag}", help=f"only these values of {flag} (comma-separated)")
    ls.add_argument("--compare", action="store_true",
                    help="runtimes side by side per model, device and batch, with the speed-up over PyTorch eager")
    ls.set_defaults(handler=main)


def shown_columns(rows: list[dict], columns: list[tuple[str, str]] = _COLUMNS) -> list[tuple[str, str]]:
    """The table's columns: an optional one only where some row has more to say than its quiet value."""
    return [(key, header) for key, header in columns
            if key not in _OPTIONAL or any(r.get(key) not in (None, _OPTIONAL[key]) for r in rows)]


def main(args: argparse.Namespace) -> int:
    from dlmark.backends.registry import label as runtime_label
    from dlmark.records.load import load_records
    from dlmark.report.tables import agreement_label, format_table, in_flight_of, int8_label, throughput_label

    if not Path(args.results).exists():
        raise UserError(f"no such results folder or file: {args.results}")
    # Every record stays at hand: a pipeline row shows the throughput task's figure that filters leave out.
    loaded = rows = load_records(args.results, with_samples=args.compare)  # block times only for the significance
    filters = {"model": args.model, "device": args.device, "task": args.task and args.task.replace("-", "_"),
               "status": args.status, "precision": args.precision, "backend": args.backend, "scenario": args.scenario}
    for column, wanted in filters.items():
        if wanted:
            choices = {w.lower() for w in split_list(wanted) or []}
            rows = [r for r in rows if str(r.get(column, "")).lower() in choices]
    if not rows:
        print("no results match")
        return 0
    rows.sort(key=lambda r: (str(r.get("model")), str(r.get("device")), str(r.get("task")),
                             str(r.get("precision")), r.get("batch_size") or 0))
    for r in rows:
        r["throughput_label"] = throughput_label(r)
        r["runtime"], r["agreement_label"] = runtime_label(r), agreement_label(r)
        r["int8_label"], r["in_flight_label"] = int8_label(r), in_flight_of(r)
    if args.scenario or all(r.get("task") == "serving" for r in rows):
        from dlmark.analysis.serving import COLUMNS, serving_rows

        print(format_table(serving_rows(rows), COLUMNS))
        print(f"\n{len(rows)} serving record(s); LoadGen's logs: the files named by log_summary / log_detail")
        return 0
    if all(r.get("task") == "pipeline" for r in rows):
        from dlmark.analysis.pipeline import COLUMNS, pipeline_rows

        print(format_table(pipeline_rows(rows, reference=loaded), COLUMNS))
        print(f"\n{len(rows)} pipeline record(s); random input: the throughput task's figure of the same "
              f"configuration; bound: what the stages allow end to end (docs/pipeline.md)")
        return 0
    if args.compare:
        from dlmark.analysis.runtimes import COLUMNS, runtime_rows

        compared = runtime_rows(rows)
        print(format_table(compared, shown_columns(compared, COLUMNS)))
        return 0
    print(format_table(rows, shown_columns(rows)))
    pipeline = sum(r.get("task") == "pipeline" for r in rows)
    print(f"\n{len(rows)} record(s)" + (f"; `--task pipeline` shows the {pipeline} pipeline record(s) stage by stage"
                                         if pipeline else ""))
    return 0
