"""int8 and requests in flight through `dlmark run`: records, job keys, and the mistakes caught before any work."""
import sys

import pytest

from dlmark.backends import RunConfig
from dlmark.cli import main
from dlmark.measure.devices import Device
from dlmark.models import zoo
from dlmark.records import schema
from dlmark.run.plan import Job, Variant
from tests.runtime_helpers import TINY, of, runtime_cache, sweep  # noqa: F401 -- runtime_cache is a fixture

CPU = Device("cpu", "cpu", "a CPU")


def test_in_flight_travels_to_the_worker_and_one_request_keeps_the_old_key():
    model = zoo.get(TINY)
    one, two = Variant(backend="onnxruntime"), Variant(backend="onnxruntime", in_flight=2)
    assert one.run_config(CPU) == RunConfig(device=CPU.worker_device) and two.run_config(CPU).in_flight == 2
    fields = Job("throughput", model, one, 4).config_fields(CPU, "h")
    # The key every folder written before --in-flight existed carries: the same fields, no in_flight.
    before = {"task": "throughput", "source": model.source_ref, "backend": "onnxruntime", "precision": "fp32",
              "layout": "nchw", "compile_mode": None, "threads": None, "batch_size": 4, "device": CPU.name,
              "host": "h", "extra_config": None, "device_spec": None, "input_shape": None}
    assert fields == before and Job("throughput", model, one, 4).key(CPU, "h") == schema.job_key(before)
    other = Job("throughput", model, two, 4).config_fields(CPU, "h")
    assert other["extra_config"] == {"in_flight": 2} and schema.job_key(other) != schema.job_key(before)
    assert "in-flight:2" in two.describe() and "in-flight" not in one.describe()


@pytest.mark.parametrize("args, says", [
    (["--backend", "onnxruntime", "--precision", "int8", "--device", "cuda"], "CPU-only"),
    (["--backend", "pytorch", "--precision", "int8", "--device", "cuda"], "CPU-only"),
    (["--backend", "mxnet", "--precision", "int8", "--device", "cpu"], "int8 runs on"),
    (["--backend", "onnxruntime", "--in-flight", "auto", "--device", "cpu"], "give onnxruntime a number"),
    (["--backend", "mxnet", "--in-flight", "2", "--device", "cpu"], "--in-flight runs on"),
    (["--backend", "openvino", "--in-flight", "0", "--device", "cpu"], "positive number"),
    (["--backend", "openvino", "--in-flight", "2", "--task", "max-batch-size", "--device", "cpu"], "throughput task"),
])
def test_requests_no_runtime_can_serve_are_one_line_before_any_work(tmp_path, capsys, monkeypatch, args, says):
    from dlmark.measure import devices

    # A GPU as device lookup would report one, so that the int8 check, not the lookup, answers.
    gpu = Device("cuda:0", "cuda", "a GPU", index=0)
    resolve = devices.resolve
    monkeypatch.setattr(devices, "resolve", lambda spec: [gpu] if spec == "cuda" else resolve(spec))
    out = tmp_path / "r"
    code = main(["run", "quick", "--models", TINY, "--out", str(out), "--quiet", *args])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and says in err, err
    assert not out.exists()


def test_a_missing_nncf_is_one_line_naming_the_extra(tmp_path, monkeypatch, capsys):
    pytest.importorskip("openvino")
    monkeypatch.setitem(sys.modules, "nncf", None)  # find_spec now fails as for a missing package
    code = main(["run", "quick", "--device", "cpu", "--models", TINY, "--backend", "openvino", "--precision", "int8",
                 "--out", str(tmp_path / "r"), "--quiet"])
    err = capsys.readouterr().err.strip()
    assert code == 2 and len(err.splitlines()) == 1 and "pip install -e '.[openvino]'" in err, err


@pytest.mark.slow
def test_onnxruntime_int8_with_one_and_two_requests_in_flight(tmp_path, runtime_cache):
    pytest.importorskip("onnxruntime")
    code, rows = sweep(tmp_path / "r", "--models", TINY, "--batch-sizes", "1", "--backend", "onnxruntime",
                       "--precision", "int8", "--in-flight", "1,2")
    assert code == 0
    rows = of(rows, "onnxruntime")
    assert [r["status"] for r in rows] == ["ok", "ok"] and len({r["job_key"] for r in rows}) == 2
    for r in rows:
        assert r["precision"] == "int8" and r["quantizer"].startswith("onnxruntime.quantization")
        # TinyNet: two convolutions and the head in int8; the global pool (ReduceMean) stays in float.
        assert r["int8_ops"] >= 3 and r["int8_flops_share"] == 1.0 and r["calibration_samples"] == 32
        assert r["agreement_ok"] is True and r["agreement_top1"] >= 0.75 and "quantized by" in r["agreement_method"]
    one = next(r for r in rows if r["extra_config"] is None)
    two = next(r for r in rows if r["extra_config"] == {"in_flight": 2})
    assert one.get("in_flight") is None and one["block_times_s"]
    assert two["in_flight"] == 2 and two["streams"] == 2 and two["threads_per_request"] == 1
    assert two["throughput"] > 0 and two["requests_counted"] == sum(two["requests_per_lane"]) > 0
    assert two["latency_ms_p90"] >= two["latency_ms_median"] > 0 and two["peak_rss_mb"] > 0
    assert not any(k.startswith("_") for k in two if k != "_file")  # the raw request times stay in the worker


@pytest.mark.slow
def test_openvino_in_flight_records(tmp_path, runtime_cache):
    pytest.importorskip("openvino")
    code, rows = sweep(tmp_path / "r", "--models", TINY, "--batch-sizes", "1,2", "--backend", "openvino-throughput",
                       "--in-flight", "2")
    assert code == 0
    rows = of(rows, "openvino")
    assert [r["batch_size"] for r in rows] == [1, 2] and all(r["status"] == "ok" for r in rows)
    for r in rows:
        assert r["in_flight"] == 2 and r["in_flight_api"] == "openvino AsyncInferQueue"
        assert r["ov_performance_hint"] == "THROUGHPUT" and r["streams"] >= 1 and r["throughput"] > 0
        assert r["agreement_ok"] is True  # the check runs on the runner's own synchronous request
