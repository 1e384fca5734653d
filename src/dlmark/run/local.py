"""Executors: where jobs run. Workers are disposable processes; the driver owns the store.

``WorkerProcess`` is one ``python -m dlmark.run.worker`` process spoken to over
pipes (JSON lines), with a timeout on every request; a worker that dies or
hangs is reported, killed and replaced, never waited on forever.
``LocalExecutor`` runs one lane per device (one worker each) and spreads
groups of jobs over the lanes; on one device it is a plain sequential loop.
"""
from __future__ import annotations

import json
import os
import selectors
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Callable

from dlmark.errors import UserError
from dlmark.measure.devices import Device

_SRC_DIR = str(Path(__file__).resolve().parents[2])  # the folder holding the dlmark package


class WorkerFailed(Exception):
    """The worker died or hung; ``status`` is ``crash`` or ``timeout``."""

    def __init__(self, status: str, message: str):
        super().__init__(message)
        self.status = status


class WorkerProcess:
    """One worker process pinned to a device."""

    def __init__(self, device: Device, python: str | None = None, memory_limit_bytes: int | None = None,
                 extra_env: dict[str, str | None] | None = None):
        self.device = device
        self.python = python or sys.executable
        self.memory_limit_bytes = memory_limit_bytes
        self.extra_env = extra_env or {}
        self.cpus: list[int] | None = None  # this worker's share of the host's CPUs, when lanes share a host
        self.proc: subprocess.Popen | None = None
        self._buffer = b""
        self._log: Any = None
        # (load request, its answer) of the model this process holds; the next group
        # on the same model and configuration (largest batch after throughput) reuses it.
        self.loaded: tuple[str, dict[str, Any]] | None = None

    # -- life cycle
    def start(self) -> None:
        env = os.environ.copy()
        env.update(self.device.worker_env)
        for name, value in self.extra_env.items():  # None removes a variable the parent has
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        # The worker imports this very dlmark (also under another interpreter), and
        # py: models resolve from the directory the user ran dlmark in.
        env["PYTHONPATH"] = os.pathsep.join(p for p in (_SRC_DIR, os.getcwd(), env.get("PYTHONPATH")) if p)
        env.setdefault("PYTHONUNBUFFERED", "1")
        # The worker watches this process: it dies with us even when we die by SIGKILL (worker.watch_parent).
        args = [self.python, "-m", "dlmark.run.worker", "--parent-pid", str(os.getpid())]
        if self.memory_limit_bytes:
            args += ["--memory-limit", str(self.memory_limit_bytes)]
        if self.cpus:
            args += ["--cpus", ",".join(map(str, self.cpus))]
            if "OMP_NUM_THREADS" not in self.extra_env:
                env["OMP_NUM_THREADS"] = str(len(self.cpus))
        self._log = tempfile.TemporaryFile(prefix="dlmark-worker-")
        self._buffer = b""
        self.loaded = None
        # A session of its own: Ctrl-C in the terminal reaches the driver only,
        # which then stops workers itself and keeps every finished record.
        # The worker asks the kernel for SIGKILL when the thread that started it ends
        # (PR_SET_PDEATHSIG is per thread): lanes close their worker before their thread returns.
        self.proc = subprocess.Popen(args, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._log,
                                     env=env, start_new_session=True)

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc else None

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        if self.proc is None:
            return
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                self.proc.kill()
        self.proc.wait()
        for stream in (self.proc.stdin, self.proc.stdout):
            if stream:
                stream.close()

    def close(self, timeout_s: float = 10.0) -> None:
        """Ask the worker to exit; kill it if it does not."""
        if self.alive():
            try:
                self.request({"op": "exit"}, timeout_s)
                self.proc.wait(timeout=timeout_s)
            except (WorkerFailed, subprocess.TimeoutExpired):
                pass
        self.kill()

    def restart(self) -> None:
        self.kill()
        self.start()

    def stderr_tail(self, lines: int = 15) -> str:
        if self._log is None:
            return ""
        self._log.seek(0, os.SEEK_END)
        size = self._log.tell()
        self._log.seek(max(0, size - 8192))
        text = self._log.read().decode(errors="replace")
        return "\n".join(text.strip().splitlines()[-lines:])

    # -- requests
    def request(self, message: dict[str, Any], timeout_s: float) -> dict[str, Any]:
        """Send one request and wait at most ``timeout_s`` for its answer."""
        if not self.alive():
            self.start()
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        try:
            self.proc.stdin.write((json.dumps(message) + "\n").encode())
            self.proc.stdin.flush()
        except (BrokenPipeError, OSError):
            raise self._died() from None
        deadline = time.monotonic() + timeout_s
        fd = self.proc.stdout.fileno()
        with selectors.DefaultSelector() as selector:
            selector.register(fd, selectors.EVENT_READ)
            while b"\n" not in self._buffer:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.kill()
                    raise WorkerFailed("timeout", f"no answer to {message.get('op')!r} within {timeout_s:.0f} s; worker killed")
                if not selector.select(timeout=min(remaining, 1.0)):
                    continue
                chunk = os.read(fd, 1 << 16)
                if not chunk:
                    raise self._died()
                self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        answer = json.loads(line)
        if not answer.get("ok") and answer.get("user_error"):
            # The one path for a user's mistake found inside a worker: the run stops with its line.
            raise UserError(answer["error"])
        return answer

    def _died(self) -> WorkerFailed:
        assert self.proc is not None
        try:
            code = self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.kill()
            code = self.proc.returncode
        how = f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}"
        tail = self.stderr_tail()
        return WorkerFailed("crash", f"worker died ({how})" + (f"; last output:\n{tail}" if tail else ""))


class Lane:
    """A device and the worker that runs jobs on it."""

    def __init__(self, device: Device, memory_limit_bytes: int | None = None, python: str | None = None):
        self.device = device
        self.worker = WorkerProcess(device, python=python, memory_limit_bytes=memory_limit_bytes)

    def use_python(self, python: str, extra_env: dict[str, str] | None = None) -> None:
        """Run the next groups under ``python`` (a runtime with its own environment, e.g. MXNet's)."""
        env = {**self.worker.extra_env, **(extra_env or {})}  # adds to what the lane set, never drops it
        if python != self.worker.python or env != self.worker.extra_env:
            self.worker.kill()
            self.worker.python, self.worker.extra_env = python, env

    def close(self) -> None:
        self.worker.close()


def _usable_cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def gpu_local_cpus(device: Device, available: list[int]) -> list[int]:
    """The CPUs NVML says are close to a GPU (its NUMA node), among ``available``; all if unknown."""
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = pynvml.nvmlDeviceGetHandleByUUID(device.uuid)
        mask = pynvml.nvmlDeviceGetCpuAffinity(handle, max(available) // 64 + 1)
        local = [c for c in available if (mask[c // 64] >> (c % 64)) & 1]
    except Exception:  # noqa: BLE001 -- no NVML or no UUID: every CPU is as close as any other
        return available
    return local or available


def split_cpus(local_sets: list[list[int]]) -> list[list[int]]:
    """One CPU set per lane: lanes whose GPUs share local CPUs split them into equal, disjoint parts."""
    lanes_of: dict[tuple[int, ...], list[int]] = {}
    for lane, cpus in enumerate(local_sets):
        lanes_of.setdefault(tuple(cpus), []).append(lane)
    shares: list[list[int]] = [[] for _ in local_sets]
    for cpus, lanes in lanes_of.items():
        for k, lane in enumerate(lanes):
            shares[lane] = list(cpus[k * len(cpus) // len(lanes):(k + 1) * len(cpus) // len(lanes)])
    return shares


def estimated_cost(group: Any) -> float:
    """Relative time a group will take, known before anything runs.

    Adaptive timing makes every throughput job last about as long as the
    others (at least ``min_run_s`` plus warm-up), so a throughput group costs
    one unit per job; a largest-batch search runs a dozen or more short trials
    and a model build each time one kills the worker, so it counts as eight.
    """
    from dlmark import tasks

    per_job = tasks.info(group.task).cost_per_job if hasattr(group, "task") else 1.0
    return per_job * len(getattr(group, "jobs", ()) or (None,))


def _family(group: Any) -> str | None:
    model = getattr(group, "model", None)
    return getattr(model, "family", None)


def take_next(pending: list[Any], last_family: str | None) -> Any:
    """Remove and return the next group for a lane that last ran ``last_family``.

    The first pending group of that family if any, else the first pending group.
    cuDNN's autotuning results live in the worker process, per convolution shape,
    and models of a family share most shapes: on the H200, VGG-16 warmed up in
    13 s after VGG-11 on the same lane and in 33 s on a lane of its own.
    """
    index = next((i for i, g in enumerate(pending) if last_family and _family(g) == last_family), 0)
    return pending.pop(index)


def schedule_order(groups: list[Any]) -> list[Any]:
    """Largest groups first, plan order among equals.

    Lanes take the next group when they are free, so the run ends with the
    last group to finish; starting the long ones first keeps that last group
    short (longest-processing-time-first list scheduling).
    """
    return sorted(groups, key=lambda g: -estimated_cost(g))


class LocalExecutor:
    """One lane per device on this host; groups go to whichever lane is free."""

    def __init__(self, devices: list[Device], memory_limit_bytes: int | None = None, python: str | None = None):
        self.lanes = [Lane(d, memory_limit_bytes, python) for d in devices]
        if len(devices) > 1 and all(d.kind == "cuda" for d in devices):
            # GPU lanes launch kernels from the host: each gets its own CPUs, near its GPU,
            # so that one lane's host work (input generation, launches) cannot slow another's.
            shares = split_cpus([gpu_local_cpus(d, _usable_cpus()) for d in devices])
            if shares and all(shares):
                for lane, cpus in zip(self.lanes, shares):
                    lane.worker.cpus = cpus

    def run(self, groups: list[Any], run_group: Callable[[Any, Lane], None], stop: threading.Event) -> None:
        """Run every group through ``run_group(group, lane)``; returns when all are done or ``stop`` is set."""
        pending = list(schedule_order(groups) if len(self.lanes) > 1 else groups)
        lock = threading.Lock()
        errors: list[BaseException] = []

        def drain(lane: Lane) -> None:
            last_family = None
            try:
                while not stop.is_set():
                    with lock:
                        if not pending:
                            return
                        # One lane keeps plan order; several keep families together.
                        group = take_next(pending, last_family if len(self.lanes) > 1 else None)
                    last_family = _family(group)
                    run_group(group, lane)
            except BaseException as exc:  # noqa: BLE001 -- surfaced in the driver thread below
                errors.append(exc)
                stop.set()
                # Stop means every lane, now: a job in flight elsewhere may have minutes to go.
                # Nothing of an interrupted job is kept; finished records are on disk.
                self.kill_all()
            finally:
                lane.close()

        if len(self.lanes) == 1:
            drain(self.lanes[0])
        else:
            threads = [threading.Thread(target=drain, args=(lane,), daemon=True, name=f"lane-{lane.device.spec}")
                       for lane in self.lanes]
            for thread in threads:
                thread.start()
            try:
                for thread in threads:
                    while thread.is_alive():
                        thread.join(timeout=0.5)
            except KeyboardInterrupt:
                stop.set()
                self.kill_all()
                for thread in threads:
                    thread.join()
                raise
        if errors:
            raise errors[0]

    def kill_all(self) -> None:
        for lane in self.lanes:
            lane.worker.kill()
