"""dlmark ls: what it shows of pipeline records (model alone beside end to end) and of int8 / in-flight records."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dlmark.cli import main
from dlmark.records.fields import BY_NAME

import synthetic_results as synthetic

#: The H200's pipeline run (nvJPEG in one process, torchvision with 16 workers) and the throughput task beside it.
COMMITTED = Path(__file__).resolve().parents[2] / "results" / "h200-pipeline-1"


@pytest.fixture
def pipeline_results(tmp_path) -> Path:
    """A copy of the committed records, so that reading them writes no index into the tree."""
    folder = tmp_path / "h200-pipeline-1"
    folder.mkdir()
    for path in COMMITTED.glob("*.json"):
        shutil.copy(path, folder)
    return folder


def table(out: str) -> tuple[list[str], list[str]]:
    """(the header line, the data lines) of the first table ls printed."""
    lines = out.splitlines()
    body = []
    for line in lines[2:]:
        if not line.strip():
            break
        body.append(line)
    return lines[0], body


def test_pipeline_records_show_model_alone_random_input_and_end_to_end_side_by_side(pipeline_results, capsys):
    assert main(["ls", str(pipeline_results), "--task", "pipeline"]) == 0
    header, rows = table(capsys.readouterr().out)
    for column in ("model alone img/s", "random input img/s", "end to end img/s [95% CI]", "bottleneck",
                   "bound img/s", "stages", "decoder", "workers"):
        assert column in header
    assert len(rows) == 2
    nvjpeg, = (r for r in rows if " nvjpeg " in r)
    workers, = (r for r in rows if " torchvision " in r)
    # The throughput task's random-input figure of the same configuration (3,815), though --task left it out.
    assert "3,808" in nvjpeg and "3,815" in nvjpeg and "1,426 [1,370-1,486]" in nvjpeg
    # Written before stages_overlap: in one process the stages take turns, so the bound is
    # 1/(1/2,453 + 1/3,808) = 1,492, not the slowest stage's 2,453 the record stored.
    assert "in turn" in nvjpeg and "1,492" in nvjpeg and "2,453" not in nvjpeg and "transform" in nvjpeg
    assert "overlap" in workers and "2,516" in workers and "2,670 [2,213-3,237] noisy" in workers


def test_a_folder_of_pipeline_and_throughput_records_says_how_to_see_the_stages(pipeline_results, capsys):
    assert main(["ls", str(pipeline_results)]) == 0
    out = capsys.readouterr().out
    assert len(table(out)[1]) == 3 and "`--task pipeline` shows the 2 pipeline record(s)" in out


def test_no_random_input_figure_without_a_throughput_record_of_that_configuration(pipeline_results, capsys):
    for path in pipeline_results.glob("*benchmark_throughput*.json"):
        path.unlink()
    assert main(["ls", str(pipeline_results)]) == 0
    header, rows = table(capsys.readouterr().out)
    start = header.index("random input img/s")
    assert len(rows) == 2 and all(r[start:start + len("random input img/s")].strip() == "-" for r in rows)


@pytest.fixture
def int8_results(tmp_path) -> Path:
    folder = tmp_path / "int8"
    folder.mkdir()
    for batch in (1, 32):
        synthetic.write_record(folder, synthetic.throughput_record("SqueezeNet-1.1", synthetic.CPU, batch),
                               "throughput")
        for in_flight in (1, 2):
            synthetic.write_record(folder, synthetic.int8_record("SqueezeNet-1.1", "openvino", batch,
                                                                 in_flight=in_flight, int8_share=0.977,
                                                                 fallbacks=synthetic.OPENVINO_FALLBACKS),
                                   "throughput")
        synthetic.write_record(folder, synthetic.int8_record("SqueezeNet-1.1", "onnxruntime", batch,
                                                             fallbacks=["ReduceMean GlobalAveragePool"]),
                               "throughput")
    return folder


def test_the_int8_record_helper_uses_only_registered_fields():
    record = synthetic.int8_record("SqueezeNet-1.1", "openvino", 1, in_flight=2, fallbacks=["MaxPool pool1"])
    assert not [k for k in record if k not in BY_NAME and k != "env"]


def test_int8_records_show_their_share_of_flops_and_in_flight_variants_are_told_apart(int8_results, capsys):
    assert main(["ls", str(int8_results)]) == 0
    header, rows = table(capsys.readouterr().out)
    assert "int8 FLOPs" in header and "in flight" in header
    flight = header.index("in flight") + len("in flight")
    openvino = [r for r in rows if " openvino " in r]
    assert len(openvino) == 4 and all("97.7% (6 float ops)" in r for r in openvino)
    # Two records differing only in requests in flight are two different lines.
    assert sorted(r[:flight].split()[-1] for r in openvino) == ["1", "1", "2", "2"]
    assert len(set(openvino)) == 4
    onnxruntime = [r for r in rows if " onnxruntime " in r]
    assert len(onnxruntime) == 2 and all("100% (1 float op)" in r for r in onnxruntime)
    fp32 = [r for r in rows if " fp32 " in r]
    assert len(fp32) == 2 and not any("%" in r for r in fp32)


def test_fp32_records_alone_have_neither_int8_nor_in_flight_column(tmp_path, capsys):
    synthetic.write_record(tmp_path, synthetic.throughput_record("AlexNet", synthetic.CPU, 1), "throughput")
    synthetic.write_record(tmp_path, synthetic.int8_record("AlexNet", "openvino", 1), "throughput")
    assert main(["ls", str(tmp_path), "--precision", "fp32"]) == 0
    header, _ = table(capsys.readouterr().out)
    assert "int8" not in header and "in flight" not in header
    # int8 records with one request at a time: the share, no in-flight column.
    assert main(["ls", str(tmp_path)]) == 0
    header, _ = table(capsys.readouterr().out)
    assert "int8 FLOPs" in header and "in flight" not in header


def test_compare_tells_requests_in_flight_apart_and_hides_the_column_without_them(int8_results, tmp_path, capsys):
    assert main(["ls", str(int8_results), "--compare"]) == 0
    header, rows = table(capsys.readouterr().out)
    flight = header.index("in flight") + len("in flight")
    openvino = [r for r in rows if " openvino " in r]
    assert sorted(r[:flight].split()[-1] for r in openvino) == ["1", "1", "2", "2"]
    fp32 = tmp_path / "fp32"
    fp32.mkdir()
    synthetic.write_record(fp32, synthetic.throughput_record("AlexNet", synthetic.CPU, 1), "throughput")
    assert main(["ls", str(fp32), "--compare"]) == 0
    assert "in flight" not in table(capsys.readouterr().out)[0]
