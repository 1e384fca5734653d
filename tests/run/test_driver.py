"""Real sweeps through real worker processes, with models that fail in known ways."""
import json

import pytest

from dlmark.records import schema
from dlmark.benchmark import load_records
from dlmark.cli import main

#: Real worker processes and real runs: minutes on a loaded 2-core machine (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow

FIX = "py:tests.fixtures.models"
LIMIT = 5  # tests.fixtures.models.LIMIT


def run(tmp_path, *args, out="r"):
    code = main(["run", "quick", "--device", "cpu", "--out", str(tmp_path / out), "--quiet", *args])
    return code, load_records(str(tmp_path / out))


def by_model(rows):
    out = {}
    for r in rows:
        out.setdefault(r["model"], []).append(r)
    for rs in out.values():
        rs.sort(key=lambda r: r["batch_size"] or 0)
    return out


@pytest.fixture
def fast(monkeypatch):
    # Behaviour, not figures: keep each measurement short.
    return ["--min-time", "0.05"]


def test_throughput_records_have_the_schema(tmp_path, fast):
    code, rows = run(tmp_path, "--models", f"{FIX}:tiny", "--batch-sizes", "1,2", *fast)
    assert code == 0
    assert len(rows) == 2
    for r in rows:
        assert set(schema.COLUMNS) <= set(r)
        assert r["status"] == "ok" and r["task"] == "throughput" and r["workload"] == "Inference"
        assert r["throughput"] == pytest.approx(r["batch_size"] / (r["latency_ms_median"] / 1e3))
        assert r["throughput_ci95_low"] <= r["throughput"] <= r["throughput_ci95_high"]
        assert len(r["block_times_s"]) == r["num_blocks"] >= 3
        assert r["input_shape"] == [3, 32, 32] and r["params"] > 0 and r["flops_per_sample"] > 0
        assert r["weights"] == "random" and r["device_spec"] == "cpu" and r["peak_rss_mb"] > 0
        assert r["env"]["torch"] and r["env"]["cpu_model"] and r["env"]["dlmark"]


def test_sweep_stops_a_model_at_its_first_oom_and_goes_on(tmp_path, fast):
    code, rows = run(tmp_path, "--models", f"{FIX}:alloc_fails_above_limit,{FIX}:tiny", "--batch-sizes", "2,4,8,16", *fast)
    assert code == 0
    models = by_model(rows)
    failing = models[f"{FIX}:alloc_fails_above_limit"]
    assert [(r["batch_size"], r["status"]) for r in failing] == [(2, "ok"), (4, "ok"), (8, "oom")]
    assert "allocate" in failing[-1]["error"]
    assert [r["status"] for r in models[f"{FIX}:tiny"]] == ["ok"] * 4
    # Resuming measures nothing: 16 is not retried after the recorded OOM at 8.
    code, again = run(tmp_path, "--models", f"{FIX}:alloc_fails_above_limit,{FIX}:tiny", "--batch-sizes", "2,4,8,16", *fast)
    assert code == 0 and len(again) == len(rows)


def test_a_crashing_worker_becomes_a_record_and_is_replaced(tmp_path, fast):
    code, rows = run(tmp_path, "--models", f"{FIX}:crashes_above_limit,{FIX}:tiny", "--batch-sizes", "4,8", *fast)
    assert code == 0
    models = by_model(rows)
    crashed = models[f"{FIX}:crashes_above_limit"]
    assert [(r["batch_size"], r["status"]) for r in crashed] == [(4, "ok"), (8, "crash")]
    assert "exit code 137" in crashed[-1]["error"]
    assert [r["status"] for r in models[f"{FIX}:tiny"]] == ["ok", "ok"]


def test_a_hang_past_the_timeout_is_killed_and_recorded(tmp_path, fast):
    code, rows = run(tmp_path, "--models", f"{FIX}:hangs_above_limit,{FIX}:tiny", "--batch-sizes", "8",
                     "--timeout", "8", *fast)
    assert code == 0
    models = by_model(rows)
    assert models[f"{FIX}:hangs_above_limit"][0]["status"] == "timeout"
    assert models[f"{FIX}:tiny"][0]["status"] == "ok"


def test_largest_batch_is_exact_when_allocation_fails(tmp_path):
    code, rows = run(tmp_path, "--models", f"{FIX}:alloc_fails_above_limit,{FIX}:crashes_above_limit,{FIX}:tiny",
                     "--task", "max-batch-size", "--max-batch-cap", "64")
    assert code == 0
    models = by_model(rows)
    for name in ("alloc_fails_above_limit", "crashes_above_limit"):
        r = models[f"{FIX}:{name}"][0]
        assert r["status"] == "ok"
        assert r["max_batch_size"] == r["batch_size"] == LIMIT
        assert r["first_failing_batch"] == LIMIT + 1
        assert r["num_trials"] == len(r["trials"]) and r["search_s"] > 0
    assert {t["status"] for t in models[f"{FIX}:crashes_above_limit"][0]["trials"]} == {"ok", "crash"}
    tiny = models[f"{FIX}:tiny"][0]
    assert tiny["max_batch_size"] == 64 and tiny["capped"] is True


def test_largest_batch_under_a_real_memory_cap(tmp_path):
    # 256 MB per sample under a 3 GiB cap on the worker: a real allocation failure ends the growth.
    code, rows = run(tmp_path, "--models", f"{FIX}:hungry_256mb,{FIX}:tiny", "--task", "max-batch-size",
                     "--memory-limit", "3GiB", "--max-batch-cap", "64")
    assert code == 0
    models = by_model(rows)
    hungry = models[f"{FIX}:hungry_256mb"][0]
    assert hungry["status"] == "ok", hungry["error"]
    assert 1 <= hungry["max_batch_size"] < 12  # 12 x 256 MB = 3 GiB leaves no room for torch itself
    assert hungry["first_failing_batch"] == hungry["max_batch_size"] + 1
    assert hungry["memory_limit_mb"] == 3072
    assert any(t["status"] == "oom" for t in hungry["trials"])
    assert models[f"{FIX}:tiny"][0]["max_batch_size"] == 64  # the sweep went on


def test_largest_batch_reuses_the_model_the_throughput_jobs_loaded(tmp_path, fast, monkeypatch):
    builds = tmp_path / "builds.log"
    monkeypatch.setenv("DLMARK_TEST_BUILD_LOG", str(builds))
    code, rows = run(tmp_path, "--models", f"{FIX}:counts_builds", "--task", "throughput,max-batch-size",
                     "--batch-sizes", "1,2", "--max-batch-cap", "16", *fast)
    assert code == 0
    assert sorted((r["task"], r["status"]) for r in rows) == [
        ("max_batch_size", "ok"), ("throughput", "ok"), ("throughput", "ok")]
    assert len(builds.read_text().split()) == 1  # one build served both groups
    # A second model in between means a fresh build: reuse is only for the same model and configuration.
    builds.unlink()
    code, rows = run(tmp_path, "--models", f"{FIX}:counts_builds,{FIX}:tiny", "--task", "max-batch-size",
                     "--max-batch-cap", "16", out="r2")
    assert code == 0 and len(builds.read_text().split()) == 1


def test_force_re_measures_and_replaces(tmp_path, fast):
    run(tmp_path, "--models", f"{FIX}:tiny", "--batch-sizes", "1", *fast)
    first = load_records(str(tmp_path / "r"))[0]
    code, rows = run(tmp_path, "--models", f"{FIX}:tiny", "--batch-sizes", "1", "--force", *fast)
    # A file per measurement (issue 14): the new record is written beside the old one, and wins.
    assert code == 0 and len(rows) == 2 and {r["job_key"] for r in rows} == {first["job_key"]}
    from dlmark.records.store import Store

    newest = Store(tmp_path / "r", "quick.py").finished_keys()[first["job_key"]]
    assert newest["run_id"] != first["run_id"] and newest["run_id"] in {r["run_id"] for r in rows}


def test_ls_prints_the_records(tmp_path, fast, capsys):
    run(tmp_path, "--models", f"{FIX}:tiny", "--batch-sizes", "1,2", *fast)
    capsys.readouterr()
    assert main(["ls", str(tmp_path / "r"), "--task", "throughput"]) == 0
    out = capsys.readouterr().out
    assert out.count(f"{FIX}:tiny") == 2 and "img/s [95% CI]" in out and "2 record(s)" in out


def test_repetitions_run_the_plan_again_and_compare_judges_across_them(tmp_path, fast):
    # Three passes one after another: the first pass keeps a plain run's keys (so a plain folder
    # resumes as it), the others are records of their own that compare pools with it.
    code, rows = run(tmp_path, "--models", f"{FIX}:tiny", "--batch-sizes", "1,2", "--repetitions", "3", *fast)
    assert code == 0 and len(rows) == 6 and len({r["job_key"] for r in rows}) == 6
    assert sorted((r.get("extra_config") or {}).get("repetition", 1) for r in rows) == [1, 1, 2, 2, 3, 3]
    from dlmark.run import options as run_options
    from dlmark.run.plan import plan

    planned = plan(run_options.build("quick", models=[f"{FIX}:tiny"], batch_sizes=[1, 2], device="cpu",
                                     repetitions=3))
    order = [job.extra.get("repetition", 1) for group in planned for job in group.jobs]
    assert order == [1, 1, 2, 2, 3, 3]  # pass after pass, not each job three times in a row
    code, plain = run(tmp_path, "--models", f"{FIX}:tiny", "--batch-sizes", "1,2", *fast, out="plain")
    assert {r["job_key"] for r in plain} < {r["job_key"] for r in rows}
    code, again = run(tmp_path, "--models", f"{FIX}:tiny", "--batch-sizes", "1,2", "--repetitions", "3", *fast)
    assert len(again) == 6  # everything was done: resumed, nothing re-measured
    from dlmark.analysis.compare import compare

    result = compare(rows, [dict(r, run_id="other") for r in rows])
    assert [(p.baseline_runs, p.candidate_runs) for p in result.pairs] == [(3, 3), (3, 3)]
    # Identical runs: never faster or slower (a run timed while CI's other work competed gets a reason instead).
    assert all(p.verdict == "same" or p.reason in ("contended", "throttled") for p in result.pairs), \
        [(p.verdict, p.reason) for p in result.pairs]


def test_repetitions_must_be_a_positive_integer(tmp_path, capsys):
    code = main(["run", "quick", "--device", "cpu", "--out", str(tmp_path / "r"), "--repetitions", "0"])
    err = capsys.readouterr().err
    assert code == 2 and "--repetitions must be a positive integer" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "r").exists()
