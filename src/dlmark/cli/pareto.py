"""``dlmark pareto RESULTS``: the accuracy/throughput frontier (``analysis.tradeoff``)."""
from __future__ import annotations

import argparse
from pathlib import Path

from dlmark.errors import UserError


def register(commands) -> None:
    parser = commands.add_parser("pareto", help="accuracy/throughput trade-off: the Pareto-optimal models")
    parser.add_argument("results", help="results folder, file or glob (throughput and accuracy records)")
    parser.add_argument("--device", help="device name or spec, e.g. 'H200' or cuda (default: each device)")
    parser.add_argument("--batch-size", type=int, default=64, help="throughput at this batch size (default 64, the seed's)")
    parser.add_argument("--min-accuracy", type=float, help="top-1 at least this, in percent (76) or as a fraction (0.76)")
    parser.add_argument("--max-latency-ms", type=float, help="latency of one batch at most this many ms")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from dlmark.analysis.tradeoff import _describe, _fraction, _isnan, _percent, answer, tradeoff_table
    from dlmark.records.load import require_results
    from dlmark.report.tables import format_table

    if not Path(args.results).exists():
        raise UserError(f"no such results folder or file: {args.results}")
    df = require_results(args.results)
    table = tradeoff_table(df, args.device, args.batch_size)
    if table.empty:
        reasons = "; ".join(f"{m}: {why}" for m, why in table.attrs.get("no_accuracy", {}).items())
        raise UserError("no model has both a throughput and an accuracy record; run "
                        "`dlmark run cnn --task accuracy` (published figures) or add --imagenet DIR"
                        + (f" (left out: {reasons})" if reasons else ""))
    min_acc = _fraction(args.min_accuracy)
    for device, rows in table.groupby("device", sort=True):
        result = answer(rows, min_acc, args.max_latency_ms)
        frontier = result["frontier"].sort_values("throughput", ascending=False)
        shown = []
        for row in frontier.to_dict("records"):
            ci = (f"[{_percent(row['accuracy_ci95_low'])}-{_percent(row['accuracy_ci95_high'])}]"
                  if row.get("accuracy_ci95_low") is not None and not _isnan(row.get("accuracy_ci95_low")) else "")
            shown.append({**row, "top1": _percent(row["accuracy"]), "ci": ci or None})
        print(f"Pareto-optimal at batch size {args.batch_size} on {device} "
              f"({len(frontier)} of {len(rows)} configurations; none is both faster and more accurate):")
        print(format_table(shown, [("model", "model"), ("backend", "runtime"), ("precision", "precision"),
                                   ("throughput", "img/s"),
                                   ("latency_ms_median", "latency ms"), ("top1", "top-1"), ("ci", "95% CI"),
                                   ("accuracy_source", "accuracy")]))
        if min_acc is not None or args.max_latency_ms is not None:
            wanted = " and ".join(x for x in (
                f"top-1 >= {100 * min_acc:.2f}%" if min_acc is not None else "",
                f"latency <= {args.max_latency_ms:g} ms" if args.max_latency_ms is not None else "") if x)
            if result["fastest"] is None:
                print(f"\nno configuration on {device} has {wanted}")
            else:
                print(f"\nfastest with {wanted}: {_describe(result['fastest'])}")
                print(f"most accurate with {wanted}: {_describe(result['most_accurate'])}")
        print()
    for model, why in table.attrs.get("no_accuracy", {}).items():
        print(f"left out: {model} ({why})")
    return 0
