"""The accuracy/speed trade-off: join throughput and accuracy records, find the frontier.

``dlmark pareto RESULTS_DIR`` prints the Pareto-optimal configurations (no
other is both faster and more accurate) on a device at one batch size, and
answers "the fastest model with at least X top-1" or "the most accurate one
within Y ms". The frontier is ``dlmark.analysis.pareto.pareto_frontier``, the same
function the accuracy/throughput plot draws. Only pandas is needed.
"""
from __future__ import annotations

import argparse
import math
from typing import Any

from dlmark.errors import UserError

_KEEP = ("model", "device", "device_spec", "precision", "layout", "compile_mode", "backend", "batch_size",
         "throughput", "latency_ms_median")
_ACCURACY = ("accuracy", "top5", "accuracy_source", "accuracy_reference", "accuracy_ci95_low",
             "accuracy_ci95_high", "num_images")


def _ok(df, task: str):
    rows = df[df["task"] == task] if "task" in df.columns else df.iloc[0:0]
    if "status" in rows.columns:
        rows = rows[rows["status"].fillna("ok") == "ok"]
    return rows


def _matches_device(df, device: str):
    wanted = device.strip().lower()
    names = df["device"].astype(str).str.lower()
    specs = df["device_spec"].astype(str).str.lower() if "device_spec" in df.columns else names
    exact = (names == wanted) | (specs == wanted)
    return exact if exact.any() else names.str.contains(wanted, regex=False)


def tradeoff_table(df, device: str | None = None, batch_size: int = 64):
    """One row per measured throughput configuration at ``batch_size`` with its top-1 accuracy.

    Accuracy measured on the same device and precision wins; otherwise the
    model's published figure is used (it does not depend on the device). Rows
    without any accuracy are left out and listed in ``table.attrs["no_accuracy"]``.
    """
    import pandas as pd

    thr = _ok(df, "throughput")
    thr = thr[pd.to_numeric(thr["batch_size"], errors="coerce") == batch_size] if len(thr) else thr
    if device and len(thr):
        thr = thr[_matches_device(thr, device)]
    if thr.empty:
        available = sorted(set(zip(_ok(df, "throughput").get("device", []),
                                   _ok(df, "throughput").get("batch_size", []))))
        shown = ", ".join(f"{d} b={int(b)}" for d, b in available[:12]) or "none"
        raise UserError(f"no throughput results at batch size {batch_size}"
                        + (f" on device {device!r}" if device else "") + f"; available: {shown}")
    acc = _ok(df, "accuracy")
    if len(acc):
        acc = acc[pd.to_numeric(acc["accuracy"], errors="coerce").notna()]
        if "timestamp" in acc.columns:
            acc = acc.sort_values("timestamp", kind="stable")  # the latest record wins below
    measured: dict[tuple, dict[str, Any]] = {}
    published: dict[str, dict[str, Any]] = {}
    for row in acc.to_dict("records"):
        if row.get("accuracy_source") == "measured":
            measured[(row["model"], row["device"], row.get("precision"))] = row
        else:
            published[row["model"]] = row
    rows, missing = [], []
    for row in thr.to_dict("records"):
        hit = measured.get((row["model"], row["device"], row.get("precision"))) or published.get(row["model"])
        if hit is None:
            missing.append(row["model"])
            continue
        out = {k: row.get(k) for k in _KEEP}
        out.update({k: hit.get(k) for k in _ACCURACY})
        rows.append(out)
    table = pd.DataFrame(rows, columns=[*_KEEP, *_ACCURACY])
    table.attrs["no_accuracy"] = sorted(set(missing))
    return table


def _fraction(value: float | None) -> float | None:
    """--min-accuracy takes 76 or 0.76 for 76% top-1."""
    if value is None:
        return None
    if value < 0 or value > 100:
        raise UserError(f"--min-accuracy must be a top-1 accuracy in percent (76) or as a fraction (0.76), got {value}")
    return value / 100.0 if value > 1 else value


def answer(table, min_accuracy: float | None = None, max_latency_ms: float | None = None) -> dict[str, Any]:
    """Frontier and the best picks under the constraints (accuracy as a fraction)."""
    from dlmark.analysis.pareto import pareto_frontier

    frontier = pareto_frontier(table, x="throughput", y="accuracy")
    allowed = table
    if min_accuracy is not None:
        allowed = allowed[allowed["accuracy"] >= min_accuracy - 1e-12]
    if max_latency_ms is not None:
        allowed = allowed[allowed["latency_ms_median"].astype(float) <= max_latency_ms]
    fastest = allowed.loc[allowed["throughput"].astype(float).idxmax()] if len(allowed) else None
    most_accurate = allowed.loc[allowed["accuracy"].astype(float).idxmax()] if len(allowed) else None
    return {"frontier": frontier, "allowed": allowed, "fastest": fastest, "most_accurate": most_accurate}


def _percent(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * float(value):.2f}%"


def _describe(row) -> str:
    config = "/".join(str(v) for v in (row.get("precision"), row.get("layout")) if v and v != "nchw")
    return (f"{row['model']}{f' ({config})' if config else ''}: {float(row['throughput']):,.1f} img/s, "
            f"{_percent(row['accuracy'])} top-1 {row.get('accuracy_source')}")


def cmd_pareto(args: argparse.Namespace) -> int:
    from pathlib import Path

    from dlmark.records.load import require_results
    from dlmark.report.tables import format_table

    if not Path(args.results).exists():
        raise UserError(f"no such results folder or file: {args.results}")
    df = require_results(args.results)
    table = tradeoff_table(df, args.device, args.batch_size)
    if table.empty:
        raise UserError("no model has both a throughput and an accuracy record; run "
                        "`dlmark run cnn --task accuracy` (published figures) or add --imagenet DIR")
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
        print(format_table(shown, [("model", "model"), ("precision", "precision"), ("throughput", "img/s"),
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
    if table.attrs.get("no_accuracy"):
        print(f"left out (no accuracy record): {', '.join(table.attrs['no_accuracy'])}")
    return 0


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)


def add_pareto_command(commands) -> None:
    """Register ``dlmark pareto`` (called by dlmark.cli)."""
    parser = commands.add_parser("pareto", help="accuracy/throughput trade-off: the Pareto-optimal models")
    parser.add_argument("results", help="results folder, file or glob (throughput and accuracy records)")
    parser.add_argument("--device", help="device name or spec, e.g. 'H200' or cuda (default: each device)")
    parser.add_argument("--batch-size", type=int, default=64, help="throughput at this batch size (default 64, the seed's)")
    parser.add_argument("--min-accuracy", type=float, help="top-1 at least this, in percent (76) or as a fraction (0.76)")
    parser.add_argument("--max-latency-ms", type=float, help="latency of one batch at most this many ms")
    parser.set_defaults(handler=cmd_pareto)
