"""The report's sections on int8 and on the input pipeline, built from the records' DataFrame.

``report_sections(data, table, figure)`` returns the sections as ``site.py``
renders them (id, title, text, figures, tables); ``table`` and ``figure`` are
the site's own builders, so these sections look and sort like every other.
"""
from __future__ import annotations

from typing import Any, Callable

import pandas as pd

from .datatable import _missing  # lists (fallback_ops) are values, not missing

from dlmark import plot
from dlmark.analysis.int8 import REPORT_COLUMNS as INT8_COLUMNS, int8_rows
from dlmark.analysis.pipeline import REPORT_COLUMNS as PIPELINE_COLUMNS, SAME_CONFIGURATION, pipeline_rows

#: The throughput task's columns a pipeline row looks up its random-input figure with.
_REFERENCE_COLUMNS = (*SAME_CONFIGURATION, "task", "status", "throughput", "in_flight", "timestamp")


def _rows_of(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """Records as dicts without the frame's missing values (what the analysis functions read)."""
    return [{k: v for k, v in r.items() if not _missing(v)} for r in frame.to_dict("records")]


def _where(data: pd.DataFrame, **equal: str) -> pd.DataFrame:
    keep = pd.Series(True, index=data.index)
    for column, value in equal.items():
        if column not in data.columns:
            return data.iloc[0:0]
        keep &= data[column] == value
    return data[keep]


def in_flight_column(throughput: pd.DataFrame) -> pd.Series:
    """Requests in flight per throughput record: 1 where the record does not say (one at a time)."""
    if "in_flight" not in throughput.columns:
        return pd.Series(1, index=throughput.index)
    return pd.to_numeric(throughput["in_flight"], errors="coerce").fillna(1).astype(int)


def _section(section_id: str, title: str, text: str, *, empty: str | None = None,
             figures: list | None = None, tables: list | None = None) -> dict[str, Any]:
    """A report section; ``empty``: why it has nothing to show (said after the text)."""
    if empty:
        return {"id": section_id, "title": title, "text": f"{text} {empty}", "figures": [], "tables": []}
    return {"id": section_id, "title": title, "text": text, "figures": figures or [], "tables": tables or []}


def int8_section(data: pd.DataFrame, table: Callable) -> dict[str, Any]:
    """Where the int8 went: per model, device and runtime, the share of FLOPs in int8 and the fallbacks."""
    rows = int8_rows(_rows_of(_where(data, task="throughput", precision="int8")))
    text = ("A quantized model is faster only where its operators really run in 8-bit arithmetic. Per quantized "
            "graph: the share of its Conv/Gemm/MatMul FLOPs in int8 operators, the operator counts, and the "
            "operators left in floating point, most FLOPs first (from ONNX Runtime's optimized graph and "
            "OpenVINO's runtime model; docs/int8.md).")
    if not rows:
        return _section("int8", "Where the int8 went", text,
                        empty="No int8 records in these results (dlmark run --precision int8).")
    return _section("int8", "Where the int8 went", text,
                    tables=[table("int8-table", pd.DataFrame(rows), INT8_COLUMNS)])


def pipeline_section(data: pd.DataFrame, table: Callable, figure: Callable) -> dict[str, Any]:
    """From JPEG to logits: model-only against end-to-end throughput, the bottleneck, and each stage's figure."""
    pipeline = _where(data, task="pipeline")
    reference = _where(data, task="throughput")
    reference = reference[[c for c in _REFERENCE_COLUMNS if c in reference.columns]]
    rows = pipeline_rows(_rows_of(pipeline), reference=_rows_of(reference))
    text = ("A deployed model receives encoded images: decode, the eval transform, batching and the copy to the "
            "device can cost more than the forward pass. Per configuration: the model alone on a real batch, the "
            "throughput task's figure on random input where it was measured, end to end from JPEG bytes to "
            "logits, and the stage that bounds it. With DataLoader workers the stages overlap and the slowest "
            "bounds; in one process they take turns and their times add up (docs/pipeline.md).")
    if not rows:
        return _section("pipeline", "From JPEG to logits", text,
                        empty="No pipeline records in these results (dlmark run --input images).")
    devices = [str(d) for d in dict.fromkeys(pipeline["device"].dropna())] if "device" in pipeline else []
    figures = [figure(f"Pipeline stages on {device}",
                      lambda d=device: plot.pipeline_stages(pipeline[pipeline["device"] == d]))
               for device in devices]
    return _section("pipeline", "From JPEG to logits", text, figures=figures,
                    tables=[table("pipeline-table", pd.DataFrame(rows), PIPELINE_COLUMNS)])


def report_sections(data: pd.DataFrame, table: Callable, figure: Callable) -> list[dict[str, Any]]:
    """The int8 and input-pipeline sections of the report's page, in that order."""
    return [int8_section(data, table), pipeline_section(data, table, figure)]
