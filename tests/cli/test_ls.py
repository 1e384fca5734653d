"""``dlmark ls`` over columns: the table it always printed, any column to filter and sort on, --limit; what it
shows of pipeline records (model alone beside end to end) and of int8 / in-flight records."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dlmark.cli import main
from dlmark.cli.ls import shown_columns
from dlmark.records.fields import BY_NAME
from dlmark.records import schema
from dlmark.records.store import Store

import synthetic_results as synthetic

RESULTS = Path(__file__).resolve().parents[2] / "results"


def listing_record_by_record(results, model=None, task=None, backend=None, status=None):
    """ls as it was: a dict per record, filtered, sorted and labelled in Python, then format_table."""
    from dlmark.backends.registry import label as runtime_label
    from dlmark.records.load import load_records
    from dlmark.report.tables import (
        agreement_label, format_table, in_flight_of, int8_label, serving_label, throughput_label,
    )

    rows = load_records(results, with_samples=False)
    for column, wanted in {"model": model, "task": task, "backend": backend, "status": status}.items():
        if wanted:
            choices = {w.lower() for w in wanted.split(",")}
            rows = [r for r in rows if str(r.get(column, "")).lower() in choices]
    rows.sort(key=lambda r: (str(r.get("model")), str(r.get("device")), str(r.get("task")),
                             str(r.get("precision")), r.get("batch_size") or 0))
    for r in rows:
        r["throughput_label"] = throughput_label(r)
        r["runtime"], r["agreement_label"] = runtime_label(r), agreement_label(r)
        r["int8_label"], r["in_flight_label"] = int8_label(r), in_flight_of(r)
        r["serving_label"] = serving_label(r)
    pipeline = sum(r.get("task") == "pipeline" for r in rows)
    note = f"; `--task pipeline` shows the {pipeline} pipeline record(s) stage by stage" if pipeline else ""
    return format_table(rows, shown_columns(rows)) + f"\n\n{len(rows)} record(s){note}\n"


def listed(capsys, *args):
    capsys.readouterr()
    assert main(["ls", *args]) == 0
    return capsys.readouterr().out


@pytest.fixture(scope="module")
def committed(tmp_path_factory):
    """The committed results (every task, runtime and device dlmark has measured), copied: the index is written beside them."""
    folder = tmp_path_factory.mktemp("results") / "results"
    shutil.copytree(RESULTS, folder, ignore=shutil.ignore_patterns(".dlmark-index"))
    return folder


def test_the_table_is_the_one_ls_printed_record_by_record(committed, capsys):
    assert listed(capsys, str(committed)) == listing_record_by_record(committed)
    for flags, kw in ((["--task", "throughput"], {"task": "throughput"}),
                      (["--backend", "onnxruntime,OpenVINO"], {"backend": "onnxruntime,OpenVINO"}),
                      (["--status", "ok", "--task", "max-batch-size"], {"status": "ok", "task": "max_batch_size"})):
        out = listed(capsys, str(committed / "*" / "*.json"), *flags)  # a glob over folders
        assert out == listing_record_by_record(str(committed / "*" / "*.json"), **kw), flags
        assert "record(s)" in out and len(out.splitlines()) > 4


def _record(i, **extra):
    config = {"task": "throughput", "model": f"net{i}", "batch_size": 2 ** (i % 5)}
    fields = dict(job_key=schema.job_key(config), task="throughput", model=f"Net-{i % 4}", device="NVIDIA H200",
                  host="vm", batch_size=2 ** (i % 5), status="ok", run_id=f"r{i}", device_spec="cuda:0",
                  precision=("fp32", "bf16")[i % 2], throughput=10.0 ** (i % 5) * 1.234, flops_per_sample=4e9,
                  throughput_ci95_low=10.0 ** (i % 5), throughput_ci95_high=10.0 ** (i % 5) * 1.5,
                  noisy=i % 3 == 0, env={"torch": f"2.{i % 3}"})
    fields.update(extra)
    return schema.new_record(**fields)


def test_filter_and_sort_on_any_column_before_formatting(tmp_path, capsys):
    store = Store(tmp_path, "cnn.py")
    for i in range(12):
        store.write(_record(i, backend=("pytorch", "onnxruntime", None)[i % 3]))
    store.write(_record(99, status="oom", throughput=None, throughput_ci95_low=None, throughput_ci95_high=None))
    whole = listed(capsys, str(tmp_path))
    assert whole == listing_record_by_record(tmp_path) and "13 record(s)" in whole

    def body(out):  # the table's rows, without headers and the count
        return out.splitlines()[2:-2]

    # Any stored, nested or derived column; numbers compare as numbers.
    out = listed(capsys, str(tmp_path), "--where", "env.torch=2.1", "--where", "batch_size>=4")
    rows = body(out)
    assert rows and "record(s)" in out
    picked = [_record(i) for i in range(12) if i % 3 == 1 and 2 ** (i % 5) >= 4]
    assert len(rows) == len(picked)
    out = listed(capsys, str(tmp_path), "--where", "batch_size=1,16", "--where", "status!=oom")
    assert len(body(out)) == sum(1 for i in range(12) if 2 ** (i % 5) in (1, 16))
    derived = listed(capsys, str(tmp_path), "--where", "mfu>0", "--sort=-mfu")
    assert len(body(derived)) == 12  # the oom record has no MFU
    # Sorting: by throughput descending, the largest first; --limit prints the first N and says of how many.
    top = body(listed(capsys, str(tmp_path), "--sort=-throughput", "--limit", "3"))
    assert len(top) == 3 and all("12,340 [" in line for line in top[:2]) and "1,234 [" in top[2]  # i = 4, 9; then 3, 8
    assert "3 of 13 record(s)" in listed(capsys, str(tmp_path), "--sort=-throughput", "--limit", "3")
    ascending = body(listed(capsys, str(tmp_path), "--sort", "throughput,model"))
    assert "1.23" in ascending[0] and ascending[-1].split()[0] == "Net-3"  # no throughput (oom): last
    assert listed(capsys, str(tmp_path), "--where", "model=nothing").strip() == "no results match"


@pytest.mark.parametrize("flags, message", [
    (["--where", "nonsense"], "write COLUMN=VALUES"),
    (["--where", "no_such_field=1"], "no column 'no_such_field'"),
    (["--sort=-no_such_field"], "no column 'no_such_field'"),
    (["--where", "throughput>fast"], "compares with a number"),
])
def test_a_bad_filter_or_sort_is_one_line_and_exit_2(tmp_path, capsys, flags, message):
    Store(tmp_path, "cnn.py").write(_record(1))
    capsys.readouterr()
    assert main(["ls", str(tmp_path), *flags]) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


# ------------------------------------------------------------------ pipeline, int8 and in-flight records

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


def test_serving_records_say_their_scenario_load_and_verdict(committed, capsys):
    out = listed(capsys, str(committed / "h200-serving-24"))
    header, rule, *rows = out.splitlines()[:-2]
    assert header.split()[-1] == "LoadGen"
    # One Server step of each search: offered load, batches in flight, LoadGen's verdict and p99.
    assert any(row.endswith("server at 23,815 QPS, 2 in flight: VALID (p99 11.51 ms)") for row in rows)
    assert any(row.endswith("server at 24,870 QPS, 2 in flight: INVALID (p99 24.09 ms)") for row in rows)
    assert any(row.endswith("server: 23,815 QPS within p99 15 ms") for row in rows)  # the search's answer
    assert any(row.endswith("offline, 2 in flight: VALID") for row in rows)
    assert all(row.endswith(" -") for row in rows if " throughput " in row)
    # A folder without serving records has no such column: the table ls always printed.
    assert "LoadGen" not in listed(capsys, str(committed / "h200-cnn-sweep-2"))
