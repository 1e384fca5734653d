"""Loading through the index: subfolders, shards beside a 2018 file, unique file names, resume, --force."""
import json
import os
import shutil
import warnings
from pathlib import Path

import pytest

from dlmark.records import schema, store as store_module
from dlmark.records.load import load_json_records, load_records, load_results, result_files
from dlmark.records.store import Store, file_name


def record(model="ResNet-v1-18", host="vm", batch_size=1, task="throughput", run_id="run-a",
           timestamp="2026-01-01T00:00:00+00:00", **extra):
    config = {"task": task, "source": "torchvision:x", "batch_size": batch_size, "device": "NVIDIA H200", "host": host}
    return schema.new_record(job_key=schema.job_key(config), task=task, model=model, device="NVIDIA H200",
                             host=host, batch_size=batch_size, throughput=100.0 * batch_size, status="ok",
                             run_id=run_id, timestamp=timestamp, env={"torch": "2.x"}, device_spec="cuda:0",
                             flops_per_sample=1.8e9, precision="fp32", block_times_s=[0.1, 0.2], **extra)


def test_a_folder_is_read_with_its_subfolders_but_not_the_index_or_loadgen_logs(tmp_path):
    Store(tmp_path, "cnn.py").write(record(batch_size=1))
    Store(tmp_path / "rt", "cnn.py").write(record(batch_size=2))  # runs/rt under runs/
    Store(tmp_path / "rt" / "deeper", "cnn.py").write(record(batch_size=4))
    (tmp_path / "loadgen").mkdir()
    (tmp_path / "loadgen" / "mlperf_log_detail.json").write_text("not a record")
    files = result_files(tmp_path)
    assert len(files) == 3 and all("loadgen" not in f.parts for f in files)
    df = load_results(tmp_path)
    assert sorted(df.batch_size) == [1, 2, 4]
    assert (tmp_path / "rt" / ".dlmark-index").is_dir()  # each folder keeps its own index
    # Warm: the index folders are not read as results.
    assert sorted(load_results(tmp_path).batch_size) == [1, 2, 4]
    assert not any(".dlmark-index" in f.parts for f in result_files(tmp_path))


def test_the_seeds_unsharded_name_reads_the_shards_and_the_2018_file_of_that_name(tmp_path, monkeypatch):
    Store(tmp_path, "cnn.py").write(record(task="max_batch_size", host="host-a", max_batch_size=900))
    Store(tmp_path, "cnn.py").write(record(task="max_batch_size", host="host-b", max_batch_size=300))
    old = [{"device": "Tesla V100-SXM2-16GB", "model": "AlexNet", "batch_size": 1024, "device_mem": 15000}]
    (tmp_path / "cnn.py__benchmark_largest_batch_size.json").write_text(json.dumps(old))
    monkeypatch.chdir(tmp_path)
    df = load_results("cnn.py__benchmark_largest_batch_size.json")
    assert sorted(df.host.fillna("2018")) == ["2018", "host-a", "host-b"]
    assert "AlexNet" in set(df.model)


def test_the_same_configuration_on_two_machines_named_vm_or_measured_twice_never_collides(tmp_path, monkeypatch):
    one = record(run_id="run-a")
    again = record(run_id="run-b")  # the same job key, measured again (resume of a failure, --force)
    assert one["job_key"] == again["job_key"]
    assert file_name(one, "cnn.py") != file_name(again, "cnn.py")
    name_here = file_name(one, "cnn.py")
    store_module.machine_fingerprint.cache_clear()
    other_id = tmp_path / "machine-id"
    other_id.write_text("0123456789abcdef0123456789abcdef\n")
    monkeypatch.setattr(store_module, "MACHINE_ID_FILES", (str(other_id),))
    try:
        name_there = file_name(one, "cnn.py")
    finally:
        monkeypatch.undo()
        store_module.machine_fingerprint.cache_clear()
    assert name_here != name_there  # both hosts are `vm`, the same run id even
    assert name_here.startswith("cnn.py__benchmark_throughput__vm__") and name_here.endswith(".json")
    # Merging by copy keeps both measurements.
    a, b, merged = tmp_path / "a", tmp_path / "b", tmp_path / "merged"
    Store(a, "cnn.py").write(one)
    Store(b, "cnn.py").write(again)
    merged.mkdir()
    for path in list(a.glob("*.json")) + list(b.glob("*.json")):
        shutil.copy2(path, merged / path.name)
    assert sorted(load_results(str(merged / "cnn.py__benchmark_throughput*json")).run_id) == ["run-a", "run-b"]


def test_resume_and_force_keep_the_newest_final_record_per_job(tmp_path):
    store = Store(tmp_path, "cnn.py")
    store.write(record(run_id="old", timestamp="2026-01-01T00:00:00+00:00", throughput_note="old"))
    store.write(record(run_id="new", timestamp="2026-02-01T00:00:00+00:00", throughput_note="new"))
    store.write(record(run_id="aaa-older", timestamp="2025-12-01T00:00:00+00:00", throughput_note="oldest"))
    done = store.finished_keys()
    assert list(done) == [record()["job_key"]]
    assert done[record()["job_key"]]["run_id"] == "new"  # the newest, not the last file by name
    from dlmark.plot import _latest

    frame = load_results(tmp_path)
    assert _latest(frame, ("model", "batch_size")).run_id.tolist() == ["new"]


def test_load_results_derives_and_loads_samples_on_request(tmp_path):
    Store(tmp_path, "cnn.py").write(record(batch_size=8))
    full = load_results(tmp_path)
    assert full.block_times_s.tolist() == [[0.1, 0.2]]
    assert full.achieved_tflops.tolist() == pytest.approx([800.0 * 1.8e9 / 1e12])
    assert full.mfu.notna().all()  # an H200 from the peak table
    light = load_results(tmp_path, with_samples=False)
    assert "block_times_s" not in light.columns and light.mfu.tolist() == full.mfu.tolist()


def test_load_records_through_the_index_gives_the_json_records_derived(tmp_path):
    store = Store(tmp_path, "cnn.py")
    for b in (1, 2):
        store.write(record(batch_size=b))
    store.write(dict(record(task="accuracy", batch_size=4, accuracy=0.7), batch_size=None))
    (tmp_path / "sub").mkdir()
    Store(tmp_path / "sub", "cnn.py").write(record(batch_size=16, extra_thing=None))
    from dlmark.analysis.efficiency import derive_records

    def seen(records):  # what `r.get` sees: a frame cannot tell a stored None from an absent field
        return sorted(({k: v for k, v in r.items() if v is not None} for r in records), key=lambda r: r["_file"])

    want = seen(derive_records(load_json_records(tmp_path)))
    for _ in range(2):  # a first build, then warm
        got = seen(load_records(tmp_path))
        assert got == want
    assert got[0]["env"] == {"torch": "2.x"}
    assert [type(r.get("batch_size")) for r in got if r["task"] == "throughput"] == [int] * 3  # not 1.0


def test_no_match_warns_and_gives_the_seed_columns(tmp_path):
    with pytest.warns(UserWarning, match="no result files match"):
        df = load_results(str(tmp_path / "nothing*.json"))
    assert df.empty and "throughput" in df.columns
    with pytest.warns(UserWarning, match="no result files match"):
        assert load_records(str(tmp_path / "nothing*.json")) == []


def test_deriving_over_the_input_columns_equals_deriving_over_the_whole_frame(tmp_path):
    """derive_frame hands efficiency.derive only the columns it reads: a field it starts reading must be added."""
    import pandas as pd

    from dlmark.analysis.efficiency import MEASURED, derive
    from dlmark.records.index import load_files
    from dlmark.records.load import derive_frame

    results = Path(__file__).resolve().parents[2] / "results" / "h200"  # GPU throughput records and a peak record
    for path in results.glob("*.json"):
        shutil.copy(path, tmp_path / path.name)
    frame = load_files(sorted(tmp_path.glob("*.json")), with_samples=True)
    assert (frame.task == "peak").any() and (frame.task == "throughput").any()
    whole = derive(frame)
    assert whole.mfu.notna().any() and (whole.peak_source == MEASURED).any()
    pd.testing.assert_frame_equal(derive_frame(frame), whole)
    # A record of a GPU without a peak record: the datasheet table.
    Store(tmp_path / "other", "cnn.py").write(record(batch_size=2))
    frame = load_files(sorted(tmp_path.glob("*.json")) + sorted((tmp_path / "other").glob("*.json")))
    pd.testing.assert_frame_equal(derive_frame(frame), derive(frame))


def test_load_results_gives_the_json_files_rows_in_their_order_for_folders_globs_and_lists(tmp_path, monkeypatch):
    """The selection without a Path per file keeps what the files name: the rows, their order (by path,
    a subfolder's files among the folder's), ``_file`` as the caller named it, the derived figures."""
    from dlmark.analysis.efficiency import derive
    from tests.records.test_index import assert_same, json_frame

    store = Store(tmp_path, "cnn.py")
    for b in (1, 2, 4):
        store.write(record(batch_size=b, model=f"Net-{b}"))
    (tmp_path / "aaa.json").write_text(json.dumps([{"model": "Old", "device": "V100", "batch_size": 8}, None]))
    (tmp_path / "zzz.json").write_text(json.dumps({"model": "Odd", "device": "V100", "batch_size": 16}))
    (tmp_path / "m").mkdir()  # sorts between aaa.json and zzz.json, and after the cnn.py__ files
    Store(tmp_path / "m", "cnn.py").write(record(batch_size=32, model="Sub"))
    monkeypatch.chdir(tmp_path)
    patterns = [str(tmp_path), "./", ".", "m", "./cnn.py__benchmark_throughput*json", str(tmp_path / "*.json"),
                [str(tmp_path / "m"), "zzz.json", "./aaa.json", str(tmp_path)], "m/*.json"]
    for pattern in patterns:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            want = derive(json_frame(pattern))
            for _ in range(2):  # a first build, then warm
                assert_same(load_results(pattern), want)
    assert load_results(".").model.tolist() == ["Old", "Net-1", "Net-2", "Net-4", "Sub", "Odd"]
