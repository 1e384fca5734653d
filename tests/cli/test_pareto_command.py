"""`dlmark pareto`: the exact frontier of a constructed result folder, and the constrained picks."""
from __future__ import annotations

import itertools

import pytest

from dlmark import cli
from dlmark.benchmark import load_results
from dlmark.errors import UserError
from dlmark.records.schema import new_record
from dlmark.records.store import Store
from dlmark.analysis.tradeoff import answer, tradeoff_table

GPU, OTHER = "NVIDIA H200", "NVIDIA L4"
_keys = itertools.count()

#: model -> images/s at batch 64 on the GPU, published top-1. By hand: B beats C (faster and more
#: accurate), D beats E (as accurate, faster), F beats G; A, B, D, F are the frontier.
MODELS = {"A": (1000.0, 0.60), "B": (800.0, 0.70), "C": (700.0, 0.65), "D": (500.0, 0.70),
          "E": (400.0, 0.76), "F": (300.0, 0.80), "G": (200.0, 0.79)}
FRONTIER = {"A", "B", "D", "F"}


def _record(task, model, device, batch_size, **fields):
    return new_record(job_key=f"k{next(_keys)}", task=task, model=model, family=model, device=device,
                      device_spec="cuda:0" if device != "cpu" else "cpu", batch_size=batch_size,
                      precision="fp32", layout="nchw", status=fields.pop("status", "ok"), host="h", **fields)


def _throughput(model, device, batch_size, images_per_s):
    return _record("throughput", model, device, batch_size, throughput=images_per_s,
                   latency_ms_median=1000.0 * batch_size / images_per_s)


def _accuracy(model, device, top1, source):
    return _record("accuracy", model, device, 64, accuracy=top1, top5=min(1.0, top1 + 0.15),
                   accuracy_source=source, accuracy_reference=f"{source} figure")


@pytest.fixture
def results(tmp_path):
    store = Store(tmp_path, "cnn.py")
    for model, (speed, top1) in MODELS.items():
        store.write(_throughput(model, GPU, 64, speed))
        store.write(_throughput(model, GPU, 1, speed / 20))
        store.write(_accuracy(model, GPU, top1, "published"))
    # Measured on this GPU beats the published figure: D really reaches 0.76, which makes E dominated.
    store.write(_accuracy("D", GPU, 0.76, "measured"))
    # A measurement on another device must not leak into this device's table.
    store.write(_accuracy("C", OTHER, 0.99, "measured"))
    store.write(_throughput("C", OTHER, 64, 100.0))
    # Fast but only at batch 32, and a model without any accuracy record, and a failed measurement.
    store.write(_throughput("Z", GPU, 32, 50000.0))
    store.write(_throughput("H", GPU, 64, 900.0))
    store.write(_record("throughput", "F", GPU, 64, status="oom", throughput=None))
    return tmp_path


def test_frontier_is_exactly_the_non_dominated_models(results):
    table = tradeoff_table(load_results(results), device=GPU, batch_size=64)
    assert set(table["model"]) == set(MODELS)
    assert list(table.attrs["no_accuracy"]) == ["H"]
    d = table[table.model == "D"].iloc[0]
    assert (d["accuracy"], d["accuracy_source"]) == (0.76, "measured")
    assert table[table.model == "C"].iloc[0]["accuracy"] == 0.65  # the other device's 0.99 is not used
    picked = answer(table)
    assert set(picked["frontier"]["model"]) == FRONTIER


def test_fastest_with_at_least_76_percent(results):
    table = tradeoff_table(load_results(results), device="h200", batch_size=64)
    picked = answer(table, min_accuracy=0.76)
    assert picked["fastest"]["model"] == "D" and picked["most_accurate"]["model"] == "F"
    within = answer(table, min_accuracy=0.76, max_latency_ms=150.0)  # D: 128 ms, F: 213 ms
    assert within["fastest"]["model"] == "D" and within["most_accurate"]["model"] == "D"
    assert answer(table, min_accuracy=0.76, max_latency_ms=100.0)["fastest"] is None


def test_cli_prints_the_frontier_and_the_answer(results, capsys):
    assert cli.main(["pareto", str(results), "--device", GPU, "--min-accuracy", "76"]) == 0
    out = capsys.readouterr().out
    table_part, _, answer_part = out.partition("fastest with")
    listed = {line.split()[0] for line in table_part.splitlines()[3:] if line.strip()}
    assert listed == FRONTIER
    assert answer_part.startswith(" top-1 >= 76.00%: D") and "500.0 img/s, 76.00% top-1 measured" in answer_part
    assert "most accurate with top-1 >= 76.00%: F" in out
    assert "left out: H (no accuracy record)" in out


def test_cli_lists_each_device_without_device_filter(results, capsys):
    assert cli.main(["pareto", str(results)]) == 0
    out = capsys.readouterr().out
    assert f"on {GPU}" in out and f"on {OTHER}" in out


def test_cli_errors_are_one_line(results, tmp_path, capsys):
    assert cli.main(["pareto", str(results), "--batch-size", "128"]) == 2
    assert "no throughput results at batch size 128" in capsys.readouterr().err
    assert cli.main(["pareto", str(tmp_path / "nowhere")]) == 2
    assert cli.main(["pareto", str(results), "--min-accuracy", "176"]) == 2
    with pytest.raises(UserError):
        tradeoff_table(load_results(results), device="TPU")
