"""The 2018 seed notebook (../shared/seed/cnn.md) runs unchanged on dlmark's results.

Its code cells are extracted verbatim, executed in order by a real Jupyter
kernel in a folder holding a real `dlmark run cnn` on this CPU merged with a
second device's records (copied in, as a team merges machines' folders), and
accuracy records at the batch size the seed's accuracy cell joins on.
"""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

import synthetic_results as synthetic

#: Real worker processes and real runs: minutes on a loaded 2-core machine (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow

SEED = Path(__file__).resolve().parents[1].parent / "shared" / "seed" / "cnn.md"
ACCURACY_BATCH_SIZE = 2  # a batch size the short real run measures


def seed_cells(text: str) -> list[str]:
    """The ``{.python .input n=...}`` code cells of a d2l-format markdown notebook, in order."""
    return [match.group(1) for match in
            re.finditer(r"^```\{\.python \.input\s+n=\d+\}\s*\n(.*?)^```\s*$", text, re.S | re.M)]


def test_cell_extractor_reads_d2l_cells():
    text = "intro\n```{.python .input  n=1}\nx = 1\n```\n\n```python\nnot a cell\n```\n" \
           "```{.python .input n=2}\nprint(x)\n```\n"
    assert seed_cells(text) == ["x = 1\n", "print(x)\n"]


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("seed-results")
    real = synthetic.real_cpu_results()
    for path in real.glob("*.json"):
        shutil.copy(path, folder)
    real_thr = synthetic.read_records(real, "cnn.py__benchmark_throughput*json")
    assert set(real_thr.model) == set(synthetic.REAL_MODELS) and (real_thr.status == "ok").all(), \
        "the short real run should measure both models"
    cpu_device = real_thr.device.iloc[0]
    # A second machine's folder copied in: the GPU records the seed page compared against.
    for model in synthetic.REAL_MODELS:
        for batch_size in synthetic.BATCH_SIZES:
            synthetic.write_record(folder, synthetic.throughput_record(model, synthetic.GPU, batch_size),
                                   "throughput")
        synthetic.write_record(folder, synthetic.max_batch_record(model, synthetic.GPU), "largest_batch_size")
    synthetic.published_accuracy_records(folder, cpu_device, ACCURACY_BATCH_SIZE)
    return folder


def execute(cells: list[str], folder: Path):
    """Run code cells in order in a fresh Jupyter kernel whose working folder is ``folder``."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    notebook = nbformat.v4.new_notebook()
    notebook.cells = [nbformat.v4.new_code_cell(source) for source in cells]
    client = nbclient.NotebookClient(notebook, timeout=300, kernel_name="python3",
                                     resources={"metadata": {"path": str(folder)}})
    client.execute()  # raises CellExecutionError with the traceback when a cell fails
    return notebook


def bokeh_shown(cell_outputs) -> bool:
    """Whether a cell handed BokehJS a document to render (what show() does in a notebook)."""
    return any(o.output_type == "display_data" and "application/vnd.bokehjs_exec.v0+json" in o.get("data", {})
               for o in cell_outputs)


@pytest.mark.slow
def test_seed_notebook_runs_unchanged_and_shows_every_plot(results):
    if not SEED.is_file():
        pytest.skip(f"the seed notebook is not at {SEED} (it lives in the shared folder beside the repo)")
    cells = seed_cells(SEED.read_text())
    assert len(cells) == 6, "the seed notebook has six code cells"
    notebook = execute(cells, results)

    outputs = [cell.outputs for cell in notebook.cells]
    models_and_devices = "".join(o.get("data", {}).get("text/plain", "") for o in outputs[0])
    assert "AlexNet" in models_and_devices and synthetic.GPU in models_and_devices
    # Cells 2-6 each show a Bokeh figure: BokehJS gets a document to render.
    for number, cell_outputs in enumerate(outputs[1:], start=2):
        assert bokeh_shown(cell_outputs), f"cell {number} showed no Bokeh figure"


@pytest.mark.slow
def test_seed_notebook_runs_unchanged_on_the_committed_h200_sweep(tmp_path):
    """The whole `cnn` suite measured on an H200 (results/h200-cnn-sweep-2): 19 models, one device."""
    if not SEED.is_file():
        pytest.skip(f"the seed notebook is not at {SEED} (it lives in the shared folder beside the repo)")
    sweep = Path(__file__).resolve().parents[1] / "results" / "h200-cnn-sweep-2"
    for path in sweep.glob("*.json"):
        shutil.copy(path, tmp_path)
    # The accuracy cell joins on device and batch size; published figures stand in for a validation set.
    synthetic.published_accuracy_records(tmp_path, "NVIDIA H200", 64)
    notebook = execute(seed_cells(SEED.read_text()), tmp_path)
    outputs = [cell.outputs for cell in notebook.cells]
    listed = "".join(o.get("data", {}).get("text/plain", "") for o in outputs[0])
    assert "NVIDIA H200" in listed and all(m in listed for m in ("AlexNet", "DenseNet-201", "VGG-19"))
    for number, cell_outputs in enumerate(outputs[1:], start=2):
        assert bokeh_shown(cell_outputs), f"cell {number} showed no Bokeh figure"


@pytest.mark.slow
def test_our_example_notebook_runs_on_the_same_results(results):
    example = Path(__file__).resolve().parents[1] / "examples" / "cnn.md"
    notebook = execute(seed_cells(example.read_text()), results)
    outputs = [cell.outputs for cell in notebook.cells]
    assert all(bokeh_shown(cell_outputs) for cell_outputs in outputs[1:-1])
    frontier = "".join(o.get("data", {}).get("text/plain", "") for o in outputs[-1])
    assert "AlexNet" in frontier  # the fastest network is always on the frontier
