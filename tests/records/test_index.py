"""The columnar index: exactly the JSON files' rows, kept current, safe under kill -9 and concurrent use."""
import json
import math
import os
import random
import shutil
import signal
import subprocess
import sys
import textwrap
import time
import warnings
from pathlib import Path

import pytest

from dlmark.records import schema as records
from dlmark.records.load import load_json_records
from dlmark.errors import UserError
from dlmark.records import fastjson
from dlmark.records import index as ix
from dlmark.records.store import Store

SRC = Path(ix.__file__).resolve().parents[2]


def record(i, task="throughput", host="a", **extra):
    model = f"Net-{i % 7}-{i}"
    config = {"task": task, "source": f"timm:net{i}", "batch_size": 2 ** (i % 6), "device": "NVIDIA H200",
              "host": host, "extra_config": i}
    fields = dict(job_key=records.job_key(config), task=task, model=model, family=records.family_of(model),
                  device="NVIDIA H200", host=host, batch_size=2 ** (i % 6), status="ok", run_id=f"r{i % 3}",
                  env={"torch": "2.x", "driver": "580", "gpu_count": 1, "cuda": None if i % 4 else "12.8"})
    if task == "throughput":
        fields.update(throughput=100.0 * i + 0.5, input_shape=[3, 224, 224], noisy=bool(i % 2),
                      block_times_s=[0.01 * (k + 1) for k in range(5 + i % 4)], iters_per_block=10 + i,
                      throttle_reasons_before=[] if i % 3 else ["sw_power_cap"])
        if i % 5 == 0:
            fields.update(status="oom", throughput=None, error="CUDA out of memory", noisy=None)
    elif task == "max_batch_size":
        fields.update(max_batch_size=512 + i, capped=False,
                      trials=[{"batch_size": 2 ** k, "status": "ok", "seconds": 0.1 * k} for k in range(3)])
    fields.update(extra)
    return records.new_record(**fields)


def write_folder(folder, n=24, host="a"):
    store = Store(folder, "cnn.py")
    paths = []
    for i in range(n):
        task = ("throughput", "throughput", "max_batch_size", "accuracy")[i % 4]
        extra = {"accuracy": 0.7 + i / 1000} if task == "accuracy" else {}
        paths.append(store.write(record(i, task=task, host=host, **extra)))
    return paths


def write_2018(folder):
    old = [{"device": "Tesla V100-SXM2-16GB", "model": "AlexNet", "batch_size": 64, "throughput": 4000.0,
            "device_mem": 1200, "workload": "Inference"}, None,
           {"device": "Tesla V100-SXM2-16GB", "model": "ResNet-v2-50", "batch_size": 64, "throughput": 900.0,
            "device_mem": 3000, "workload": "Inference"}]
    path = folder / "cnn.py__benchmark_throughput.json"
    path.write_text(json.dumps(old))
    return path


def assert_same(got, want):
    """Field for field: column order, dtypes, values (None and NaN told apart, ints not floats)."""
    assert list(got.columns) == list(want.columns)
    assert len(got) == len(want)
    for column in want.columns:
        assert got[column].dtype == want[column].dtype, column
        for a, b in zip(got[column].tolist(), want[column].tolist()):
            nan = isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b)
            assert nan or (type(a) is type(b) and a == b), (column, a, b)


def json_frame(pattern):
    """The reader of the JSON files before the index (load_results' frame, not derived)."""
    import pandas as pd

    records = load_json_records(pattern)
    if not records:
        return pd.DataFrame(columns=ix.EMPTY_COLUMNS)
    flat = []
    for record in records:
        row = {k: v for k, v in record.items() if k != "env"}
        for key, value in (record.get("env") or {}).items():
            row[f"env.{key}"] = value
        flat.append(row)
    return pd.DataFrame(flat)


def reference(pattern, samples=True):
    """The JSON files read directly, the truth the index must reproduce."""
    df = json_frame(pattern)
    return df if samples else df.drop(columns=[c for c in ix.SAMPLE_FIELDS if c in df.columns])


def quiet(fn, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return fn(*args, **kwargs)


def test_fresh_records_and_2018_files_load_exactly_as_the_json_reads(tmp_path):
    write_folder(tmp_path)
    write_2018(tmp_path)
    first = ix.load_index(tmp_path, with_samples=True)
    assert ix.index_stats(tmp_path)["files"] == 25
    assert_same(first, reference(tmp_path))
    assert_same(ix.load_index(tmp_path, with_samples=True), reference(tmp_path))  # warm, from the index
    assert_same(ix.load_index(tmp_path), reference(tmp_path, samples=False))
    assert {"env.torch", "env.cuda", "input_shape", "_file"} <= set(first.columns)
    assert "block_times_s" not in ix.load_index(tmp_path).columns
    some = ix.load_index(tmp_path, columns=["model", "block_times_s", "nope"])
    assert list(some.columns) == ["model", "block_times_s"]
    assert_same(some, reference(tmp_path)[["model", "block_times_s"]])
    # A glob's files, exactly: the index of the folder serves a subset.
    pattern = str(tmp_path / "cnn.py__benchmark_throughput*json")
    chosen = sorted(tmp_path.glob("cnn.py__benchmark_throughput*json"))
    assert_same(ix.load_index(tmp_path, files=chosen, with_samples=True), reference(pattern))


def test_deleted_rewritten_copied_and_truncated_files(tmp_path):
    folder, other = tmp_path / "r", tmp_path / "elsewhere"
    paths = write_folder(folder)
    ix.load_index(folder)
    segments = ix.index_stats(folder)["segments"]

    paths[3].unlink()
    assert_same(ix.load_index(folder, with_samples=True), reference(folder))

    rewritten = Store(folder, "cnn.py").write(record(5, throughput=123456.0))  # resume / --force
    assert rewritten == paths[5]
    got = ix.load_index(folder, with_samples=True)
    assert_same(got, reference(folder))
    assert got.loc[got._file == str(paths[5]), "throughput"].tolist() == [123456.0]

    # Copied in from another machine the way `cp -p` does: an old modification time.
    [copied] = write_folder(other, n=1, host="machine-b")
    target = folder / copied.name
    shutil.copy2(copied, target)
    os.utime(target, ns=(1_000_000_000, 1_000_000_000))
    got = ix.load_index(folder, with_samples=True)
    assert_same(got, reference(folder))
    assert "machine-b" in set(got.host)

    # Truncated in place: named in a warning, skipped, and its old rows not kept.
    victim = paths[6]
    text = victim.read_text()
    victim.write_text(text[: len(text) // 2])
    with pytest.warns(UserWarning, match=victim.name):
        got = ix.load_index(folder, with_samples=True)
    with pytest.warns(UserWarning, match=victim.name):
        want = reference(folder)
    assert_same(got, want)
    assert str(victim) not in set(got._file)
    with pytest.warns(UserWarning, match=victim.name):  # still named on a warm load
        ix.load_index(folder)
    assert ix.index_stats(folder)["segments"] >= segments  # updated by new segments, not rebuilt in place


def test_a_rewrite_of_the_same_size_and_mtime_right_after_indexing_is_seen(tmp_path):
    [path] = write_folder(tmp_path, n=1)
    ix.load_index(tmp_path)  # indexed within RACY_NS of its write: re-read next time
    st = path.stat()
    data = json.loads(path.read_text())
    data["model"] = data["model"][:-1] + ("X" if data["model"][-1] != "X" else "Y")
    path.write_text(json.dumps(data, indent=1) + "\n")
    with open(path, "r+") as f:  # the same size as before
        f.truncate(st.st_size)
        f.seek(0, 2)
        f.write(" " * (st.st_size - f.tell()))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))
    assert path.stat().st_size == st.st_size and path.stat().st_mtime_ns == st.st_mtime_ns
    assert ix.load_index(tmp_path).model.tolist() == [data["model"]]


def test_files_of_several_folders_keep_the_given_order(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    write_folder(a, n=6)
    write_folder(b, n=5, host="b")
    files = sorted(b.glob("*.json")) + sorted(a.glob("*.json"))
    want = reference([str(b / "*.json"), str(a / "*.json")])
    assert_same(ix.load_files(files, with_samples=True), want)
    with pytest.raises(ValueError, match="load_files"):
        ix.load_index(a, files=files)


def test_a_corrupt_or_foreign_index_is_rebuilt_not_trusted(tmp_path, monkeypatch):
    write_folder(tmp_path)
    want = reference(tmp_path)
    ix.load_index(tmp_path)
    index_dir = tmp_path / ix.INDEX_DIR
    [segment] = list(index_dir.glob("seg-*.parquet"))
    data = bytearray(segment.read_bytes())
    rng = random.Random(1)
    for k in range(len(data) // 3, len(data) // 3 + 64):
        data[k] = rng.randrange(256)
    segment.write_bytes(bytes(data))
    assert_same(ix.load_index(tmp_path, with_samples=True), want)
    assert not segment.exists() and ix.index_stats(tmp_path)["valid"]

    (index_dir / ix.MANIFEST).write_bytes(b"\x00garbage" * 100)
    assert not ix.index_stats(tmp_path)["valid"]
    assert_same(ix.load_index(tmp_path, with_samples=True), want)
    assert ix.index_stats(tmp_path)["valid"]

    before = set(index_dir.glob("seg-*"))
    monkeypatch.setattr(ix, "INDEX_FORMAT", ix.INDEX_FORMAT + 1)
    assert_same(ix.load_index(tmp_path, with_samples=True), want)
    assert not before & set(index_dir.glob("seg-*"))  # another format: rebuilt from the JSON


def test_without_the_lock_a_loader_reads_the_json_and_writes_nothing(tmp_path, monkeypatch):
    import fcntl

    paths = write_folder(tmp_path)
    ix.load_index(tmp_path)
    manifest = (tmp_path / ix.INDEX_DIR / ix.MANIFEST).read_bytes()
    paths[0].unlink()
    Store(tmp_path, "cnn.py").write(record(99))
    monkeypatch.setattr(ix, "LOCK_WAIT_S", 0.1)
    fd = os.open(tmp_path / ix.INDEX_DIR / ix.LOCK, os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # another process updating
    try:
        assert_same(ix.load_index(tmp_path, with_samples=True), reference(tmp_path))
    finally:
        os.close(fd)
    assert (tmp_path / ix.INDEX_DIR / ix.MANIFEST).read_bytes() == manifest


def test_a_record_from_a_newer_dlmark_is_refused(tmp_path):
    write_folder(tmp_path, n=2)
    newer = dict(record(50), schema_version=records.SCHEMA_VERSION + 1)
    (tmp_path / "x.json").write_text(json.dumps(newer))
    with pytest.raises(UserError, match="upgrade dlmark"):
        ix.load_index(tmp_path)


def test_an_empty_folder_gives_the_seed_columns(tmp_path):
    df = ix.load_index(tmp_path)
    assert df.empty and list(df.columns) == list(quiet(json_frame, str(tmp_path / "*.json")).columns)


def test_segments_are_compacted_and_debris_collected(tmp_path, monkeypatch):
    monkeypatch.setattr(ix, "MAX_SEGMENTS", 4)
    store = Store(tmp_path, "cnn.py")
    for i in range(10):
        store.write(record(i))
        (tmp_path / ix.INDEX_DIR).mkdir(exist_ok=True)
        (tmp_path / ix.INDEX_DIR / f".seg-dead{i}.parquet.x.tmp").write_bytes(b"half")  # a killed writer's
        assert_same(ix.load_index(tmp_path, with_samples=True), reference(tmp_path))
        assert ix.index_stats(tmp_path)["segments"] <= 4
    assert not list((tmp_path / ix.INDEX_DIR).glob(".*.tmp"))


def _python(code: str, *args) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(SRC) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code), *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
def test_kill_9_during_an_index_update_leaves_a_folder_that_loads(tmp_path):
    paths = write_folder(tmp_path, n=800)
    rng = random.Random(7)
    store = Store(tmp_path, "cnn.py")
    updater = """
        import sys, warnings
        from dlmark.records import index as ix
        print("go", flush=True)
        while True:
            ix.rebuild(sys.argv[1])
    """
    for round_ in range(4):
        proc = _python(updater, tmp_path)
        assert proc.stdout.readline().strip() == "go"
        time.sleep(rng.uniform(0.1, 1.2))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        # Change the folder between kills: the next load must see it.
        paths[round_].unlink()
        store.write(record(2000 + round_))
        assert_same(ix.load_index(tmp_path, with_samples=True), reference(tmp_path))
        assert not list((tmp_path / ix.INDEX_DIR).glob(".*.tmp"))


@pytest.mark.slow
def test_two_writers_and_a_reader_at_once_lose_nothing(tmp_path):
    writer = """
        import sys
        from dlmark.records import schema as records
        from dlmark.records.store import Store
        store = Store(sys.argv[1], "cnn.py")
        host = sys.argv[2]
        for i in range(int(sys.argv[3])):
            config = {"task": "throughput", "host": host, "batch_size": i}
            store.write(records.new_record(job_key=records.job_key(config), task="throughput", model=f"M-{i}",
                                           device="cpu", host=host, batch_size=i, throughput=float(i),
                                           status="ok", env={"torch": "2.x"}, block_times_s=[0.1] * 20))
            from dlmark.records import index as ix
            if i % 25 == 0:
                ix.load_index(sys.argv[1])  # writers read too, as `dlmark run` resuming does
    """
    reader = """
        import sys, time, warnings
        from dlmark.records import index as ix
        seen = 0
        deadline = time.time() + 120
        while time.time() < deadline:
            with warnings.catch_warnings():
                warnings.simplefilter("error")  # an unreadable file or index is a failure here
                n = len(ix.load_index(sys.argv[1]))
            assert n >= seen, (n, seen)  # records are only added: a load never loses one
            seen = n
            if n == int(sys.argv[2]):
                break
        print(seen)
    """
    per_writer = 100
    procs = [_python(writer, tmp_path, host, per_writer) for host in ("host-a", "host-b")]
    read = _python(reader, tmp_path, 2 * per_writer)
    for proc in procs + [read]:
        out, err = proc.communicate(timeout=180)
        assert proc.returncode == 0, err
    assert int(out.strip()) == 2 * per_writer
    final = ix.load_index(tmp_path, with_samples=True)
    assert len(final) == 2 * per_writer
    assert_same(final, reference(tmp_path))
    assert ix.index_stats(tmp_path)["files"] == 2 * per_writer


@pytest.mark.slow
def test_the_scale_benchmark_runs_at_a_small_size(tmp_path):
    """``make test`` runs scripts/scale_bench.py at 300 records: its table row is complete and its figures sane."""
    done = subprocess.run([sys.executable, str(SRC.parent / "scripts" / "scale_bench.py"), "--sizes", "300",
                           "--work", str(tmp_path), "--ls"], capture_output=True, text=True, timeout=300,
                          env=dict(os.environ, PYTHONPATH=str(SRC)))
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("|")]
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    row = dict(zip(header, (c.strip() for c in lines[2].strip("|").split("|"))))
    assert len(lines) == 3 and len(row) == len(header) and row["records"] == "300", done.stdout
    assert f"dlmark from {SRC}" in done.stdout  # the dlmark measured is the one on PYTHONPATH
    seconds = {k: float(v) for k, v in row.items() if k.endswith(" s")}
    assert all(0 < v < 120 for v in seconds.values()), row  # every step timed, none hung
    # The ratio is of the unrounded times; the row shows them rounded, to the last digit printed.
    half = {k: 0.5 * 10.0 ** -len(row[k].partition(".")[2]) for k in ("warm load s", "json loop s")}
    warm, loop = seconds["warm load s"], seconds["json loop s"]
    low = max(warm - half["warm load s"], 0.0) / (loop + half["json loop s"])
    high = (warm + half["warm load s"]) / max(loop - half["json loop s"], 1e-9)
    assert low * 0.99 <= float(row["warm / loop"]) <= high * 1.01, row
    assert float(row["index MB"]) > 0 and float(row["json MB"]) > 0
    assert not list(tmp_path.glob("records-*"))  # the synthetic folder is deleted unless --keep


def test_every_row_gets_its_own_lists_and_dicts_as_json_load_gives(tmp_path):
    """Equal nested values (the same trials, shapes, configs in many files) are decoded once but never shared."""
    store = Store(tmp_path, "cnn.py")
    for i in range(3):
        store.write(record(i * 4 + 2, task="max_batch_size", input_shape=[3, 224, 224], extra_config={"a": 1},
                           trials=[{"batch_size": 2, "status": "ok"}, {"batch_size": 4, "status": "oom"}]))
    for _ in range(2):  # first build, then warm
        df = ix.load_index(tmp_path, with_samples=True)
        assert df.trials.tolist() == [[{"batch_size": 2, "status": "ok"}, {"batch_size": 4, "status": "oom"}]] * 3
        for column in ("trials", "input_shape", "extra_config"):
            a, b = df[column].iloc[0], df[column].iloc[1]
            assert a == b and a is not b, column
        assert df.trials.iloc[0][0] is not df.trials.iloc[1][0]


def test_a_big_build_parses_in_worker_processes_and_gives_the_same_rows(tmp_path, monkeypatch):
    """Past PARALLEL_FROM files a build's batches are parsed by `records.segment_worker` processes:
    the same rows, the same warnings about unreadable files, a newer record still refused."""
    write_folder(tmp_path, n=30)
    write_2018(tmp_path)
    (tmp_path / "cnn.py__benchmark_throughput__broken.json").write_text('{"model": "cut off')
    monkeypatch.setattr(ix, "PARALLEL_FROM", 10)
    monkeypatch.setattr(ix, "SEGMENT_FILES", 6)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    started = []
    parse_elsewhere = ix._Index._parse_elsewhere
    monkeypatch.setattr(ix._Index, "_parse_elsewhere", lambda self, runs: started.append(runs) or parse_elsewhere(self, runs))
    with pytest.warns(UserWarning, match="broken.json"):
        built = ix.load_index(tmp_path, with_samples=True)
    stats = ix.index_stats(tmp_path)
    assert stats["files"] == 32 and stats["segments"] == 6  # 32 files in batches of at most 6
    # Two worker processes, one per core, each parsing half of the files in order, in batches.
    assert [[len(batch) for batch in run] for run in started] == [[6, 6, 4], [6, 6, 4]]
    assert [name for run in started for batch in run for name in batch] == sorted(
        p.name for p in tmp_path.glob("*.json"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        want = reference(tmp_path)
    assert_same(built, want)
    with pytest.warns(UserWarning, match="broken.json"):  # warm: the problem is kept and named again
        assert_same(ix.load_index(tmp_path, with_samples=True), want)
    newer = dict(json.loads(sorted(tmp_path.glob("cnn.py__*.json"))[0].read_text()), schema_version=99)
    (tmp_path / "cnn.py__benchmark_throughput__newer.json").write_text(json.dumps(newer))
    with pytest.raises(UserError, match="schema version 99"):
        quiet(ix.rebuild, tmp_path)


@pytest.mark.parametrize("fast_json", [True, False], ids=["orjson", "json"])
def test_nan_infinity_huge_ints_and_odd_text_load_as_json_reads_them_with_or_without_orjson(tmp_path, monkeypatch,
                                                                                              fast_json):
    """orjson (optional) writes NaN as null and refuses NaN, Infinity and ints past 64 bits: such files
    and nested values are read and stored by json, so the rows are json's either way."""
    if fast_json and fastjson._orjson is None:
        pytest.skip("orjson is not installed (pip install dlmark[fast])")
    if not fast_json:
        monkeypatch.setattr(fastjson, "_orjson", None)
    store = Store(tmp_path, "cnn.py")
    store.write(record(1, throughput=float("nan"), extra_config={"a": float("nan"), "b": None}))
    store.write(record(2, task="max_batch_size", trials=[{"batch_size": 1, "seconds": float("inf")},
                                                          {"batch_size": 2, "seconds": None, "note": "null"}]))
    store.write(record(3, extra_config={"big": 2 ** 70, "list": [1, 2.0, None]}, error="caf\u00e9 \u2713"))
    store.write(record(4, extra_config={"a": None}, task="max_batch_size"))
    (tmp_path / "cnn.py__benchmark_throughput__cut.json").write_text('{"model": "cut off')
    (tmp_path / "cnn.py__benchmark_throughput__latin1.json").write_bytes(b'{"model": "\xe9"}')
    for _ in range(2):  # built, then warm
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            got = ix.load_index(tmp_path, with_samples=True)
        assert {"cut.json", "latin1.json"} <= {str(w.message).split("__")[-1].split(":")[0] for w in seen}
        assert_same(got, quiet(reference, tmp_path))
    by_file = {Path(f).name.split("__")[4]: i for i, f in enumerate(got["_file"])}
    nested = got.extra_config.iloc[by_file["Net-1-1"]]
    assert math.isnan(nested["a"]) and nested["b"] is None
    assert got.extra_config.iloc[by_file["Net-3-3"]]["big"] == 2 ** 70
    assert math.isinf(got.trials.iloc[by_file["Net-2-2"]][0]["seconds"])
