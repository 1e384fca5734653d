"""The serving summary: per model and configuration, each scenario's figure with LoadGen's verdict."""
from __future__ import annotations

import os
from typing import Any, Iterable

from dlmark.backends.registry import label as runtime_label

COLUMNS = [("model", "model"), ("device", "device"), ("runtime", "runtime"), ("precision", "precision"),
           ("samples", "samples"), ("offline", "Offline samples/s"), ("single_stream", "SingleStream p90 ms"),
           ("multi_stream", "MultiStream p99 ms"), ("server", "Server QPS (p99 ms)"), ("notes", "not valid")]
#: Shown only when the rows differ in them (a layout or thread count is then what tells two rows apart).
VARYING_COLUMNS = [("layout", "layout"), ("threads", "threads")]
#: Shown only when some Server figure knows how it batched: the batcher that held that load.
BATCHER_COLUMN = ("server_batcher", "Server batcher")


def _setting(r: dict[str, Any], key: str) -> Any:
    """A serving setting: the record's own field, else what the run asked for (older answers kept it there)."""
    value = r.get(key)
    return (r.get("extra_config") or {}).get(key) if value is None else value


def _scenario(r: dict[str, Any]) -> str | None:
    return _setting(r, "scenario")


def samples_label(r: dict[str, Any]) -> str:
    """What the library held: ``generated``, or the images as ``--input`` named them and the decoder
    (``images (pil)`` for the generated JPEG set, ``images:val (pil)`` for a folder, by its last part)."""
    extra = r.get("extra_config") or {}
    given = extra.get("input")
    if not given:
        return "generated"
    folder = given.partition(":")[2]
    return f"images{':' + os.path.basename(folder.rstrip('/')) if folder else ''} ({extra.get('decoder')})"


def _verdict(r: dict[str, Any]) -> str:
    if r.get("status") != "ok":
        return str(r.get("status"))
    return "VALID" if r.get("valid") else "INVALID"


def batcher_label(r: dict[str, Any] | None) -> str | None:
    """How a Server figure was batched, e.g. '<= 128 within 4 ms, 2 in flight'; None when unknown."""
    if r is None or _setting(r, "max_batch") is None:
        return None
    delay, in_flight = _setting(r, "max_queue_delay_ms"), _setting(r, "batches_in_flight")
    text = f"<= {int(_setting(r, 'max_batch'))}"
    text += f" within {float(delay):g} ms" if delay is not None else ""
    return text + (f", {int(in_flight)} in flight" if in_flight is not None else "")


def shown_columns(rows: list[dict[str, Any]]) -> list[tuple[str, str]]:
    """COLUMNS, with layout and threads where the rows differ in them and the batcher where it is known."""
    columns = list(COLUMNS)
    at = columns.index(("precision", "precision")) + 1
    columns[at:at] = [c for c in VARYING_COLUMNS if len({str(row.get(c[0])) for row in rows}) > 1]
    if any(row.get(BATCHER_COLUMN[0]) for row in rows):
        columns.insert(columns.index(("server", "Server QPS (p99 ms)")) + 1, BATCHER_COLUMN)
    return columns


def _num(value: Any, digits: int = 1) -> str:
    return "-" if value is None or value != value else f"{float(value):,.{digits}f}"


def serving_rows(records: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per model, device and configuration; a figure LoadGen called INVALID says so beside it.

    Server shows the search's answer (largest QPS within the bound) when there is one, else the
    run at the highest offered load; search steps are not rows of their own. Batcher settings
    (batch size, delay, batches in flight) are how a Server figure was reached, not a configuration:
    the best one is shown, with the batcher that held it.
    """
    groups: dict[tuple, dict[str, Any]] = {}
    for r in records:
        if r.get("task") != "serving":
            continue
        # Generated and image samples are configurations of their own: rows of their own.
        samples = samples_label(r)
        key = (r.get("model"), r.get("device"), r.get("backend"), r.get("precision"), r.get("layout"),
               r.get("compile_mode"), r.get("threads"), samples, (r.get("extra_config") or {}).get("input"))
        row = groups.setdefault(key, {"model": r.get("model"), "device": r.get("device"), "runtime": runtime_label(r),
                                      "precision": r.get("precision"), "layout": r.get("layout"),
                                      "threads": r.get("threads"), "samples": samples, "_best": {}, "notes": []})
        scenario = _scenario(r)
        if scenario is None:
            continue
        if r.get("status") != "ok" or not r.get("valid", r.get("server_qps_at_bound") is not None):
            if r.get("server_qps_at_bound") is None and "target_qps" not in (r.get("extra_config") or {}):
                row["notes"].append(f"{scenario}: {_verdict(r)}")
        best = row["_best"].get(scenario)
        if _better(r, best, scenario):
            row["_best"][scenario] = r
    rows = []
    for row in groups.values():
        best = row.pop("_best")
        offline = best.get("offline")
        row["offline"] = _shown(offline, "samples_per_s", 0)
        row["single_stream"] = _shown(best.get("single-stream"), "latency_ms_p90", 2)
        row["multi_stream"] = _shown(best.get("multi-stream"), "latency_ms_p99", 2)
        server = best.get("server")
        if server is not None and server.get("server_qps_at_bound") is not None:
            row["server"] = (f"{_num(server['server_qps_at_bound'])} at p99 <= {_num(server.get('latency_bound_ms'), 0)} "
                             f"({_num(server.get('latency_ms_p99'), 2)})")
        else:
            row["server"] = _shown(server, "qps_completed", 1, extra="latency_ms_p99")
        row["server_batcher"] = batcher_label(server)
        row["notes"] = "; ".join(row["notes"]) or None
        rows.append(row)
    return rows


def _better(r: dict[str, Any], best: dict[str, Any] | None, scenario: str) -> bool:
    if best is None:
        return True
    if scenario == "server":  # the search's answer wins over its steps, then the highest valid load
        if (r.get("server_qps_at_bound") is not None) != (best.get("server_qps_at_bound") is not None):
            return r.get("server_qps_at_bound") is not None
        if r.get("server_qps_at_bound") is not None:  # two searches (other batcher settings): the larger answer
            return r["server_qps_at_bound"] > best["server_qps_at_bound"]
        return (bool(r.get("valid")), r.get("qps_completed") or 0) > (bool(best.get("valid")), best.get("qps_completed") or 0)
    if scenario == "offline":
        return (bool(r.get("valid")), r.get("samples_per_s") or 0) > (bool(best.get("valid")), best.get("samples_per_s") or 0)
    return str(r.get("timestamp") or "") > str(best.get("timestamp") or "")


def _shown(r: dict[str, Any] | None, field: str, digits: int, extra: str | None = None) -> str | None:
    if r is None:
        return None
    text = _num(r.get(field), digits) + (f" ({_num(r.get(extra), 2)})" if extra else "")
    return text if r.get("status") == "ok" and r.get("valid") else f"{text} {_verdict(r)}"
