"""MXNet Gluon in its own environment: a torch-free worker, weights copied from PyTorch, agreement,
and the one-line error when the environment is missing.

The environment is built on first use (``dlmark env create mxnet``: about a minute with a warm
pip cache) and reused afterwards; the tests skip, saying why, only when it cannot be built here.
"""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlmark.backends import envs
from dlmark.records import schema
from dlmark.records.load import load_records
from dlmark.cli import main
from tests.runtime_helpers import of, sweep

#: Real worker processes and real runs: minutes on a loaded 2-core machine (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow

SRC = str(Path(__file__).resolve().parents[2] / "src")


@pytest.fixture(scope="module")
def mxnet_python():
    if not envs.ready("mxnet"):
        try:
            envs.create("mxnet")
        except Exception as exc:  # noqa: BLE001 -- no index reachable, no wheel for this platform, ...
            pytest.skip(f"the MXNet environment cannot be built on this machine: {exc}")
    return str(envs.python_path("mxnet"))


def run_in(python, code):
    env = {**os.environ, "PYTHONPATH": SRC}
    done = subprocess.run([python, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.strip()


def test_the_worker_side_imports_no_torch(mxnet_python):
    out = run_in(mxnet_python, (
        "import sys, dlmark, dlmark.run.worker, dlmark.backends, dlmark.measure.timing, dlmark.measure.stats, "
        "dlmark.tasks.throughput, dlmark.tasks.max_batch_size, dlmark.backends.mxnet, numpy, mxnet\n"
        "print(sorted(m for m in ('torch', 'pandas', 'torchvision', 'bokeh') if m in sys.modules), "
        "numpy.__version__, mxnet.__version__)"))
    assert out == "[] 1.23.5 1.9.1"


def test_seeded_inputs_are_the_same_in_both_interpreters(mxnet_python):
    code = "from dlmark.backends import seeded_input; import hashlib; print(hashlib.sha256(seeded_input((2, 3, 8, 8), 5).tobytes()).hexdigest())"
    assert run_in(mxnet_python, code) == run_in(sys.executable, code)


def test_weight_mapping_checks_count_and_shapes(mxnet_python):
    out = run_in(mxnet_python, """
import mxnet as mx
from mxnet.gluon.model_zoo import vision
from dlmark.backends.mxnet import copy_weights
net = vision.get_model("squeezenet1.1"); net.initialize(); net(mx.nd.zeros((1, 3, 224, 224)))
arrays = [p.data().asnumpy() for p in net.collect_params().values()]
print(copy_weights(net, arrays[:-1], "squeezenet1.1", "t")[0])
print(copy_weights(net, [arrays[0].reshape(arrays[0].shape[0], -1)] + arrays[1:], "squeezenet1.1", "t")[0])
print(copy_weights(net, arrays, "squeezenet1.1", "t")[0])
""")
    assert out.split() == ["False", "False", "True"]


def test_throughput_and_agreement_beside_pytorch(tmp_path, mxnet_python, monkeypatch):
    monkeypatch.setenv("DLMARK_MXNET_PYTHON", mxnet_python)
    code, rows = sweep(tmp_path / "r", "--models", "SqueezeNet-1.1", "--batch-sizes", "1", "--backend", "pytorch,mxnet")
    assert code == 0
    (r,) = of(rows, "mxnet")
    assert set(schema.COLUMNS) <= set(r)
    assert r["status"] == "ok" and r["throughput"] > 0 and r["model"] == "SqueezeNet-1.1"
    assert r["env"]["mxnet"] == "1.9.1" and r["mx_gluon_model"] == "squeezenet1.1" and r["mx_omp_threads"] == 1
    assert r["params"] == of(rows, "pytorch")[0]["params"]
    assert r["agreement_ok"] is True and r["agreement_max_rel"] < 1e-4 and r["agreement_top1"] == 1.0
    assert "copied from torchvision:squeezenet1_1 into Gluon squeezenet1.1" in r["agreement_method"]


def test_missing_environment_is_one_line_naming_the_command(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLMARK_MXNET_PYTHON", str(tmp_path / "nowhere" / "python"))
    code = main(["run", "quick", "--device", "cpu", "--models", "AlexNet", "--backend", "mxnet",
                 "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "dlmark env create mxnet" in err


def test_serving_scenarios_run_in_the_mxnet_environment(tmp_path, mxnet_python, monkeypatch):
    """LoadGen in the MXNet worker: the sample library batches NDArrays (MXNetRunner.gather)."""
    has_loadgen = subprocess.run([mxnet_python, "-c", "import mlperf_loadgen"], capture_output=True).returncode == 0
    if not has_loadgen:
        pytest.skip("this MXNet environment was built before LoadGen joined it: dlmark env create mxnet --force")
    monkeypatch.setenv("DLMARK_MXNET_PYTHON", mxnet_python)
    out = tmp_path / "r"
    code = main(["run", "--models", "SqueezeNet-1.1", "--backend", "mxnet", "--device", "cpu", "--out", str(out),
                 "--scenario", "single-stream,offline", "--batch-sizes", "4", "--serving-min-time", "1",
                 "--serving-min-queries", "32", "--quiet"])
    assert code == 0
    records = {r["scenario"]: r for r in load_records(str(out)) if r.get("task") == "serving"}
    assert set(records) == {"single-stream", "offline"}
    for r in records.values():
        assert r["status"] == "ok" and r["backend"] == "mxnet" and isinstance(r["valid"], bool)
        assert r["latency_ms_p50"] > 0 and (out / r["log_summary"]).exists()
    assert records["offline"]["batch_size"] == 4 and records["offline"]["samples_per_s"] > 0
