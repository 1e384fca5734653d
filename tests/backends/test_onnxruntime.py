"""ONNX Runtime on CPU: records, the export cache, one export for every batch size, the missing extra."""
import sys

import numpy as np
import pytest

from dlmark.records import schema
from dlmark.backends import RunConfig, load
from dlmark.cli import main
from dlmark.errors import UserError
from tests.runtime_helpers import TINY, of, runtime_cache, sweep  # noqa: F401 -- runtime_cache is a fixture

#: Real worker processes and real runs: minutes on a loaded 2-core machine (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow

pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install -e '.[onnx]'")


def test_throughput_records_beside_pytorch(tmp_path, runtime_cache):
    code, rows = sweep(tmp_path / "r", "--models", TINY, "--batch-sizes", "1,3", "--backend", "pytorch,onnxruntime")
    assert code == 0
    ort_rows, torch_rows = of(rows, "onnxruntime"), of(rows, "pytorch")
    assert [r["batch_size"] for r in ort_rows] == [1, 3] and len(torch_rows) == 2
    for r in ort_rows:
        assert set(schema.COLUMNS) <= set(r)
        assert r["status"] == "ok" and r["throughput"] > 0 and r["latency_ms_median"] > 0
        assert r["compile_mode"] is None and r["layout"] == "nchw" and r["threads"] == 1
        assert r["ort_providers"] == ["CPUExecutionProvider"]
        assert r["ort_intra_op_threads"] == 1 and r["ort_graph_optimization_level"] == "ORT_ENABLE_ALL"
        assert r["onnx_opset"] >= 17 and r["onnx_exporter"] in ("dynamo", "torchscript")
        assert r["env"]["onnxruntime"] and r["backend_version"] == r["env"]["onnxruntime"]
        assert r["params"] == torch_rows[0]["params"] and r["peak_rss_mb"] > 0
        # Same weights, same input: the logits agree to float rounding.
        assert r["agreement_ok"] is True and r["agreement_top1"] == 1.0
        assert 0 <= r["agreement_max_rel"] < 1e-4
        assert "exported to ONNX" in r["agreement_method"]
    # The reference itself is not compared with itself.
    assert all(r.get("agreement_ok") is None for r in torch_rows)
    assert ort_rows[0]["job_key"] != torch_rows[0]["job_key"]


def test_one_cached_export_serves_every_batch_size(runtime_cache):
    runner = load("onnxruntime", TINY, RunConfig(threads=1))
    try:
        path = runner.path
        assert str(path).startswith(str(runtime_cache)) and path.suffix == ".onnx"
        for batch in (1, 5):
            out = runner.to_numpy(runner.run(runner.make_inputs(batch)))
            assert out.shape == (batch, 10)
        # Seeded inputs are the same array on every runtime.
        assert np.array_equal(runner.make_inputs(2, seed=3), load_inputs_like_pytorch(2, 3))
    finally:
        runner.close()
    mtime = path.stat().st_mtime_ns
    again = load("onnxruntime", TINY, RunConfig(threads=1))
    assert again.path == path and path.stat().st_mtime_ns == mtime  # a cache hit, not a new export
    again.close()


def load_inputs_like_pytorch(batch, seed):
    runner = load("pytorch", TINY, RunConfig(threads=1))
    return runner.make_inputs(batch, seed=seed).numpy()


def test_unsupported_configuration_is_a_user_error(runtime_cache):
    with pytest.raises(UserError, match="fp32"):
        load("onnxruntime", TINY, RunConfig(precision="bf16"))


def test_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime now fails
    code = main(["run", "quick", "--device", "cpu", "--models", TINY, "--backend", "onnxruntime",
                 "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1
    assert "pip install -e '.[onnx]'" in err and not (tmp_path / "r").exists() or not any((tmp_path / "r").iterdir())
    # The worker side says the same when the import itself fails.
    monkeypatch.delitem(sys.modules, "dlmark.backends.onnxruntime", raising=False)
    with pytest.raises(UserError, match=r"pip install -e '\.\[onnx\]'"):
        load("onnxruntime", TINY, RunConfig())
