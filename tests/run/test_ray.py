"""The Ray executor against the local one: same sweep, same records, with real SIGKILLs midway.

Starts one local Ray instance (2 CPUs) for the module. Tiny ``py:`` models
keep each job short; both die by SIGKILL at batch 8: one kills its dlmark
worker, the other the Ray worker that runs the task.
"""
from __future__ import annotations

import sys

import pytest

from dlmark.records import schema
from dlmark import suites
from dlmark.run import driver as sweep
from dlmark.models import zoo
from dlmark.benchmark import load_records
from dlmark.measure.devices import cpu
from dlmark.errors import UserError
from dlmark.run.options import RunOptions
from dlmark.run.ray import INSTALL_HINT, RayExecutor, Target, import_ray, resolve_targets

TINY = "py:tests.fixtures.models:tiny"
KILLS_WORKER = "py:tests.fixtures.scale_models:sigkills_itself_above_limit"
KILLS_RAY_WORKER = "py:tests.fixtures.scale_models:sigkills_ray_worker_above_limit"
HANGS = "py:tests.fixtures.models:hangs_above_limit"  # sleeps an hour above batch 5
BATCHES = [1, 2, 8]  # scale_models.LIMIT is 4: batch 8 is the one that dies


def options(models, timing):
    return RunOptions(suite=suites.load("quick"), models=[zoo.get(m) for m in models], tasks=["throughput"],
                      batch_sizes=BATCHES, devices=[cpu()], timing=timing, threads=1, timeout_s=8)


def statuses(rows):
    return {(r["model"], r["batch_size"]): r["status"] for r in rows}


# ------------------------------------------------------------- without Ray


def test_missing_ray_is_one_line_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    with pytest.raises(UserError) as info:
        import_ray()
    assert str(info.value) == INSTALL_HINT and "pip install -e '.[ray]'" in INSTALL_HINT
    assert "\n" not in str(info.value)


def test_cli_names_the_extra_when_ray_is_missing(monkeypatch, capsys, tmp_path):
    from dlmark.cli import main

    monkeypatch.setitem(sys.modules, "ray", None)
    code = main(["run", "quick", "--device", "cpu", "--executor", "ray", "--out", str(tmp_path / "r")])
    assert code == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and "pip install -e '.[ray]'" in err
    assert not (tmp_path / "r").exists()


def test_targets_follow_the_cluster():
    h100_and_h200 = {"CPU": 64.0, "GPU": 8.0, "accelerator_type:H100": 1.0, "accelerator_type:H200": 1.0}
    assert resolve_targets(h100_and_h200, want_gpu=True, each_accelerator=True, include_cpu=True) == [
        Target("gpu", "H100"), Target("gpu", "H200"), Target("cpu")]
    assert resolve_targets(h100_and_h200, want_gpu=True, accelerator_type="H200") == [Target("gpu", "H200")]
    assert resolve_targets(h100_and_h200, want_gpu=False) == [Target("cpu")]
    with pytest.raises(UserError, match="offers: H100, H200"):
        resolve_targets(h100_and_h200, want_gpu=True, accelerator_type="A100")
    cpu_only = {"CPU": 2.0}
    with pytest.raises(UserError, match="no GPU"):
        resolve_targets(cpu_only, want_gpu=True)
    with pytest.raises(UserError, match="--include-cpu"):
        resolve_targets(cpu_only, want_gpu=True, each_accelerator=True)
    assert resolve_targets(cpu_only, want_gpu=True, each_accelerator=True, include_cpu=True) == [Target("cpu")]


def test_an_address_nobody_listens_on_fails_at_once():
    import socket

    from dlmark.run.ray import _check_reachable

    with socket.socket() as s:  # a port that was free a moment ago: nothing listens there now
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(UserError, match=f"cannot reach the Ray cluster at 127.0.0.1:{port}"):
        _check_reachable(f"127.0.0.1:{port}", timeout_s=2)
    _check_reachable("auto")  # left to Ray


# ---------------------------------------------------------------- with Ray


@pytest.fixture(scope="module")
def ray_instance():
    ray = pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def run_on_ray(opts, out, stream=None):
    # One CPU per job, so that the two CPUs of this machine run two tasks at once; two
    # tasks in flight, so that the third group waits its turn on the driver.
    return sweep.run(opts, out, stream=stream, quiet=stream is None,
                     make_executor=lambda ctx: RayExecutor(ctx, want_gpu=False, cpus_per_cpu_job=1, max_in_flight=2))


@pytest.mark.slow
def test_ray_records_match_the_local_executor(ray_instance, tmp_path, fast_timing):
    local = sweep.run(options([KILLS_WORKER], fast_timing), tmp_path / "local", quiet=True)
    on_ray = run_on_ray(options([KILLS_WORKER, KILLS_RAY_WORKER, HANGS], fast_timing), tmp_path / "ray")
    expected = {(KILLS_WORKER, 1): "ok", (KILLS_WORKER, 2): "ok", (KILLS_WORKER, 8): "crash"}
    assert statuses(local.records) == expected
    # A SIGKILLed Ray worker ends its group exactly as a SIGKILLed dlmark worker does.
    # The per-job timeout holds inside a Ray task as it does locally.
    assert statuses(on_ray.records) == {**expected, (KILLS_RAY_WORKER, 1): "ok", (KILLS_RAY_WORKER, 2): "ok",
                                        (KILLS_RAY_WORKER, 8): "crash",
                                        (HANGS, 1): "ok", (HANGS, 2): "ok", (HANGS, 8): "timeout"}
    crashed = {r["model"]: r["error"] for r in on_ray.records if r["status"] == "crash"}
    assert "killed by signal 9" in crashed[KILLS_WORKER]
    assert "Ray task died" in crashed[KILLS_RAY_WORKER]

    # Same jobs, same keys, same columns: the records are interchangeable.
    local_by_key = {r["job_key"]: r for r in local.records}
    ray_by_key = {r["job_key"]: r for r in on_ray.records}
    assert len(ray_by_key) == len(on_ray.records)  # no job recorded twice
    assert set(local_by_key) <= set(ray_by_key)
    for key, mine in local_by_key.items():
        theirs = ray_by_key[key]
        assert set(schema.COLUMNS) <= set(theirs)
        assert set(theirs) == set(mine), set(theirs) ^ set(mine)
        assert (theirs["host"], theirs["device"], theirs["device_spec"]) == (mine["host"], mine["device"], "cpu")
        assert theirs["status"] == mine["status"] and theirs["threads"] == mine["threads"] == 1
    # Both Ray crashes are recorded like the local one, with the device and model facts of a record.
    ray_crash = ray_by_key[next(k for k, r in local_by_key.items() if r["status"] == "crash")]
    assert ray_crash["device"] == cpu().name and ray_crash["error"]
    assert len({r["run_id"] for r in on_ray.records}) == 1

    # What the driver wrote is what is on disk, one file per job.
    on_disk = load_records(str(tmp_path / "ray"))
    assert sorted(r["job_key"] for r in on_disk) == sorted(ray_by_key)

    # Resume: only the crashed jobs run again (failures of the run are retried); nothing is measured twice.
    again = run_on_ray(options([KILLS_WORKER, KILLS_RAY_WORKER, HANGS], fast_timing), tmp_path / "ray")
    assert statuses(again.records) == {(KILLS_WORKER, 8): "crash", (KILLS_RAY_WORKER, 8): "crash", (HANGS, 8): "timeout"}
    assert again.skipped == 6  # the two good batches of each model
    # A re-measured job writes a file of its own beside the old one (file names are unique per run).
    assert sorted({r["job_key"] for r in load_records(str(tmp_path / "ray"))}) == sorted(ray_by_key)


@pytest.mark.slow
def test_ctrl_c_under_ray_keeps_finished_records_and_cancels_the_rest(ray_instance, tmp_path, fast_timing):
    stop_after_first = {}

    class Interrupting:
        """Progress stream that raises KeyboardInterrupt (as Ctrl-C would) once a record has arrived."""

        def write(self, text):
            if "[  2/" in text and not stop_after_first:
                stop_after_first["hit"] = True
                raise KeyboardInterrupt

        def flush(self):
            pass

    result = run_on_ray(options([TINY], fast_timing), tmp_path / "ray", stream=Interrupting())
    assert result.interrupted
    assert [r["status"] for r in result.records] == ["ok"]
    assert len(load_records(str(tmp_path / "ray"))) == 1
    # No task of the interrupted run is left holding the CPUs.
    assert ray_instance.available_resources().get("CPU") == 2.0 or _eventually_free(ray_instance)


def _eventually_free(ray, seconds=10.0):
    import time

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if ray.available_resources().get("CPU") == 2.0:
            return True
        time.sleep(0.2)
    return False


def test_a_cpu_job_larger_than_any_node_is_refused_not_left_pending(ray_instance, fast_timing):
    from dlmark.run.jobs import RunContext

    ctx = RunContext(options=options([KILLS_WORKER], fast_timing), emit=lambda r: None, finished={}, env={},
                     host="h")
    with pytest.raises(UserError, match="largest Ray node has 2"):
        RayExecutor(ctx, want_gpu=False, cpus_per_cpu_job=64)
    assert ray_instance.is_initialized()  # a cluster it did not start is left running
