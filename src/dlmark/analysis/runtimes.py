"""Runtimes side by side: throughput of every runtime as a ratio to PyTorch eager (fp32, NCHW).

A ratio is taken between records of the same model, device, batch size and
thread count, preferring the baseline measured in the same run (CPU figures
are only comparable side by side, DESIGN.md). Each ratio carries the interval,
test and verdict of ``dlmark compare`` (``analysis.compare.ratio_with_significance``),
so both say "same" for a difference that is not significant or below the
threshold. Pure functions over records.
"""
from __future__ import annotations

import math
from typing import Any, Iterable

from dlmark.analysis.compare import ratio_with_significance
from dlmark.backends.registry import label as runtime_label
from dlmark.report.tables import agreement_label, in_flight_of, throughput_label


def _is_baseline(r: dict[str, Any]) -> bool:
    return ((r.get("backend") or "pytorch") == "pytorch" and not r.get("compile_mode")
            and (r.get("precision") or "fp32") == "fp32" and (r.get("layout") or "nchw") == "nchw"
            and (in_flight_of(r) or 1) == 1)  # eager is one request at a time


def _ok(r: dict[str, Any]) -> bool:
    thr = r.get("throughput")
    return (r.get("task") == "throughput" and r.get("status") == "ok" and thr is not None
            and not (isinstance(thr, float) and math.isnan(thr)))


def _key(r: dict[str, Any]) -> tuple:
    return (r.get("model"), r.get("device"), r.get("batch_size"), r.get("threads"))


_NONE = {"ratio": None, "ci_low": None, "ci_high": None, "p_value": None, "verdict": None, "reason": None}


def _significance(base: dict[str, Any] | None, r: dict[str, Any], threshold: float) -> dict[str, Any]:
    if base is None or base is r:  # no reference, or the reference itself
        return _NONE
    return ratio_with_significance(base, r, threshold=threshold)


def runtime_rows(records: Iterable[dict[str, Any]], threshold: float = 0.02) -> list[dict[str, Any]]:
    """One row per model, device, batch size and runtime configuration, with ``speedup`` over PyTorch eager.

    ``speedup`` is the ratio of median throughputs, with its 95% interval and ``significance``:
    faster, slower or same (``dlmark compare``'s verdict, ``threshold`` its minimum effect), or why
    there is none (noisy, too few blocks, no samples); None for the reference itself.
    """
    rows = [r for r in records if _ok(r)]
    baselines: dict[tuple, list[dict[str, Any]]] = {}
    for r in rows:
        if _is_baseline(r):
            baselines.setdefault(_key(r), []).append(r)
    out = []
    for r in rows:
        candidates = baselines.get(_key(r), [])
        same_run = [b for b in candidates if b.get("run_id") == r.get("run_id")]
        base = max(same_run or candidates, key=lambda b: str(b.get("timestamp")), default=None)
        sig = _significance(base, r, threshold)
        out.append({
            "model": r.get("model"), "device": r.get("device"), "batch_size": r.get("batch_size"),
            "threads": r.get("threads"), "runtime": runtime_label(r), "precision": r.get("precision"),
            "in_flight": in_flight_of(r) or 1,
            "throughput": r.get("throughput"), "throughput_label": throughput_label(r),
            "speedup": sig["ratio"] if sig["ratio"] is not None else (r["throughput"] / base["throughput"] if base else None),
            "speedup_ci_low": sig["ci_low"], "speedup_ci_high": sig["ci_high"], "p_value": sig["p_value"],
            "significance": sig["verdict"] or sig["reason"],
            "same_run": bool(base and base.get("run_id") == r.get("run_id")),
            # Either figure's spread above 10% of its median: the ratio is uncertain by as much.
            "noisy": bool(r.get("noisy") is True or (base and base.get("noisy") is True)),
            "agrees": agreement_label(r), "agreement_max_rel": r.get("agreement_max_rel"),
        })
    for row in out:
        row["speedup_label"] = _speedup_label(row)
    order = {"pytorch": 0}
    out.sort(key=lambda x: (str(x["model"]), str(x["device"]), x["batch_size"] or 0,
                            order.get(x["runtime"], 1), x["runtime"], str(x["precision"]), x["in_flight"]))
    return out


def _speedup_label(row: dict[str, Any]) -> str | None:
    if row["speedup"] is None:
        return None
    text = f"{row['speedup']:.2f}"
    if row["speedup_ci_low"] is not None:
        text += f" [{row['speedup_ci_low']:.2f}-{row['speedup_ci_high']:.2f}]"
    return text


COLUMNS = [
    ("model", "model"), ("device", "device"), ("batch_size", "batch"), ("runtime", "runtime"),
    ("precision", "precision"), ("in_flight", "in flight"), ("throughput_label", "img/s [95% CI]"),
    ("speedup_label", "x pytorch eager [95% CI]"), ("significance", "vs eager"),
    ("agrees", "agrees"), ("agreement_max_rel", "max rel diff"),
]


def _column_name(r: dict[str, Any]) -> str:
    """A wide table's column: the runtime, its precision unless fp32, its requests in flight unless one."""
    return (r["runtime"] + ("" if r["precision"] == "fp32" else f" {r['precision']}")
            + ("" if r["in_flight"] == 1 else f" x{r['in_flight']} in flight"))


def ratio_table(records: Iterable[dict[str, Any]], runtimes: list[str] | None = None) -> tuple[list[dict[str, Any]], list[str]]:
    """Wide form: one row per (model, batch size), one column per runtime holding the speed-up."""
    rows = runtime_rows(records)
    names = runtimes or sorted({_column_name(r) for r in rows}, key=lambda n: (n != "pytorch", n))
    wide: dict[tuple, dict[str, Any]] = {}
    for r in rows:
        name = _column_name(r)
        row = wide.setdefault((r["model"], r["batch_size"]), {"model": r["model"], "batch_size": r["batch_size"]})
        cell = "-" if r["speedup"] is None else f"{r['speedup']:.2f}" + ("~" if r["noisy"] else "")
        if r["agrees"] == "NO":
            cell += " (outputs differ)"
        elif r["agrees"] == "n/c":
            cell += " (n/c)"
        row[name] = cell
        if name == "pytorch":
            row["pytorch img/s"] = f"{r['throughput']:.3g}"
    return list(wide.values()), names


def markdown(rows: list[dict[str, Any]], columns: list[tuple[str, str]]) -> str:
    lines = ["| " + " | ".join(h for _, h in columns) + " |", "|" + "|".join("---" for _ in columns) + "|"]
    for row in rows:
        lines.append("| " + " | ".join("-" if row.get(k) is None else str(row.get(k)) for k, _ in columns) + " |")
    return "\n".join(lines)
