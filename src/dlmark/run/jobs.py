"""Running a group of jobs on a lane's worker and turning every outcome into a record.

This is where the sweep rules live: a throughput sweep stops at a model's
first out-of-memory; a crash or hang becomes a record and the worker is
replaced; finished jobs are skipped on resume; the largest-batch search runs
here, driver-side, so a trial that kills the worker is just a failed trial.
"""
from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from dataclasses import asdict, dataclass, field
from typing import Any, Callable

from dlmark.analysis import efficiency as hardware
from dlmark.records import schema
from dlmark.backends import RunConfig
from dlmark.measure.devices import Device
from dlmark.errors import UserError
from dlmark.run.local import Lane, WorkerFailed
from dlmark.run.plan import Group, Job, RunOptions
from dlmark.tasks import max_batch_size

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
    user_errors: list[str] = field(default_factory=list)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")


def make_record(ctx: RunContext, job: Job, device: Device, facts: dict[str, Any], status: str,
                error: str | None = None, **fields: Any) -> dict[str, Any]:
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
    record.update(fields)
    record.update(hardware.record_extras(record, facts, ctx.finished.values()))  # MFU, roofline, agreement
    return record


def run_group(group: Group, lane: Lane, ctx: RunContext) -> None:
    """Run one group's jobs on ``lane``; every job ends as a record or is skipped."""
    if group.task == "accuracy":
        from dlmark.tasks import accuracy

        accuracy.run_group(group, lane, ctx)
        return
    device, worker = lane.device, lane.worker
    todo = []
    for job in group.jobs:
        done = ctx.finished.get(job.key(device, ctx.host))
        if done is not None and not ctx.options.force:
            ctx.on_job_skipped(job, "done")
            if job.task == "throughput" and done.get("status") == "oom":
                # Measured before: this batch ran out of memory, so larger ones will too.
                for rest in group.jobs[group.jobs.index(job) + 1:]:
                    ctx.on_job_skipped(rest, "after oom")
                break
            continue
        todo.append(job)
    if not todo or ctx.stop.is_set():
        return
    config = RunConfig(device=device.worker_device, precision=group.precision, layout=group.layout,
                       compile_mode=group.compile_mode, threads=group.threads)
    load_request = {"op": "load", "backend": group.backend, "model": group.model.source_ref, "config": asdict(config)}
    load_key = json.dumps(load_request, sort_keys=True)

    def load() -> dict[str, Any]:
        answer = worker.request(load_request, LOAD_TIMEOUT_S)
        worker.loaded = (load_key, answer) if answer["ok"] else None
        return answer

    if hasattr(lane, "use_python"):  # some runtimes (MXNet) run under an interpreter of their own
        from dlmark.backends.registry import interpreter, worker_env

        lane.use_python(interpreter(group.backend), worker_env(group.backend))
    ctx.on_job_start(todo[0], device)
    try:
        held = getattr(worker, "loaded", None)
        answer = held[1] if held and held[0] == load_key and worker.alive() else load()
    except WorkerFailed as exc:
        if ctx.stop.is_set():
            return
        worker.restart()
        for job in todo:
            ctx.emit(make_record(ctx, job, device, {}, exc.status, f"while loading the model: {exc}"))
        return
    if not answer["ok"]:
        if answer.get("user_error"):
            ctx.user_errors.append(answer["error"])
        for job in todo:
            ctx.emit(make_record(ctx, job, device, {}, answer["status"], f"while loading the model: {answer['error']}"))
        return
    facts = answer
    if group.task == "throughput":
        from dlmark.run import agreement

        # Every runtime but PyTorch fp32 eager is checked against it on a seeded input.
        facts = {**facts, **agreement.check(group, load_request["model"], worker, device, facts, ctx.options.timeout_s)}
        if not worker.alive():  # the check input took the worker down: load again before timing
            load()
        _run_throughput(todo, lane, ctx, facts, load)
    else:
        for job in todo:
            _run_max_batch(job, lane, ctx, facts, load)


def _run_throughput(jobs: list[Job], lane: Lane, ctx: RunContext, facts: dict[str, Any],
                    load: Callable[[], dict[str, Any]]) -> None:
    device, worker = lane.device, lane.worker
    for index, job in enumerate(jobs):
        if ctx.stop.is_set():
            return
        if index:
            ctx.on_job_start(job, device)
        request = {"op": "throughput", "batch_size": job.batch_size, "timing": ctx.options.timing_for(device.kind)}
        try:
            answer = worker.request(request, ctx.options.timeout_s)
        except WorkerFailed as exc:
            if ctx.stop.is_set():
                return
            ctx.emit(make_record(ctx, job, device, facts, exc.status, str(exc)))
            worker.restart()
            # A batch that killed or hung the worker would do so again, larger ones likely too.
            for rest in jobs[index + 1:]:
                ctx.on_job_skipped(rest, f"after {exc.status}")
            return
        if answer["ok"]:
            fields = {k: v for k, v in answer.items() if k not in ("ok",)}
            ctx.emit(make_record(ctx, job, device, facts, "ok", **fields))
            continue
        ctx.emit(make_record(ctx, job, device, facts, answer["status"], answer["error"]))
        if answer["status"] == "oom":
            for rest in jobs[index + 1:]:
                ctx.on_job_skipped(rest, "after oom")
            return


def _run_max_batch(job: Job, lane: Lane, ctx: RunContext, facts: dict[str, Any],
                   load: Callable[[], dict[str, Any]]) -> None:
    device, worker = lane.device, lane.worker
    cap = int(job.extra.get("cap", max_batch_size.DEFAULT_CAP))
    # Where a trial may stop past the memory peak: a success near the limit is a whole
    # pass of a huge batch otherwise. The answer itself is run whole (search's verify).
    where = {}
    try:
        answer = worker.request({"op": "profile"}, ctx.options.timeout_s)
        where = answer if answer.get("ok") else {}
    except WorkerFailed:
        worker.kill()  # the first trial loads the model again
    stops = max_batch_size.StopPlan(where.get("exit_call"))

    def trial(batch: int, whole: bool) -> max_batch_size.Trial:
        if ctx.stop.is_set():
            raise _Stopped()
        stop = {"stop_after_call": None} if whole else stops.request()
        began = time.perf_counter()
        try:
            if not worker.alive():
                reload = load()  # the previous trial took the worker down: start clean
                if not reload["ok"]:
                    return max_batch_size.Trial(batch, "error", time.perf_counter() - began, reload["error"])
            answer = worker.request({"op": "probe", "batch_size": batch, **stop}, ctx.options.timeout_s)
        except WorkerFailed as exc:
            if ctx.stop.is_set():
                raise _Stopped() from None
            worker.kill()
            return max_batch_size.Trial(batch, exc.status, time.perf_counter() - began, str(exc)[:500],
                                        stop_after_call=stop["stop_after_call"])
        if answer["ok"]:
            stops.learn(answer)
        return max_batch_size.Trial(batch, "ok" if answer["ok"] else answer["status"], time.perf_counter() - began,
                                    answer.get("error"), peak_bytes=answer.get("peak_bytes"),
                                    budget_bytes=answer.get("budget_bytes"),
                                    allocated_bytes=answer.get("allocated_bytes"),
                                    partial=bool(answer.get("partial")), stop_after_call=stop["stop_after_call"],
                                    pass_s=answer.get("pass_s"))

    try:
        result = max_batch_size.search(
            lambda batch: trial(batch, whole=False), cap=cap,
            verify=(lambda batch: trial(batch, whole=True)) if stops.profiled_call is not None else None)
    except _Stopped:
        return
    trials = [asdict(t) for t in result.trials]
    # The limit is whatever stopped the smallest failing batch: usually memory, sometimes a
    # kernel's own limit (32-bit indexing) at huge batches. Either way that batch does not run.
    limit = next((t for t in result.trials if t.batch_size == result.first_failing_batch and t.status != "ok"), None)
    if result.max_batch_size:
        status, error = "ok", None
    else:
        status = limit.status if limit else "error"
        error = f"even batch size 1 does not run: {limit.error if limit else 'unknown'}"
    fields = dict(
        max_batch_size=result.max_batch_size, first_failing_batch=result.first_failing_batch,
        cap=cap, capped=result.capped, trials=trials, num_trials=len(trials), search_s=result.seconds,
        limit_status=limit.status if limit else None, limit_error=limit.error if limit else None,
        memory_limit_mb=(ctx.options.memory_limit_bytes / 2**20) if ctx.options.memory_limit_bytes else None,
        early_exit_call=stops.call, early_exit_call_profiled=stops.profiled_call, leaf_calls=where.get("leaf_calls"),
    )
    record = make_record(ctx, job, device, facts, status, error, **fields)
    record["batch_size"] = result.max_batch_size  # the seed's plot reads the largest batch from this column
    ctx.emit(record)


class _Stopped(Exception):
    """The run was interrupted; the search in flight is dropped, not recorded."""


def raise_user_errors(ctx: RunContext) -> None:
    if ctx.user_errors:
        raise UserError(ctx.user_errors[0])
