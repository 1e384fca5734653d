"""``dlmark plot KIND RESULTS -o FILE.png|FILE.html``: one figure of ``dlmark.plot`` in a file.

HTML is Bokeh's standalone file with its JavaScript inlined (it opens offline).
PNG goes through ``bokeh.io.export_png`` in Debian's headless Chromium, driven by
selenium and chromium-driver: the same renderer the report's browser test uses,
so a PNG shows exactly what the interactive figure shows. Registered by
``dlmark.cli`` through ``add_plot_command``.
"""
from __future__ import annotations

import argparse
import contextlib
import fnmatch
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Iterator

from dlmark.errors import UserError

#: Command-line name -> (dlmark.plot function, the task of the records it draws).
KINDS: dict[str, tuple[str, str]] = {
    "batch-size-vs-throughput": ("batch_size_vs_throughput", "throughput"),
    "batch-size-vs-memory": ("batch_size_vs_memory", "throughput"),
    "max-batch-size": ("max_batch_size", "max_batch_size"),
    "throughput-vs-device": ("throughput_vs_device", "throughput"),
    "throughput-vs-accuracy": ("throughput_vs_accuracy", "throughput"),
    "latency-vs-throughput": ("latency_vs_throughput", "throughput"),
    "roofline": ("roofline", "throughput"),
    "latency-vs-load": ("latency_vs_load", "serving"),
    "pipeline-stages": ("pipeline_stages", "pipeline"),
}

# The flags the report's browser test starts Chromium with: headless, no sandbox (root in CI
# containers), no GPU, and no network at all (the exported page has Bokeh inlined).
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--hide-scrollbars", "--window-size=1500,1200",
                  "--host-resolver-rules=MAP * ~NOTFOUND")
INSTALL_HINT = "apt-get install chromium chromium-driver"

#: Seconds Bokeh may take to load and lay out a figure: twenty is common on two busy cores.
RENDER_TIMEOUT_S = 90


def register(subparsers) -> None:
    """Add ``plot`` to the ``dlmark`` command's subparsers."""
    parser = subparsers.add_parser(
        "plot", help="write one figure (PNG or standalone HTML) from a results folder",
        description="Draw one of dlmark.plot's figures from a results folder into FILE.png "
                    "(through headless Chromium) or FILE.html (interactive, opens offline).")
    parser.add_argument("kind", choices=list(KINDS), help="which figure")
    parser.add_argument("results", help="results folder (or glob of result files) `dlmark run` wrote")
    parser.add_argument("-o", "--out", required=True, help="file to write: .png or .html")
    parser.add_argument("--model", default=None,
                        help="only these models: comma-separated names or globs ('ResNet*')")
    parser.add_argument("--device", default=None,
                        help="only these devices: comma-separated names or globs, matched against the "
                             "device name ('NVIDIA H200') or its spec ('cuda:0', 'cpu')")
    parser.add_argument("--precision", default=None, help="only these precisions, e.g. fp32,bf16")
    parser.add_argument("--scale", type=float, default=1.0,
                        help="PNG pixels per screen pixel (2 for print); ignored for HTML")
    parser.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from dlmark.records.load import require_results

    out = Path(args.out)
    suffix = out.suffix.lower()
    if suffix not in (".png", ".html"):
        raise UserError(f"-o {args.out}: give a file ending in .png or .html")
    if args.scale <= 0:
        raise UserError(f"--scale {args.scale:g}: give a positive number")
    data = select(require_results(args.results), models=_names(args.model),
                  devices=_names(args.device), precisions=_names(args.precision))
    fig = build_figure(args.kind, data)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".html":
        write_html(fig, out, title=f"dlmark: {args.kind}")
    else:
        write_png(fig, out, scale=args.scale)
    print(f"wrote {out}")
    return 0


def _names(option: str | None) -> list[str]:
    return [part.strip() for part in option.split(",") if part.strip()] if option else []


# --------------------------------------------------------------------------- data


def select(data, *, models: list[str], devices: list[str], precisions: list[str]):
    """The records the filters keep; a filter that keeps nothing says which values exist."""
    def matches(values, patterns) -> Any:
        text = values.fillna("").astype(str)
        return text.map(lambda value: any(fnmatch.fnmatchcase(value, p) for p in patterns))

    for option, patterns, columns in (("--model", models, ("model",)),
                                      ("--device", devices, ("device", "device_spec")),
                                      ("--precision", precisions, ("precision",))):
        if not patterns:
            continue
        present = [column for column in columns if column in data.columns]
        if not present:
            raise UserError(f"{option}: these results have no {columns[0]!r} column to filter on")
        keep = matches(data[present[0]], patterns)
        for column in present[1:]:
            keep |= matches(data[column], patterns)
        if not keep.any():
            have = sorted({str(v) for column in present for v in data[column].dropna().unique()})
            raise UserError(f"{option} {','.join(patterns)} matches no record; "
                            f"these results have: {', '.join(have) or 'none'}")
        if option == "--precision" and "task" in data.columns:
            keep |= data["task"] == "accuracy"  # accuracy records name no precision; keep them to join
        data = data[keep]
    return data


def build_figure(kind: str, data):
    """The Bokeh figure ``dlmark.plot`` draws for ``kind`` from these records."""
    from dlmark import plot

    function_name, task = KINDS[kind]
    draw: Callable = getattr(plot, function_name)
    if kind == "throughput-vs-accuracy":
        data = _with_accuracy(data)
    elif "task" in data.columns and not (data["task"] == task).any():
        tasks = ", ".join(sorted(data["task"].dropna().astype(str).unique())) or "none"
        hint = " (`dlmark run --task max-batch-size`)" if task == "max_batch_size" else ""
        raise UserError(f"{kind} draws {task} records{hint}; the selected records are: {tasks}")
    return draw(data)


def _with_accuracy(data):
    """Throughput joined with accuracy records by configuration, per device (``analysis.tradeoff``:
    an int8 point takes the accuracy of its own quantized model)."""
    import pandas as pd

    from dlmark.analysis.tradeoff import accuracy_frames

    if "accuracy" in data.columns and "task" in data.columns:
        frames = accuracy_frames(data)
        if frames:
            return pd.concat(frames.values(), ignore_index=True)
    raise UserError("throughput-vs-accuracy needs throughput and accuracy records of the same models "
                    "in the selection (accuracy records come from `dlmark run --task accuracy`)")


# --------------------------------------------------------------------------- files


def write_html(fig, path: Path, title: str) -> Path:
    """A standalone HTML file with BokehJS inlined, so it opens with no network."""
    from bokeh.embed import file_html
    from bokeh.resources import INLINE

    path.write_text(file_html(fig, resources=INLINE, title=title), encoding="utf-8")
    return path


def write_png(fig, path: Path, scale: float = 1.0) -> Path:
    """A PNG of the figure as headless Chromium renders it; ``scale`` 2 doubles the pixels."""
    from bokeh.io import export_png

    # Pan, zoom and hover mean nothing on paper: leave the toolbar out of the image.
    if hasattr(fig, "toolbar_location"):
        fig.toolbar_location = None
    with headless_chromium(scale) as driver:
        try:
            export_png(fig, filename=path, webdriver=driver, scale_factor=scale, timeout=RENDER_TIMEOUT_S)
        except RuntimeError as exc:  # Bokeh's "was not loaded in time"
            raise UserError(f"Chromium did not render the figure within {RENDER_TIMEOUT_S} s: {exc}") from exc
    return path


@contextlib.contextmanager
def headless_chromium(scale: float = 1.0) -> Iterator[Any]:
    """A selenium driver of Debian's chromium through chromium-driver, closed on exit.

    Bokeh would otherwise look for its own choice of browser (Firefox and geckodriver
    first); naming the binaries keeps PNG export to the two packages CI installs.
    """
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    chromedriver = shutil.which("chromedriver")
    if not (chromium and chromedriver):
        missing = " and ".join(name for name, found in (("chromium", chromium), ("chromedriver", chromedriver))
                               if not found)
        raise UserError(f"PNG export needs {missing} on PATH: {INSTALL_HINT} (or write .html)")
    try:
        from selenium import webdriver
        from selenium.common.exceptions import WebDriverException
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        raise UserError("PNG export needs selenium: pip install -e '.[png]' (or write .html)") from None
    with tempfile.TemporaryDirectory(prefix="dlmark-chromium-") as profile:
        options = webdriver.ChromeOptions()
        options.binary_location = chromium
        for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                     # export_png refuses a scale above the window's device pixel ratio.
                     f"--force-device-scale-factor={scale:g}"):
            options.add_argument(flag)
        try:
            driver = webdriver.Chrome(service=Service(chromedriver), options=options)
        except WebDriverException as exc:
            first_line = (exc.msg or str(exc)).strip().splitlines()[0] if (exc.msg or str(exc)).strip() else ""
            raise UserError(f"could not start headless Chromium through {chromedriver}: {first_line} "
                            f"(chromium and chromium-driver must be the same version: {INSTALL_HINT})") from None
        try:
            driver.set_page_load_timeout(RENDER_TIMEOUT_S)
            yield driver
        finally:
            driver.quit()
