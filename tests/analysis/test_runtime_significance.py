"""``dlmark ls --compare`` says "same" the way ``dlmark compare`` does: one set of statistics for both."""
from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from dlmark.analysis.compare import compare
from dlmark.analysis.runtimes import COLUMNS, runtime_rows
from dlmark.records.load import load_records

RESULTS = Path(__file__).resolve().parents[2] / "results"


@pytest.fixture(scope="module")
def eager():
    """A committed PyTorch fp32 eager record with tight blocks."""
    recs = load_records(RESULTS / "h200-tune")
    r = next(r for r in recs if r.get("task") == "throughput" and r.get("status") == "ok" and not r.get("noisy")
             and (r.get("backend") or "pytorch") == "pytorch" and not r.get("compile_mode")
             and (r.get("precision") or "fp32") == "fp32" and (r.get("layout") or "nchw") == "nchw"
             and len(r.get("block_times_s") or []) >= 8)
    return copy.deepcopy(r)


def runtime(base, backend, time_factor, **changes):
    r = copy.deepcopy(base)
    r["backend"] = backend
    r["block_times_s"] = [t * time_factor for t in base["block_times_s"]]
    r["throughput"] = base["throughput"] / time_factor
    r.update(changes)
    return r


def test_speedups_carry_compares_verdict(eager):
    others = [runtime(eager, "onnxruntime", 1 / 1.10), runtime(eager, "openvino", 1.0),
              runtime(eager, "mxnet", 1 / 1.01), runtime(eager, "openvino-throughput", 1.0, noisy=True),
              runtime(eager, "tensorrt", 1.0, block_times_s=eager["block_times_s"][:3])]
    rows = {r["runtime"]: r for r in runtime_rows([eager] + others)}
    assert rows["pytorch"]["significance"] is None and rows["pytorch"]["speedup"] == 1.0
    assert rows["onnxruntime"]["significance"] == "faster"
    assert rows["onnxruntime"]["speedup"] == pytest.approx(1.10)
    assert rows["onnxruntime"]["speedup_ci_low"] <= 1.10 <= rows["onnxruntime"]["speedup_ci_high"]
    assert rows["openvino"]["significance"] == "same"
    assert rows["mxnet"]["significance"] == "same"  # 1%: below compare's 2% threshold
    assert rows["openvino-throughput"]["significance"] == "noisy"
    assert rows["tensorrt"]["significance"] == "too few blocks"
    # The same pairs through dlmark compare (the backend as the axis) get the same verdicts.
    for other in others:
        pair = compare([eager], [other], axis=["backend"]).pairs[0]
        assert (pair.verdict or pair.reason) == rows[other["backend"]]["significance"]
    assert ("significance", "vs eager") in COLUMNS
    assert rows["onnxruntime"]["speedup_label"].startswith("1.10 [")


def test_a_lower_threshold_calls_the_small_difference(eager):
    # 1% with tight blocks is significant; at 0.5% it is an effect worth naming.
    tight = dict(eager, block_times_s=[0.1 * (1 + 0.0005 * (i % 3)) for i in range(12)], iters_per_block=1)
    tight["throughput"] = tight["batch_size"] / 0.1
    other = runtime(tight, "onnxruntime", 1 / 1.01)
    rows = {r["runtime"]: r for r in runtime_rows([tight, other])}
    assert rows["onnxruntime"]["significance"] == "same"
    rows = {r["runtime"]: r for r in runtime_rows([tight, other], threshold=0.005)}
    assert rows["onnxruntime"]["significance"] == "faster"


def test_records_without_blocks_keep_their_ratio(eager):
    old = {k: v for k, v in eager.items() if k != "block_times_s"}
    rows = {r["runtime"]: r for r in runtime_rows([old, dict(runtime(eager, "onnxruntime", 0.5), block_times_s=None)])}
    assert rows["onnxruntime"]["speedup"] == pytest.approx(2.0)
    assert rows["onnxruntime"]["significance"] == "no samples" and rows["onnxruntime"]["speedup_ci_low"] is None
    assert json.dumps(rows["onnxruntime"]["speedup_label"]) == '"2.00"'


def test_eager_with_two_requests_in_flight_is_a_row_of_its_own_not_the_reference(eager):
    from dlmark.analysis.runtimes import ratio_table

    # Two requests at once, measured later: the newest eager record, yet not one request at a time.
    two = runtime(eager, "pytorch", 0.5, in_flight=2, extra_config={"in_flight": 2},
                  timestamp="9999-01-01T00:00:00+00:00")
    rows = runtime_rows([eager, two])
    assert [r["in_flight"] for r in rows] == [1, 2]
    assert rows[0]["speedup"] == 1.0 and rows[1]["speedup"] == pytest.approx(2.0)
    wide, names = ratio_table([eager, two])
    assert names == ["pytorch", "pytorch x2 in flight"] and wide[0]["pytorch x2 in flight"].startswith("2.00")
    assert float(wide[0]["pytorch img/s"]) == pytest.approx(eager["throughput"], rel=1e-2)
