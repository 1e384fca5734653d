"""The serving task end to end: LoadGen scenarios through dlmark run, and bad input refused before any work."""
import json
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("mlperf_loadgen", reason="LoadGen is in the test extra (mlcommons-loadgen)")

FIX = "py:tests.fixtures.models"
ROOT = Path(__file__).resolve().parents[2]


def dlmark(*args, timeout=600):
    return subprocess.run([sys.executable, "-m", "dlmark.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout)


@pytest.mark.parametrize("args, message", [
    (["--scenario", "offline,burst"], "unknown scenario 'burst'"),
    (["--scenario", "server", "--latency-bound-ms", "-5"], "must be a positive number"),
    (["--scenario", "server", "--mlperf-rules", "--timeout", "300"], "cannot fit --timeout 300"),
    (["--latency-bound-ms", "15"], "need a scenario"),
    (["--scenario", "offline", "--latency-bound-ms", "15"], "add --scenario server"),
    (["--scenario", "single-stream", "--serving-min-queries", "0"], "--serving-min-queries must be a positive integer"),
    (["--scenario", "single-stream", "--serving-min-time", "-1"], "--serving-min-time must be a positive number"),
    (["--scenario", "server", "--pad-sizes", "16,x"], "--pad-sizes takes positive integers"),
    (["--scenario", "server", "--pad-sizes", "0,16"], "--pad-sizes takes positive integers"),
    (["--scenario", "offline", "--pad-sizes", "16"], "add --scenario server"),
    (["--scenario", "server", "--gil-switch-interval-ms", "0"], "--gil-switch-interval-ms must be a positive number"),
])
def test_bad_serving_input_is_one_line_and_exit_2_before_any_work(tmp_path, args, message):
    out = tmp_path / "r"
    done = dlmark("run", "--models", f"{FIX}:tiny", "--device", "cpu", "--out", str(out), *args)
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message in lines[0]
    assert not out.exists()


def test_own_streams_on_a_cpu_is_one_line_and_exit_2_with_no_record(tmp_path):
    out = tmp_path / "r"
    done = dlmark("run", "--models", f"{FIX}:tiny", "--device", "cpu", "--out", str(out), "--scenario", "server",
                  "--target-qps", "50", "--own-streams", "--serving-min-time", "1", "--quiet")
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "--own-streams needs a CUDA device" in lines[0]
    assert not list(out.glob("*serving*.json"))


@pytest.mark.slow
def test_a_bound_below_the_batch_1_latency_is_refused_with_that_latency(tmp_path):
    out = tmp_path / "r"
    done = dlmark("run", "--models", f"{FIX}:tiny", "--device", "cpu", "--out", str(out), "--scenario", "server",
                  "--latency-bound-ms", "0.001", "--serving-min-time", "1", "--quiet")
    assert done.returncode == 2
    assert "is below py:tests.fixtures.models:tiny's batch-1 latency on this device" in done.stderr
    assert " ms)" in done.stderr and not list(out.glob("*serving*.json"))


@pytest.mark.slow
def test_scenarios_write_records_with_loadgens_verdict_and_logs_beside_them(tmp_path):
    out = tmp_path / "r"
    done = dlmark("run", "--models", f"{FIX}:tiny", "--device", "cpu", "--out", str(out), "--quiet",
                  "--task", "throughput", "--scenario", "offline,single-stream", "--batch-sizes", "16",
                  "--serving-min-time", "1", "--serving-min-queries", "200", "--min-time", "0.5")
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    serving = {r["scenario"]: r for r in records if r["task"] == "serving"}
    assert set(serving) == {"offline", "single-stream"}
    for r in serving.values():
        assert r["status"] == "ok" and isinstance(r["valid"], bool) and r["loadgen_version"]
        assert (out / r["log_summary"]).exists() and (out / r["log_detail"]).exists()
        assert "Result is" in (out / r["log_summary"]).read_text()
    offline = serving["offline"]
    thr = next(r for r in records if r["task"] == "throughput")
    assert offline["batch_size"] == thr["batch_size"] == 16 and offline["throughput"] == offline["samples_per_s"]
    # Not compared with the timing loop's figure here: measured minutes apart on a shared 2-core
    # machine they differed 6x under load; the agreement is measured side by side on the H200
    # (BENCHMARKS.md: Offline / throughput task 0.96 for fp32 eager).
    assert offline["samples_per_s"] > 0 and thr["throughput"] > 0
    assert serving["single-stream"]["min_query_count"] == 200  # --serving-min-queries reached LoadGen
    listed = dlmark("ls", str(out), "--scenario", "offline,single-stream")
    assert listed.returncode == 0 and "Offline samples/s" in listed.stdout and "SingleStream p90 ms" in listed.stdout


@pytest.mark.slow
def test_a_server_search_records_its_steps_and_an_answer_with_the_batcher_it_ran(tmp_path):
    out = tmp_path / "r"
    done = dlmark("run", "--models", f"{FIX}:tiny", "--device", "cpu", "--out", str(out), "--quiet",
                  "--scenario", "server", "--latency-bound-ms", "50", "--max-batch", "4", "--batches-in-flight", "2",
                  "--max-queue-delay-ms", "1", "--serving-min-time", "0.3", "--serving-min-queries", "100")
    assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    answers = [r for r in records if r.get("server_qps_at_bound") is not None]
    assert len(answers) == 1, [r.get("target_qps") for r in records]
    answer = answers[0]
    steps = {r["job_key"]: r for r in records if r.get("target_qps") is not None}
    assert set(answer["search_step_keys"]) == set(steps)
    best = next(r for r in steps.values() if r["target_qps"] == pytest.approx(answer["server_qps_at_bound"], rel=1e-3))
    assert best["valid"] and best["latency_ms_p99"] <= 50
    # The answer says which batcher held that load, as its steps do.
    assert (answer["batches_in_flight"], answer["max_batch"], answer["max_queue_delay_ms"]) == (2, 4, 1.0)
    assert best["gc_frozen"] is True and len(best["gc_collections"]) == 3  # what the collector did meanwhile
