"""analysis.pipeline: the pipeline rows, the random-input figure they look up, and the bound of old records."""
import pytest

from dlmark.analysis.pipeline import bound, pipeline_rows
from dlmark.inputs.pipeline import name_bottleneck


def pipeline_record(**fields):
    record = dict(task="pipeline", status="ok", model="m", source="py:m", device="cpu-x", host="h",
                  backend="pytorch", compile_mode=None, precision="fp32", layout="nchw", threads=2, batch_size=8,
                  decoder="pil", data_workers=2, stage_decode_per_s=300.0, stage_transform_per_s=200.0,
                  stage_loader_per_s=120.0, stage_copy_per_s=None, stage_model_per_s=60.0, e2e_throughput=55.0,
                  bottleneck="model", bottleneck_per_s=60.0, e2e_of_bottleneck=0.9, e2e_of_model=0.9,
                  stages_overlap=True)
    record.update(fields)
    return record


def throughput_record(**fields):
    record = dict(task="throughput", status="ok", model="m", source="py:m", device="cpu-x", host="h",
                  backend="pytorch", compile_mode=None, precision="fp32", layout="nchw", threads=2, batch_size=8,
                  throughput=70.0, timestamp="2026-01-01T00:00:00")
    record.update(fields)
    return record


def test_random_input_comes_from_the_same_configuration_with_one_request_in_flight():
    reference = [throughput_record(),
                 throughput_record(batch_size=16, throughput=90.0),  # another batch size
                 throughput_record(in_flight=2, throughput=120.0),  # two requests at once
                 throughput_record(precision="bf16", throughput=150.0),
                 throughput_record(throughput=75.0, timestamp="2026-01-02T00:00:00"),  # measured again, later
                 throughput_record(status="oom", throughput=None, timestamp="2026-01-03T00:00:00")]
    row, = pipeline_rows([pipeline_record()], reference=reference)
    assert row["random_input_per_s"] == 75.0 and row["model_per_s"] == 60.0 and row["e2e_throughput"] == 55.0
    other, = pipeline_rows([pipeline_record(threads=1)], reference=reference)
    assert other["random_input_per_s"] is None  # no throughput record with one thread


def test_a_record_that_says_whether_stages_overlap_keeps_its_bound():
    record = pipeline_record(data_workers=0, stages_overlap=False, bottleneck="model", bottleneck_per_s=40.0,
                             e2e_of_bottleneck=1.05)
    assert bound(record) == ("model", 40.0, 1.05)
    assert pipeline_rows([record])[0]["stages"] == "in turn"


def test_an_older_record_in_one_process_gets_the_bound_of_stages_taking_turns():
    # Written before stages_overlap: it named the slowest stage (the model, 60/s) as the bound.
    old = pipeline_record(data_workers=0, stages_overlap=None)
    stage, per_s, ratio = bound(old)
    expected = 1 / (1 / 120.0 + 1 / 60.0)
    assert per_s == pytest.approx(expected) and stage == "model" and ratio == pytest.approx(55.0 / expected)
    assert (stage, per_s) == name_bottleneck({**old, "stages_overlap": None})
    # With workers the slowest stage bounds, as the record said.
    stage, per_s, _ = bound(pipeline_record(stages_overlap=None))
    assert (stage, per_s) == ("model", 60.0)
    assert [r["stages"] for r in pipeline_rows([old, pipeline_record(stages_overlap=None)])] == ["in turn", "overlap"]


def test_a_failed_pipeline_record_is_a_row_that_says_so():
    row, = pipeline_rows([pipeline_record(status="oom", e2e_throughput=None, stage_model_per_s=None)])
    assert row["status"] == "oom" and row["e2e_label"] is None and row["stages"] is None
