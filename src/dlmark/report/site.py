"""The static report: a folder of results -> a site a team can publish as it is.

    site/index.html            every model and configuration in one searchable, sortable, paginated
                               table; the families; devices, runs, environment, failed jobs, unreadable files
    site/cnn.html              the seed page's sections over all networks, figures of a readable selection
    site/family-<name>.html    the same sections for one family (ResNet, VGG, timm's vit, ...)
    site/data/<table>.js       each table's rows, loaded once by its page (works from file://)
    site/data/results.csv      every record, for download
    site/static/               Bokeh's JavaScript (copied from the installed package), CSS, the table script

The site opens from disk with no network: nothing is loaded from a CDN. A page's size
does not grow with the records: tables are data files the page pages through, and a
figure draws at most ``FIGURE_MODELS`` models (picked evenly from the fastest to the
slowest), never a canvas per model. Every string that comes from a result file reaches
the page through Jinja2's autoescaping, Bokeh's escaped JSON or the table script's
``textContent``, so a model named ``<script>...`` is shown as text and runs nothing.

The pages are a list (``Page``); ``build_site(..., extra_pages=...)`` adds more, each
linked from the navigation bar and the index.
"""
from __future__ import annotations

import functools
import json
import shutil
import time
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np
import pandas as pd

from .. import __version__, plot
from ..errors import UserError
from ..analysis.tradeoff import accuracy_frames
from .datatable import Column, DataTable, _missing, write_table
from .families import family_key, family_name, slug
from .sections import in_flight_column, report_sections

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

#: Environment keys shown per machine, in this order (the record's ``env`` object).
ENV_KEYS = ("host", "device_name", "cpu_model", "gpu_count", "driver", "cuda", "cudnn", "torch",
            "torchvision", "timm", "python", "dlmark", "os", "threads")

#: The configuration columns a table shows when they differ within its rows (device is always shown).
CONFIG_COLUMNS = (("runtime", "runtime"), ("precision", "precision"), ("layout", "layout"),
                  ("compile_mode", "compile mode"), ("threads", "threads"), ("in_flight", "requests in flight"),
                  ("scenario", "scenario"))

#: At most this many models per figure: a figure of a thousand lines (or a canvas per model) reads as nothing.
FIGURE_MODELS = 12
#: At most this many lines in a figure (models x configurations) and devices with figures of their own.
FIGURE_LINES = 24
FIGURE_DEVICES = 2
#: Up to this many models, throughput against batch size is a plot per model, as the seed drew it.
GRID_MODELS = 4
#: At most this many models in the across-devices bars (a bar per device and batch size each).
HARDWARE_MODELS = 4


@dataclass
class SiteSummary:
    """What ``build_site`` wrote and what it read."""
    site_dir: Path
    pages: list[Path]
    csv: Path
    records: int
    devices: list[str]
    models: list[str]
    runs: list[str]
    unreadable: list[str] = field(default_factory=list)  # one message per skipped file
    families: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)  # seconds: load, tables, figures, write

    def line(self) -> str:
        text = (f"wrote {self.site_dir / 'index.html'}: {self.records} records, {len(self.models)} models "
                f"in {len(self.families)} families, {len(self.devices)} devices, {len(self.runs)} runs")
        if self.unreadable:
            text += f"; skipped {len(self.unreadable)} unreadable files (listed on the index page)"
        if "total_s" in self.timings:
            text += f"; {self.timings['total_s']:.1f} s, of which loading {self.timings['load_s']:.1f} s"
        return text


@dataclass
class Page:
    """One page of the site: its file, its name in the navigation bar, its template and what it shows."""
    file: str
    title: str
    template: str
    context: dict[str, Any]
    nav: bool = True  # in the navigation bar (family pages are linked from the index instead)
    figures: list[Any] = field(default_factory=list)  # Figure objects whose Bokeh models the page embeds
    tables: list[DataTable] = field(default_factory=list)  # data files the page loads


@dataclass
class SiteContext:
    """What a page builder gets: the records and where to write tables."""
    data: pd.DataFrame
    site_dir: Path
    results_dir: Path

    def table(self, name: str, frame: pd.DataFrame, columns: Sequence[Column], page_size: int = 50) -> DataTable:
        return write_table(self.site_dir, name, frame, columns, page_size)


#: A builder of an extra page (e.g. a comparison with a baseline folder).
PageBuilder = Callable[[SiteContext], Page]


# ------------------------------------------------------------------ loading


def _load(results_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Records of the folder (subfolders included) and the messages about files that could not be read."""
    from dlmark.records.load import load_results, result_files

    if not results_dir.is_dir():
        raise UserError(f"{results_dir} is not a folder; give the folder `dlmark run --out` wrote")
    files = result_files(results_dir)
    if not files:
        raise UserError(f"no result files (*.json) in {results_dir} or its subfolders; "
                        f"run `dlmark run SUITE --out {results_dir}` first")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        # Block times only where a page needs them (the runtime comparison reads them on its own).
        data = load_results(results_dir, with_samples=False)
    unreadable = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if data.empty:
        first = f" (e.g. {unreadable[0]})" if unreadable else ""
        raise UserError(f"none of the {len(files)} result files in {results_dir} holds a readable record{first}")
    return data, unreadable


def _with_labels(data: pd.DataFrame) -> pd.DataFrame:
    """The records with what every page shows beside them: runtime label and report family."""
    from dlmark.backends.registry import label

    frame = data.copy()
    for column in ("task", "status", "model", "device", "backend", "compile_mode"):
        if column not in frame.columns:
            frame[column] = None
    backend = frame["backend"].astype(object).where(frame["backend"].notna(), None)
    mode = frame["compile_mode"].astype(object).where(frame["compile_mode"].notna(), None)
    frame["runtime"] = [label({"backend": b, "compile_mode": m}) for b, m in zip(backend, mode)]
    names = frame["model"].astype(object).where(frame["model"].notna(), "?").astype(str)
    families = {name: family_name(name) for name in names.unique()}
    frame["model"] = names
    frame["report_family"] = names.map(families)
    frame["_ok"] = frame["status"].fillna("ok") == "ok"
    return frame


# ------------------------------------------------------------------ formatting


def _yes_no(values: pd.Series) -> pd.Series:
    return values.map(lambda v: "" if _missing(v) else ("yes" if v is True or v == 1 else "no"))


def _config_columns(frame: pd.DataFrame, skip: Iterable[str] = ()) -> list[Column]:
    """The configuration columns whose values differ within ``frame``: a missing compile mode is
    eager, a value of its own; any other missing value (an accuracy record has no layout) is no value."""
    out = []
    for key, header in CONFIG_COLUMNS:
        if key in skip or key not in frame.columns or frame.empty:
            continue
        values = _key_text(frame[key])
        values = values.replace("", "eager") if key == "compile_mode" else values[values != ""]
        if values.nunique() > 1:
            out.append(Column(key, header))
    return out


def _key_text(values: pd.Series) -> pd.Series:
    """A column as text for grouping and showing: '' where missing, 2 (not 2.0) for a whole number."""
    def text(value: Any) -> str:
        if _missing(value):
            return ""
        if isinstance(value, float) and value.is_integer():
            return str(int(value))
        return str(value)
    return pd.Series([text(v) for v in values.tolist()], index=values.index, dtype=object)


def _ok(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    return frame[(frame["task"] == task) & frame["_ok"]].copy()


def _unique(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return []
    return [str(v) for v in dict.fromkeys(frame[column].dropna())]


def _code(text: str) -> str:
    """Backticks as <code>, everything else escaped (the text may hold names from result files)."""
    from markupsafe import Markup, escape

    parts = str(escape(text)).split("`")
    return Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))


# ------------------------------------------------------------------ figures


@dataclass
class Figure:
    """One plot on a page, or the reason it is not there."""
    title: str
    model: Any = None
    note: str = ""
    div: str = ""


def _figure(title: str, build: Callable[[], Any]) -> Figure:
    try:
        return Figure(title, model=build())
    except UserError as exc:  # e.g. 2018 records have no latency column: say so, keep the page
        return Figure(title, note=f"not drawn: {exc}")


def _pick_models(thr: pd.DataFrame, limit: int = FIGURE_MODELS) -> tuple[list[str], str]:
    """The models a page's figures draw, and a sentence saying which.

    All of them when they fit; else ``limit`` spread evenly over the ranking by best
    throughput, fastest to slowest: the seed notebook drew every fourth network for the
    same reason. The tables hold every model.
    """
    if thr.empty:
        return [], ""
    best = thr.groupby("model", sort=False)["throughput"].max().sort_values(ascending=False, kind="stable")
    models = list(best.index)
    if len(models) <= limit:
        return models, ""
    chosen = [models[i] for i in dict.fromkeys(np.linspace(0, len(models) - 1, limit).round().astype(int))]
    return chosen, (f"The figures draw {len(chosen)} of these {len(models):,} models, picked evenly from the "
                    f"fastest to the slowest by best throughput; the tables hold every model.")


def _accuracy_kind(frame: pd.DataFrame) -> str:
    sources = set()
    if "accuracy_source" in frame.columns:
        for value in frame["accuracy_source"].dropna():
            sources.update(str(value).split("/"))
    if sources == {"published"}:
        return "published figures, not measured here"
    if "published" in sources:
        return "measured and published figures (the table says which)"
    return "measured"


def _most_common_config(thr: pd.DataFrame) -> tuple[pd.DataFrame, str]:
    """The rows of the configuration measured most often, and its name (for across-device bars)."""
    keys = [key for key, _ in CONFIG_COLUMNS if key in thr.columns and key != "scenario"]
    if not keys:
        return thr, ""
    parts = [_key_text(thr[key]) for key in keys]
    combined = pd.Series(["\x1f".join(values) for values in zip(*parts)], index=thr.index)
    if combined.nunique() <= 1:
        return thr, ""
    top = combined.value_counts().index[0]
    named = [f"{value} threads" if key == "threads" else value
             for key, value in zip(keys, top.split("\x1f")) if value]
    return thr[combined == top], " ".join(named)


def _figure_rows(shown: pd.DataFrame) -> tuple[pd.DataFrame, list[str], str]:
    """The picked models' rows the per-device figures draw, those devices, and a sentence on what was left out.

    At most ``FIGURE_LINES`` lines a figure (past that, the configuration measured most often)
    and ``FIGURE_DEVICES`` devices (those with the most records): each figure costs the build
    time and the page's size, and a figure of sixty lines is not read.
    """
    notes = []
    if shown.empty:
        return shown, [], ""
    keys = [key for key, _ in CONFIG_COLUMNS if key in shown.columns and key != "scenario"]
    lines = pd.DataFrame({key: _key_text(shown[key]) for key in ("model", "device", *keys)})
    per_device = lines.drop_duplicates().groupby("device").size()
    if not per_device.empty and per_device.max() > FIGURE_LINES:
        shown, config = _most_common_config(shown)
        notes.append(f"They draw one configuration, the one measured most often ({config}); the tables and "
                     f"the runtimes section hold the others.")
    counts = shown["device"].value_counts(sort=True)
    devices = [str(d) for d in counts.index]
    if len(devices) > FIGURE_DEVICES:
        notes.append(f"Figures per device are drawn for the {FIGURE_DEVICES} devices with the most records "
                     f"({', '.join(devices[:FIGURE_DEVICES])}) of {len(devices)}; the tables hold every device.")
        devices = devices[:FIGURE_DEVICES]
    return shown, devices, " ".join(notes)


# ------------------------------------------------------------------ sections


def _throughput_figure(rows: pd.DataFrame):
    """The seed's small multiples for a few models; past that one plot of a line each (a canvas
    per model is what made the 2018 page unreadable at scale, and each costs the build time)."""
    models = _unique(rows, "model")
    if len(models) <= GRID_MODELS:
        return plot.batch_size_vs_throughput_grid(rows, models)
    return plot.batch_size_vs_throughput(rows)


def _throughput_frame(frame: pd.DataFrame) -> pd.DataFrame:
    thr = _ok(frame, "throughput")
    for column in ("batch_size", "throughput"):
        thr[column] = pd.to_numeric(thr[column], errors="coerce") if column in thr.columns else np.nan
    thr = thr.dropna(subset=["batch_size", "throughput"])
    return thr.assign(in_flight=in_flight_column(thr))  # records of one request have no in_flight field


def _sections(ctx: SiteContext, frame: pd.DataFrame, prefix: str) -> tuple[list[dict[str, Any]], str]:
    """The seed page's sections for ``frame``'s records, each with figures and tables; the selection note."""
    thr = _throughput_frame(frame)
    largest = _ok(frame, "max_batch_size")
    acc = _ok(frame, "accuracy")
    picked, selection = _pick_models(thr)
    shown, devices, drawn_note = _figure_rows(thr[thr["model"].isin(picked)])
    selection = " ".join(t for t in (selection, drawn_note) if t)
    sections: list[dict[str, Any]] = []

    def table(name: str, rows: pd.DataFrame, columns: list[Column]) -> DataTable:
        return ctx.table(f"{prefix}-{name}", rows, columns)

    thr_config = _config_columns(thr)
    thr_rows = thr.sort_values(["model", "device", "batch_size"], kind="stable")
    if "noisy" in thr_rows.columns:
        thr_rows = thr_rows.assign(noisy=_yes_no(thr_rows["noisy"]))
    throughput_table = table("throughput", thr_rows, [
        Column("model", "model"), Column("device", "device"), *thr_config,
        Column("batch_size", "batch size", 0), Column("throughput", "throughput (images/s)", 1),
        Column("throughput_ci95_low", "95% CI low", 1), Column("throughput_ci95_high", "95% CI high", 1),
        Column("latency_ms_median", "latency median (ms)", 3), Column("latency_ms_p90", "latency p90 (ms)", 3),
        Column("device_mem", "device memory (MB)", 0), Column("noisy", "noisy")])
    sections.append({
        "id": "throughput", "title": "Throughput on various batch sizes",
        "text": "We feed a batch of b images to the network and time the forward pass, t; "
                "throughput is b/t (median over timed blocks). Marker area grows with device memory. "
                "Lines of one model differ in the configuration their legend names.",
        "figures": [_figure(f"Throughput against batch size on {device}",
                            lambda d=device: _throughput_figure(shown[shown["device"] == d]))
                    for device in devices] or [Figure("Throughput", note="no successful throughput records")],
        "tables": [throughput_table]})
    sections.append({
        "id": "latency", "title": "Latency against throughput",
        "text": "Each point is a batch size, written beside it: a larger batch buys throughput and costs latency.",
        "figures": [_figure(f"Latency against throughput on {device}",
                            lambda d=device: plot.latency_vs_throughput(shown[shown["device"] == d]))
                    for device in devices], "tables": []})
    sections.append({
        "id": "memory", "title": "Device memory",
        "text": "Memory grows linearly with the batch size. On a GPU, what tensors use (allocated) "
                "differs from what PyTorch's caching allocator holds (reserved) and from what the "
                "driver reports (NVML, the seed's nvidia-smi figure); on a CPU we show the worker's "
                "peak resident memory. A colour per model and configuration, a dash per kind of memory.",
        "figures": [_figure(f"Memory against batch size on {device}",
                            lambda d=device: plot.batch_size_vs_memory(shown[shown["device"] == d]))
                    for device in devices], "tables": []})

    intensity = pd.to_numeric(thr["arithmetic_intensity"], errors="coerce") if "arithmetic_intensity" in thr.columns \
        else pd.Series(np.nan, index=thr.index)
    efficient = thr[intensity > 0]
    efficient_shown = shown[shown.index.isin(efficient.index)]
    limit_rows = efficient.sort_values(["model", "device", "batch_size"], kind="stable")
    if "throttled" in limit_rows.columns:
        limit_rows = limit_rows.assign(throttled=_yes_no(limit_rows["throttled"]))
    sections.append({
        "id": "limit", "title": "How close to the hardware's limit",
        "text": "Achieved TFLOP/s (the model's FLOPs per image times throughput) against arithmetic "
                "intensity (FLOPs per byte of estimated DRAM traffic), under the device's roof: memory "
                "bandwidth up to the ridge point, the precision's peak after it (`dlmark peak` when "
                "measured, else the datasheet). Left of the ridge a batch is memory-bound, right of it "
                "compute-bound. FLOPs are nominal: convolutions cuDNN runs by Winograd or FFT do fewer "
                "multiplications, so a point can sit above a measured matmul peak.",
        "figures": [_figure(f"Roofline on {device}",
                            lambda d=device: plot.roofline(efficient_shown[efficient_shown["device"] == d]))
                    for device in devices if (efficient_shown["device"] == device).any()]
        or [Figure("Roofline", note="no records with FLOPs and peaks in these results "
                                    "(GPU records carry them; on a CPU run `dlmark peak --device cpu` first)")],
        "tables": [table("limit", limit_rows, [
            Column("model", "model"), Column("device", "device"), *_config_columns(efficient),
            Column("batch_size", "batch size", 0), Column("achieved_tflops", "achieved TFLOP/s", 2),
            Column("mfu", "MFU", 3), Column("peak_source", "peak from"),
            Column("arithmetic_intensity", "FLOP/byte", 1), Column("bound", "bound"),
            Column("roofline_fraction", "of the roof", 3), Column("avg_power_w", "power (W)", 0),
            Column("energy_j_per_sample", "energy (J/image)", 4), Column("throttled", "throttled")])]
        if not efficient.empty else []})

    largest_shown = largest[largest["model"].isin(picked)] if picked else largest
    if not largest.empty and largest_shown.empty:
        largest_shown = largest[largest["model"].isin(_unique(largest, "model")[:FIGURE_MODELS])]
    largest_rows = largest.sort_values(["model", "device"], kind="stable")
    if "capped" in largest_rows.columns:
        largest_rows = largest_rows.assign(capped=_yes_no(largest_rows["capped"]))
    sections.append({
        "id": "largest-batch", "title": "Largest batch size",
        "text": "The actual memory a network needs shows in the largest batch that runs, found "
                "exactly: a batch that ran next to one that did not (on CUDA the allocator's peaks "
                "choose which batches to try; each trial is in the record).",
        "figures": [_figure("Largest batch size", lambda: plot.max_batch_size(largest_shown))] if not largest.empty
        else [Figure("Largest batch size", note="no largest-batch-size records in these results")],
        "tables": [table("largest-batch", largest_rows, [
            Column("model", "model"), Column("device", "device"), *_config_columns(largest),
            Column("batch_size", "largest batch", 0), Column("first_failing_batch", "first failing batch", 0),
            Column("capped", "hit the cap"), Column("memory_limit_mb", "memory limit (MB)", 0),
            Column("search_s", "search time (s)", 1)])] if not largest.empty else []})

    if len(_unique(thr, "device")) > 1:
        across, config = _most_common_config(thr)
        # The models measured on the most devices, fastest first among them.
        reach = across.groupby("model")["device"].nunique()
        order = [m for m in picked if m in reach.index] or list(reach.index)
        order = sorted(order, key=lambda m: -reach[m])[:HARDWARE_MODELS]
        hardware_figures = [_figure("Throughput across devices" + (f" ({config})" if config else ""),
                                    lambda: plot.throughput_vs_device(across[across["model"].isin(order)]))]
        hardware_text = ("Throughput of a model per device and batch size (log axis), for the models measured "
                         "on the most devices" + (f", in the configuration measured most often ({config}); "
                                                  "the others are in the throughput table" if config else "") + ".")
    else:
        hardware_figures = [Figure("Throughput on various hardware",
                                   note="these results come from one device; copy the results folder of "
                                        "another machine into this one to compare")]
        hardware_text = "Throughput of each model per device and batch size (log axis)."
    sections.append({"id": "hardware", "title": "Throughput on various hardware", "text": hardware_text,
                     "figures": hardware_figures, "tables": []})

    if not acc.empty and not thr.empty:
        frames = accuracy_frames(frame)  # paired by configuration: an int8 point beside fp32's
        # The devices the other figures draw, else those with the most accuracy points.
        order = [d for d in devices if d in frames] + sorted(set(frames) - set(devices), key=lambda d: -len(frames[d]))
        figures = []
        for device in order[:FIGURE_DEVICES]:
            joined = frames[device]
            joined = joined.assign(model_prefix=joined["report_family"])
            figures.append(_figure(f"Accuracy against throughput on {device} (accuracy: {_accuracy_kind(joined)})",
                                   lambda f=joined: plot.throughput_vs_accuracy(f)))
        accuracy_rows = acc.sort_values("model", kind="stable")
        if "accuracy_source" in accuracy_rows.columns:
            accuracy_rows = accuracy_rows.assign(accuracy_source=accuracy_rows["accuracy_source"].fillna("measured"))
        tables_here = [table("accuracy", accuracy_rows, [
            Column("model", "model"), Column("device", "device"), *_config_columns(acc),
            Column("accuracy", "top-1 accuracy", 4), Column("accuracy_source", "measured or published"),
            Column("weights_tag", "weights"), Column("batch_size", "batch size", 0), Column("source", "source")])]
    else:
        figures = [Figure("Accuracy against throughput", note="no accuracy records in these results")]
        tables_here = []
    unknown = frame[(frame["task"] == "accuracy") & (frame["status"] == "unavailable")]
    left_out = "; ".join(f"{row['model']}: {row.get('error')}" for row in unknown.head(20).to_dict("records"))
    if len(unknown) > 20:
        left_out += f"; and {len(unknown) - 20} more (failed jobs on the index page)"
    sections.append({
        "id": "accuracy", "title": "Prediction accuracy against throughput",
        "text": "Top-1 accuracy on the ILSVRC 2012 validation set against throughput; one colour per "
                "family. The dashed line joins the models no other model beats on both. A published "
                "figure (named so in the figure's title and the table) belongs to the weights named "
                "beside it (torchvision's DEFAULT weights, e.g. ResNet50_Weights.IMAGENET1K_V2, not the "
                "original recipe)." + (f" Left out, no published figure known: {left_out}." if left_out else ""),
        "figures": figures, "tables": tables_here})
    sections.append(_runtime_section(ctx, thr, prefix))
    sections.append(_serving_section(ctx, frame, picked, devices, prefix))

    def section_table(name: str, rows: pd.DataFrame, columns: list[tuple[str, str, int | None]]) -> DataTable:
        return table(name, rows, [Column(key, header, digits) for key, header, digits in columns])

    sections.extend(report_sections(frame, section_table, _figure))  # int8, the input pipeline
    for section in sections:
        section["text"] = _code(section["text"])
        for figure in section["figures"]:
            figure.note = _code(figure.note)
    return sections, selection


def _runtime_section(ctx: SiteContext, thr: pd.DataFrame, prefix: str) -> dict[str, Any]:
    """`dlmark ls --compare` on the page: each runtime configuration as a ratio to PyTorch eager fp32,
    with its interval and verdict, for the models and devices measured in more than one configuration."""
    from dlmark.analysis.runtimes import runtime_rows
    from dlmark.records.load import load_results

    text = ("Each runtime configuration's throughput as a ratio to PyTorch eager fp32 NCHW of the same model, "
            "device, batch size and threads (the one of the same run when there is one), with its 95% "
            "interval and the verdict of `dlmark compare`: faster, slower or same. `dlmark ls --compare` "
            "prints the same table.")
    section = {"id": "runtimes", "title": "Runtimes side by side", "text": text, "figures": [], "tables": []}
    if thr.empty:
        return section
    keys = ["model", "device", "batch_size"] + (["threads"] if "threads" in thr.columns else [])
    filled = thr[keys].astype(object).where(thr[keys].notna(), "")
    configs = thr["runtime"].astype(str) + " " + thr.get("precision", pd.Series("", index=thr.index)).astype(str) \
        + " " + thr.get("layout", pd.Series("", index=thr.index)).astype(str)
    several = configs.groupby([filled[k] for k in keys]).transform("nunique") > 1
    compared = thr[several.to_numpy()]
    if compared.empty:
        section["figures"] = [Figure("Runtimes", note="every model and device here was measured in one "
                                                      "configuration (`dlmark run --backend pytorch,onnxruntime,...` "
                                                      "measures several)")]
        return section
    # The significance needs the block times, which the site's load leaves out: read them for these files only.
    if "_file" in compared.columns:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            samples = load_results(list(dict.fromkeys(compared["_file"].astype(str))), with_samples=True)
        samples = samples[samples["task"] == "throughput"] if "task" in samples.columns else samples
        key_columns = [c for c in ("_file", "job_key", "timestamp") if c in samples.columns and c in compared.columns]
        if "block_times_s" in samples.columns and key_columns:
            compared = compared.drop(columns=["block_times_s"], errors="ignore").merge(
                samples[key_columns + ["block_times_s"]].drop_duplicates(subset=key_columns), on=key_columns, how="left")
    records = [{k: v for k, v in r.items() if not _missing(v)} for r in compared.to_dict("records")]
    rows = pd.DataFrame(runtime_rows(records))
    if rows.empty:
        return section
    rows["noisy"] = _yes_no(rows["noisy"])
    section["tables"] = [ctx.table(f"{prefix}-runtimes", rows, [
        Column("model", "model"), Column("device", "device"), Column("batch_size", "batch", 0),
        *[c for c in _config_columns(rows) if c.key in ("threads",)],
        Column("runtime", "runtime"), Column("precision", "precision"),
        Column("throughput", "images/s", 1), Column("speedup", "x pytorch eager", 2),
        Column("speedup_ci_low", "95% CI low", 2), Column("speedup_ci_high", "95% CI high", 2),
        Column("significance", "vs eager"), Column("noisy", "noisy"), Column("agrees", "outputs agree"),
        Column("agreement_max_rel", "max rel diff", 6)])]
    return section


def _serving_section(ctx: SiteContext, frame: pd.DataFrame, picked: list[str], devices: list[str],
                     prefix: str) -> dict[str, Any]:
    """Per model and configuration: Offline, SingleStream p90, MultiStream p99 and the Server load
    within its bound, each with LoadGen's verdict; p99 against offered load per device."""
    from dlmark.analysis.serving import serving_rows, shown_columns

    serving = frame[frame["task"] == "serving"]
    text = ("Latency under load through MLPerf's LoadGen: it schedules the queries (Poisson arrivals for "
            "Server), times each from its scheduled issue, so queueing counts, and judges the run VALID or "
            "INVALID; a figure is never shown without that verdict. Server batches on the fly.")
    records = [{k: v for k, v in r.items() if not _missing(v)}
               for r in serving.drop(columns=["_ok", "report_family"]).to_dict("records")]
    summary_rows = serving_rows(records)
    rows = pd.DataFrame(summary_rows)
    if rows.empty:
        return {"id": "serving", "title": "Serving", "text": text,
                "figures": [Figure("Serving", note="no serving records in these results (dlmark run --scenario ...)")],
                "tables": []}
    served = _unique(serving, "model")
    drawn = [m for m in picked if m in served] or served[:FIGURE_MODELS]
    drawn_rows = serving[serving["model"].isin(drawn[:FIGURE_MODELS])]
    table = ctx.table(f"{prefix}-serving", rows, [Column(key, header) for key, header in shown_columns(summary_rows)])
    figures = [_figure(f"Server latency against offered load on {device}",
                       lambda d=device: plot.latency_vs_load(drawn_rows[drawn_rows["device"] == d]))
               for device in ([d for d in devices if (drawn_rows["device"] == d).any()]
                              or _unique(drawn_rows, "device"))[:FIGURE_DEVICES]]
    return {"id": "serving", "title": "Serving", "text": text, "figures": figures, "tables": [table]}


# ------------------------------------------------------------------ index


def _configurations(frame: pd.DataFrame, family_files: dict[str, str]) -> pd.DataFrame:
    """One row per model and configuration (device, task, runtime, precision, layout, compile mode,
    threads, scenario): its best throughput and the batch size of it, batch-1 latency, the largest batch,
    accuracy, how many records and how many failed."""
    keys = ["model", "device", "task"] + [key for key, _ in CONFIG_COLUMNS if key in frame.columns]
    rows = frame[frame["task"] != "peak"].copy()
    for key in keys:
        rows[key] = _key_text(rows[key]) if key in rows.columns else ""
    rows["compile_mode"] = rows["compile_mode"].replace("", "eager") if "compile_mode" in rows.columns else "eager"
    for column in ("batch_size", "throughput", "latency_ms_median", "accuracy", "params", "flops_per_sample"):
        rows[column] = pd.to_numeric(rows[column], errors="coerce") if column in rows.columns else np.nan
    ok = rows[rows["_ok"]]
    grouped = rows.groupby(keys, sort=False)
    table = grouped.agg(family=("report_family", "first"), records=("_ok", "size"),
                        failed=("_failed", "sum")).reset_index()
    stats = ok.groupby(keys, sort=False).agg(
        batches=("batch_size", "nunique"), smallest=("batch_size", "min"), biggest=("batch_size", "max"),
        accuracy=("accuracy", "mean"), params=("params", "max"), flops=("flops_per_sample", "max")).reset_index()
    thr = ok[ok["task"] == "throughput"].dropna(subset=["throughput"])
    best = (thr.sort_values("throughput", kind="stable").drop_duplicates(subset=keys, keep="last")
            [keys + ["throughput", "batch_size"]].rename(columns={"batch_size": "best_batch"}))
    first = (thr.sort_values("batch_size", kind="stable").drop_duplicates(subset=keys, keep="first")
             [keys + ["latency_ms_median", "batch_size"]].rename(columns={"batch_size": "latency_batch"}))
    table = table.merge(stats, on=keys, how="left").merge(best, on=keys, how="left").merge(first, on=keys, how="left")
    largest = table["task"] == "max_batch_size"
    table["largest_batch"] = table["biggest"].where(largest)
    table.loc[largest, ["smallest", "biggest", "batches"]] = np.nan
    table["params_m"] = table["params"] / 1e6
    table["gflops"] = table["flops"] / 1e9
    table["page"] = table["family"].map(lambda f: family_files.get(family_key(f)))
    return table.sort_values(["model", "device", "task"], kind="stable").reset_index(drop=True)


def _index_tables(ctx: SiteContext, frame: pd.DataFrame, family_files: dict[str, str]) -> dict[str, DataTable]:
    """The index's tables; ``family_files`` maps a family key to its page, which the family cells link."""
    for column in ("host", "run_id", "suite", "timestamp", "params", "flops_per_sample", "error", "batch_size"):
        if column not in frame.columns:
            frame[column] = None
    frame = frame.assign(_failed=~frame["_ok"])
    configurations = _configurations(frame, family_files)

    def joined(key: pd.Series, column: str) -> pd.Series:
        """Per value of ``key``: the distinct values of ``column``, in order, as one text. A plain loop:
        a sweep has a run per few records, and pandas' per-group aggregation costs a millisecond a group."""
        seen: dict[Any, dict[str, None]] = {}
        for k, value in zip(key.tolist(), frame[column].tolist()):
            if not _missing(value):
                seen.setdefault(k, {})[str(value)] = None
        return pd.Series({k: ", ".join(values) for k, values in seen.items()}, dtype=object)

    device_key = frame["device"].fillna("?")
    devices = (frame.groupby(device_key, sort=False)
               .agg(records=("_ok", "size"), ok=("_ok", "sum"), failed=("_failed", "sum")))
    devices = devices.assign(hosts=joined(device_key, "host")).reset_index()
    networks = frame[frame["task"] != "peak"]
    models = (networks.groupby("model", sort=False)
              .agg(family=("report_family", "first"), params=("params", "max"), flops=("flops_per_sample", "max"),
                   records=("_ok", "size"), failed=("_failed", "sum"))
              .reset_index())
    models["params_m"] = pd.to_numeric(models["params"], errors="coerce") / 1e6
    models["gflops"] = pd.to_numeric(models["flops"], errors="coerce") / 1e9
    models["page"] = models["family"].map(lambda f: family_files.get(family_key(f)))
    run_key = frame["run_id"].fillna("(no run id)")
    runs = (frame.groupby(run_key, sort=False)
            .agg(suite=("suite", "first"), first=("timestamp", "min"), last=("timestamp", "max"),
                 records=("_ok", "size"), failed=("_failed", "sum")))
    runs = runs.assign(hosts=joined(run_key, "host"), devices=joined(run_key, "device")).reset_index()
    env_columns = [f"env.{key}" for key in ENV_KEYS if f"env.{key}" in frame.columns]
    environment = (frame.sort_values("timestamp", na_position="first", kind="stable")
                   .groupby([frame["host"].fillna("?"), frame["device"].fillna("?")], sort=False)
                   [env_columns].last().reset_index(drop=True)) if env_columns else pd.DataFrame()
    failed = frame[frame["_failed"]]
    config = _config_columns(configurations)
    return {
        "configurations": ctx.table("index-configurations", configurations, [
            Column("model", "model"), Column("family", "family", link="page"), Column("device", "device"),
            Column("task", "task"), *config, Column("throughput", "best throughput (images/s)", 1),
            Column("best_batch", "at batch", 0), Column("latency_ms_median", "latency median (ms)", 3),
            Column("latency_batch", "latency at batch", 0), Column("batches", "batch sizes", 0),
            Column("smallest", "smallest batch", 0), Column("biggest", "biggest batch", 0),
            Column("largest_batch", "largest batch that ran", 0), Column("accuracy", "top-1 accuracy", 4),
            Column("params_m", "parameters (M)", 1), Column("gflops", "GFLOPs per image", 2),
            Column("records", "records", 0), Column("failed", "failed", 0)]),
        "devices": ctx.table("index-devices", devices, [
            Column("device", "device"), Column("hosts", "hosts"), Column("records", "records", 0),
            Column("ok", "ok", 0), Column("failed", "failed", 0)]),
        "models": ctx.table("index-models", models, [
            Column("model", "model"), Column("family", "family", link="page"), Column("params_m", "parameters (M)", 1),
            Column("gflops", "GFLOPs per image", 2), Column("records", "records", 0), Column("failed", "failed", 0)]),
        "runs": ctx.table("index-runs", runs, [
            Column("run_id", "run"), Column("suite", "suite"), Column("hosts", "hosts"), Column("devices", "devices"),
            Column("first", "first record (UTC)"), Column("last", "last record (UTC)"),
            Column("records", "records", 0), Column("failed", "failed", 0)]),
        "environment": ctx.table("index-environment", environment,
                                 [Column(c, c.removeprefix("env.")) for c in env_columns]),
        "failed": ctx.table("index-failed", failed, [
            Column("model", "model"), Column("device", "device"), Column("task", "task"),
            *_config_columns(failed), Column("batch_size", "batch size", 0), Column("status", "status"),
            Column("error", "error")]),
    }


# ------------------------------------------------------------------ writing


#: A cell starting with one of these is a formula to a spreadsheet (CSV injection).
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def _csv_cell(value):
    if isinstance(value, (list, dict, tuple)):
        return json.dumps(value)
    if isinstance(value, str) and value.startswith(_FORMULA_START):
        return "'" + value  # shown as text, as spreadsheets do for a leading quote
    return value


def _csv(data: pd.DataFrame, path: Path) -> None:
    """Every record as one CSV row; lists and dicts as JSON text; text that a spreadsheet would
    run as a formula (a model named ``=HYPERLINK(..)``) quoted."""
    frame = data.drop(columns=[c for c in ("_file", "_ok", "report_family") if c in data.columns])
    for column in frame.columns:
        if pd.api.types.is_object_dtype(frame[column]) or pd.api.types.is_string_dtype(frame[column]):
            frame[column] = frame[column].map(_csv_cell)
    path.parent.mkdir(parents=True, exist_ok=True)
    frame.to_csv(path, index=False)


def _bokeh_files(static_dir: Path) -> list[str]:
    """Copy the installed Bokeh's JavaScript into the site, so the page needs no network.

    The copy matches the Python package's version, which Bokeh checks when it
    loads a document.
    """
    import bokeh
    from bokeh.resources import Resources

    names = []
    # "absolute" mode lists the package's own files; plots need only the core and WebGL parts.
    for source in map(Path, Resources(mode="absolute", components=["bokeh", "bokeh-gl"]).js_files):
        target = source.name.replace(".min.js", f"-{bokeh.__version__}.min.js")
        shutil.copyfile(source, static_dir / target)
        names.append(f"static/{target}")
    return names


def _render(template: str, target: Path, **context: Any) -> None:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    environment = Environment(loader=FileSystemLoader(TEMPLATES), autoescape=True,
                              undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    target.write_text(environment.get_template(template).render(**context), encoding="utf-8")


def _family_pages(frame: pd.DataFrame) -> dict[str, tuple[str, str, list[str]]]:
    """family key -> (shown name, page file, models), families in order of their first record."""
    networks = frame[frame["task"] != "peak"]
    groups = (networks.groupby(networks["report_family"].map(family_key), sort=False)
              .agg(shown=("report_family", "first"), models=("model", lambda s: list(dict.fromkeys(s)))))
    pages: dict[str, tuple[str, str, list[str]]] = {}
    used: set[str] = set()
    for key, row in groups.iterrows():
        base = slug(str(key))
        file, n = f"family-{base}.html", 2
        while file in used:  # two keys with one slug (res_net, res-net)
            file, n = f"family-{base}-{n}.html", n + 1
        used.add(file)
        pages[str(key)] = (str(row["shown"]), file, row["models"])
    return pages


@dataclass
class SectionPage:
    """A page of the seed's sections over some of the records (all networks, or one family)."""
    file: str
    title: str
    heading: str
    lead: str
    nav: bool
    family: str | None = None  # the family key, None for every network


def _section_page(ctx: SiteContext, spec: SectionPage) -> Page:
    frame = ctx.data if spec.family is None else ctx.data[ctx.data["_family_key"] == spec.family]
    sections, selection = _sections(ctx, frame, spec.file.removesuffix(".html"))
    figures = [figure for section in sections for figure in section["figures"]]
    tables = [table for section in sections for table in section["tables"]]
    return Page(file=spec.file, title=spec.title, template="sections.html", nav=spec.nav, figures=figures,
                tables=tables, context={"sections": sections, "heading": spec.heading, "lead": spec.lead,
                                        "selection": selection, "search": spec.title if spec.family else None})


def _write_page(site_dir: Path, page: Page, common: dict[str, Any]) -> None:
    """Embed the page's figures (one Bokeh script a page) and render its template."""
    from bokeh.embed import components

    drawn = [figure for figure in page.figures if figure.model is not None]
    bokeh_script, divs = components([figure.model for figure in drawn]) if drawn else ("", [])
    for figure, div in zip(drawn, divs):
        figure.div = div
    _render(page.template, site_dir / page.file, page=page.file, title=page.title, tables_used=page.tables,
            bokeh_script=bokeh_script, with_bokeh=bool(drawn), **page.context, **common)


#: What a forked worker builds its pages from (set before the fork: the children share it, nothing is pickled).
_WORK: dict[str, Any] = {}


def _do(task: SectionPage | Callable[[], Any]) -> None:
    """One unit of a build: a section page (built and written), or a function (the CSV)."""
    if isinstance(task, SectionPage):
        _write_page(_WORK["ctx"].site_dir, _section_page(_WORK["ctx"], task), _WORK["common"])
    else:
        task()


def _run_tasks(ctx: SiteContext, tasks: list[SectionPage | Callable[[], Any]], common: dict[str, Any]) -> None:
    """Run the build's independent tasks, in parallel processes where the machine has cores to spare.

    Bokeh's figures cost most of a build (building and serialising their models) and the pages
    are independent: forked workers each take whole pages (and one the CSV), sharing the records
    the parent loaded. Where fork is not available, one by one.
    """
    import multiprocessing
    import os

    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    workers = min(len(tasks), cores)
    _WORK.update(ctx=ctx, common=common)
    try:
        if workers > 1 and "fork" in multiprocessing.get_all_start_methods():
            from concurrent.futures import ProcessPoolExecutor

            with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork")) as pool:
                for _ in pool.map(_do, tasks):
                    pass
        else:
            for task in tasks:
                _do(task)
    finally:
        _WORK.clear()


def build_site(results_dir: str | Path, site_dir: str | Path,
               extra_pages: Sequence[PageBuilder] = ()) -> SiteSummary:
    """Build the static report of the results in ``results_dir`` (subfolders included) into ``site_dir``.

    ``extra_pages`` build more pages from the same records, each linked from every page's
    navigation and from the index. Raises ``UserError`` when the folder holds no readable
    record; unreadable files among readable ones are skipped and listed on the index page.
    """
    timings: dict[str, float] = {}
    start = time.perf_counter()
    results_dir, site_dir = Path(results_dir), Path(site_dir)
    data, unreadable = _load(results_dir)
    timings["load_s"] = time.perf_counter() - start
    mark = time.perf_counter()
    site_dir.mkdir(parents=True, exist_ok=True)
    (site_dir / "data").mkdir(exist_ok=True)
    for old in (site_dir / "data").glob("*.js"):  # tables of an earlier build that this one may not write
        old.unlink()
    static_dir = site_dir / "static"
    static_dir.mkdir(exist_ok=True)
    scripts = _bokeh_files(static_dir)
    for asset in STATIC.iterdir():
        shutil.copyfile(asset, static_dir / asset.name)
    csv_path = site_dir / "data" / "results.csv"
    frame = _with_labels(data)
    frame["_family_key"] = frame["report_family"].map(family_key)
    ctx = SiteContext(data=frame, site_dir=site_dir, results_dir=results_dir)
    families = _family_pages(frame)
    networks = frame[frame["task"] != "peak"]  # a `dlmark peak` record describes its device, not a model
    devices, models, runs = _unique(frame, "device"), _unique(networks, "model"), _unique(frame, "run_id")
    specs = [SectionPage("cnn.html", "Convolutional networks", "Convolutional neural networks: inference",
                         f"All {len(models):,} networks of these results; each family also has its own page.",
                         nav=True)]
    family_list = []
    records_per_family = frame["_family_key"].value_counts()
    for key, (shown, file, members) in families.items():
        specs.append(SectionPage(file, shown, f"{shown}: inference",
                                 f"{len(members):,} networks of the {shown} family.", nav=False, family=key))
        family_list.append({"name": shown, "file": file, "models": len(members),
                            "records": int(records_per_family.get(key, 0))})
    extra = [builder(ctx) for builder in extra_pages]
    index = Page(file="index.html", title="Overview", template="index.html", context={})
    index.tables = list(_index_tables(ctx, frame, {key: file for key, (_, file, _) in families.items()}).values())
    index.context = {"tables": {t.name.removeprefix("index-"): t for t in index.tables}, "devices": devices,
                     "models": models, "runs": runs, "unreadable": unreadable, "families": family_list,
                     "extra_pages": [(page.file, page.title) for page in extra]}
    timings["tables_s"] = time.perf_counter() - mark

    mark = time.perf_counter()
    nav = [(index.file, index.title), (specs[0].file, specs[0].title)] + [(p.file, p.title) for p in extra if p.nav]
    common = {"version": __version__, "results_dir": str(results_dir), "scripts": scripts,
              "built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "records": len(data),
              "nav": nav}
    # Largest pages first, so that no worker is left with a big one at the end; the CSV beside them.
    sizes = frame["_family_key"].value_counts()
    order = sorted(specs, key=lambda spec: -(len(frame) if spec.family is None else int(sizes.get(spec.family, 0))))
    _run_tasks(ctx, [order[0], functools.partial(_csv, data, csv_path), *order[1:]], common)
    for page in [index, *extra]:
        _write_page(site_dir, page, common)
    timings["pages_s"] = time.perf_counter() - mark
    timings["total_s"] = time.perf_counter() - start
    files = [index.file, *(spec.file for spec in specs), *(page.file for page in extra)]
    return SiteSummary(site_dir=site_dir, pages=[site_dir / f for f in files], csv=csv_path,
                       records=len(data), devices=devices, models=models, runs=runs, unreadable=unreadable,
                       families=[f["name"] for f in family_list], timings=timings)
