"""Where the int8 went: per model, device and runtime, the int8 account of its quantized graph (docs/int8.md)."""
from __future__ import annotations

from typing import Any, Iterable

from dlmark.backends.registry import label as runtime_label

#: The report's table: (key, header, digits or None for text).
REPORT_COLUMNS = [
    ("model", "model", None), ("device", "device", None), ("runtime", "runtime", None),
    ("int8_flops_share", "int8 share of FLOPs", 4), ("int8_gflops", "int8 GFLOPs per image", 3),
    ("float_gflops", "float GFLOPs per image", 3), ("int8_ops", "int8 ops", 0), ("float_ops", "float ops", 0),
    ("quantize_ops", "Q/DQ ops", 0), ("fallbacks", "left in floating point (most FLOPs first)", None),
    ("agrees", "agrees with fp32", None), ("quantizer", "quantizer", None), ("quant_scheme", "scheme", None),
    ("calibration", "calibration", None), ("records", "records", 0),
]

#: Fallbacks named in a table cell; the rest are counted (every one is in the record and the CSV).
FALLBACKS_SHOWN = 10

#: One account per quantized graph: the same quantizer, scheme and calibration give the same graph
#: at every batch size and number of requests in flight.
_ACCOUNT = ("model", "device", "host", "backend", "compile_mode", "quantizer", "quant_scheme", "calibration_source",
            "calibration_samples", "calibration_seed", "int8_ops", "float_ops", "quantize_ops", "int8_flops_share")


def _value(r: dict[str, Any], key: str) -> Any:
    value = r.get(key)
    return None if isinstance(value, float) and value != value else value


def fallbacks_text(fallbacks: Any, shown: int = FALLBACKS_SHOWN) -> str | None:
    """'Conv conv1, MaxPool pool1 and 3 more': the operators left in floating point; 'none' when all ran in int8."""
    if fallbacks is None or (isinstance(fallbacks, float) and fallbacks != fallbacks):
        return None
    names = [str(name) for name in fallbacks]
    if not names:
        return "none"
    text = ", ".join(names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


def int8_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per quantized graph: its int8 share of FLOPs, operator counts and named fallbacks.

    An int8 record whose account could not be made is a row too, with what it says of why
    (``int8_account_method``)."""
    groups: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r.get("precision") != "int8" or r.get("status") != "ok" or r.get("task") != "throughput":
            continue
        fallbacks = _value(r, "fallback_ops")
        key = tuple(_value(r, k) for k in _ACCOUNT) + (tuple(fallbacks) if isinstance(fallbacks, (list, tuple)) else None,)
        row = groups.get(key)
        if row is None:
            int8_flops, float_flops = _value(r, "int8_flops_per_sample"), _value(r, "float_flops_per_sample")
            source, samples = _value(r, "calibration_source"), _value(r, "calibration_samples")
            row = groups[key] = {
                "model": r.get("model"), "device": r.get("device"), "runtime": runtime_label(r),
                "int8_flops_share": _value(r, "int8_flops_share"),
                "int8_gflops": int8_flops / 1e9 if int8_flops is not None else None,
                "float_gflops": float_flops / 1e9 if float_flops is not None else None,
                "int8_ops": _value(r, "int8_ops"), "float_ops": _value(r, "float_ops"),
                "quantize_ops": _value(r, "quantize_ops"),
                "fallbacks": fallbacks_text(fallbacks) or _value(r, "int8_account_method"),
                "quantizer": _value(r, "quantizer"), "quant_scheme": _value(r, "quant_scheme"),
                "calibration": " ".join(str(p) for p in (samples, source) if p is not None) or None,
                "records": 0, "_agreement": set()}
        row["records"] += 1
        if _value(r, "agreement_ok") is not None:
            row["_agreement"].add(bool(r["agreement_ok"]))
    rows = []
    for row in groups.values():
        agreement = row.pop("_agreement")
        # One disagreeing record of the graph is enough to say NO.
        row["agrees"] = ("NO" if False in agreement else "yes") if agreement else None
        rows.append(row)
    rows.sort(key=lambda row: (str(row["model"]), str(row["device"]), str(row["runtime"])))
    return rows
