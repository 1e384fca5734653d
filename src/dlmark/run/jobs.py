"""What every task's driver half shares: the run's context, records, loading a model on a lane.

The rules that hold for every task live here: a finished job is skipped on
resume; a worker that dies or hangs while loading becomes a record for each
job of its group and is replaced; a user error raised inside a worker (a
missing package, absent weights, an unreadable data set) stops the run as a
UserError (``WorkerProcess.request``) and leaves no record.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from dlmark import tasks
from dlmark.analysis import efficiency
from dlmark.errors import UserError
from dlmark.measure.devices import Device
from dlmark.records import schema
from dlmark.run.local import Lane, WorkerFailed
from dlmark.run.options import RunOptions
from dlmark.run.plan import Group, Job, Variant

#: Seconds allowed for building a model in a worker (import, weights, FLOP count, compile set-up).
LOAD_TIMEOUT_S = 600.0


@dataclass
class RunContext:
    """What every lane shares during one ``dlmark run``."""

    options: RunOptions
    emit: Callable[[dict[str, Any]], None]  # the driver's writer: store + progress
    finished: dict[str, dict[str, Any]]  # job_key -> final record already on disk
    env: dict[str, Any]
    host: str
    stop: threading.Event = field(default_factory=threading.Event)
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:12])
    on_job_start: Callable[[Job, Device], None] = lambda job, device: None
    on_job_skipped: Callable[[Job, str], None] = lambda job, why: None
    on_progress: Callable[[Job, str], None] = lambda job, text: None  # a search's trials, as they end
    out_dir: Any = None  # the results folder, for files kept beside the records (LoadGen's logs)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def make_record(ctx: RunContext, job: Job, device: Device, facts: dict[str, Any], status: str,
                error: str | None = None, **fields: Any) -> dict[str, Any]:
    """A record of what was measured (derived figures are computed when read)."""
    config = job.config_fields(device, ctx.host)
    env = dict(ctx.env)
    env.update(facts.get("versions") or {})
    env["device_name"] = device.name
    env["threads"] = facts.get("threads")
    record = schema.new_record(
        job_key=job.key(device, ctx.host), task=job.task, model=job.model.name, family=job.model.family,
        source=job.model.source_ref, device=device.name, device_spec=device.spec,
        batch_size=job.batch_size, backend=job.backend, precision=job.precision, layout=job.layout,
        compile_mode=job.compile_mode, threads=facts.get("threads", job.threads),
        input_shape=facts.get("input_shape"), params=facts.get("params"),
        flops_per_sample=facts.get("flops_per_sample"), weights=facts.get("weights"),
        weights_tag=facts.get("weights_tag"), status=status, error=error, env=env, host=ctx.host,
        timestamp=_now(), run_id=ctx.run_id, suite=ctx.options.suite.name,
        extra_config=config["extra_config"], backend_version=facts.get("backend_version"),
    )
    record.update(facts.get("runtime_fields") or {})  # runtime options: ORT session, OpenVINO hint, ...
    record.update(efficiency.load_facts(facts))  # measured at load: activation traffic, output agreement
    record.update(fields)
    return record


def load_model(lane: Lane, backend: str, model_ref: str, variant: Variant,
               timeout_s: float = LOAD_TIMEOUT_S) -> dict[str, Any]:
    """Have the lane's worker hold ``model_ref`` on ``backend`` in ``variant``; the load's answer.

    The one way every task loads a model: a worker already holding the same model
    and configuration is reused (largest batch after throughput), and a runtime with
    an interpreter of its own (MXNet) gets its worker. Raises WorkerFailed.
    """
    from dlmark.backends.registry import interpreter, worker_env

    lane.use_python(interpreter(backend), worker_env(backend))
    worker = lane.worker
    request = {"op": "load", "backend": backend, "model": model_ref, "config": asdict(variant.run_config(lane.device))}
    key = json.dumps(request, sort_keys=True)
    held = worker.loaded
    if held and held[0] == key and worker.alive():
        return held[1]
    answer = worker.request(request, timeout_s)
    worker.loaded = (key, answer) if answer["ok"] else None
    return answer


def task_request(task: str, op: str, **fields: Any) -> dict[str, Any]:
    """A request for one of a task's worker operations (``tasks.worker_op``)."""
    return {"op": f"{task}.{op}", **fields}


def start_group(group: Group, lane: Lane, ctx: RunContext,
                stop_after: Callable[[dict[str, Any]], bool] = lambda record: False) -> tuple[list[Job], dict[str, Any]] | None:
    """Skip what is done, load the group's model; (jobs to run, load facts), or None when
    nothing is left to run (every failure already a record)."""
    device = lane.device
    todo = []
    for index, job in enumerate(group.jobs):
        done = ctx.finished.get(job.key(device, ctx.host))
        if done is not None and not ctx.options.force:
            ctx.on_job_skipped(job, "done")
            if stop_after(done):
                for rest in group.jobs[index + 1:]:
                    ctx.on_job_skipped(rest, f"after {done.get('status')}")
                break
            continue
        todo.append(job)
    if not todo or ctx.stop.is_set():
        return None
    ctx.on_job_start(todo[0], device)
    answer = restore(group, lane, ctx, todo, {})
    return None if answer is None else (todo, answer)


def restore(group: Group, lane: Lane, ctx: RunContext, jobs: list[Job], facts: dict[str, Any]) -> dict[str, Any] | None:
    """Load the group's model again if the lane's worker holds another (or died); the load's
    answer, or None when that failed (every job then a record)."""
    try:
        answer = load_model(lane, group.backend, group.model.source_ref, group.variant)
    except WorkerFailed as exc:
        if not ctx.stop.is_set():
            lane.worker.restart()
            for job in jobs:
                ctx.emit(make_record(ctx, job, lane.device, facts, exc.status, f"while loading the model: {exc}"))
        return None
    if not answer["ok"]:
        limit = ctx.options.memory_limit_bytes
        if limit and _out_of_memory(answer):
            # The cap is the user's: a model that cannot even load under it is a setting to change,
            # not a result of the model.
            raise UserError(f"--memory-limit {limit / 2**30:.2f} GiB is too small to load {group.model.name} "
                            f"({str(answer['error']).splitlines()[0].split(' Error code')[0][:200]}); the limit counts the runtime's own "
                            f"memory too: raise it")
        for job in jobs:
            ctx.emit(make_record(ctx, job, lane.device, facts, answer["status"], f"while loading the model: {answer['error']}"))
        return None
    return answer


def _out_of_memory(answer: dict[str, Any]) -> bool:
    error = str(answer.get("error") or "")
    return answer.get("status") == "oom" or "MemoryError" in error or "allocate memory" in error


def run_job(ctx: RunContext, lane: Lane, job: Job, facts: dict[str, Any], request: dict[str, Any],
            as_fields: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
            **failed_fields: Any) -> dict[str, Any] | None:
    """One job's request on the lane's worker, its outcome a record (emitted and returned); None when
    the run was stopped meanwhile. A worker that died or hung is replaced and the record says
    ``crash`` or ``timeout``; ``failed_fields`` describe the configuration in a failed job's record,
    ``as_fields`` turns a successful answer into record fields (default: the answer as it is)."""
    try:
        answer = lane.worker.request(request, ctx.options.timeout_s)
    except WorkerFailed as exc:
        if ctx.stop.is_set():
            return None
        record = make_record(ctx, job, lane.device, facts, exc.status, str(exc), **failed_fields)
        ctx.emit(record)
        lane.worker.restart()
        return record
    if answer["ok"]:
        fields = as_fields(answer) if as_fields else {k: v for k, v in answer.items() if k != "ok"}
        record = make_record(ctx, job, lane.device, facts, "ok", **fields)
    else:
        record = make_record(ctx, job, lane.device, facts, answer["status"], answer["error"], **failed_fields)
    ctx.emit(record)
    return record


#: Statuses after which a group's later jobs are not run: a batch that ran out of memory, killed or
#: hung the worker would do so again, larger ones likely too.
ENDS_GROUP = ("oom", "crash", "timeout")


def run_group(group: Group, lane: Lane, ctx: RunContext) -> None:
    """Run one group's jobs on ``lane`` through its task; every job ends as a record or is skipped."""
    tasks.get(group.task).run_group(group, lane, ctx)
