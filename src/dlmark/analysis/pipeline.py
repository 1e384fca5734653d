"""The input pipeline beside the model: per pipeline record, model-only and end-to-end throughput, the stage
that bounds it, and the throughput task's figure on random input for the same configuration (docs/pipeline.md)."""
from __future__ import annotations

from typing import Any, Iterable

from dlmark.backends.registry import label as runtime_label
from dlmark.inputs.pipeline import name_bottleneck, stages_overlap
from dlmark.report.tables import throughput_label

#: ``dlmark ls --task pipeline``: labels, as a terminal shows them.
COLUMNS = [
    ("model", "model"), ("device", "device"), ("runtime", "runtime"), ("precision", "precision"),
    ("batch_size", "batch"), ("decoder", "decoder"), ("data_workers", "workers"),
    ("model_per_s", "model alone img/s"), ("random_input_per_s", "random input img/s"),
    ("e2e_label", "end to end img/s [95% CI]"), ("e2e_of_model", "e2e / model"),
    ("bottleneck", "bottleneck"), ("bottleneck_per_s", "bound img/s"), ("stages", "stages"),
    ("cpu_cores_used", "cores"), ("status", "status"),
]

#: The report's table: numbers as numbers, so the browser sorts them; (key, header, digits or None for text).
REPORT_COLUMNS = [
    ("model", "model", None), ("device", "device", None), ("runtime", "runtime", None),
    ("precision", "precision", None), ("batch_size", "batch size", 0), ("decoder", "decoder", None),
    ("data_workers", "data workers", 0), ("model_per_s", "model alone (images/s)", 1),
    ("random_input_per_s", "throughput task, random input (images/s)", 1),
    ("e2e_throughput", "end to end (images/s)", 1), ("e2e_ci95_low", "95% CI low", 1),
    ("e2e_ci95_high", "95% CI high", 1), ("e2e_of_model", "end to end / model alone", 2),
    ("bottleneck", "bottleneck", None), ("bottleneck_per_s", "bound (images/s)", 1),
    ("e2e_of_bottleneck", "end to end / bound", 2), ("stages", "stages", None),
    ("cpu_cores_used", "CPU cores used", 2), ("status", "status", None),
]

#: What makes a throughput record the same configuration as a pipeline record, but for the input.
SAME_CONFIGURATION = ("model", "source", "device", "host", "backend", "compile_mode", "precision", "layout",
                      "threads", "batch_size")


def _value(r: dict[str, Any], key: str) -> Any:
    value = r.get(key)
    return None if isinstance(value, float) and value != value else value


def _configuration(r: dict[str, Any]) -> tuple:
    return tuple(_value(r, key) for key in SAME_CONFIGURATION)


def stages_label(r: dict[str, Any]) -> str | None:
    """'overlap' (loader, copy and model run at once: DataLoader workers) or 'in turn' (one process).

    Records written before ``stages_overlap`` existed say it through their data workers."""
    overlap = _value(r, "stages_overlap")
    if overlap is None:
        if _value(r, "data_workers") is None:
            return None
        overlap = stages_overlap({"data_workers": _value(r, "data_workers")})
    return "overlap" if overlap else "in turn"


def bound(r: dict[str, Any]) -> tuple[Any, Any, Any]:
    """(bottleneck, bottleneck_per_s, e2e_of_bottleneck) of a pipeline record.

    A record written before ``stages_overlap`` existed named the slowest stage even where the stages
    take turns (0 workers, nvJPEG); its bound is derived again from its stage figures by the
    measuring code's own rule, and end to end is divided by it median by median (the stored ratio
    paired rounds against the old bound)."""
    stored = _value(r, "bottleneck"), _value(r, "bottleneck_per_s"), _value(r, "e2e_of_bottleneck")
    fields = {key: _value(r, key) for key in ("stage_loader_per_s", "stage_copy_per_s", "stage_model_per_s",
                                              "stage_decode_per_s", "stage_transform_per_s", "data_workers")}
    if _value(r, "stages_overlap") is not None or None in (fields["stage_loader_per_s"], fields["stage_model_per_s"],
                                                            fields["stage_decode_per_s"], fields["stage_transform_per_s"]):
        return stored
    stage, per_s = name_bottleneck(fields)
    e2e = _value(r, "e2e_throughput")
    return stage, per_s, (e2e / per_s if e2e is not None and per_s else None)


def random_input_throughput(records: Iterable[dict[str, Any]]) -> dict[tuple, float]:
    """Configuration -> the throughput task's figure on random input (one request in flight; the newest)."""
    found: dict[tuple, tuple[str, float]] = {}
    for r in records:
        if r.get("task") != "throughput" or r.get("status") != "ok" or _value(r, "throughput") is None:
            continue
        if (_value(r, "in_flight") or 1) != 1:
            continue  # the pipeline keeps one batch in flight; so must the figure beside it
        key, stamp = _configuration(r), str(r.get("timestamp") or "")
        if key not in found or stamp >= found[key][0]:
            found[key] = (stamp, float(r["throughput"]))
    return {key: figure for key, (_, figure) in found.items()}


def pipeline_rows(records: Iterable[dict[str, Any]],
                  reference: Iterable[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """One row per pipeline record: the model alone, the throughput task's figure on random input
    (looked up in ``reference``, default ``records``), end to end, the bottleneck and whether stages overlap."""
    records = list(records)
    random_input = random_input_throughput(records if reference is None else reference)
    rows = []
    for r in records:
        if r.get("task") != "pipeline":
            continue
        ok = r.get("status") == "ok"
        e2e = _value(r, "e2e_throughput")
        if e2e is None:
            e2e = _value(r, "throughput")
        bottleneck, bottleneck_per_s, e2e_of_bottleneck = bound(r)
        rows.append({
            "model": r.get("model"), "device": r.get("device"), "runtime": runtime_label(r),
            "precision": r.get("precision"), "batch_size": _value(r, "batch_size"), "decoder": _value(r, "decoder"),
            "data_workers": _value(r, "data_workers"),
            "model_per_s": _value(r, "stage_model_per_s") if _value(r, "stage_model_per_s") is not None
            else _value(r, "model_throughput"),
            "random_input_per_s": random_input.get(_configuration(r)),
            "e2e_throughput": e2e,
            "e2e_ci95_low": _value(r, "e2e_throughput_ci95_low"), "e2e_ci95_high": _value(r, "e2e_throughput_ci95_high"),
            "e2e_label": throughput_label({"throughput": e2e, "throughput_ci95_low": _value(r, "e2e_throughput_ci95_low"),
                                           "throughput_ci95_high": _value(r, "e2e_throughput_ci95_high"),
                                           "noisy": _value(r, "e2e_noisy")}) if ok else None,
            "e2e_of_model": _value(r, "e2e_of_model"), "e2e_of_bottleneck": e2e_of_bottleneck,
            "bottleneck": bottleneck, "bottleneck_per_s": bottleneck_per_s,
            "stages": stages_label(r) if ok else None, "cpu_cores_used": _value(r, "cpu_cores_used"),
            "status": r.get("status"),
        })
    rows.sort(key=lambda row: (str(row["model"]), str(row["device"]), str(row["runtime"]), str(row["precision"]),
                               row["batch_size"] or 0, str(row["decoder"]), row["data_workers"] or 0))
    return rows
