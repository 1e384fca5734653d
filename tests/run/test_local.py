"""Several lanes at once (what ``--device cuda:all`` does), exercised on CPU.

Two fake CPU devices with distinct specs stand in for two GPUs: each lane gets
its own pinned worker process, exactly as with GPUs; only the pinning
environment differs.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

import pytest

from dlmark import suites
from dlmark.run import driver as sweep
from dlmark.models import zoo
from dlmark.benchmark import load_records
from dlmark.measure.devices import Device, cpu
from dlmark.run.local import LocalExecutor, schedule_order, take_next
from dlmark.run.options import RunOptions
from dlmark.run.plan import Group, Variant

FIX = "py:tests.fixtures.models"
KILLS_WORKER = "py:tests.fixtures.scale_models:sigkills_itself_above_limit"


def two_lanes() -> list[Device]:
    name = cpu().name  # same name: identical devices are interchangeable, as two H200s are
    return [Device("cpu:0", "cpu", name), Device("cpu:1", "cpu", name)]


def options(models, timing, **kw):
    return RunOptions(suite=suites.load("quick"), models=[zoo.get(m) for m in models], tasks=["throughput"],
                      batch_sizes=kw.pop("batch_sizes", [1, 8]), devices=two_lanes(), timing=timing, threads=1, **kw)


def fake_group(name: str, jobs: int, task: str = "throughput") -> Group:
    return Group(task=task, model=zoo.ModelSpec(name, "py", f"m:{name}"), variant=Variant(), jobs=[object()] * jobs)


# ----------------------------------------------------------- scheduling, no processes


def test_largest_groups_start_first_and_ties_keep_plan_order():
    groups = [fake_group("a", 2), fake_group("b", 9), fake_group("c", 1, "max_batch_size"), fake_group("d", 9)]
    assert [g.model.name for g in schedule_order(groups)] == ["b", "d", "c", "a"]


def run_on_two_lanes(groups: list[Group], seconds) -> list[tuple[str, str]]:
    """(model, lane) in the order lanes took the groups; a group holds its lane ``seconds(name)``."""
    taken: list[tuple[str, str]] = []
    lock = threading.Lock()

    def run_group(group, lane):
        with lock:
            taken.append((group.model.name, lane.device.spec))
        time.sleep(seconds(group.model.name))

    LocalExecutor(two_lanes()).run(groups, run_group, threading.Event())
    return taken


def test_groups_spread_over_free_lanes_each_exactly_once():
    groups = [fake_group(f"short{i}", 1) for i in range(6)] + [fake_group("long", 9)]
    # A long group keeps its lane busy; the other lane takes the short ones meanwhile.
    taken = run_on_two_lanes(groups, lambda name: 0.6 if name == "long" else 0.05)
    names = [name for name, _ in taken]
    assert sorted(names) == sorted(g.model.name for g in groups)  # every group once, none twice
    lane_of = dict(taken)
    assert names[0] == "long"  # started first although planned last
    assert {spec for name, spec in taken if name != "long"} == {"cpu:0", "cpu:1"} - {lane_of["long"]}


def test_a_lane_keeps_to_the_family_it_ran_last():
    # cuDNN's autotuning cache is per worker: a family's later models reuse its shapes.
    assert take_next([fake_group("ResNet-v1-18", 9), fake_group("VGG-16", 9)], "VGG").model.name == "VGG-16"
    assert take_next([fake_group("ResNet-v1-18", 9), fake_group("VGG-16", 9)], "DenseNet").model.name == "ResNet-v1-18"
    names = ["VGG-11", "DenseNet-121", "ResNet-v1-18", "VGG-16", "DenseNet-169", "ResNet-v1-34"]
    lane_of = dict(run_on_two_lanes([fake_group(n, 9) for n in names], lambda name: 0.3))
    assert sorted(lane_of) == sorted(names)
    assert lane_of["VGG-16"] == lane_of["VGG-11"] and lane_of["DenseNet-169"] == lane_of["DenseNet-121"]
    assert lane_of["VGG-11"] != lane_of["DenseNet-121"]


# --------------------------------------------------------------- real worker processes


@pytest.mark.slow
@pytest.mark.slow
def test_two_lanes_split_a_sweep_and_isolate_a_crash_and_a_hang(tmp_path, fast_timing):
    models = [f"{FIX}:tiny", KILLS_WORKER, f"{FIX}:hangs_above_limit"]
    result = sweep.run(options(models, fast_timing, timeout_s=5.0), tmp_path / "r", quiet=True)
    got = {(r["model"], r["batch_size"]): r["status"] for r in result.records}
    assert got == {
        (f"{FIX}:tiny", 1): "ok", (f"{FIX}:tiny", 8): "ok",
        (KILLS_WORKER, 1): "ok", (KILLS_WORKER, 8): "crash",  # SIGKILL of one lane's worker
        (f"{FIX}:hangs_above_limit", 1): "ok", (f"{FIX}:hangs_above_limit", 8): "timeout",  # one lane's hang
    }
    assert len({r["job_key"] for r in result.records}) == len(result.records) == 6  # no duplicates
    # Both lanes measured, each record says which; a model's jobs stay on one lane (one build per group).
    lanes_of = {}
    for r in result.records:
        lanes_of.setdefault(r["model"], set()).add(r["device_spec"])
    assert set().union(*lanes_of.values()) == {"cpu:0", "cpu:1"}
    assert all(len(specs) == 1 for specs in lanes_of.values())
    # Resume on two lanes: only the failures of the run (crash, timeout) are retried.
    again = sweep.run(options(models, fast_timing, timeout_s=5.0), tmp_path / "r", quiet=True)
    assert sorted(r["status"] for r in again.records) == ["crash", "timeout"]


def _our_workers() -> list[int]:
    """Live dlmark worker processes whose parent is this test process."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        state = stat.rsplit(")", 1)[1].split()[0]
        if ppid == os.getpid() and "dlmark.run.worker" in cmdline and state != "Z":
            found.append(int(entry.name))
    return found


@pytest.mark.slow
@pytest.mark.slow
def test_ctrl_c_stops_every_lane_and_keeps_finished_records(tmp_path, fast_timing):
    class Watch:
        """Progress stream: once the hanging lane has begun its batch-8 job, press Ctrl-C (a real SIGINT)."""

        def __init__(self):
            self.pressed = threading.Event()
            # Pressed again after 60 s, so that a missed line or a lost Ctrl-C fails the test (below)
            # instead of waiting out the hang's 900 s timeout.
            self.fell_back = False
            self.fallback = threading.Timer(60.0, self.press_again)
            self.fallback.start()

        def press_again(self):
            self.fell_back = True
            os.kill(os.getpid(), signal.SIGINT)

        def press(self):
            if not self.pressed.is_set():
                self.pressed.set()
                threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()

        def write(self, text):
            # Per line: several lanes' lines can come in one write, and under load the progress
            # line of the fast lane's batch-8 job can be overwritten before it is written.
            if any("hangs_above_limit" in line and " b=8 " in line for line in text.splitlines()):
                self.press()

        def flush(self):
            pass

    began = time.monotonic()
    # One lane hangs at batch 8 (a 900 s timeout away); the other measures tiny at 1, 8, 16.
    watch = Watch()
    try:
        result = sweep.run(options([f"{FIX}:hangs_above_limit", f"{FIX}:tiny"], fast_timing, batch_sizes=[1, 8, 16]),
                           tmp_path / "r", stream=watch)
    finally:
        watch.fallback.cancel()
    assert not watch.fell_back, f"no stop within 60 s (batch-8 line seen: {watch.pressed.is_set()})"
    assert result.interrupted
    assert time.monotonic() - began < 120  # the hang was not waited for
    assert _our_workers() == []  # no lane left a worker behind
    assert {r["job_key"] for r in load_records(str(tmp_path / "r"))} == {r["job_key"] for r in result.records}
    assert all(r["status"] == "ok" for r in result.records)  # the job in flight is dropped, not recorded
    assert (f"{FIX}:hangs_above_limit", 1) in {(r["model"], r["batch_size"]) for r in result.records}


def test_an_error_in_one_lane_stops_the_others_at_once():
    """A driver-side error in one lane must not wait for a long job on another lane."""
    executor = LocalExecutor(two_lanes())
    killed = {}
    for lane in executor.lanes:
        killed[lane.device.spec] = threading.Event()
        lane.worker.kill = killed[lane.device.spec].set  # what a long job sees: its worker killed

    def run_group(group, lane):
        if group.model.name == "bad":
            time.sleep(0.2)
            raise ValueError("bug in the driver")
        if not killed[lane.device.spec].wait(timeout=20):  # the long job ends only when its worker is killed
            raise AssertionError("the other lane was not stopped")

    began = time.monotonic()
    with pytest.raises(ValueError, match="bug in the driver"):
        executor.run([fake_group("long", 2), fake_group("bad", 1)], run_group, threading.Event())
    assert time.monotonic() - began < 10


def test_gpu_lanes_sharing_cpus_split_them_evenly():
    from dlmark.run.local import split_cpus

    node0, node1 = list(range(0, 16)), list(range(16, 32))
    # Two GPUs on one NUMA node share its CPUs half and half; GPUs on different nodes keep their own.
    assert split_cpus([node0, node0]) == [list(range(0, 8)), list(range(8, 16))]
    assert split_cpus([node0, node1]) == [node0, node1]
    assert split_cpus([node0, node0, node1, node1]) == [node0[:8], node0[8:], node1[:8], node1[8:]]
    assert split_cpus([[0], [0]]) == [[], [0]]  # more lanes than CPUs: a lane gets none, so nobody is pinned


def test_a_worker_runs_on_its_share_of_the_cpus():
    from dlmark.run.local import WorkerProcess

    worker = WorkerProcess(cpu())
    worker.cpus = [0]
    try:
        worker.request({"op": "ping"}, 60)  # answers before torch is imported: fast
        status = Path(f"/proc/{worker.pid}/status").read_text()
        environ = Path(f"/proc/{worker.pid}/environ").read_bytes().split(b"\0")
    finally:
        worker.close()
    assert "Cpus_allowed_list:\t0\n" in status
    assert b"OMP_NUM_THREADS=1" in environ


def test_gpu_lanes_are_pinned_and_cpu_or_single_lanes_are_not():
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two usable CPUs to split")
    gpus = [Device("cuda:0", "cuda", "GPU", 0, None), Device("cuda:1", "cuda", "GPU", 1, None)]
    shares = [lane.worker.cpus for lane in LocalExecutor(gpus).lanes]
    assert all(shares) and not set(shares[0]) & set(shares[1])
    assert sorted(shares[0] + shares[1]) == sorted(os.sched_getaffinity(0))
    assert [lane.worker.cpus for lane in LocalExecutor(gpus[:1]).lanes] == [None]
    assert [lane.worker.cpus for lane in LocalExecutor(two_lanes()).lanes] == [None, None]
