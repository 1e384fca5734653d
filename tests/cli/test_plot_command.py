"""dlmark plot KIND RESULTS -o FILE.png|FILE.html: the files it writes, its filters, its errors."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from dlmark import cli
from dlmark.cli import plot as plot_cli
from dlmark.benchmark import load_results
from dlmark.errors import UserError

import synthetic_results as synthetic


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    return synthetic.write_results(tmp_path_factory.mktemp("results"), models=("AlexNet", "ResNet-v1-50"),
                                   xss=True)


def _browser_missing() -> str | None:
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (it is in the test extra)"
    if not ((shutil.which("chromium") or shutil.which("chromium-browser")) and shutil.which("chromedriver")):
        return "needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)"
    return None


@pytest.mark.slow
@pytest.mark.skipif(_browser_missing() is not None, reason=str(_browser_missing()))
def test_png_is_the_rendered_figure_at_the_requested_scale(results, tmp_path, capsys):
    from PIL import Image

    out = tmp_path / "figs" / "throughput.png"
    assert cli.main(["plot", "batch-size-vs-throughput", str(results), "-o", str(out),
                     "--device", "NVIDIA*", "--scale", "2"]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    with Image.open(out) as image:
        assert image.format == "PNG"
        pixels = np.asarray(image.convert("RGB"), dtype=float)
    height, width, _ = pixels.shape
    # The plot area is 600 x 360 CSS pixels; axes, title and legend add to it, and --scale 2 doubles all.
    assert 2 * 650 <= width <= 2 * 1100 and 2 * 400 <= height <= 2 * 520, (width, height)
    assert pixels.std() > 20, "the image is (nearly) one colour: nothing was drawn"
    # The first line is Bokeh's Category10 blue (#1f77b4): the data, not only axes, reached the image.
    blue = np.abs(pixels - np.array([31, 119, 180])).max(axis=2) < 40
    assert blue.sum() > 2000, f"only {blue.sum()} pixels of the first series' colour"


def test_html_is_standalone_and_shows_names_as_text(results, tmp_path):
    out = tmp_path / "largest.html"
    assert cli.main(["plot", "max-batch-size", str(results), "-o", str(out), "--model", "Res*,<script>*"]) == 0
    html = out.read_text()
    assert "Bokeh" in html and not re.search(r"<script[^>]+src=[\"']https?:", html), "BokehJS must be inlined"
    assert "ResNet-v1-50" in html and "AlexNet" not in html  # the --model filter
    assert synthetic.XSS_MODEL not in html  # present only escaped, as data


def test_filters_keep_the_matching_records_and_accuracy_for_the_join(results):
    data = load_results(results)
    by_spec = plot_cli.select(data, models=[], devices=["cpu"], precisions=[])
    assert set(by_spec["device"]) == {synthetic.CPU}  # --device matches the spec as well as the name
    kept = plot_cli.select(data, models=["Alex*"], devices=["NVIDIA*"], precisions=["fp32"])
    assert set(kept["model"]) == {"AlexNet"}
    assert set(kept["device"]) == {synthetic.GPU}
    assert "accuracy" in set(kept["task"])  # accuracy records name no precision; --precision keeps them
    fig = plot_cli.build_figure("throughput-vs-accuracy", kept)
    assert "Accuracy against throughput" in fig.title.text


@pytest.mark.parametrize("argv, message", [
    (["--model", "NoSuchNet"], "--model NoSuchNet matches no record; these results have: "),
    (["--precision", "fp8"], "--precision fp8 matches no record; these results have: fp32"),
    (["-o", "fig.svg"], "give a file ending in .png or .html"),
])
def test_mistakes_are_one_line_errors(results, tmp_path, capsys, argv, message):
    argv = ["plot", "max-batch-size", str(results), "-o", str(tmp_path / "fig.html"), *argv]
    assert cli.main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1, err


def test_wrong_records_for_the_kind_name_the_task(results, tmp_path):
    data = load_results(results)
    with pytest.raises(UserError, match="max-batch-size draws max_batch_size records"):
        plot_cli.build_figure("max-batch-size", data[data["task"] == "throughput"])


def test_png_without_chromium_says_what_to_install(results, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(plot_cli.shutil, "which", lambda name: None)
    assert cli.main(["plot", "max-batch-size", str(results), "-o", str(tmp_path / "fig.png")]) == 2
    err = capsys.readouterr().err
    assert "apt-get install chromium chromium-driver" in err and err.count("\n") == 1, err
    assert not (tmp_path / "fig.png").exists()


def test_pipeline_stages_writes_the_committed_h200_records_to_html(tmp_path, capsys):
    folder = tmp_path / "h200-pipeline-1"
    folder.mkdir()
    for path in (Path(__file__).resolve().parents[2] / "results" / "h200-pipeline-1").glob("*.json"):
        shutil.copy(path, folder)
    out = tmp_path / "stages.html"
    assert cli.main(["plot", "pipeline-stages", str(folder), "-o", str(out)]) == 0
    html = out.read_text()
    assert "nvjpeg, 0 workers" in html and "torchvision, 16 workers" in html and "bottleneck" in html
    # Records of another task only: the line names the task the figure draws.
    with pytest.raises(UserError, match="pipeline-stages draws pipeline records"):
        plot_cli.build_figure("pipeline-stages", load_results(folder).query("task == 'throughput'"))
