"""The contention probe against real processes: what it calls "other" and "own" CPU time.

The machine these tests run on is shared, so other people's work is in every
window too: the tests bound what the probe must at least see (a busy process
we started and measured independently) and what it cannot exceed (the CPUs'
capacity), never an exact figure for "idle".
"""
from __future__ import annotations

import os
import statistics
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from dlmark.measure import contention
from dlmark.measure.contention import ContentionProbe, is_contended, suggestion

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
TICK = 1.0 / os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 0.01

# Burns CPU until a wall-clock deadline, then writes its own CPU time (the kernel's
# rusage of itself) and, with "wait", stays alive until its stdin closes.
BUSY = textwrap.dedent("""
    import os, resource, sys, time
    deadline = time.monotonic() + float(sys.argv[1])
    x = 0
    while time.monotonic() < deadline:
        x += 1
    u = resource.getrusage(resource.RUSAGE_SELF)
    with open(sys.argv[2] + ".tmp", "w") as f:
        f.write(str(u.ru_utime + u.ru_stime))
    os.rename(sys.argv[2] + ".tmp", sys.argv[2])
    if len(sys.argv) > 3:
        sys.stdin.read()
""")


def _busy_file(tmp_path: Path) -> Path:
    path = tmp_path / "busy.py"
    path.write_text(BUSY)
    return path


def _wait_for(paths: list[Path], timeout: float = 30.0) -> list[float]:
    end = time.monotonic() + timeout
    while not all(p.exists() for p in paths):
        assert time.monotonic() < end, "busy processes did not finish"
        time.sleep(0.02)
    return [float(p.read_text()) for p in paths]


def _cpus() -> int:
    return len(os.sched_getaffinity(0))


@linux
def test_processes_outside_this_tree_are_other(tmp_path):
    busy = _busy_file(tmp_path)
    outs = [tmp_path / f"cpu{i}" for i in range(_cpus())]
    probe = ContentionProbe()
    probe.start()
    # The shell starts the loops in the background and exits: they are orphans,
    # re-parented away from this process, so not its descendants.
    script = " ".join(f"{sys.executable} {busy} 1.5 {o} </dev/null >/dev/null 2>&1 &" for o in outs)
    subprocess.run(["sh", "-c", script], check=True)
    child_cpu = sum(_wait_for(outs))
    fields = probe.stop()
    capacity = fields["window_s"] * fields["cpus_usable"]
    assert fields["cpus_usable"] == _cpus() and fields["window_s"] >= 1.5
    # Everything the loops used is "other" (plus whatever the rest of the machine did) ...
    assert fields["other_cpu_s"] >= 0.9 * child_cpu - 3 * TICK * len(outs), (fields, child_cpu)
    assert fields["other_cpu_s"] <= capacity + 3 * TICK * fields["cpus_usable"]
    # ... none of it is ours: this process mostly slept.
    assert fields["own_cpu_s"] < 0.3 * child_cpu
    assert fields["contended"] is True
    assert "idle machine" in suggestion(fields)


@linux
def test_descendants_are_own_whether_reaped_or_alive(tmp_path):
    import resource

    busy = _busy_file(tmp_path)
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_before = resource.getrusage(resource.RUSAGE_SELF)
    probe = ContentionProbe()
    probe.start()
    done = tmp_path / "done"
    alive_out = tmp_path / "alive"
    reaped = subprocess.Popen([sys.executable, str(busy), "0.8", str(done)])
    alive = subprocess.Popen([sys.executable, str(busy), "0.8", str(alive_out), "wait"], stdin=subprocess.PIPE)
    reaped.wait()
    alive_cpu = _wait_for([alive_out])[0]
    fields = probe.stop()  # one child reaped, one still alive
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    self_after = resource.getrusage(resource.RUSAGE_SELF)
    alive.communicate(b"")
    reaped_cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
    self_cpu = (self_after.ru_utime + self_after.ru_stime) - (self_before.ru_utime + self_before.ru_stime)
    expected = reaped_cpu + alive_cpu + self_cpu  # the kernel's own accounting, read independently
    assert fields["own_cpu_s"] == pytest.approx(expected, abs=0.05 + 0.1 * expected), (fields, expected)
    assert fields["own_cpu_s"] > 0.2  # the children did run


@linux
def test_an_idle_window(tmp_path):
    probe = ContentionProbe()
    probe.start()
    time.sleep(1.0)
    fields = probe.stop()
    assert set(fields) == set(contention.FIELDS)
    assert 1.0 <= fields["window_s"] < 2.0
    assert fields["own_cpu_s"] < 0.05  # we slept
    # Other people's work may fill the machine; the probe cannot report more than it holds.
    assert 0 <= fields["other_cpu_s"] <= fields["window_s"] * fields["cpus_usable"] + 3 * TICK * fields["cpus_usable"]
    assert fields["cpu_steal_s"] >= 0
    assert fields["loadavg_1m_before"] >= 0 and fields["loadavg_1m_after"] >= 0
    assert fields["contended"] is is_contended(fields)
    assert fields["gpu_other_processes"] is None  # no GPU asked for


@linux
def test_the_probe_is_cheap():
    probe = ContentionProbe()
    costs = []
    for _ in range(5):
        t = time.perf_counter()
        probe.start()
        probe.stop()
        costs.append(time.perf_counter() - t)
    # A /proc scan of every process when the kernel lacks children lists: a few ms, under load more.
    assert statistics.median(costs) < 0.1


def test_the_rule():
    base = {"window_s": 1.0, "cpus_usable": 2, "other_cpu_s": 0.19, "cpu_steal_s": 0.0, "gpu_other_processes": None}
    assert is_contended(base) is False and suggestion(base | {"contended": False}) is None
    assert is_contended(base | {"other_cpu_s": 0.21}) is True
    assert is_contended(base | {"cpu_steal_s": 0.11}) is True
    assert is_contended(base | {"gpu_other_processes": 1}) is True
    assert is_contended(base | {"other_cpu_s": None}) is None
    text = suggestion(base | {"cpu_steal_s": 0.11, "contended": True, "loadavg_1m_before": 5.5})
    assert "stole 6%" in text and "load average 5.5" in text and "--min-time" in text


def test_stat_lines_with_awkward_command_names():
    line = "4242 (a) b (c)) S 17 4242 4242 0 -1 4194304 100 0 0 0 30 12 5 3 20 0 1 0 100 1000 10"
    assert contention._parse_stat(line) == (17, 30 + 12 + 5 + 3)


def test_not_linux_gives_none(monkeypatch):
    monkeypatch.setattr(contention.sys, "platform", "darwin")
    probe = ContentionProbe()
    probe.start()
    assert probe.stop() == dict.fromkeys(contention.FIELDS)


@pytest.mark.gpu
def test_gpu_processes_are_counted():
    if not Path("/dev/nvidiactl").exists():
        pytest.skip("no NVIDIA device")  # before importing torch, which takes seconds
    pytest.importorskip("pynvml")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device")
    torch.ones(1, device="cuda")  # this process on the device: not "other"
    probe = ContentionProbe(gpu_index=0)
    probe.start()
    fields = probe.stop()
    assert isinstance(fields["gpu_other_processes"], int) and fields["gpu_other_processes"] >= 0
