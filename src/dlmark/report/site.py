"""The static report: a folder of results -> a site a team can publish as it is.

    site/index.html      devices, models, runs, environment, failed jobs, unreadable files
    site/cnn.html        the seed page's sections with interactive plots and sortable tables
    site/data/results.csv  every record, for download
    site/compare.html    with ``dlmark report --baseline``: the comparison (``report.compare_page``)
    site/static/         Bokeh's JavaScript (copied from the installed package), CSS, table sorting

The site opens from disk with no network: nothing is loaded from a CDN. Every
string that comes from a result file reaches the page through Jinja2's
autoescaping or Bokeh's escaped JSON, so a model named ``<script>...`` is shown
as text and runs nothing.
"""
from __future__ import annotations

import json
import shutil
import warnings
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

import pandas as pd

from .. import __version__, plot
from ..errors import UserError
from .sections import in_flight_column, report_sections

TEMPLATES = Path(__file__).parent / "templates"
STATIC = Path(__file__).parent / "static"

#: Environment keys shown per machine, in this order (the record's ``env`` object).
ENV_KEYS = ("host", "device_name", "cpu_model", "gpu_count", "driver", "cuda", "cudnn", "torch",
            "torchvision", "timm", "python", "dlmark", "os", "threads")


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

    def line(self) -> str:
        text = (f"wrote {self.site_dir / 'index.html'}: {self.records} records, {len(self.models)} models, "
                f"{len(self.devices)} devices, {len(self.runs)} runs")
        if self.unreadable:
            text += f"; skipped {len(self.unreadable)} unreadable files (listed on the index page)"
        return text


@dataclass
class ExtraPage:
    """A page another module adds to the site (``report.compare_page``), linked from every page's navigation.

    ``write(render, site_dir, context)`` writes ``file``; ``render(template, target, **context)``
    renders one of this package's templates, ``context`` is what every page renders with.
    """
    file: str
    title: str
    write: Callable[..., None]


# ------------------------------------------------------------------ loading


def _load(results_dir: Path) -> tuple[pd.DataFrame, list[str]]:
    """Records of the folder and the messages about files that could not be read."""
    from dlmark.records.load import load_results

    if not results_dir.is_dir():
        raise UserError(f"{results_dir} is not a folder; give the folder `dlmark run --out` wrote")
    files = sorted(results_dir.glob("*.json"))
    if not files:
        raise UserError(f"no result files (*.json) in {results_dir}; run `dlmark run SUITE --out {results_dir}` first")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        data = load_results(results_dir)
    unreadable = [str(w.message) for w in caught if issubclass(w.category, UserWarning)]
    if data.empty:
        first = f" (e.g. {unreadable[0]})" if unreadable else ""
        raise UserError(f"none of the {len(files)} result files in {results_dir} holds a readable record{first}")
    return data, unreadable


# ------------------------------------------------------------------ formatting


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _number(value: Any, digits: int = 1) -> str:
    """A readable number for a table cell; the raw value goes to data-value for sorting."""
    if _missing(value):
        return ""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (int, float)):
        if float(value).is_integer() and abs(value) < 1e15:
            return f"{int(value):,}"
        return f"{value:,.{digits}f}"
    return str(value)


@dataclass
class Cell:
    text: str
    sort: str | None = None  # a number as text, so the table sorts 9 before 10
    css: str = ""


@dataclass
class Table:
    """A sortable HTML table; the template escapes every cell."""
    id: str
    headers: list[str]
    rows: list[list[Cell]]
    numeric: list[bool]


def _table(table_id: str, frame: pd.DataFrame, columns: list[tuple[str, str, int | None]]) -> Table:
    """``columns`` are (column, header, digits); digits None means text."""
    rows = []
    for record in frame.to_dict("records"):
        row = []
        for column, _, digits in columns:
            value = record.get(column)
            if digits is None:
                row.append(Cell("" if _missing(value) else str(value)))
            else:
                numeric = pd.to_numeric(pd.Series([value]), errors="coerce").iloc[0]
                row.append(Cell(_number(value, digits), None if _missing(numeric) else repr(float(numeric)),
                                "num"))
        rows.append(row)
    return Table(table_id, [header for _, header, _ in columns], rows,
                 [digits is not None for _, _, digits in columns])


def _ok(frame: pd.DataFrame, task: str) -> pd.DataFrame:
    rows = frame[(frame.get("task") == task) & (frame.get("status").fillna("ok") == "ok")]
    return rows.copy()


def _unique(frame: pd.DataFrame, column: str) -> list[str]:
    if column not in frame.columns:
        return []
    return [str(v) for v in dict.fromkeys(frame[column].dropna())]


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


def _accuracy_frames(thr: pd.DataFrame, acc: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """Per device, throughput joined with accuracy the way the seed notebook joins them.

    The seed plots at the accuracy records' batch size; when no throughput was
    measured at that size we take the largest batch size measured for all models.
    """
    accuracy = (acc.assign(accuracy=pd.to_numeric(acc["accuracy"], errors="coerce"))
                .groupby("model")["accuracy"].mean())
    frames = {}
    for device, rows in thr[thr["model"].isin(accuracy.index)].groupby("device", sort=False):
        wanted = set(pd.to_numeric(acc["batch_size"], errors="coerce").dropna()) if "batch_size" in acc else set()
        chosen = rows[rows["batch_size"].isin(wanted)]
        if chosen.empty:
            common = rows.groupby("batch_size")["model"].nunique()
            best = common[common == common.max()].index.max()
            chosen = rows[rows["batch_size"] == best]
        frames[str(device)] = chosen.drop(columns=["accuracy"], errors="ignore").join(accuracy, on="model")
    return frames


def _cnn_sections(data: pd.DataFrame) -> tuple[list[dict[str, Any]], list[Table]]:
    """The seed page's sections, in its order, each with figures and a table."""
    thr = _ok(data, "throughput")
    for column in ("batch_size", "throughput"):
        if column in thr.columns:
            thr[column] = pd.to_numeric(thr[column], errors="coerce")
    thr = thr.dropna(subset=[c for c in ("batch_size", "throughput") if c in thr.columns])
    if not thr.empty:
        from dlmark.backends.registry import label

        thr = thr.assign(runtime=[label(r) for r in thr.to_dict("records")], in_flight=in_flight_column(thr))
    largest = _ok(data, "max_batch_size")
    acc = _ok(data, "accuracy")
    devices = _unique(thr, "device")
    models = _unique(thr, "model")
    sections: list[dict[str, Any]] = []
    tables: list[Table] = []

    throughput_table = _table("throughput-table", thr.sort_values(["model", "device", "batch_size"]), [
        ("model", "model", None), ("device", "device", None), ("runtime", "runtime", None),
        ("precision", "precision", None), ("in_flight", "requests in flight", 0), ("layout", "layout", None),
        ("batch_size", "batch size", 0), ("throughput", "throughput (images/s)", 1),
        ("throughput_ci95_low", "95% CI low", 1), ("throughput_ci95_high", "95% CI high", 1),
        ("latency_ms_median", "latency median (ms)", 3), ("latency_ms_p90", "latency p90 (ms)", 3),
        ("device_mem", "device memory (MB)", 0), ("noisy", "noisy", 0)])
    sections.append({
        "id": "throughput", "title": "Throughput on various batch sizes",
        "text": "We feed a batch of b images to the network and time the forward pass, t; "
                "throughput is b/t (median over timed blocks). Marker area grows with device memory.",
        "figures": [_figure(f"Throughput against batch size on {device}",
                            # only the models measured there: merged folders rarely cover the same set
                            lambda d=device: plot.batch_size_vs_throughput_grid(
                                thr[thr["device"] == d], _unique(thr[thr["device"] == d], "model")))
                    for device in devices],
        "tables": [throughput_table]})
    sections.append({
        "id": "latency", "title": "Latency against throughput",
        "text": "Each point is a batch size: a larger batch buys throughput and costs latency.",
        "figures": [_figure(f"Latency against throughput on {device}",
                            lambda d=device: plot.latency_vs_throughput(thr[thr["device"] == d]))
                    for device in devices], "tables": []})
    sections.append({
        "id": "memory", "title": "Device memory",
        "text": "Memory grows linearly with the batch size. On a GPU, what tensors use (allocated) "
                "differs from what PyTorch's caching allocator holds (reserved) and from what the "
                "driver reports (NVML, the seed's nvidia-smi figure); on a CPU we show the worker's "
                "peak resident memory.",
        "figures": [_figure(f"Memory against batch size on {device}",
                            lambda d=device: plot.batch_size_vs_memory(thr[thr["device"] == d]))
                    for device in devices], "tables": []})

    efficient = thr[pd.to_numeric(thr.get("arithmetic_intensity", pd.Series(dtype=float)), errors="coerce") > 0] \
        if "arithmetic_intensity" in thr.columns else thr.iloc[0:0]
    limit_table = _table("limit-table", efficient.sort_values(["model", "device", "precision", "batch_size"]), [
        ("model", "model", None), ("device", "device", None), ("precision", "precision", None),
        ("batch_size", "batch size", 0), ("achieved_tflops", "achieved TFLOP/s", 2), ("mfu", "MFU", 3),
        ("peak_source", "peak from", None), ("arithmetic_intensity", "FLOP/byte", 1), ("bound", "bound", None),
        ("roofline_fraction", "of the roof", 3), ("avg_power_w", "power (W)", 0),
        ("energy_j_per_sample", "energy (J/image)", 4), ("throttled", "throttled", 0)])
    sections.append({
        "id": "limit", "title": "How close to the hardware's limit",
        "text": "Achieved TFLOP/s (the model's FLOPs per image times throughput) against arithmetic "
                "intensity (FLOPs per byte of estimated DRAM traffic), under the device's roof: memory "
                "bandwidth up to the ridge point, the precision's peak after it (`dlmark peak` when "
                "measured, else the datasheet). Left of the ridge a batch is memory-bound, right of it "
                "compute-bound. FLOPs are nominal: convolutions cuDNN runs by Winograd or FFT do fewer "
                "multiplications, so a point can sit above a measured matmul peak.",
        "figures": [_figure(f"Roofline on {device}", lambda d=device: plot.roofline(efficient[efficient["device"] == d]))
                    for device in _unique(efficient, "device")]
        or [Figure("Roofline", note="no records with FLOPs and peaks in these results "
                                    "(GPU records carry them; on a CPU run `dlmark peak --device cpu` first)")],
        "tables": [limit_table] if not efficient.empty else []})

    largest_table = _table("largest-batch-table", largest.sort_values(["model", "device"]) if not largest.empty
                           else largest, [
        ("model", "model", None), ("device", "device", None), ("batch_size", "largest batch", 0),
        ("first_failing_batch", "first failing batch", 0), ("capped", "hit the cap", 0),
        ("memory_limit_mb", "memory limit (MB)", 0), ("search_s", "search time (s)", 1)])
    sections.append({
        "id": "largest-batch", "title": "Largest batch size",
        "text": "The actual memory a network needs shows in the largest batch that runs, found "
                "exactly: a batch that ran next to one that did not (on CUDA the allocator's peaks "
                "choose which batches to try; each trial is in the record).",
        "figures": [_figure("Largest batch size", lambda: plot.max_batch_size(largest))] if not largest.empty
        else [Figure("Largest batch size", note="no largest-batch-size records in these results")],
        "tables": [largest_table] if not largest.empty else []})

    hardware_figures = ([_figure(f"{model} across devices",
                                 lambda m=model: plot.throughput_vs_device(thr[thr["model"] == m]))
                         for model in models] if len(devices) > 1 else
                        [Figure("Throughput on various hardware",
                                note="these results come from one device; copy the results folder of "
                                     "another machine into this one to compare")])
    sections.append({"id": "hardware", "title": "Throughput on various hardware",
                     "text": "Throughput of each model per device and batch size (log axis).",
                     "figures": hardware_figures, "tables": []})

    if not acc.empty and not thr.empty:
        frames = _accuracy_frames(thr, acc)
        figures = [_figure(f"Accuracy against throughput on {device}",
                           lambda f=frame: plot.throughput_vs_accuracy(f)) for device, frame in frames.items()]
        accuracy_table = _table("accuracy-table", acc.sort_values("model"), [
            ("model", "model", None), ("device", "device", None), ("accuracy", "top-1 accuracy", 4),
            ("accuracy_source", "measured or published", None), ("weights_tag", "weights", None),
            ("batch_size", "batch size", 0), ("source", "source", None)])
        tables_here = [accuracy_table]
    else:
        figures = [Figure("Accuracy against throughput", note="no accuracy records in these results")]
        tables_here = []
    unknown = data[(data.get("task") == "accuracy") & (data.get("status") == "unavailable")] \
        if "status" in data.columns and "task" in data.columns else data.iloc[0:0]
    left_out = "; ".join(f"{row['model']}: {row.get('error')}" for row in unknown.to_dict("records"))
    sections.append({
        "id": "accuracy", "title": "Prediction accuracy against throughput",
        "text": "Top-1 accuracy on the ILSVRC 2012 validation set against throughput; one colour per "
                "family. The dashed line joins the models no other model beats on both. A published "
                "figure belongs to the weights named beside it (torchvision's DEFAULT weights, e.g. "
                "ResNet50_Weights.IMAGENET1K_V2, not the original recipe)."
                + (f" Left out, no published figure known: {left_out}." if left_out else ""),
        "figures": figures, "tables": tables_here})
    sections.append(_serving_section(data))
    sections.extend(report_sections(data, _table, _figure))  # int8, the input pipeline
    for section in sections:
        tables.extend(section["tables"])
    return sections, tables


def _serving_section(data: pd.DataFrame) -> dict[str, Any]:
    """Per model and configuration: Offline, SingleStream p90, MultiStream p99 and the Server load
    within its bound, each with LoadGen's verdict; p99 against offered load per device."""
    from dlmark.analysis.serving import COLUMNS, serving_rows

    serving = data[data["task"] == "serving"] if "task" in data.columns else data.iloc[0:0]
    records = [{k: v for k, v in r.items() if not _missing(v)} for r in serving.to_dict("records")]
    rows = pd.DataFrame(serving_rows(records))
    text = ("Latency under load through MLPerf's LoadGen: it schedules the queries (Poisson arrivals for "
            "Server), times each from its scheduled issue, so queueing counts, and judges the run VALID or "
            "INVALID; a figure is never shown without that verdict. Server batches on the fly.")
    if rows.empty:
        return {"id": "serving", "title": "Serving", "text": text,
                "figures": [Figure("Serving", note="no serving records in these results (dlmark run --scenario ...)")],
                "tables": []}
    table = _table("serving-table", rows, [(key, header, None) for key, header in COLUMNS])
    figures = [_figure(f"Server latency against offered load on {device}",
                       lambda d=device: plot.latency_vs_load(serving[serving["device"] == d]))
               for device in _unique(serving, "device")]
    return {"id": "serving", "title": "Serving", "text": text, "figures": figures, "tables": [table]}


# ------------------------------------------------------------------ index


def _index_tables(data: pd.DataFrame, unreadable: list[str]) -> dict[str, Table]:
    status = data["status"].fillna("ok") if "status" in data else pd.Series("ok", index=data.index)
    frame = data.assign(_ok=status == "ok", _failed=status != "ok")
    for column in ("device", "host", "model", "family", "run_id", "suite", "timestamp", "params",
                   "flops_per_sample"):
        if column not in frame.columns:
            frame[column] = None

    devices = (frame.groupby(frame["device"].fillna("?"), sort=False)
               .agg(hosts=("host", lambda s: ", ".join(map(str, dict.fromkeys(s.dropna())))),
                    records=("_ok", "size"), ok=("_ok", "sum"), failed=("_failed", "sum"))
               .reset_index())
    networks = frame[frame["task"] != "peak"] if "task" in frame.columns else frame
    models = (networks.groupby(networks["model"].fillna("?"), sort=False)
              .agg(family=("family", "first"), params=("params", "max"), flops=("flops_per_sample", "max"),
                   records=("_ok", "size"), failed=("_failed", "sum"))
              .reset_index())
    models["params_m"] = pd.to_numeric(models["params"], errors="coerce") / 1e6
    models["gflops"] = pd.to_numeric(models["flops"], errors="coerce") / 1e9
    runs = (frame.groupby(frame["run_id"].fillna("(no run id)"), sort=False)
            .agg(suite=("suite", "first"),
                 hosts=("host", lambda s: ", ".join(map(str, dict.fromkeys(s.dropna())))),
                 devices=("device", lambda s: ", ".join(map(str, dict.fromkeys(s.dropna())))),
                 first=("timestamp", "min"), last=("timestamp", "max"),
                 records=("_ok", "size"), failed=("_failed", "sum"))
            .reset_index())

    env_columns = [f"env.{key}" for key in ENV_KEYS if f"env.{key}" in frame.columns]
    environment = (frame.sort_values("timestamp", na_position="first")
                   .groupby([frame["host"].fillna("?"), frame["device"].fillna("?")], sort=False)
                   [env_columns].last().reset_index(drop=True)) if env_columns else pd.DataFrame()
    failed = frame[frame["_failed"]]
    return {
        "devices": _table("devices-table", devices, [("device", "device", None), ("hosts", "hosts", None),
                                                     ("records", "records", 0), ("ok", "ok", 0),
                                                     ("failed", "failed", 0)]),
        "models": _table("models-table", models, [("model", "model", None), ("family", "family", None),
                                                  ("params_m", "parameters (M)", 1),
                                                  ("gflops", "GFLOPs per image", 2),
                                                  ("records", "records", 0), ("failed", "failed", 0)]),
        "runs": _table("runs-table", runs, [("run_id", "run", None), ("suite", "suite", None),
                                            ("hosts", "hosts", None), ("devices", "devices", None),
                                            ("first", "first record (UTC)", None),
                                            ("last", "last record (UTC)", None),
                                            ("records", "records", 0), ("failed", "failed", 0)]),
        "environment": _table("environment-table", environment,
                              [(c, c.removeprefix("env."), None) for c in env_columns]),
        "failed": _table("failed-table", failed, [("model", "model", None), ("device", "device", None),
                                                  ("task", "task", None), ("batch_size", "batch size", 0),
                                                  ("status", "status", None), ("error", "error", None)]),
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
    """Every record as one CSV row; lists and dicts (trials, block times) as JSON text;
    text that a spreadsheet would run as a formula (a model named ``=HYPERLINK(..)``) quoted."""
    frame = data.drop(columns=[c for c in ("_file",) if c in data.columns])
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


def build_site(results_dir: str | Path, site_dir: str | Path, pages: tuple[ExtraPage, ...] = ()) -> SiteSummary:
    """Build the static report of the results in ``results_dir`` into ``site_dir``, with any extra ``pages``.

    Raises ``UserError`` when the folder holds no readable record; unreadable
    files among readable ones are skipped and listed on the index page.
    """
    from bokeh.embed import components

    results_dir, site_dir = Path(results_dir), Path(site_dir)
    data, unreadable = _load(results_dir)
    site_dir.mkdir(parents=True, exist_ok=True)
    static_dir = site_dir / "static"
    static_dir.mkdir(exist_ok=True)
    scripts = _bokeh_files(static_dir)
    for asset in STATIC.iterdir():
        shutil.copyfile(asset, static_dir / asset.name)
    csv_path = site_dir / "data" / "results.csv"
    _csv(data, csv_path)

    sections, cnn_tables = _cnn_sections(data)
    drawn = [figure for section in sections for figure in section["figures"] if figure.model is not None]
    bokeh_script, divs = components([figure.model for figure in drawn]) if drawn else ("", [])
    for figure, div in zip(drawn, divs):
        figure.div = div

    # A `dlmark peak` record describes its device, not a model.
    networks = data[data["task"] != "peak"] if "task" in data.columns else data
    devices, models, runs = _unique(data, "device"), _unique(networks, "model"), _unique(data, "run_id")
    common = {"version": __version__, "results_dir": str(results_dir), "scripts": scripts,
              "built": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"), "records": len(data),
              "extra_pages": [(extra.file, extra.title) for extra in pages]}
    _render("index.html", site_dir / "index.html", page="index", tables=_index_tables(data, unreadable),
            devices=devices, models=models, runs=runs, unreadable=unreadable, **common)
    _render("cnn.html", site_dir / "cnn.html", page="cnn", sections=sections, bokeh_script=bokeh_script,
            **common)
    for extra in pages:
        extra.write(_render, site_dir, common)
    return SiteSummary(site_dir=site_dir, pages=[site_dir / "index.html", site_dir / "cnn.html"]
                       + [site_dir / extra.file for extra in pages],
                       csv=csv_path, records=len(data), devices=devices, models=models, runs=runs,
                       unreadable=unreadable)
