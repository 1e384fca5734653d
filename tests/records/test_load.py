"""The store and load_results: atomic files, globs, shards, the 2018 format, bad files."""
import json
import os
import warnings

import pytest

from dlmark.records import schema
from dlmark.benchmark import load_results
from dlmark.errors import UserError
from dlmark.records.store import Store, file_name


def record(model="ResNet-v1-18", device="NVIDIA H200", host="a", batch_size=1, task="throughput", **extra):
    config = {"task": task, "source": "torchvision:x", "batch_size": batch_size, "device": device, "host": host}
    return schema.new_record(job_key=schema.job_key(config), task=task, model=model, device=device, host=host,
                              batch_size=batch_size, throughput=100.0 * batch_size, status="ok",
                              env={"torch": "2.x", "driver": "580"}, **extra)


def test_every_record_is_its_own_file_and_loads_back(tmp_path):
    store = Store(tmp_path, "cnn.py")
    for b in (1, 2, 4):
        store.write(record(batch_size=b))
    store.write(record(task="max_batch_size", batch_size=512))
    df = load_results(str(tmp_path / "cnn.py__benchmark_throughput*json"))
    assert sorted(df.batch_size) == [1, 2, 4]
    assert set(df.columns) >= {"model", "device", "batch_size", "throughput", "device_mem", "workload", "env.torch"}
    assert (df.workload == "Inference").all()
    assert not [p for p in tmp_path.glob(".*") if p.name != ".dlmark-index"]  # no temporary files left behind


def test_the_seeds_single_largest_batch_file_reads_all_machine_shards(tmp_path):
    a, b = Store(tmp_path, "cnn.py"), Store(tmp_path, "cnn.py")
    a.write(record(task="max_batch_size", host="host-a", device="NVIDIA H200", batch_size=900))
    b.write(record(task="max_batch_size", host="host-b", device="Tesla V100", batch_size=300))
    old = os.getcwd()
    os.chdir(tmp_path)
    try:
        df = load_results("cnn.py__benchmark_largest_batch_size.json")
    finally:
        os.chdir(old)
    assert sorted(df.device) == ["NVIDIA H200", "Tesla V100"]


def test_file_names_from_two_machines_never_collide():
    one = record(host="a", device="NVIDIA H200")
    two = record(host="b", device="NVIDIA H200")
    assert file_name(one, "cnn.py") != file_name(two, "cnn.py")
    assert file_name(one, "cnn.py").startswith("cnn.py__benchmark_throughput")
    assert file_name(record(task="accuracy"), "cnn.py").endswith("accuracy.json")


def test_reads_the_2018_format_with_null_holes(tmp_path):
    old = [{"device": "Tesla V100-SXM2-16GB", "model": "AlexNet", "batch_size": 64, "throughput": 4000.0,
            "device_mem": 1200, "workload": "Inference"}, None,
           {"device": "Tesla V100-SXM2-16GB", "model": "ResNet-v2-50", "batch_size": 64, "throughput": 900.0,
            "device_mem": 3000, "workload": "Inference"}]
    (tmp_path / "cnn.py__benchmark_throughput.json").write_text(json.dumps(old))
    df = load_results(str(tmp_path / "cnn.py__benchmark_throughput*json"))
    assert list(df.model) == ["AlexNet", "ResNet-v2-50"]
    assert (df.schema_version == schema.SCHEMA_VERSION).all()
    assert (df.status == "ok").all()
    assert list(df.family) == ["AlexNet", "ResNet-v2"]


def test_a_bad_file_is_named_and_skipped_and_hides_nothing(tmp_path):
    Store(tmp_path, "cnn.py").write(record())
    bad = tmp_path / "cnn.py__benchmark_throughput__broken.json"
    bad.write_text('{"model": "trunc')
    with pytest.warns(UserWarning, match="broken.json"):
        df = load_results(str(tmp_path / "*.json"))
    assert len(df) == 1


def test_a_record_from_a_newer_dlmark_is_refused_with_advice(tmp_path):
    newer = dict(record(), schema_version=schema.SCHEMA_VERSION + 1)
    (tmp_path / "x.json").write_text(json.dumps(newer))
    with pytest.raises(UserError, match="upgrade dlmark"):
        load_results(str(tmp_path / "x.json"))


def test_an_empty_glob_gives_an_empty_frame_with_the_seed_columns(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        df = load_results(str(tmp_path / "nothing*.json"))
    assert df.empty and "throughput" in df.columns


def test_a_rewrite_is_atomic_even_if_the_writer_dies(tmp_path, monkeypatch):
    store = Store(tmp_path, "cnn.py")
    path = store.write(record())
    before = path.read_text()

    def explode(*args, **kwargs):
        raise KeyboardInterrupt  # dies mid-write

    monkeypatch.setattr(json, "dump", explode)
    with pytest.raises(KeyboardInterrupt):
        store.write(record())
    assert path.read_text() == before
    assert not list(tmp_path.glob(".*.tmp"))


def test_every_field_a_record_carries_is_in_the_field_registry():
    """A field the registry does not know fails here: register it (records/fields.py) and regenerate the docs."""
    import glob
    import json

    from dlmark.records import fields

    unknown = {}
    for path in glob.glob("results/**/*.json", recursive=True):
        payload = json.load(open(path))
        for record in payload if isinstance(payload, list) else [payload]:
            if isinstance(record, dict):
                for name in fields.unknown_fields(record):
                    unknown.setdefault(name, path)
    assert not unknown
    assert fields.unknown_fields({"model": "m", "made_up_ms": 1.0}) == ["made_up_ms"]


def test_the_records_doc_tables_are_generated_from_the_registry():
    from pathlib import Path

    from dlmark.records import fields

    doc = Path("docs/records.md").read_text()
    assert fields.render_into(doc) == doc, "run: python -m dlmark.records.fields docs/records.md"
    for section in fields.sections():
        assert f"<!-- fields: {section} -->" in doc


def test_resume_recomputes_keys_written_under_another_key_scheme(tmp_path):
    from dlmark.records.store import Store

    store = Store(tmp_path, "quick.py")
    current = record()
    store.write(dict(current, job_key="written-by-an-old-scheme", job_key_scheme=0, status="ok"))
    assert list(store.finished_keys()) == [schema.job_key(current)]


def test_whole_numbers_of_the_environment_load_as_ints_beside_a_missing_value(tmp_path):
    # `dlmark compare --axis env.threads` printed "1.0 -> 2": one record had no env.threads.
    from dlmark.records.load import load_records

    for i, env in enumerate(({"threads": 1, "torch": "2.14.1"}, {"torch": "2.14.1"})):
        (tmp_path / f"r{i}.json").write_text(json.dumps({**record(batch_size=i + 1), "env": env}))
    threads = [r["env"].get("threads") for r in load_records(tmp_path)]
    assert sorted(threads, key=str) == [1, None] and all(isinstance(t, int) for t in threads if t is not None)


def test_load_columns_gives_load_results_columns_exactly(tmp_path):
    import pandas as pd

    from dlmark.records.load import load_columns

    for i, extra in enumerate([{}, {"noisy": True}, {"latency_ms_median": 3.5}, {"task": "serving"}]):
        Store(tmp_path, "cnn.py").write(record(model=f"m{i}", batch_size=i + 1, **extra))
    full = load_results(str(tmp_path), with_samples=False)
    some = load_columns(str(tmp_path), ["noisy", "model", "batch_size", "no_such_field", "latency_ms_median"])
    assert list(some.columns) == ["noisy", "model", "batch_size", "latency_ms_median"]
    pd.testing.assert_frame_equal(some, full[list(some.columns)])
    empty = load_columns(str(tmp_path / "none*.json"), ["model"])
    assert list(empty.columns) == list(load_results(str(tmp_path / "none*.json")).columns)
