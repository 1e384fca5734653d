"""``dlmark ls`` over columns: the table it always printed, any column to filter and sort on, --limit."""
from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from dlmark.cli import main
from dlmark.cli.ls import _COLUMNS
from dlmark.records import schema
from dlmark.records.store import Store

RESULTS = Path(__file__).resolve().parents[2] / "results"


def listing_record_by_record(results, model=None, task=None, backend=None, status=None):
    """ls as it was: a dict per record, filtered, sorted and labelled in Python, then format_table."""
    from dlmark.backends.registry import label as runtime_label
    from dlmark.records.load import load_records
    from dlmark.report.tables import agreement_label, format_table, throughput_label

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
    return format_table(rows, _COLUMNS) + f"\n\n{len(rows)} record(s)\n"


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
