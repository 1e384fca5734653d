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
    # Weights whose published figure is unknown say so in their record: the reason is shown.
    why_not = {}
    if "task" in df.columns and "status" in df.columns:
        absent = df[(df["task"] == "accuracy") & (df["status"] == "unavailable")]
        why_not = {row["model"]: row.get("error") for row in absent.to_dict("records")}
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
    table.attrs["no_accuracy"] = {m: why_not.get(m) or "no accuracy record" for m in sorted(set(missing))}
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


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
