"""Output agreement: the comparison itself, a deliberately wrong runtime model flagged end to end,
'not comparable' never reported as agreement, and the flag in `dlmark ls`."""
import math

import numpy as np
import pytest

from dlmark.run import agreement, plan
from dlmark.backends import registry as runtimes
from dlmark import suites
from dlmark.models import zoo
from dlmark.backends import seeded_input
from dlmark.cli import main
from dlmark.run.options import RunOptions
from dlmark.measure.devices import cpu
from dlmark.errors import UserError
from tests.runtime_helpers import TINY, WRONG, of, runtime_cache, sweep  # noqa: F401 -- runtime_cache is a fixture


def logits(seed=0, shape=(8, 10)):
    return np.random.default_rng(seed).standard_normal(shape) * 5


def test_identical_and_rounded_logits_agree():
    ref = logits()
    same = agreement.compare(ref, ref.copy(), "fp32", "m")
    assert same["agreement_ok"] is True and same["agreement_max_abs"] == 0 and same["agreement_top1"] == 1.0
    rounded = agreement.compare(ref, ref.astype(np.float32).astype(np.float64) * (1 + 1e-6), "fp32", "m")
    assert rounded["agreement_ok"] is True and 0 < rounded["agreement_max_rel"] < 1e-5


def test_differences_beyond_the_precisions_tolerance_fail():
    ref = logits()
    off = ref + 0.02 * np.abs(ref).max()  # 2% of the logit scale
    assert agreement.compare(ref, off, "fp32", "m")["agreement_ok"] is False
    assert agreement.compare(ref, off, "fp16", "m")["agreement_ok"] is True  # fp16's tolerance is 5%
    assert agreement.compare(ref, off, "bf16", "m")["agreement_ok"] is True
    other = logits(seed=1)
    result = agreement.compare(ref, other, "bf16", "m")
    assert result["agreement_ok"] is False and result["agreement_top1"] < 0.5
    nan = ref.copy()
    nan[0, 0] = math.nan
    assert agreement.compare(ref, nan, "fp32", "m")["agreement_ok"] is False


def test_not_comparable_is_never_agreement():
    assert agreement.compare(logits(), logits(shape=(8, 11)), "fp32", "m")["agreement_ok"] is None
    group = plan.Group(task="throughput", model=zoo.get("AlexNet"), variant=plan.Variant(backend="mxnet"), jobs=[])

    class NoWorker:
        def request(self, *a, **k):
            raise AssertionError("a not-comparable runtime is not run for the check")

    class Lane:
        worker, device = NoWorker(), cpu()

    fields = agreement.check(group, Lane(), {"agreement_comparable": False,
                                             "agreement_via": "not comparable: shapes differ"})
    assert fields["agreement_ok"] is None and fields["agreement_method"] == "not comparable: shapes differ"
    # The reference itself is not compared, and a runner's own check is kept.
    reference = plan.Group(task="throughput", model=zoo.get("AlexNet"), variant=plan.Variant(), jobs=[])

    class AnsweringWorker:
        def request(self, message, timeout_s):
            assert message["op"] == "outputs"  # the reference leaves its logits for later variants
            return {"ok": False, "status": "error", "error": "no model here"}

    class ReferenceLane:
        worker, device = AnsweringWorker(), cpu()

    assert agreement.check(reference, ReferenceLane(), {}) == {}


def test_seeded_input_is_deterministic():
    a, b = seeded_input((2, 3, 4, 4), 7), seeded_input((2, 3, 4, 4), 7)
    assert a.dtype == np.float32 and np.array_equal(a, b) and not np.array_equal(a, seeded_input((2, 3, 4, 4), 8))


def test_runtime_names_expand_to_groups():
    assert runtimes.expand(["pytorch-compile"], [None]) == [("pytorch", ["default"])]
    assert runtimes.expand(["pytorch", "openvino-throughput", "onnxruntime"], [None]) == [
        ("pytorch", [None]), ("openvino", ["throughput"]), ("onnxruntime", [None])]
    with pytest.raises(UserError, match="unknown backend"):
        runtimes.expand(["tensorflow"], [None])
    options = RunOptions(suite=suites.load("quick"), models=[zoo.get("AlexNet")], tasks=["throughput"],
                              batch_sizes=[1], devices=[cpu()], layouts=["nchw", "channels_last"],
                              backends=["pytorch", "onnxruntime"])
    groups = plan.plan(options)
    # channels_last is PyTorch's memory format: the other runtime gets one group, not two.
    assert [(g.backend, g.layout) for g in groups] == [
        ("pytorch", "nchw"), ("pytorch", "channels_last"), ("onnxruntime", "nchw")]


@pytest.mark.slow
def test_a_deliberately_wrong_model_is_flagged(tmp_path, runtime_cache, capsys):
    pytest.importorskip("onnxruntime", reason="needs the onnx extra: pip install -e '.[onnx]'")
    out = tmp_path / "r"
    code, rows = sweep(out, "--models", f"{TINY},{WRONG}", "--batch-sizes", "1", "--backend", "pytorch,onnxruntime")
    assert code == 0
    good = of(rows, "onnxruntime", TINY)[0]
    bad = of(rows, "onnxruntime", WRONG)[0]
    assert good["agreement_ok"] is True
    # The exported graph computes -3x+1 of the eager logits: measured, kept, and flagged.
    assert bad["status"] == "ok" and bad["throughput"] > 0
    assert bad["agreement_ok"] is False and bad["agreement_max_rel"] > 1 and bad["agreement_top1"] < 1
    capsys.readouterr()
    assert main(["ls", str(out), "--backend", "onnxruntime"]) == 0
    table = capsys.readouterr().out
    lines = {line.split()[0]: line for line in table.splitlines() if line.startswith("py:")}
    assert "agrees" in table.splitlines()[0]
    assert lines[WRONG].rstrip().endswith("NO") and lines[TINY].rstrip().endswith("yes")
    assert main(["ls", str(out), "--compare"]) == 0
    compare = capsys.readouterr().out
    assert "x pytorch eager" in compare and "onnxruntime" in compare and " NO " in compare


def test_compare_divides_by_pytorch_eager_of_the_same_run():
    from dlmark.analysis import runtimes as compare

    def rec(backend, thr, run, mode=None, ok=None, noisy=False):
        return {"task": "throughput", "status": "ok", "model": "M", "device": "cpu", "batch_size": 1, "threads": 2,
                "backend": backend, "compile_mode": mode, "precision": "fp32", "layout": "nchw",
                "throughput": thr, "run_id": run, "timestamp": run, "agreement_ok": ok, "noisy": noisy,
                "agreement_method": None if ok is None else "m"}

    rows = compare.runtime_rows([rec("pytorch", 10.0, "a"), rec("pytorch", 20.0, "b"),
                                 rec("onnxruntime", 30.0, "a", ok=True), rec("openvino", 5.0, "b", "latency", ok=False),
                                 rec("pytorch", 40.0, "b", "default", ok=True, noisy=True)])
    speedups = {(r["runtime"], r["throughput"]): r["speedup"] for r in rows}
    assert speedups[("onnxruntime", 30.0)] == 3.0  # against run a's eager, not run b's
    assert speedups[("openvino", 5.0)] == 0.25 and speedups[("pytorch-compile:default", 40.0)] == 2.0
    table, names = compare.ratio_table([rec("pytorch", 10.0, "a"), rec("onnxruntime", 30.0, "a", ok=False)])
    assert names == ["pytorch", "onnxruntime"] and table[0]["onnxruntime"] == "3.00 (outputs differ)"
    assert table[0]["pytorch"] == "1.00"
