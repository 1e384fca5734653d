"""The Ray executor: every group of jobs is a Ray task on whichever node has a free device.

The driver plans exactly as for local runs and stays the only writer of the
result store. Each group (one model x one configuration) becomes a Ray task
asking for one GPU (optionally of one accelerator type) or for the CPUs of a
CPU job. Inside the task an ordinary dlmark ``WorkerProcess`` does the work
through ``execution.run_group``, the same code the local executor runs, so
timeouts, out-of-memory rules and failure records are the same by
construction. The task is a Ray streaming generator: every record, job start
and skip travels back the moment it exists, and the driver writes and shows
it. A task whose Ray worker dies becomes a ``crash`` record for the job it was
running, as a dead dlmark worker does locally.

Ray is optional (``pip install -e '.[ray]'``); nothing here imports it at
module load.
"""
from __future__ import annotations

import dataclasses
import os
import queue
import socket
import threading
import time
from collections import deque
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from dlmark.measure import environment
from dlmark.measure.devices import Device
from dlmark.errors import UserError
from dlmark.run.jobs import RunContext, make_record
from dlmark.run.local import Lane, schedule_order
from dlmark.run.plan import Group

INSTALL_HINT = "the Ray executor needs Ray: pip install -e '.[ray]'"
_ACCELERATOR_PREFIX = "accelerator_type:"


def import_ray():
    """The ray module, or a UserError naming the extra to install."""
    try:
        import ray
    except ImportError:
        raise UserError(INSTALL_HINT) from None
    return ray


@dataclass(frozen=True)
class Target:
    """Where a copy of the sweep runs: one GPU of a type (any type if None), or CPUs."""

    kind: str  # "gpu" or "cpu"
    accelerator_type: str | None = None

    def describe(self) -> str:
        if self.kind == "cpu":
            return "CPU"
        return f"GPU ({self.accelerator_type})" if self.accelerator_type else "GPU"


def accelerator_types(resources: dict[str, float]) -> list[str]:
    """Accelerator types a cluster offers, from ``ray.cluster_resources()``."""
    return sorted(k[len(_ACCELERATOR_PREFIX):] for k, v in resources.items()
                  if k.startswith(_ACCELERATOR_PREFIX) and v > 0)


def resolve_targets(resources: dict[str, float], want_gpu: bool, accelerator_type: str | None = None,
                    each_accelerator: bool = False, include_cpu: bool = False) -> list[Target]:
    """The targets a run asks for, checked against what the cluster has.

    Asking for something the cluster lacks is a user error now, not a task
    that Ray keeps pending forever.
    """
    types = accelerator_types(resources)
    gpus = resources.get("GPU", 0)
    targets: list[Target] = []
    if each_accelerator:
        if types:
            targets = [Target("gpu", t) for t in types]
        elif gpus:
            targets = [Target("gpu")]  # GPUs without a type label: one copy on any of them
        if include_cpu:
            targets.append(Target("cpu"))
        if not targets:
            raise UserError("--each-accelerator: this Ray cluster offers no accelerator "
                            "(no GPU, no accelerator_type:* resource); add --include-cpu to measure its CPUs")
        return targets
    if include_cpu and want_gpu:
        targets.append(Target("cpu"))
    if not want_gpu:
        return [Target("cpu")]
    if accelerator_type:
        if accelerator_type not in types:
            offered = ", ".join(types) or "none"
            raise UserError(f"the Ray cluster has no accelerator of type {accelerator_type!r}; it offers: {offered}")
        return [Target("gpu", accelerator_type)] + targets
    if not gpus:
        raise UserError("the Ray cluster has no GPU; use --device cpu for a CPU run")
    return [Target("gpu")] + targets


def _check_reachable(address: str, timeout_s: float = 5.0) -> None:
    """UserError now for a HOST:PORT nobody listens on (ray.init would retry for minutes)."""
    hostport = address.split("://", 1)[-1]
    host, sep, port = hostport.rpartition(":")
    if not sep or not port.isdigit():
        return  # "auto", "local" and the like: Ray resolves them itself, quickly
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
    except OSError as exc:
        raise UserError(f"cannot reach the Ray cluster at {address}: {exc}") from None


def _min_node_cpus(ray) -> int:
    counts = [int(n["Resources"].get("CPU", 0)) for n in ray.nodes() if n.get("Alive")]
    counts = [c for c in counts if c > 0]
    return min(counts) if counts else 1


class RayExecutor:
    """Runs groups as Ray tasks; the driver writes every record.

    ``ctx`` is the driver's run context (its ``emit`` writes the store).
    ``cpus_per_cpu_job``: CPUs one CPU job reserves; by default a whole node
    (the smallest), because two benchmarks sharing cores measure each other.
    ``max_in_flight``: tasks submitted at once (default: see ``window``).
    """

    def __init__(self, ctx: RunContext, want_gpu: bool, address: str | None = None,
                 accelerator_type: str | None = None, each_accelerator: bool = False, include_cpu: bool = False,
                 num_cpus: int | None = None, cpus_per_cpu_job: int | None = None, max_in_flight: int | None = None):
        self.ray = import_ray()
        self.max_in_flight = max_in_flight
        self.ctx = ctx
        self._started_here = False
        if not self.ray.is_initialized():
            init: dict[str, Any] = dict(include_dashboard=False, log_to_driver=False)
            if address:
                _check_reachable(address)
                init["address"] = address
            else:
                # A local instance: this host's CPUs; the GPUs Ray finds by itself.
                init["num_cpus"] = num_cpus or environment.usable_cpus()
            try:
                self.ray.init(**init)
            except ConnectionError as exc:
                # Ray's own text names its `ray start --address` flag; ours is --ray-address.
                where = address or os.environ.get("RAY_ADDRESS")
                raise UserError(f"cannot reach the Ray cluster at {where!r} ({str(exc).split('.')[0]}); give "
                                f"--ray-address HOST:PORT of a running cluster (`ray start --head` starts one), "
                                f"or leave --ray-address out to start a local Ray instance") from None
            self._started_here = True
        try:
            self.targets = resolve_targets(self.ray.cluster_resources(), want_gpu, accelerator_type,
                                           each_accelerator, include_cpu)
            self.cpus_per_cpu_job = cpus_per_cpu_job or ctx.options.threads or _min_node_cpus(self.ray)
            largest = max((int(n["Resources"].get("CPU", 0)) for n in self.ray.nodes() if n.get("Alive")), default=0)
            if any(t.kind == "cpu" for t in self.targets) and self.cpus_per_cpu_job > largest:
                # Ray would keep such a task pending forever.
                raise UserError(f"a CPU job would ask for {self.cpus_per_cpu_job} CPUs, but the largest Ray node "
                                f"has {largest}; lower --threads")
        except BaseException:
            if self._started_here:
                self.ray.shutdown()
            raise
        self._active: dict[Any, _TaskState] = {}

    @property
    def copies(self) -> int:
        """How many times each job runs (once per target)."""
        return len(self.targets)

    def window(self) -> int:
        """Tasks in flight at once: twice the jobs the cluster can run together, so none idles."""
        if self.max_in_flight:
            return self.max_in_flight
        resources = self.ray.cluster_resources()
        slots = 0
        if any(t.kind == "gpu" for t in self.targets):
            slots += int(resources.get("GPU", 0))
        if any(t.kind == "cpu" for t in self.targets):
            slots += int(resources.get("CPU", 0)) // max(1, self.cpus_per_cpu_job)
        return max(4, 2 * slots)

    def _task_options(self, target: Target) -> dict[str, Any]:
        # Back-pressure 1: a task goes on only after the driver took its last event (see _group_task.send).
        common = dict(num_returns="streaming", max_retries=0, retry_exceptions=False,
                      _generator_backpressure_num_objects=1)
        if target.kind == "cpu":
            return dict(common, num_cpus=self.cpus_per_cpu_job, num_gpus=0)
        options = dict(common, num_gpus=1, num_cpus=1)
        if target.accelerator_type:
            options["accelerator_type"] = target.accelerator_type
        return options

    def run(self, groups: list[Group], run_group: Callable[..., None] | None = None,
            stop: threading.Event | None = None) -> None:
        """Run every group on every target; returns when all are done or ``stop`` is set.

        ``run_group`` is accepted for the executor contract; the remote side
        always runs ``execution.run_group`` (a driver-side closure cannot
        travel to another host).
        """
        ray, ctx = self.ray, self.ctx
        stop = stop or ctx.stop
        # Only what resume needs: the status of every finished job, shipped once for all tasks.
        finished_ref = ray.put({k: {"status": r.get("status")} for k, r in ctx.finished.items()})
        remote = ray.remote(_group_task)
        # Largest groups first, interleaved over targets. Only a window of tasks is
        # submitted at a time: that keeps this order (Ray does not promise FIFO) and
        # keeps each ray.wait short when the plan has tens of thousands of groups.
        pending = deque((group, target) for group in schedule_order(groups) for target in self.targets)
        window = self.window()
        completed = False
        try:
            while (pending or self._active) and not stop.is_set():
                while pending and len(self._active) < window:
                    group, target = pending.popleft()
                    generator = remote.options(**self._task_options(target)).remote(
                        group, target, ctx.options, finished_ref, ctx.run_id, self.cpus_per_cpu_job)
                    self._active[generator] = _TaskState(group, target)
                ready, _ = ray.wait(list(self._active), num_returns=1, timeout=0.5)
                for generator in ready:
                    self._advance(generator)
            completed = not pending and not self._active
        finally:
            if not completed:
                self.kill_all()
            if self._started_here:
                ray.shutdown()

    def _advance(self, generator) -> None:
        """Take the next event of one task: a record, a job start or skip, or its end."""
        state = self._active[generator]
        try:
            event = self.ray.get(next(generator))
        except StopIteration:
            del self._active[generator]
            return
        except Exception as exc:  # noqa: BLE001 -- a dead Ray worker, cancellation, a bug in the task
            del self._active[generator]
            if self.ctx.stop.is_set():
                return
            if isinstance(exc, self.ray.exceptions.RayTaskError):
                # The task's own code raised: a bug in dlmark, which stops a local run too.
                raise RuntimeError(f"{state.group.model.name} on {state.target.describe()}: {exc}") from exc
            self._task_died(state, exc)
            return
        kind = event[0]
        if kind == "hello":
            _, device, host, env = event
            state.device = device
            state.ctx = dataclasses.replace(self.ctx, host=host, env=env)
        elif kind == "start":
            state.running = event[1]
            self.ctx.on_job_start(state.group.jobs[event[1]], state.device)
        elif kind == "skip":
            state.accounted.add(event[1])
            self.ctx.on_job_skipped(state.group.jobs[event[1]], event[2])
        elif kind == "record":
            state.accounted.add(event[1])
            state.running = None
            self.ctx.emit(event[2])
        elif kind == "user_error":  # raised in the task's run: the run stops with its line, as locally
            raise UserError(event[1])

    def _task_died(self, state: _TaskState, exc: BaseException) -> None:
        """The Ray worker itself died: the job it ran crashed, the rest are skipped (as locally)."""
        message = f"Ray task died ({type(exc).__name__}): {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"
        if state.device is None or state.ctx is None:
            # Died before saying where it ran: no key can be computed, so nothing can be recorded.
            raise RuntimeError(f"{state.group.model.name} on {state.target.describe()}: {message}") from exc
        jobs = state.group.jobs
        remaining = [i for i in range(len(jobs)) if i not in state.accounted]
        if not remaining:
            return
        crashed = state.running if state.running is not None else remaining[0]
        self.ctx.emit(make_record(state.ctx, jobs[crashed], state.device, {}, "crash", message))
        for index in remaining:
            if index != crashed:
                if state.group.task == "throughput":
                    self.ctx.on_job_skipped(jobs[index], "after crash")
                else:
                    self.ctx.emit(make_record(state.ctx, jobs[index], state.device, {}, "crash", message))

    def kill_all(self) -> None:
        """Cancel every task still running; each kills its dlmark worker on the way out."""
        for generator in list(self._active):
            try:
                self.ray.cancel(generator)
            except Exception:  # noqa: BLE001 -- already finished or gone
                pass
        deadline = time.monotonic() + 10.0
        # Give cancelled tasks a moment to kill their workers before a shutdown would orphan them.
        while self._active and time.monotonic() < deadline:
            ready, _ = self.ray.wait(list(self._active), num_returns=1, timeout=0.5)
            for generator in ready:
                try:
                    next(generator)
                except StopIteration:
                    pass
                except Exception:  # noqa: BLE001
                    pass
                self._active.pop(generator, None)
        self._active.clear()


@dataclass
class _TaskState:
    group: Group
    target: Target
    device: Device | None = None
    ctx: RunContext | None = None
    running: int | None = None  # index of the job in flight
    accounted: set = dataclasses.field(default_factory=set)  # job indices recorded or skipped


# ------------------------------------------------------------------ inside the Ray task


def task_device(target: Target) -> Device:
    """The device Ray gave this task, named as local runs name it."""
    from dlmark.measure import devices

    if target.kind == "cpu":
        return devices.cpu()
    import ray
    import pynvml

    gpu_id = str(ray.get_gpu_ids()[0])
    pynvml.nvmlInit()
    if gpu_id.isdigit():
        handle = pynvml.nvmlDeviceGetHandleByIndex(int(gpu_id))
    else:
        handle = pynvml.nvmlDeviceGetHandleByUUID(gpu_id)
    name, uuid = pynvml.nvmlDeviceGetName(handle), pynvml.nvmlDeviceGetUUID(handle)
    name = name.decode() if isinstance(name, bytes) else name
    uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
    # The physical index on its host, so records say which GPU of the node it was.
    return Device(f"cuda:{gpu_id}" if gpu_id.isdigit() else "cuda", "cuda", name, 0, uuid)


_DONE = object()


def _group_task(group: Group, target: Target, options, finished: dict[str, dict[str, Any]], run_id: str,
                cpus: int) -> Iterator[tuple]:
    """One group on the device Ray assigned; yields events for the driver (see RayExecutor._advance)."""
    from dlmark.run.jobs import run_group

    device = task_device(target)
    host = environment.host()
    env = environment.capture()
    yield ("hello", device, host, env)
    events: queue.Queue = queue.Queue()
    stopping = threading.Event()

    def send(event: tuple) -> None:
        """Hand an event to the driver and wait until it has taken it.

        With back-pressure 1 the generator resumes only once the driver has
        consumed the last item, so a record is the driver's before the next job
        starts: a Ray worker killed by that job cannot take the record with it.
        """
        taken = threading.Event()
        events.put((event, taken))
        while not taken.wait(0.5) and not stopping.is_set():
            pass

    index = {id(job): i for i, job in enumerate(group.jobs)}
    ctx = RunContext(
        options=options, emit=lambda record: send(("record", _job_index(group, record, device, host), record)),
        finished=finished, env=env, host=host, run_id=run_id,
        on_job_start=lambda job, _device: send(("start", index[id(job)])),
        on_job_skipped=lambda job, why: events.put((("skip", index[id(job)], why), None)),
    )
    lane = Lane(device, options.memory_limit_bytes)
    # Ray sets OMP_NUM_THREADS to the task's CPU reservation. A CPU job keeps it (its
    # threads match the cores it owns); a GPU job reserves one CPU only for Ray's
    # bookkeeping, so its worker gets the runtime's default threads, as a local GPU lane does.
    lane.worker.extra_env["OMP_NUM_THREADS"] = str(options.threads or cpus) if target.kind == "cpu" else None
    failure: list[BaseException] = []

    def work() -> None:
        try:
            run_group(group, lane, ctx)
        except UserError as exc:
            events.put((("user_error", str(exc)), None))
        except BaseException as exc:  # noqa: BLE001 -- re-raised in the task's main thread
            failure.append(exc)
        finally:
            events.put(_DONE)

    thread = threading.Thread(target=work, name=f"dlmark-{group.model.name}", daemon=True)
    thread.start()
    try:
        while True:
            item = events.get()
            if item is _DONE:
                break
            event, taken = item
            yield event
            if taken is not None:
                taken.set()
        if failure:
            raise failure[0]
    finally:
        # Normal end, cancellation (KeyboardInterrupt here) or error: the worker must not outlive the task.
        stopping.set()
        ctx.stop.set()
        lane.worker.kill()
        thread.join(timeout=10)
        lane.worker.kill()

def _job_index(group: Group, record: dict[str, Any], device: Device, host: str) -> int:
    for i, job in enumerate(group.jobs):
        if job.key(device, host) == record["job_key"]:
            return i
    raise RuntimeError(f"record {record['job_key']} matches no job of its group")

