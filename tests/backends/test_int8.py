"""int8 through the runtimes' own quantizers: exact operator accounts, agreement, the cache, missing extras."""
import sys

import numpy as np
import pytest

from dlmark.backends import int8, seeded_input
from dlmark.backends.precision_check import AGREEMENT_BATCH, AGREEMENT_SEED, compare_logits
from dlmark.errors import UserError
from tests.backends.onnx_models import conv_relu_conv_pool_gemm

ort = pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install -e '.[onnx]'")

# The tiny graph: x [N, 3, 8, 8] -> conv1 (4 x 3 x 3 x 3, pad 1) -> ReLU -> conv2 (8 x 4 x 3 x 3, pad 1)
# -> global average pool -> flatten -> fc (10 x 8). FLOPs per sample, 2 per multiply-add, biases not counted:
CONV1 = 2 * (4 * 8 * 8) * (3 * 3 * 3)  # 13824: 256 outputs, 27 products each
CONV2 = 2 * (8 * 8 * 8) * (4 * 3 * 3)  # 36864: 512 outputs, 36 products each
FC = 2 * 10 * 8  # 160


@pytest.fixture
def cache_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DLMARK_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture
def tiny_onnx(tmp_path):
    return conv_relu_conv_pool_gemm(tmp_path / "tiny.onnx")


def ort_outputs(path, x):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: x})[0]


@pytest.mark.slow
def test_ort_int8_account_of_a_tiny_model_is_exact(cache_dir, tiny_onnx):
    q = int8.quantize_onnx(tiny_onnx, (3, 8, 8), int8.Calibration(samples=8))
    account = int8.ort_int8_account(q.path, (3, 8, 8))
    # ReLU folds into conv1's requantization; conv1, conv2, the pool and fc run as QLinearConv x 2,
    # QLinearGlobalAveragePool and QGemm; one QuantizeLinear in, one DequantizeLinear out.
    kinds = {o["name"]: (o["type"], o["kind"]) for o in account["_ops"] if o["kind"] in ("int8", "float")}
    assert sorted(t for t, _ in kinds.values()) == ["QGemm", "QLinearConv", "QLinearConv", "QLinearGlobalAveragePool"]
    assert account["int8_ops"] == 4 and account["float_ops"] == 0 and account["quantize_ops"] == 2
    assert account["int8_flops_per_sample"] == CONV1 + CONV2 + FC and account["float_flops_per_sample"] == 0
    assert account["int8_flops_share"] == 1.0 and account["fallback_ops"] == []
    assert all(o["ran"] for o in account["_ops"])  # every operator of the graph ran in the profiled pass
    fields = int8.record_fields(q, account)
    assert set(int8.FIELDS) <= set(fields) and not any(k.startswith("_") for k in fields)
    # The runner's level only changes layouts: the same operators run in int8.
    at_all = int8.ort_int8_account(q.path, (3, 8, 8), level="ORT_ENABLE_ALL")
    assert (at_all["int8_ops"], at_all["float_ops"], at_all["int8_flops_share"]) == (4, 0, 1.0)

    # fc kept in float: it falls back, with exactly its FLOPs.
    kept = int8.quantize_onnx(tiny_onnx, (3, 8, 8), int8.Calibration(samples=8), int8.Scheme(exclude=("fc",)))
    account = int8.ort_int8_account(kept.path, (3, 8, 8))
    assert account["int8_ops"] == 3 and account["float_ops"] == 1 and account["fallback_ops"] == ["Gemm fc"]
    assert account["float_flops_per_sample"] == FC
    assert account["int8_flops_share"] == pytest.approx((CONV1 + CONV2) / (CONV1 + CONV2 + FC), rel=1e-12)
    assert "fc kept" not in kept.fields["quant_scheme"] and "1 nodes kept in float" in kept.fields["quant_scheme"]

    # The fp32 model: nothing in int8, every compute operator a float one.
    account = int8.ort_int8_account(tiny_onnx, (3, 8, 8))
    assert account["int8_ops"] == 0 and account["quantize_ops"] == 0 and account["int8_flops_share"] == 0.0
    assert account["float_flops_per_sample"] == CONV1 + CONV2 + FC
    # Largest first; ORT fuses the ReLU into conv1 (FusedConv).
    assert account["fallback_ops"] == ["Conv conv2", "FusedConv conv1", "Gemm fc", "GlobalAveragePool gap"]


@pytest.mark.slow
def test_broken_calibration_disagrees_and_a_proper_one_agrees(cache_dir, tmp_path):
    model = conv_relu_conv_pool_gemm(tmp_path / "m.onnx", channels=(3, 16, 32), size=16)
    x = seeded_input((AGREEMENT_BATCH, 3, 16, 16), AGREEMENT_SEED)
    reference = ort_outputs(model, x)
    results = {}
    for source in ("generated", "zeros"):
        q = int8.quantize_onnx(model, (3, 16, 16), int8.Calibration(samples=32, source=source))
        results[source] = compare_logits(reference, ort_outputs(q.path, x), int8.INT8_TOLERANCE, "int8 vs fp32")
        assert q.fields["calibration_source"] == source and q.fields["calibration_samples"] == 32
    assert results["generated"]["agreement_ok"] is True and results["generated"]["agreement_top1"] >= 0.75
    assert results["generated"]["agreement_max_rel"] < 0.1
    # All-zero calibration: every activation range collapses, the logits are off by order one.
    assert results["zeros"]["agreement_ok"] is False and results["zeros"]["agreement_max_rel"] > 0.5


@pytest.mark.slow
def test_quantized_files_are_cached_by_what_changes_them(cache_dir, tiny_onnx):
    first = int8.quantize_onnx(tiny_onnx, (3, 8, 8), int8.Calibration(samples=8))
    assert not first.cached and str(first.path).startswith(str(cache_dir / "onnx-int8"))
    mtime = first.path.stat().st_mtime_ns
    again = int8.quantize_onnx(tiny_onnx, (3, 8, 8), int8.Calibration(samples=8))
    assert again.cached and again.path == first.path and first.path.stat().st_mtime_ns == mtime
    assert again.fields == first.fields
    others = {int8.quantize_onnx(tiny_onnx, (3, 8, 8), cal, scheme).path for cal, scheme in [
        (int8.Calibration(samples=9), int8.Scheme()), (int8.Calibration(samples=8, seed=2), int8.Scheme()),
        (int8.Calibration(samples=8), int8.Scheme(per_channel=False))]}
    assert len(others) == 3 and first.path not in others
    # A different source model (other weights) is a different file, even under the same name.
    conv_relu_conv_pool_gemm(tiny_onnx, seed=1)
    assert int8.quantize_onnx(tiny_onnx, (3, 8, 8), int8.Calibration(samples=8)).path != first.path


def test_calibration_batches_are_the_stated_samples():
    cal = int8.Calibration(samples=10, batch_size=4, seed=3)
    batches = list(cal.batches((3, 2, 2)))
    assert [len(b) for b in batches] == [4, 4, 2]
    assert np.array_equal(np.concatenate(batches), np.concatenate(list(cal.batches((3, 2, 2)))))
    assert not np.array_equal(batches[0], batches[1])
    zeros = np.concatenate(list(int8.Calibration(samples=5, source="zeros").batches((3, 2, 2))))
    assert zeros.shape == (5, 3, 2, 2) and not zeros.any()
    images = np.arange(6 * 12, dtype=np.float32).reshape(6, 3, 2, 2)
    given = int8.Calibration(samples=6, batch_size=4, source="imagenet-val", arrays=images)
    assert np.array_equal(np.concatenate(list(given.batches((3, 2, 2)))), images)
    assert given.key()["data_sha256"] != int8.Calibration(samples=6, source="x", arrays=images + 1).key()["data_sha256"]
    with pytest.raises(UserError, match="needs its arrays"):
        int8.Calibration(source="imagenet-val")


@pytest.mark.parametrize("module, extra", [("onnxruntime", r"pip install -e '\.\[onnx\]'"),
                                           ("nncf", r"pip install -e '\.\[openvino\]'")])
def test_missing_quantizer_is_one_line_naming_the_extra(monkeypatch, tmp_path, module, extra):
    monkeypatch.setitem(sys.modules, module, None)  # importing it now fails
    for name in [m for m in sys.modules if m.startswith(module + ".")]:
        monkeypatch.setitem(sys.modules, name, None)
    call = (lambda: int8.quantize_onnx(tmp_path / "absent.onnx", (3, 8, 8))) if module == "onnxruntime" else \
        (lambda: int8.quantize_openvino(tmp_path / "absent.xml", (3, 8, 8)))
    with pytest.raises(UserError, match=extra) as caught:
        call()
    assert len(str(caught.value).splitlines()) == 1 and module in str(caught.value)


@pytest.mark.slow
def test_openvino_nncf_account_and_agreement(cache_dir, tmp_path):
    ov = pytest.importorskip("openvino")
    pytest.importorskip("nncf", reason="needs nncf: pip install -e '.[openvino]'")
    model = conv_relu_conv_pool_gemm(tmp_path / "m.onnx", channels=(3, 16, 32), size=16)
    xml = tmp_path / "m.xml"
    ov.save_model(ov.convert_model(str(model)), str(xml), compress_to_fp16=False)
    core = ov.Core()
    x = seeded_input((AGREEMENT_BATCH, 3, 16, 16), AGREEMENT_SEED)
    reference = ort_outputs(model, x)
    flops = 2 * (16 * 16 * 16) * (3 * 9) + 2 * (32 * 16 * 16) * (16 * 9) + 2 * 10 * 32

    fp32 = core.compile_model(str(xml), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    account = int8.openvino_int8_account(fp32)
    assert account["int8_ops"] == 0 and account["float_ops"] == 4 and account["float_flops_per_sample"] == flops

    q = int8.quantize_openvino(xml, (3, 16, 16), int8.Calibration(samples=32))
    assert q.fields["quantizer"].startswith("nncf ") and q.path.with_suffix(".bin").exists()
    compiled = core.compile_model(str(q.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
    account = int8.openvino_int8_account(compiled)
    # Both convolutions, the pool and the fully connected layer compute on 8-bit data; the input's
    # FakeQuantize is the one conversion.
    assert sorted(o["type"] for o in account["_ops"] if o["kind"] == "int8") == \
        ["Convolution", "Convolution", "FullyConnected", "Reduce"]
    assert account["float_ops"] == 0 and account["quantize_ops"] == 1
    assert account["int8_flops_per_sample"] == flops and account["int8_flops_share"] == 1.0
    good = compare_logits(reference, compiled({0: x})[0], int8.INT8_TOLERANCE, "nncf vs fp32")
    assert good["agreement_ok"] is True

    broken = int8.quantize_openvino(xml, (3, 16, 16), int8.Calibration(samples=32, source="zeros"))
    out = core.compile_model(str(broken.path), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})({0: x})[0]
    assert compare_logits(reference, out, int8.INT8_TOLERANCE, "nncf vs fp32")["agreement_ok"] is False
    assert int8.quantize_openvino(xml, (3, 16, 16), int8.Calibration(samples=32)).cached

