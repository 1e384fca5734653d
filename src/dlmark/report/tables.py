"""Plain-text tables for the terminal: the run summary and ``dlmark ls``."""
from __future__ import annotations

import math
from typing import Any, Iterable, Sequence


def _given(value: Any) -> bool:
    """A value a record holds: neither None nor NaN (pandas' missing)."""
    return value is not None and not (isinstance(value, float) and math.isnan(value))


def _cell(value: Any) -> str:
    if not _given(value):
        return "-"
    if isinstance(value, bool):
        return "yes" if value else ""
    if isinstance(value, float):
        if abs(value) >= 100:
            return f"{value:,.0f}"
        if abs(value) >= 10:
            return f"{value:.1f}"
        return f"{value:.3g}"
    return str(value)


def format_table(rows: Iterable[dict[str, Any]], columns: Sequence[tuple[str, str]]) -> str:
    """Rows as an aligned table; ``columns`` are (key, header) pairs. Numbers align right."""
    rows = list(rows)
    cells = [[_cell(row.get(key)) for key, _ in columns] for row in rows]
    headers = [header for _, header in columns]
    widths = [max([len(h)] + [len(r[i]) for r in cells]) for i, h in enumerate(headers)]
    numeric = [all(isinstance(row.get(key), (int, float)) or row.get(key) is None for row in rows)
               for key, _ in columns]

    def line(values: Sequence[str]) -> str:
        return "  ".join(v.rjust(w) if num else v.ljust(w) for v, w, num in zip(values, widths, numeric)).rstrip()

    out = [line(headers), line(["-" * w for w in widths])]
    out += [line(r) for r in cells]
    return "\n".join(out)


def throughput_label(row: dict[str, Any]) -> str | None:
    """Median throughput with its 95% interval, e.g. '1,234 [1,220-1,250]'."""
    thr = row.get("throughput")
    if not _given(thr):
        return None
    low, high = row.get("throughput_ci95_low"), row.get("throughput_ci95_high")
    text = _cell(float(thr))
    if _given(low) and high is not None:
        text += f" [{_cell(float(low))}-{_cell(float(high))}]"
    if row.get("noisy") is True:
        text += " noisy"
    return text


def agreement_label(row: dict[str, Any]) -> str | None:
    """Output agreement with PyTorch fp32 eager: 'yes', 'NO' (beyond tolerance), 'n/c' (not comparable),
    or None where no check applies (the reference itself, records older than the check)."""
    ok = row.get("agreement_ok")
    if ok is True:
        return "yes"
    if ok is False:
        return "NO"
    method = row.get("agreement_method")
    if isinstance(method, str) and method:
        return "n/c"
    return None


def int8_label(row: dict[str, Any]) -> str | None:
    """The int8 share of the model's Conv/Gemm/MatMul FLOPs and the operators left in floating point,
    e.g. '97.7% (6 float ops)'; None for a record without an int8 account."""
    share = row.get("int8_flops_share")
    if not _given(share):
        return None
    # 0.99996 is not all of it: say so rather than round it up to 100%.
    text = "100%" if share == 1 else (">99.9%" if share > 0.999 else f"{share:.1%}")
    floats = row.get("float_ops")
    if isinstance(floats, (int, float)) and _given(floats) and floats:
        text += f" ({int(floats)} float op{'s' if floats != 1 else ''})"
    return text


def serving_label(row: dict[str, Any]) -> str | None:
    """What a serving record measured and LoadGen's verdict, e.g. 'server at 23,815 QPS, 2 in flight:
    VALID (p99 11.51 ms)' or, for a search's answer, 'server: 23,815 QPS within p99 15 ms'; None for
    other tasks."""
    if row.get("task") != "serving":
        return None
    scenario = row.get("scenario") if _given(row.get("scenario")) else "serving"
    in_flight = f", {int(row['batches_in_flight'])} in flight" if _given(row.get("batches_in_flight")) else ""
    if _given(row.get("server_qps_at_bound")):
        bound = row.get("latency_bound_ms")
        return f"{scenario}: {row['server_qps_at_bound']:,.0f} QPS within p99 " + \
            (f"{bound:g} ms" if _given(bound) else "the bound") + in_flight
    text = scenario
    if scenario == "server" and _given(row.get("target_qps")):
        text += f" at {row['target_qps']:,.0f} QPS"
    text += in_flight
    if _given(row.get("valid")):
        text += ": VALID" if row["valid"] else ": INVALID"
    if scenario == "server" and _given(row.get("latency_ms_p99")):
        text += f" (p99 {row['latency_ms_p99']:,.2f} ms)"
    return text


def in_flight_of(row: dict[str, Any]) -> int | None:
    """Requests the throughput task kept in flight: 1 for a record that does not say (one at a time),
    None for other tasks."""
    if row.get("task") != "throughput":
        return None
    value = row.get("in_flight")
    return int(value) if _given(value) else 1
