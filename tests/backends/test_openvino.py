"""OpenVINO on CPU: records with the performance hint and precision, both hints, the missing extra."""
import sys

import pytest

from dlmark.records import schema
from dlmark.backends import RunConfig, load
from dlmark.cli import main
from dlmark.errors import UserError
from tests.runtime_helpers import TINY, of, runtime_cache, sweep  # noqa: F401 -- runtime_cache is a fixture

#: Real worker processes and real runs: minutes on a loaded 2-core machine (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow

pytest.importorskip("openvino", reason="needs the openvino extra: pip install -e '.[openvino]'")


def test_throughput_records_under_both_hints(tmp_path, runtime_cache):
    code, rows = sweep(tmp_path / "r", "--models", TINY, "--batch-sizes", "1,2",
                       "--backend", "pytorch,openvino,openvino-throughput")
    assert code == 0
    ov_rows = of(rows, "openvino")
    assert len(ov_rows) == 4 and len(of(rows, "pytorch")) == 2
    hints = {}
    for r in ov_rows:
        assert set(schema.COLUMNS) <= set(r)
        assert r["status"] == "ok" and r["throughput"] > 0
        # fp32 stays fp32: OpenVINO would otherwise pick bf16 on CPUs that have it.
        assert r["ov_inference_precision"] == "f32" and r["ov_inference_threads"] == "1"
        assert r["env"]["openvino"] and r["peak_rss_mb"] > 0
        assert r["agreement_ok"] is True and r["agreement_max_rel"] < 1e-4 and r["agreement_top1"] == 1.0
        hints.setdefault(r["compile_mode"], set()).add(r["ov_performance_hint"])
    assert hints == {"latency": {"LATENCY"}, "throughput": {"THROUGHPUT"}}


def test_gpu_and_unknown_hints_are_user_errors(runtime_cache):
    with pytest.raises(UserError, match="CPU"):
        load("openvino", TINY, RunConfig(device="cuda:0"))
    with pytest.raises(UserError, match="latency or throughput"):
        load("openvino", TINY, RunConfig(compile_mode="max-autotune"))


def test_missing_extra_is_one_line_naming_it(tmp_path, monkeypatch, capsys):
    monkeypatch.setitem(sys.modules, "openvino", None)
    code = main(["run", "quick", "--device", "cpu", "--models", TINY, "--backend", "pytorch,openvino",
                 "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install -e '.[openvino]'" in err
    monkeypatch.delitem(sys.modules, "dlmark.backends.openvino", raising=False)
    with pytest.raises(UserError, match=r"pip install -e '\.\[openvino\]'"):
        load("openvino", TINY, RunConfig())
