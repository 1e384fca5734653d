"""Bokeh 3 figures of benchmark records: pure functions from a DataFrame to a figure.

Every function takes the DataFrame that ``dlmark.records.load.load_results`` returns
(or any slice of it, such as the seed notebook's ``thr[thr.model == 'AlexNet']``)
and returns a Bokeh object to ``show()`` in Jupyter or save to an HTML file.
Records whose ``status`` is not ``ok``, or whose plotted value is missing, are
left out, so a folder with failed or out-of-memory jobs still plots. A missing
column raises ``UserError`` naming it.

This module must not import torch: it runs where the results are read, which is
often a laptop without it.
"""
from __future__ import annotations

import math
from typing import Iterable, Sequence

import numpy as np
import pandas as pd
from bokeh.layouts import gridplot
from bokeh.models import (Span, ColumnDataSource, FactorRange, FixedTicker, HoverTool, LabelSet,
                          NumeralTickFormatter, Range1d)
from bokeh.palettes import Category10_10, Category20_20, Turbo256
from bokeh.plotting import figure
from bokeh.transform import dodge

from .errors import UserError
from dlmark.analysis.efficiency import ridge_point
from dlmark.analysis.pareto import pareto_frontier
from dlmark.analysis.pipeline import bound as pipeline_bound
from dlmark.records.schema import family_of

__all__ = [
    "batch_size_vs_throughput", "batch_size_vs_throughput_grid", "max_batch_size",
    "throughput_vs_device", "throughput_vs_accuracy", "batch_size_vs_memory",
    "latency_vs_throughput", "roofline", "pipeline_stages",
]

TOOLS = "pan,wheel_zoom,box_zoom,reset,save"

#: Configuration columns that split one model's records into separate series when
#: they vary within the data (an fp16 and an fp32 run of ResNet are two lines).
VARIANT_COLUMNS = ("backend", "precision", "layout", "compile_mode", "threads", "in_flight", "batches_in_flight")

#: Memory columns of throughput records, in the order the allocator stacks them:
#: what tensors use, what the caching allocator holds, what the device reports.
MEMORY_KINDS = (
    ("peak_mem_allocated_mb", "allocated (torch)"),
    ("peak_mem_reserved_mb", "reserved (torch cache)"),
    ("nvml_mem_used_mb", "in use (NVML)"),
    ("peak_rss_mb", "peak RSS (CPU)"),
)

# Hover rows shared by the figures; the units are the point of having them.
_HOVER_MODEL = [("model", "@model"), ("device", "@device")]
_HOVER_BATCH = ("batch size", "@batch_size")
_HOVER_THROUGHPUT = ("throughput", "@throughput{0,0.0} images/s")
_HOVER_LATENCY = ("latency (median)", "@latency_ms_median{0,0.000} ms")
_HOVER_MEMORY = ("device memory", "@device_mem{0,0} MB")


# --------------------------------------------------------------------------- data


def _records(data: pd.DataFrame, required: Sequence[str], plot_name: str, *,
             task: str | None = None, numeric: Sequence[str] = ()) -> pd.DataFrame:
    """The rows a plot can use: successful, of ``task``, with ``numeric`` columns present.

    ``model`` may be the index (the seed notebook's accuracy cell sets it so).
    """
    if not isinstance(data, pd.DataFrame):
        raise UserError(f"plot.{plot_name} needs a pandas DataFrame of records, "
                        f"got {type(data).__name__}")
    frame = data
    if "model" not in frame.columns and "model" in (frame.index.names or []):
        frame = frame.reset_index()
    missing = [column for column in required if column not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns)) or "no columns"
        raise UserError(f"plot.{plot_name} needs column {', '.join(map(repr, missing))} "
                        f"in the data, which has: {have}")
    frame = frame.copy()
    if "status" in frame.columns:
        frame = frame[frame["status"].isna() | (frame["status"] == "ok")]
    if task is not None and "task" in frame.columns:
        frame = frame[frame["task"].isna() | (frame["task"] == task)]
    for column in numeric:
        if column in frame.columns:
            frame[column] = pd.to_numeric(frame[column], errors="coerce")
    present = [column for column in numeric if column in frame.columns]
    frame = frame.dropna(subset=present)
    if "device" not in frame.columns:
        frame["device"] = ""  # a 2018 file may not say; one unnamed device then
    frame["device"] = frame["device"].fillna("").astype(str)
    frame["model"] = frame["model"].astype(str)
    frame["variant"] = _variant_labels(frame)
    frame["series"] = _series_labels(frame)
    return frame.reset_index(drop=True)


def _variant_labels(frame: pd.DataFrame) -> pd.Series:
    """A short label of the configuration columns that differ within ``frame``."""
    # An absent compile mode is eager: a value of its own beside "default" (compiled).
    filled = frame.assign(compile_mode=frame["compile_mode"].astype(object).where(frame["compile_mode"].notna(), "eager")) \
        if "compile_mode" in frame.columns else frame
    if "in_flight" in filled.columns:  # absent is one request at a time, as every record before --in-flight
        counts = pd.to_numeric(filled["in_flight"], errors="coerce").fillna(1)
        filled = filled.assign(in_flight=[f"{n:g} in flight" for n in counts])
    if "batches_in_flight" in filled.columns or "extra_config" in filled.columns:
        filled = filled.assign(batches_in_flight=_batches_in_flight(filled))
    varying = [column for column in VARIANT_COLUMNS
               if column in filled.columns and filled[column].dropna().astype(str).nunique() > 1]
    if not varying or frame.empty:
        return pd.Series([""] * len(frame), index=frame.index, dtype=object)
    parts = filled[varying].astype(object).where(filled[varying].notna(), None)
    def text(value) -> str:  # 16 threads, not 16.0 (a column with a missing value is float)
        return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
    return pd.Series([" ".join(text(v) for v in row if v is not None) for row in parts.itertuples(index=False)],
                     index=frame.index, dtype=object)


def _batches_in_flight(frame: pd.DataFrame) -> list[str | None]:
    """Server and Offline batches the batcher kept running at once, as a label (None: not a serving
    record). A search's answer from before it carried the figure has it only in its extra_config."""
    nothing = pd.Series(None, index=frame.index, dtype=object)
    own, extra = frame.get("batches_in_flight", nothing), frame.get("extra_config", nothing)
    labels = []
    for value, config in zip(own, extra):
        config = config if isinstance(config, dict) else {}
        if _is_missing(value):
            value = config.get("batches_in_flight", 1 if config.get("scenario") in ("server", "offline") else None)
        labels.append(None if _is_missing(value) else
                      f"{int(value)} batch{'es' if int(value) != 1 else ''} in flight")
    return labels


def _series_labels(frame: pd.DataFrame) -> pd.Series:
    """One label per line to draw: model, then device and variant where they vary."""
    several_devices = frame["device"].nunique() > 1
    labels = []
    for model, device, variant in zip(frame["model"], frame["device"], frame["variant"]):
        label = model
        if several_devices:
            label += f" on {device}"
        if variant:
            label += f" ({variant})"
        labels.append(label)
    return pd.Series(labels, index=frame.index, dtype=object)


def _latest(frame: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """One row per ``keys``: the newest record when a measurement was repeated."""
    if "timestamp" in frame.columns:
        frame = frame.sort_values("timestamp", kind="stable", na_position="first")
    return frame.drop_duplicates(subset=list(keys), keep="last")


def _source(frame: pd.DataFrame, columns: Iterable[str], **extra) -> ColumnDataSource:
    """A data source with plain numbers and strings (missing columns become NaN).

    Strings are passed as data, never as HTML: Bokeh shows ``@field`` values in
    list-form tooltips, titles and labels as text, so names from result files
    cannot inject markup.
    """
    data: dict[str, list | np.ndarray] = {}
    for column in columns:
        if column not in frame.columns:
            data[column] = np.full(len(frame), np.nan)
        elif pd.api.types.is_numeric_dtype(frame[column]) and not pd.api.types.is_bool_dtype(frame[column]):
            data[column] = frame[column].astype(float).to_numpy()
        else:
            data[column] = ["" if _is_missing(value) else str(value) for value in frame[column]]
    data.update(extra)
    return ColumnDataSource(data)


def _is_missing(value) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists and arrays are values, not missing
        return False


def _marker_sizes(memory: pd.Series, scale_mb: float, smallest: float = 6.0,
                  largest: float = 22.0) -> np.ndarray:
    """Marker diameters whose *area* grows with memory; unknown memory gets the smallest."""
    values = pd.to_numeric(memory, errors="coerce").to_numpy(dtype=float)
    if not scale_mb or not math.isfinite(scale_mb) or scale_mb <= 0:
        return np.full(len(values), smallest)
    fraction = np.sqrt(np.clip(np.nan_to_num(values, nan=0.0), 0, None) / scale_mb)
    return smallest + (largest - smallest) * np.clip(fraction, 0, 1)


def _memory_scale(frame: pd.DataFrame) -> float:
    if "device_mem" not in frame.columns:
        return 0.0
    peak = pd.to_numeric(frame["device_mem"], errors="coerce").max()
    return float(peak) if pd.notna(peak) else 0.0


def _colors(keys: Sequence[str]) -> dict[str, str]:
    """A distinct colour per key, stable for the order given."""
    keys = list(dict.fromkeys(keys))
    if len(keys) <= 10:
        palette = Category10_10
    elif len(keys) <= 20:
        palette = Category20_20
    else:
        step = len(Turbo256) / len(keys)
        palette = [Turbo256[int(i * step)] for i in range(len(keys))]
    return {key: palette[i % len(palette)] for i, key in enumerate(keys)}


def _on_devices(frame: pd.DataFrame) -> str:
    devices = [d for d in frame["device"].unique() if d]
    return f" on {devices[0]}" if len(devices) == 1 else ""


def _no_data(fig, message: str = "no successful measurements"):
    """Say on the canvas that nothing was left to draw, instead of an empty frame."""
    fig.text(x=[0], y=[0], text=[message], text_align="center", text_baseline="middle",
             text_color="#888888")
    return fig


def _wide_figure(**options):
    """A figure whose *plot area* has a fixed size, so a long legend beside it cannot shrink it."""
    return figure(frame_width=600, frame_height=360, tools=TOOLS, **options)


def _outside_legend(fig) -> None:
    """Move the legend right of the plot so it never hides data, and let clicks hide lines."""
    if not fig.legend:
        return
    legend = fig.legend[0]
    legend.click_policy = "hide"
    legend.label_text_font_size = "9pt"
    rows_that_fit = max(1, int((fig.frame_height or 360) // 21))
    # Taller than the plot: spread over columns rather than run off the canvas. (A legend
    # placed below a plot squeezes its frame in Bokeh 3.9, so it stays on the right.)
    legend.ncols = math.ceil(len(legend.items) / rows_that_fit)
    fig.add_layout(legend, "right")


def _batch_size_axis(fig, batch_sizes, most_labels: int = 12) -> None:
    """Ticks at the powers of two a batch-size sweep uses, labelled as plain integers.

    Bokeh's default log ticks put 2..9 between decades, which crowd and say
    nothing about the batch sizes that were run.
    """
    sizes = sorted({float(b) for b in batch_sizes if b and b > 0})
    if sizes:
        low, high = math.floor(math.log2(sizes[0])), math.ceil(math.log2(sizes[-1]))
        ticks = [2.0 ** e for e in range(low, high + 1)]
        step = math.ceil(len(ticks) / most_labels)
        fig.xaxis.ticker = FixedTicker(ticks=ticks[::step])
        # Pad in log space: the default linear padding leaves the end markers cut in half.
        fig.x_range = Range1d(sizes[0] / 1.4, sizes[-1] * 1.4)
    fig.xaxis.formatter = NumeralTickFormatter(format="0,0")


def _plain_numbers(axis, values) -> None:
    """1, 10, 1,000 instead of 10^0, 10^1, 10^3 on a log axis, with ticks at 1-2-5
    steps: Bokeh's own log ticks either crowd (every digit) or vanish (short ranges)."""
    axis.formatter = NumeralTickFormatter(format="0,0.[00]")
    positive = pd.to_numeric(pd.Series(values), errors="coerce")
    positive = positive[positive > 0]
    if positive.empty:
        return
    low, high = positive.min(), positive.max()
    for mantissas in ((1,), (1, 2, 5), (1, 2, 3, 5, 7)):
        ticks = [m * 10.0 ** e for e in range(math.floor(math.log10(low)) - 1, math.ceil(math.log10(high)) + 2)
                 for m in mantissas]
        inside = [t for t in ticks if low / 1.5 <= t <= high * 1.5]
        if len(inside) >= 4:
            break
    axis.ticker = FixedTicker(ticks=ticks)


def _accuracy_is_fraction(values: pd.Series) -> bool:
    return bool(values.dropna().le(1.0).all())


#: Past this many lines in one figure, all lines share one renderer and all points another: Bokeh's
#: cost (building, serialising, drawing) grows with renderers, and a report draws hundreds of figures.
MANY_LINES = 6


def _lines_and_points(fig, frame: pd.DataFrame, x: str, y: str, group: str, colors: dict[str, str],
                      columns: Sequence[str], *, legend: dict[str, str] | None = None, size: float | str = 7,
                      line_width: float = 2, line_dash: str = "solid", point_alpha: float = 1.0,
                      line_alpha: float = 1.0, extra: dict[str, Sequence] | None = None) -> list:
    """A line per value of ``group`` through its points (sorted by ``x``), coloured by ``colors``.

    Returns the point renderers (for hover). ``legend`` names each group in the legend (None:
    no legend). ``size`` is a number or a column of ``frame``. Up to ``MANY_LINES`` groups get
    renderers of their own (a click on the legend hides one); past that, one multi-line and one
    scatter draw them all.
    """
    frame = frame.sort_values([group, x], kind="stable")
    extra = dict(extra or {})
    groups = list(dict.fromkeys(frame[group]))
    partial = bool(legend) and not set(groups) <= set(legend)  # some groups named elsewhere: a renderer each
    if len(groups) <= MANY_LINES or partial:
        points = []
        for key in groups:
            mask = (frame[group] == key).to_numpy()
            rows = frame[mask]
            more = {name: np.asarray(values)[mask] for name, values in extra.items()}
            source = _source(rows, (*columns, *([size] if isinstance(size, str) else [])), **more)
            named = {"legend_label": legend[key]} if legend and key in legend else {}
            fig.line(x, y, source=source, color=colors[key], line_width=line_width, line_dash=line_dash,
                     alpha=line_alpha, **named)
            points.append(fig.scatter(x, y, source=source, color=colors[key], size=size, alpha=point_alpha, **named))
        return points
    # A field name of its own per call: Bokeh merges legend items of one field name across renderers,
    # which it refuses when their sources differ (two kinds of memory in one figure).
    legend_field = "legend_name" if not fig.renderers else f"legend_name_{len(fig.renderers)}"
    lines = frame.groupby(group, sort=False)
    fig.multi_line(xs=[list(rows[x]) for _, rows in lines], ys=[list(rows[y]) for _, rows in lines],
                   line_color=[colors[key] for key, _ in lines], line_width=line_width, line_dash=line_dash,
                   line_alpha=line_alpha)
    extra["point_color"] = [colors[key] for key in frame[group]]
    if legend:
        extra[legend_field] = [legend[key] for key in frame[group]]
    source = _source(frame, (*columns, *([size] if isinstance(size, str) else [])), **extra)
    named = {"legend_field": legend_field} if legend else {}
    return [fig.scatter(x, y, source=source, color="point_color", size=size, alpha=point_alpha, **named)]


# --------------------------------------------------------------------------- throughput

_THROUGHPUT_COLUMNS = ("model", "device", "batch_size", "throughput", "latency_ms_median", "device_mem")
_THROUGHPUT_HOVER = [*_HOVER_MODEL, _HOVER_BATCH, _HOVER_THROUGHPUT, _HOVER_LATENCY, _HOVER_MEMORY]


def _throughput_lines(fig, frame: pd.DataFrame, line_column: str, colors: dict[str, str],
                      memory_scale: float, with_legend: bool) -> list:
    """Throughput against batch size: a line per value of ``line_column``, sized markers."""
    sizes = (_marker_sizes(frame["device_mem"], memory_scale) if "device_mem" in frame
             else np.full(len(frame), 6.0))
    frame = frame.assign(marker_size=sizes)
    legend = {key: key for key in frame[line_column]} if with_legend else None
    return _lines_and_points(fig, frame, "batch_size", "throughput", line_column, colors, _THROUGHPUT_COLUMNS,
                             legend=legend, size="marker_size", point_alpha=0.7)


def batch_size_vs_throughput(data: pd.DataFrame):
    """Throughput against batch size, both on log axes, one line per model (and device).

    Marker area grows with ``device_mem``; hover shows throughput, batch size,
    latency and memory with units.
    """
    frame = _records(data, ("model", "batch_size", "throughput"), "batch_size_vs_throughput",
                     task="throughput", numeric=("batch_size", "throughput"))
    frame = _latest(frame, ("series", "batch_size"))
    fig = _wide_figure(title="Throughput against batch size" + _on_devices(frame),
                       x_axis_type="log", y_axis_type="log",
                       x_axis_label="batch size (images per forward pass)",
                       y_axis_label="throughput (images/s)")
    if frame.empty:
        return _no_data(fig)
    points = _throughput_lines(fig, frame, "series", _colors(frame["series"]), _memory_scale(frame), True)
    _batch_size_axis(fig, frame["batch_size"])
    _plain_numbers(fig.yaxis, frame["throughput"])
    fig.add_tools(HoverTool(renderers=points, tooltips=_THROUGHPUT_HOVER))
    _outside_legend(fig)
    return fig


def batch_size_vs_throughput_grid(data: pd.DataFrame, models: Iterable[str], ncols: int = 4):
    """One small throughput-against-batch-size plot per model in ``models``.

    ``models`` may be any iterable of names, such as the numpy array
    ``thr.model.unique()[::4]``. Batch size is on a log axis; marker area grows
    with ``device_mem``, on one scale for the whole grid so sizes compare. With
    several devices each plot has a line per device. A model without successful
    records gets a plot that says so.
    """
    models = [str(model) for model in models]
    if not models:
        raise UserError("plot.batch_size_vs_throughput_grid needs at least one model name")
    frame = _records(data, ("model", "batch_size", "throughput"), "batch_size_vs_throughput_grid",
                     task="throughput", numeric=("batch_size", "throughput"))
    frame = _latest(frame, ("series", "batch_size"))
    frame["line"] = _device_labels(frame)
    colors = _colors(frame["line"])
    scale = _memory_scale(frame)
    several_lines = frame["line"].nunique() > 1
    figures = []
    for model in models:
        rows = frame[frame["model"] == model]
        fig = figure(title=model, x_axis_type="log", frame_width=230, frame_height=170, tools=TOOLS,
                     x_axis_label="batch size", y_axis_label="images/s")
        fig.title.text_font_size = "10pt"
        if rows.empty:
            figures.append(_no_data(fig))
            continue
        points = _throughput_lines(fig, rows, "line", colors, scale, several_lines)
        _batch_size_axis(fig, rows["batch_size"], most_labels=6)
        fig.yaxis.formatter = NumeralTickFormatter(format="0,0.[0]")
        if several_lines:
            fig.legend.location = "top_left"
            fig.legend.label_text_font_size = "7pt"
            fig.legend.click_policy = "hide"
            fig.legend.background_fill_alpha = 0.6
        fig.add_tools(HoverTool(renderers=points, tooltips=_THROUGHPUT_HOVER))
        figures.append(fig)
    return gridplot(figures, ncols=max(1, min(ncols, len(figures))))


def latency_vs_throughput(data: pd.DataFrame):
    """Throughput against the latency of one batch, both on log axes, one line per model.

    Each point is a batch size, written beside it; following a line shows what a
    larger batch buys in throughput and costs in latency.
    """
    frame = _records(data, ("model", "batch_size", "throughput", "latency_ms_median"),
                     "latency_vs_throughput", task="throughput",
                     numeric=("batch_size", "throughput", "latency_ms_median"))
    frame = _latest(frame, ("series", "batch_size"))
    fig = _wide_figure(title="Throughput against latency" + _on_devices(frame),
                       x_axis_type="log", y_axis_type="log",
                       x_axis_label="latency of one batch, median (ms)",
                       y_axis_label="throughput (images/s)")
    if frame.empty:
        return _no_data(fig)
    colors = _colors(frame["series"])
    frame = frame.sort_values(["series", "batch_size"], kind="stable")
    points = _lines_and_points(fig, frame, "latency_ms_median", "throughput", "series", colors,
                               ("model", "device", "batch_size", "throughput", "latency_ms_median",
                                "latency_ms_p90", "latency_ms_p99"), legend={k: k for k in frame["series"]})
    # Which point is which batch size, written beside it (hover says it too): one label set for all.
    labels = _source(frame, ("latency_ms_median", "throughput"),
                     batch_label=[f"{b:g}" for b in frame["batch_size"]],
                     label_color=[colors[k] for k in frame["series"]])
    fig.add_layout(LabelSet(x="latency_ms_median", y="throughput", text="batch_label", source=labels,
                            x_offset=4, y_offset=-12, text_font_size="7pt", text_color="label_color"))
    _plain_numbers(fig.xaxis, frame["latency_ms_median"])
    _plain_numbers(fig.yaxis, frame["throughput"])
    fig.add_tools(HoverTool(renderers=points, tooltips=[*_HOVER_MODEL, _HOVER_BATCH, _HOVER_THROUGHPUT, _HOVER_LATENCY,
                                      ("latency (p90)", "@latency_ms_p90{0,0.000} ms"),
                                      ("latency (p99)", "@latency_ms_p99{0,0.000} ms")]))
    _outside_legend(fig)
    return fig


def latency_vs_load(data: pd.DataFrame):
    """Server p50 and p99 latency against the offered load (LoadGen's target QPS), one line per
    configuration: the bound drawn, the largest load within it marked, INVALID runs hollow.

    Each point is one LoadGen Server run (the QPS search's steps, or runs at chosen loads).
    """
    # The runs and the search's answers (no target of their own: marked as a line, not drawn as a
    # point) labelled together, so that an answer takes its own line's label and colour.
    if isinstance(data, pd.DataFrame) and "scenario" in data.columns:
        data = data[data["scenario"] == "server"]  # before labelling: Offline's settings are not a variant here
    both = _records(data, ("model", "target_qps", "latency_ms_p99"), "latency_vs_load", task="serving")
    drawn = [c for c in ("target_qps", "latency_ms_p50", "latency_ms_p99", "qps_completed") if c in both.columns]
    for column in (*drawn, "server_qps_at_bound"):
        if column in both.columns:
            both[column] = pd.to_numeric(both[column], errors="coerce")
    is_answer = both["server_qps_at_bound"].notna() if "server_qps_at_bound" in both.columns \
        else pd.Series(False, index=both.index)
    answers = both[is_answer]
    frame = both[~is_answer].dropna(subset=drawn)
    fig = _wide_figure(title="Server latency against offered load" + _on_devices(frame),
                       x_axis_label="offered load, LoadGen target (queries/s)", y_axis_label="latency (ms)",
                       y_axis_type="log")
    if frame.empty:
        return _no_data(fig, "no Server runs")
    frame = frame.copy()
    frame["verdict"] = np.where(frame.get("valid", pd.Series(True, index=frame.index)).astype(bool), "VALID", "INVALID")
    colors = _colors(frame["series"])
    for series, rows in frame.groupby("series", sort=False):
        rows = rows.sort_values("target_qps")
        source = _source(rows, ("model", "device", "target_qps", "qps_completed", "latency_ms_p50", "latency_ms_p99",
                                "verdict", "batch_size"))
        fig.line("target_qps", "latency_ms_p99", source=source, color=colors[series], line_width=2,
                 legend_label=f"{series} p99")
        fig.line("target_qps", "latency_ms_p50", source=source, color=colors[series], line_width=1,
                 line_dash="dashed", legend_label=f"{series} p50")
        valid = rows[rows["verdict"] == "VALID"]
        invalid = rows[rows["verdict"] != "VALID"]
        for part, fill in ((valid, colors[series]), (invalid, "white")):
            if len(part):
                fig.scatter("target_qps", "latency_ms_p99", color=colors[series], fill_color=fill, size=8,
                            source=_source(part, ("model", "device", "target_qps", "qps_completed", "latency_ms_p50",
                                                  "latency_ms_p99", "verdict", "batch_size")))
    bounds = pd.to_numeric(frame.get("latency_bound_ms"), errors="coerce").dropna().unique() \
        if "latency_bound_ms" in frame.columns else []
    for bound in bounds:
        fig.add_layout(Span(location=float(bound), dimension="width", line_color="#c0392b", line_dash="dotted",
                            line_width=2))
    for answer in answers.to_dict("records"):
        fig.add_layout(Span(location=float(answer["server_qps_at_bound"]), dimension="height",
                            line_color=colors.get(answer["series"], "#555"), line_dash="dotdash", line_width=1))
    fig.add_tools(HoverTool(tooltips=[*_HOVER_MODEL, ("offered", "@target_qps{0,0.0} QPS"),
                                      ("completed", "@qps_completed{0,0.0} QPS"), ("p50", "@latency_ms_p50{0,0.00} ms"),
                                      ("p99", "@latency_ms_p99{0,0.00} ms"), ("LoadGen", "@verdict")]))
    _outside_legend(fig)
    return fig


def roofline(data: pd.DataFrame):
    """Achieved TFLOP/s against arithmetic intensity (FLOP per byte of DRAM traffic), log-log,
    under each device's roof: memory bandwidth up to the ridge point, then the precision's peak.

    A point left of the ridge is memory-bound, right of it compute-bound (the record's
    ``bound``); its height under the roof is the record's ``roofline_fraction``. One
    colour per model and configuration, a point per batch size (a larger batch reads
    the weights over more images, so the points move right). Roofs come from the
    records' peaks: a ``dlmark peak`` measurement when there is one, else the datasheet.
    """
    frame = _records(data, ("model", "batch_size", "arithmetic_intensity", "achieved_tflops"), "roofline",
                     task="throughput", numeric=("batch_size", "arithmetic_intensity", "achieved_tflops",
                                                 "peak_tflops", "peak_bandwidth_gbs"))
    frame = frame[(frame["arithmetic_intensity"] > 0) & (frame["achieved_tflops"] > 0)]
    frame = _latest(frame, ("series", "batch_size"))
    fig = _wide_figure(title="Roofline" + _on_devices(frame), x_axis_type="log", y_axis_type="log",
                       x_axis_label="arithmetic intensity (FLOP per byte moved)",
                       y_axis_label="achieved (TFLOP/s)")
    if frame.empty:
        return _no_data(fig, "no records with FLOPs and traffic estimates")
    x_low = frame["arithmetic_intensity"].min() / 2
    x_high = frame["arithmetic_intensity"].max() * 2
    roofs = frame.dropna(subset=["peak_tflops", "peak_bandwidth_gbs"])
    roofs = roofs[(roofs["peak_tflops"] > 0) & (roofs["peak_bandwidth_gbs"] > 0)]
    # One roof per device and peak: fp16 and bf16 usually share theirs.
    roof_keys = (roofs.groupby(["device", "peak_tflops", "peak_bandwidth_gbs"], sort=False)["precision"]
                 .agg(lambda p: "/".join(dict.fromkeys(map(str, p)))).reset_index())
    for _, roof in roof_keys.iterrows():
        ridge = ridge_point(roof["peak_tflops"], roof["peak_bandwidth_gbs"])
        xs = [min(x_low, ridge / 10), ridge, max(x_high, ridge * 10)]
        ys = [xs[0] * roof["peak_bandwidth_gbs"] / 1e3, roof["peak_tflops"], roof["peak_tflops"]]
        source = _source(pd.DataFrame({"x": xs, "y": ys, "device": roof["device"], "precision": roof["precision"],
                                       "peak_tflops": roof["peak_tflops"],
                                       "peak_bandwidth_gbs": roof["peak_bandwidth_gbs"]}),
                         ("x", "y", "device", "precision", "peak_tflops", "peak_bandwidth_gbs"))
        label = (f"roof: {roof['precision']} {roof['peak_tflops']:,.0f} TFLOP/s, "
                 f"{roof['peak_bandwidth_gbs']:,.0f} GB/s" + (f" ({roof['device']})" if frame["device"].nunique() > 1 else ""))
        fig.line("x", "y", source=source, color="#555555", line_width=2, line_dash="dashed", legend_label=label)
    colors = _colors(frame["series"])
    points = _lines_and_points(fig, frame, "arithmetic_intensity", "achieved_tflops", "series", colors,
                               ("model", "device", "precision", "batch_size", "arithmetic_intensity",
                                "achieved_tflops", "mfu", "bound", "roofline_fraction", "throughput"),
                               legend={k: k for k in frame["series"]}, line_width=1, line_alpha=0.5)
    fig.add_tools(HoverTool(renderers=points, tooltips=[
        *_HOVER_MODEL, ("precision", "@precision"), _HOVER_BATCH,
        ("intensity", "@arithmetic_intensity{0,0.0} FLOP/byte"), ("achieved", "@achieved_tflops{0,0.00} TFLOP/s"),
        ("bound", "@bound"), ("of the roof", "@roofline_fraction{0.0%}"), ("MFU", "@mfu{0.0%}")]))
    _plain_numbers(fig.xaxis, [x_low, x_high])
    _plain_numbers(fig.yaxis, pd.concat([frame["achieved_tflops"], roofs["peak_tflops"]]))
    _outside_legend(fig)
    return fig


def _device_labels(frame: pd.DataFrame) -> pd.Series:
    """Device name plus the varying configuration: what tells bars or lines of one model apart."""
    return pd.Series([device + (f" ({variant})" if variant else "")
                      for device, variant in zip(frame["device"], frame["variant"])],
                     index=frame.index, dtype=object)


def _dodge_offsets(count: int, total: float = 0.8) -> tuple[list[float], float]:
    """Offsets and thickness that put ``count`` bars side by side within one category."""
    thickness = total / max(count, 1)
    return [-total / 2 + thickness * (i + 0.5) for i in range(count)], thickness


def throughput_vs_device(data: pd.DataFrame):
    """Throughput per device and batch size: bars side by side, one colour per device.

    Meant for one model (``thr[thr.model == 'AlexNet']``); with several models the
    categories are model, then batch size. The axis is logarithmic so a CPU
    shows next to a GPU a hundred times faster.
    """
    frame = _records(data, ("model", "device", "batch_size", "throughput"), "throughput_vs_device",
                     task="throughput", numeric=("batch_size", "throughput"))
    frame = _latest(frame, ("series", "batch_size"))
    frame["bar"] = _device_labels(frame)
    models = list(dict.fromkeys(frame["model"]))
    title = ("Throughput of " + models[0] if len(models) == 1 else "Throughput") + " across devices"
    if frame.empty:
        return _no_data(_wide_figure(title=title))
    frame = frame.sort_values("batch_size", kind="stable")
    several_models = len(models) > 1
    frame["category"] = [(model, f"{batch:g}") if several_models else f"{batch:g}"
                         for model, batch in zip(frame["model"], frame["batch_size"])]
    categories = list(dict.fromkeys(
        (model, f"{batch:g}") if several_models else f"{batch:g}"
        for model in models for batch in frame.loc[frame["model"] == model, "batch_size"]))
    bars = list(dict.fromkeys(frame["bar"]))
    offsets, thickness = _dodge_offsets(len(bars))
    floor = 10 ** math.floor(math.log10(frame["throughput"].min()))
    colors = _colors(bars)
    fig = figure(title=title, x_range=FactorRange(*categories), y_axis_type="log", tools=TOOLS,
                 frame_width=max(300, min(1200, 28 * len(categories) * len(bars))), frame_height=320,
                 x_axis_label="batch size" + (" within each model" if several_models else ""),
                 y_axis_label="throughput (images/s)")
    for bar, offset in zip(bars, offsets):
        rows = frame[frame["bar"] == bar]
        source = _source(rows, _THROUGHPUT_COLUMNS, category=list(rows["category"]))
        fig.vbar(x=dodge("category", offset, range=fig.x_range), top="throughput", bottom=floor,
                 width=thickness, source=source, color=colors[bar], legend_label=bar)
    fig.xgrid.grid_line_color = None
    _plain_numbers(fig.yaxis, [floor, *frame["throughput"]])
    fig.add_tools(HoverTool(tooltips=_THROUGHPUT_HOVER))
    _outside_legend(fig)
    return fig


# --------------------------------------------------------------------------- memory


def max_batch_size(data: pd.DataFrame):
    """The largest batch size that ran, per model, as bars; several devices give grouped bars.

    Reads ``max_batch_size`` records (``batch_size`` is the largest that ran; a
    2018 file has only that). Hover says whether the search stopped at its cap.
    """
    frame = _records(data, ("model", "batch_size"), "max_batch_size", task="max_batch_size",
                     numeric=("batch_size",))
    if "max_batch_size" in frame.columns:
        frame["largest"] = pd.to_numeric(frame["max_batch_size"], errors="coerce").fillna(frame["batch_size"])
    else:
        frame["largest"] = frame["batch_size"]
    frame = _latest(frame, ("model", "device", "variant"))
    frame["bar"] = _device_labels(frame)
    title = "Largest batch size" + _on_devices(frame)
    if frame.empty:
        return _no_data(_wide_figure(title=title))
    if "capped" in frame.columns:
        frame["capped_note"] = ["yes: the search stopped at its cap, the true limit is higher"
                                if capped is True else "no" for capped in frame["capped"]]
    models = list(dict.fromkeys(frame["model"]))
    bars = list(dict.fromkeys(frame["bar"]))
    several = len(bars) > 1
    offsets, thickness = _dodge_offsets(len(bars))
    colors = _colors(bars)
    fig = _wide_figure(title=title, y_range=FactorRange(*reversed(models)),
                       x_axis_label="largest batch size that ran (images)")
    fig.frame_height = max(120, (14 * len(bars) + 8) * len(models))
    for bar, offset in zip(bars, offsets):
        rows = frame[frame["bar"] == bar]
        source = _source(rows, ("model", "device", "largest", "first_failing_batch", "capped_note",
                                "memory_limit_mb"))
        fig.hbar(y=dodge("model", offset, range=fig.y_range), right="largest", left=0,
                 height=thickness, source=source, color=colors[bar],
                 **({"legend_label": bar} if several else {}))
    fig.ygrid.grid_line_color = None
    fig.x_range.start = 0
    fig.xaxis.formatter = NumeralTickFormatter(format="0,0")
    fig.add_tools(HoverTool(tooltips=[*_HOVER_MODEL, ("largest batch", "@largest{0,0} images"),
                                      ("first failing batch", "@first_failing_batch{0,0} images"),
                                      ("hit the cap", "@capped_note"),
                                      ("memory limit", "@memory_limit_mb{0,0} MB")]))
    _outside_legend(fig)
    return fig


def batch_size_vs_memory(data: pd.DataFrame):
    """Memory against batch size: torch-allocated, torch-reserved and NVML-reported (GPU),
    or the worker's peak resident memory (CPU).

    The gap between allocated and reserved is the caching allocator's pool, the
    gap to NVML is the CUDA context and other processes: why one "memory" figure
    per batch size can mislead. Colour is the kind of memory, or, when the records
    differ in configuration (precision, layout, ...), the configuration, with the
    kind of memory as the line's dash; hover names the model.
    The batch-size axis is linear so that linear growth shows as a straight line.
    Falls back to the seed's ``device_mem`` for records without the new columns.
    """
    frame = _records(data, ("model", "batch_size"), "batch_size_vs_memory", task="throughput",
                     numeric=("batch_size",))
    kinds = [(column, label) for column, label in MEMORY_KINDS if column in frame.columns
             and pd.to_numeric(frame[column], errors="coerce").notna().any()]
    if not kinds:
        if "device_mem" not in frame.columns:
            names = ", ".join(column for column, _ in MEMORY_KINDS)
            raise UserError(f"plot.batch_size_vs_memory needs one of the columns {names} "
                            f"or 'device_mem' in the data")
        kinds = [("device_mem", "device memory (seed's device_mem)")]
    frame = _latest(frame, ("series", "batch_size"))
    fig = _wide_figure(title="Memory against batch size" + _on_devices(frame),
                       x_axis_label="batch size (images per forward pass)", y_axis_label="memory (MB)")
    parts = []
    for column, label in kinds:
        part = frame[["model", "device", "series", "variant", "batch_size"]].copy()
        part["memory_mb"] = pd.to_numeric(frame[column], errors="coerce")
        part["kind"] = label
        parts.append(part.dropna(subset=["memory_mb"]))
    memory = pd.concat(parts, ignore_index=True)
    if memory.empty:
        return _no_data(fig)
    # A colour per line of records (model, device where several, configuration where it varies), a dash
    # per kind of memory: four models or two precisions would otherwise be lines of one colour.
    several_series = memory["series"].nunique() > 1
    several_kinds = len(kinds) > 1
    # One model on one device: its lines differ only in configuration, which names them.
    one_model = memory["model"].nunique() == 1 and memory["device"].nunique() == 1
    colors = _colors(memory["series"] if several_series else [label for _, label in kinds])
    dashes = {"reserved (torch cache)": "dashed", "in use (NVML)": "dotted"}
    points = []
    # Many lines of several kinds: the legend names each line once and the title says which dash is which.
    compact = several_series and several_kinds and memory["series"].nunique() > 3
    if compact:
        fig.title.text += " (" + ", ".join(f"{dashes.get(kind, 'solid')}: {kind}"
                                           for kind in dict.fromkeys(memory["kind"])) + ")"
    named: set[str] = set()
    for kind, rows in memory.groupby("kind", sort=False):  # a dash per kind of memory
        if several_series:
            names = {series: (variant if one_model and variant else series)
                     for series, variant in zip(rows["series"], rows["variant"])}
            legend = {series: f"{name} · {kind}" if several_kinds and not compact else name
                      for series, name in names.items()}
            if compact:  # each line named once, under the first kind it is drawn in
                legend = {series: name for series, name in legend.items() if series not in named}
                named.update(legend)
            line_colors = colors
        else:
            legend = {series: kind for series in rows["series"]}
            line_colors = {series: colors[kind] for series in rows["series"]}
        points += _lines_and_points(fig, rows, "batch_size", "memory_mb", "series", line_colors,
                                    ("model", "device", "batch_size", "memory_mb", "kind", "variant"),
                                    legend=legend, size=5, line_dash=dashes.get(kind, "solid"), line_alpha=0.8)
    config = [("configuration", "@variant")] if memory["variant"].nunique() > 1 else []
    fig.add_tools(HoverTool(renderers=points, tooltips=[*_HOVER_MODEL, *config, _HOVER_BATCH, ("memory", "@kind"),
                                      ("amount", "@memory_mb{0,0.0} MB")]))
    fig.xaxis.formatter = NumeralTickFormatter(format="0,0")
    fig.yaxis.formatter = NumeralTickFormatter(format="0,0")
    _outside_legend(fig)
    return fig


# --------------------------------------------------------------------------- accuracy


def throughput_vs_accuracy(data: pd.DataFrame):
    """Accuracy against throughput (log axis), one colour per family, with the Pareto frontier.

    Takes the seed notebook's shape: throughput records joined with an
    ``accuracy`` column, indexed by model, with a ``model_prefix`` column for the
    family (``family`` or the name up to its last ``-`` when it is absent).
    Marker area grows with ``device_mem``. The dashed line joins the models that
    no other model beats on both throughput and accuracy, per device, and names them.
    """
    frame = _records(data, ("model", "throughput", "accuracy"), "throughput_vs_accuracy",
                     task="throughput", numeric=("throughput", "accuracy"))
    if "model_prefix" in frame.columns:
        frame["group"] = frame["model_prefix"].astype(str)
    elif "family" in frame.columns:
        frame["group"] = [family_of(model) if _is_missing(family) else str(family)
                          for family, model in zip(frame["family"], frame["model"])]
    else:
        frame["group"] = [family_of(model) for model in frame["model"]]
    if "batch_size" not in frame.columns:
        frame["batch_size"] = np.nan
    # The seed's join repeats a model's row once per accuracy record; keep one.
    frame = _latest(frame, ("series", "batch_size"))
    batch_sizes = pd.to_numeric(frame["batch_size"], errors="coerce").dropna().unique()
    on_batch = f", batch size {batch_sizes[0]:g}" if len(batch_sizes) == 1 else ""
    sources = set(frame["accuracy_source"].dropna().astype(str)) if "accuracy_source" in frame.columns else set()
    # A published figure is not a measurement: the figure says so, as `dlmark ls` does.
    published = (", published accuracy" if sources == {"published"} else
                 ", accuracy published for some (hover)" if "published" in sources else "")
    fig = _wide_figure(title="Accuracy against throughput" + _on_devices(frame) + on_batch + published,
                       x_axis_type="log", x_axis_label="throughput (images/s)",
                       y_axis_label="top-1 accuracy")
    if frame.empty:
        return _no_data(fig)
    as_fraction = _accuracy_is_fraction(frame["accuracy"])
    if as_fraction:
        fig.yaxis.formatter = NumeralTickFormatter(format="0%")
    _plain_numbers(fig.xaxis, frame["throughput"])
    # Room on the right for the names written beside frontier points (padding in log space).
    fig.x_range = Range1d(frame["throughput"].min() / 1.5, frame["throughput"].max() * 2.5)
    fig.y_range.range_padding = 0.1
    colors = _colors(frame["group"])
    frame["marker_size"] = (_marker_sizes(frame["device_mem"], _memory_scale(frame)) + 4
                            if "device_mem" in frame else 10.0)
    points = []
    for group, rows in frame.groupby("group", sort=False):
        source = _source(rows, ("model", "device", "batch_size", "throughput", "accuracy",
                                "device_mem", "marker_size", "group", "accuracy_source"))
        points.append(fig.scatter("throughput", "accuracy", source=source, size="marker_size",
                                  color=colors[group], alpha=0.75, legend_label=group))
    several_devices = frame["device"].nunique() > 1
    for device, rows in frame.groupby("device", sort=False):
        best = pareto_frontier(rows, "throughput", "accuracy")
        label = "Pareto frontier" + (f" ({device})" if several_devices else "")
        source = _source(best, ("model", "throughput", "accuracy"))
        fig.line("throughput", "accuracy", source=source, color="#555555", line_dash="dashed",
                 line_width=1.5, legend_label=label)
        fig.add_layout(LabelSet(x="throughput", y="accuracy", text="model", source=source,
                                x_offset=8, y_offset=4, text_font_size="8pt", text_color="#333333"))
    accuracy_format = "@accuracy{0.00%}" if as_fraction else "@accuracy{0.00}"
    fig.add_tools(HoverTool(renderers=points, tooltips=[
        *_HOVER_MODEL, ("family", "@group"), _HOVER_BATCH, _HOVER_THROUGHPUT,
        ("top-1 accuracy", accuracy_format),
        *([("accuracy from", "@accuracy_source")] if "accuracy_source" in frame.columns else []), _HOVER_MEMORY]))
    _outside_legend(fig)
    return fig


# --------------------------------------------------------------------------- input pipeline

#: The bars of a pipeline configuration, top to bottom: each stage measured alone, then the whole path.
PIPELINE_STAGES = (
    ("stage_decode_per_s", "decode"), ("stage_transform_per_s", "transform"), ("stage_loader_per_s", "loader"),
    ("stage_copy_per_s", "copy"), ("stage_model_per_s", "model"), ("e2e_throughput", "end to end"),
)
#: Decode and transform make up the loader (one worker runs both): shades of one colour.
_STAGE_COLORS = {"decode": "#9ecae1", "transform": "#6baed6", "loader": "#2171b5", "copy": "#fd8d3c",
                 "model": "#31a354", "end to end": "#404040"}
_BOTTLENECK_COLOR = "#c0392b"


def _pipeline_configurations(frame: pd.DataFrame) -> list[str]:
    """A label per pipeline record: model (and device, configuration where they vary), batch, decoder, workers."""
    labels, seen = [], {}
    for row in frame.to_dict("records"):
        label = str(row["series"])
        parts = [f"batch {row['batch_size']:g}" if not _is_missing(row.get("batch_size")) else None,
                 None if _is_missing(row.get("decoder")) else str(row["decoder"]),
                 None if _is_missing(row.get("data_workers")) else f"{int(row['data_workers'])} workers"]
        label += ": " + ", ".join(p for p in parts if p)
        seen[label] = seen.get(label, 0) + 1
        labels.append(label if seen[label] == 1 else f"{label} #{seen[label]}")  # factors must be unique
    return labels


def pipeline_stages(data: pd.DataFrame):
    """Each pipeline stage's throughput measured alone, beside end to end: one group of bars per model and
    configuration (decode, transform, loader, copy, model, end to end), log axis, the bottleneck outlined
    and the bound the stages put on end to end marked on its bar.

    A stage a configuration does not have (no copy on a CPU, or with nvJPEG) has no bar.
    """
    frame = _records(data, ("model", "e2e_throughput"), "pipeline_stages", task="pipeline",
                     numeric=("e2e_throughput", "batch_size", "data_workers"))
    keys = ["series", *(c for c in ("batch_size", "decoder", "data_workers", "input_set_key", "input_dir")
                        if c in frame.columns)]
    frame = _latest(frame, keys)
    title = "Input pipeline: each stage alone and end to end" + _on_devices(frame)
    if frame.empty:
        return _no_data(_wide_figure(title=title), "no pipeline records")
    bars = []
    for config, row in zip(_pipeline_configurations(frame), frame.to_dict("records")):
        bottleneck, bound_per_s, _ = pipeline_bound(row)
        for column, stage in PIPELINE_STAGES:
            value = pd.to_numeric(pd.Series([row.get(column)]), errors="coerce").iloc[0]
            if _is_missing(value) or value <= 0:
                continue
            bars.append({"config": config, "stage": stage, "per_s": float(value), "model": row["model"],
                         "device": row["device"], "bottleneck": "yes" if stage == bottleneck else "",
                         "bound_per_s": bound_per_s, "y": (config, stage)})
    bars = pd.DataFrame(bars)
    if bars.empty:
        return _no_data(_wide_figure(title=title), "no stage figures in these pipeline records")
    configs = list(dict.fromkeys(bars["config"]))
    factors = list(bars["y"])
    floor = 10 ** math.floor(math.log10(bars["per_s"].min()))
    fig = figure(title=title, y_range=FactorRange(*reversed(factors)), x_axis_type="log", tools=TOOLS,
                 frame_width=600, frame_height=max(160, 15 * len(bars) + 12 * len(configs)),
                 x_axis_label="throughput (images/s), each stage measured alone")
    fig.x_range = Range1d(floor, bars["per_s"].max() * 4)  # room for the bottleneck's label
    columns = ("config", "stage", "per_s", "model", "device", "bottleneck", "bound_per_s")
    for _, stage in PIPELINE_STAGES:  # the legend in the bars' order
        rows = bars[bars["stage"] == stage]
        if rows.empty:
            continue
        fig.hbar(y="y", left=floor, right="per_s", height=0.8, color=_STAGE_COLORS[stage], legend_label=stage,
                 source=_source(rows, columns, y=list(rows["y"])))
    marked = bars[bars["bottleneck"] == "yes"]
    if len(marked):
        source = _source(marked, columns, y=list(marked["y"]), text=["bottleneck"] * len(marked))
        fig.hbar(y="y", left=floor, right="per_s", height=0.8, fill_alpha=0, line_color=_BOTTLENECK_COLOR,
                 line_width=3, legend_label="bottleneck", source=source)
        fig.add_layout(LabelSet(x="per_s", y="y", text="text", source=source, x_offset=5, y_offset=-5,
                                text_font_size="8pt", text_color=_BOTTLENECK_COLOR))
    ends = bars[(bars["stage"] == "end to end") & bars["bound_per_s"].notna()]
    if len(ends):
        fig.scatter(x="bound_per_s", y="y", marker="dash", angle=math.pi / 2, size=16, line_width=3,
                    color=_BOTTLENECK_COLOR, legend_label="bound the stages allow end to end",
                    source=_source(ends, columns, y=list(ends["y"])))
    fig.ygrid.grid_line_color = None
    fig.yaxis.group_label_orientation = "horizontal"
    _plain_numbers(fig.xaxis, [floor, *bars["per_s"]])
    fig.add_tools(HoverTool(tooltips=[*_HOVER_MODEL, ("configuration", "@config"), ("stage", "@stage"),
                                      ("throughput", "@per_s{0,0.0} images/s"), ("bottleneck", "@bottleneck"),
                                      ("bound end to end", "@bound_per_s{0,0.0} images/s")]))
    _outside_legend(fig)
    return fig
