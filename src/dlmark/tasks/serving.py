"""Serving scenarios through MLPerf's LoadGen: Offline, SingleStream, MultiStream, Server, and the
largest Server load whose p99 stays within a bound.

LoadGen (``measure.loadgen``) owns the arrivals, the latency from the scheduled time and the
verdict; this task plans one job per scenario, runs it on the lane's worker, keeps LoadGen's
summary and detail logs beside the records (``loadgen/`` in the results folder), and drives
the Server QPS search from the driver, each step a real LoadGen run and a record of its own.
"""
from __future__ import annotations

from dataclasses import fields as dataclass_fields
from pathlib import Path
from typing import Any

from dlmark.errors import UserError

# The scenarios and settings are validated with the run's options (run.options), before any work.
from dlmark.run.options import KNOBS, SCENARIOS  # noqa: E402,F401  -- the task's own names for them

#: The runtimes whose models come with an eval transform (``backends.torch_source.model_behind``): they can serve images.
IMAGE_RUNTIMES = ("pytorch", "onnxruntime", "openvino")


# ----------------------------------------------------------------- worker side


def _settings(request: dict[str, Any]):
    from dlmark.measure.loadgen import ServingSettings

    known = {f.name for f in dataclass_fields(ServingSettings)}
    return ServingSettings(**{k: v for k, v in (request.get("settings") or {}).items() if k in known})


#: The last (runner, samples request) of this worker and its ImageSamples: a Server search sends one
#: request per load it tries, and each would decode the whole set again. The runner is held weakly:
#: a worker holds one model at a time, and an old one must not stay in memory for this.
_last_images: tuple[Any, str, Any] | None = None


def _images(runner, request: dict[str, Any]):
    """The decoded images the library holds (``--input``), or None for generated samples."""
    global _last_images
    samples = request.get("samples")
    if not samples:
        return None
    import json
    import weakref

    from dlmark.inputs import jpegs
    from dlmark.inputs.samples import ImageSamples

    key = json.dumps(samples, sort_keys=True, default=str)
    if _last_images is not None and _last_images[0]() is runner and _last_images[1] == key:
        return _last_images[2]  # decoded on the library's first load, kept in the object
    count = int(samples["images"])
    images = jpegs.open_images(samples.get("folder"), limit=count, count=count)
    made = ImageSamples.for_runner(runner, images, samples["decoder"])
    _last_images = (weakref.ref(runner), key, made)
    return made


def run_op(runner, request: dict[str, Any]) -> dict[str, Any]:
    from dlmark.measure.loadgen import run_scenario

    return run_scenario(runner, request["scenario"], request["log_dir"], _settings(request), name=request["name"],
                        images=_images(runner, request))


def estimate_op(runner, request: dict[str, Any]) -> dict[str, Any]:
    from dlmark.measure.loadgen import estimate_capacity

    return estimate_capacity(runner, _settings(request), images=_images(runner, request))


WORKER_OPS = {"run": run_op, "estimate": estimate_op}


# ----------------------------------------------------------------- driver side


def preflight(options) -> None:
    from dlmark.measure.loadgen import _lg

    _lg()  # LoadGen installed, or one line naming the package
    if options.input is None:
        return
    from dlmark.backends.registry import expand
    from dlmark.tasks.pipeline import check_images

    others = sorted({backend for backend, _ in expand(options.runtimes, options.compile_modes)} - set(IMAGE_RUNTIMES))
    if others:
        raise UserError(f"the serving scenarios feed decoded images to pytorch, onnxruntime or openvino; "
                        f"{', '.join(others)} cannot take them yet: drop --input, or use another --backend")
    if "pipeline" not in options.tasks:  # else the pipeline task's preflight has checked them
        check_images(options)


def plan_jobs(options, model, variant, planned: set) -> list:
    from dlmark.run.plan import job

    knobs = {k: v for k, v in sorted(options.serving.items()) if v is not None}
    if options.input is not None:
        # The images are part of the configuration (and of the job key): generated samples' keys stay.
        from dlmark.tasks.pipeline import image_extra

        knobs.update(image_extra(options))
    jobs = []
    for scenario in options.scenarios:
        if scenario == "offline":
            for b in sorted(set(options.batch_sizes)):
                jobs.append(job("serving", model, variant, b, scenario=scenario, **knobs))
            continue
        batch = {"single-stream": 1, "multi-stream": knobs.get("samples_per_query", 8),
                 "server": knobs.get("max_batch", 8)}[scenario]
        search = scenario == "server" and knobs.get("latency_bound_ms") is not None and not knobs.get("target_qps")
        jobs.append(job("serving", model, variant, batch, scenario=scenario, **knobs,
                        **({"search": "largest_qps_within_bound"} if search else {})))
    return jobs


def run_group(group, lane, ctx) -> None:
    from dlmark.run.jobs import start_group

    started = start_group(group, lane, ctx)
    if started is None:
        return
    jobs, facts = started
    for index, job in enumerate(jobs):
        if ctx.stop.is_set():
            return
        if index:
            ctx.on_job_start(job, lane.device)
        if job.extra.get("search"):
            _search(job, group, lane, ctx, facts)
        else:
            _run_one(job, lane, ctx, facts)


def _settings_for(job) -> dict[str, Any]:
    settings = {k: v for k, v in job.extra.items() if k in KNOBS}
    if job.extra["scenario"] == "offline":
        settings["batch_size"] = job.batch_size
    return settings


def _log_dir(ctx) -> Path:
    return Path(ctx.out_dir or ".") / "loadgen"


def _fields(answer: dict[str, Any], ctx) -> dict[str, Any]:
    fields = {k: v for k, v in answer.items() if k != "ok"}
    for key in ("log_summary", "log_detail"):  # kept beside the records: named relative to the folder
        if fields.get(key) and ctx.out_dir:
            try:
                fields[key] = str(Path(fields[key]).resolve().relative_to(Path(ctx.out_dir).resolve()))
            except ValueError:
                pass
    if fields.get("scenario") in ("offline", "server"):
        fields["throughput"] = fields.get("samples_per_s")  # the seed's column: samples/s
    return fields


def _samples_for(job) -> dict[str, Any] | None:
    """What the worker's library loads: the job's images (``--input``), or None for generated samples."""
    extra = job.extra
    if not extra.get("input"):
        return None
    return {"folder": extra["input"].partition(":")[2] or None, "decoder": extra["decoder"], "images": extra["images"]}


def _run_one(job, lane, ctx, facts: dict[str, Any]) -> dict[str, Any] | None:
    from dlmark.run.jobs import run_job, task_request

    request = task_request("serving", "run", scenario=job.extra["scenario"], settings=_settings_for(job),
                           log_dir=str(_log_dir(ctx)), name=job.key(lane.device, ctx.host), samples=_samples_for(job))
    return run_job(ctx, lane, job, facts, request, as_fields=lambda answer: _fields(answer, ctx),
                   scenario=job.extra["scenario"])


def _search(job, group, lane, ctx, facts: dict[str, Any]) -> None:
    """The largest Server target QPS whose LoadGen run is VALID with p99 within the bound."""
    from dlmark.measure.loadgen import search_server_qps
    from dlmark.run.jobs import load_model, make_record, task_request
    from dlmark.run.local import WorkerFailed
    from dlmark.run.plan import job as make_job

    bound = float(job.extra["latency_bound_ms"])
    settings = _settings_for(job)
    try:
        estimate = lane.worker.request(task_request("serving", "estimate", settings=settings, samples=_samples_for(job)),
                                       ctx.options.timeout_s)
    except WorkerFailed as exc:
        if not ctx.stop.is_set():
            lane.worker.restart()
            ctx.emit(make_record(ctx, job, lane.device, facts, exc.status, str(exc), scenario="server"))
        return
    if not estimate["ok"]:
        ctx.emit(make_record(ctx, job, lane.device, facts, estimate["status"], estimate["error"], scenario="server"))
        return
    if bound < estimate["batch1_ms"]:
        raise UserError(f"--latency-bound-ms {bound:g} is below {job.model.name}'s batch-1 latency on this device "
                        f"({estimate['batch1_ms']:.2f} ms): no load can meet it; give a bound above that")
    batch_ms = 1000.0 * int(job.extra.get("max_batch", 8)) / estimate["capacity_qps"]
    if batch_ms > bound:
        raise UserError(f"a batch of {job.extra.get('max_batch', 8)} takes {batch_ms:.1f} ms on this device, over the "
                        f"{bound:g} ms bound, so no load can meet it; lower --max-batch (batch 1 takes "
                        f"{estimate['batch1_ms']:.2f} ms)")
    steps: list[dict[str, Any]] = []
    by_target: dict[float, dict[str, Any]] = {}

    def run_at(qps: float) -> dict[str, Any]:
        if ctx.stop.is_set():
            raise _Stopped()
        step = make_job("serving", job.model, group.variant, job.batch_size,
                        **{**{k: v for k, v in job.extra.items() if k != "search"}, "target_qps": round(qps, 3)})
        ctx.on_progress(job, f"server at {qps:,.1f} QPS")
        reload = load_model(lane, group.backend, group.model.source_ref, group.variant)
        if not reload["ok"]:
            return {"valid": False, "invalid_reasons": [reload["error"]]}
        record = _run_one(step, lane, ctx, facts)
        if record is None:
            raise _Stopped()
        steps.append(record)
        by_target[qps] = record
        return record if record["status"] == "ok" else {"valid": False, "invalid_reasons": [record.get("error")]}

    try:
        found = search_server_qps(run_at, start_qps=0.5 * estimate["capacity_qps"], latency_bound_ms=bound)
    except _Stopped:
        return
    answer = {k: v for k, v in found.items() if k != "steps"}
    answer["search_step_keys"] = [r["job_key"] for r in steps]
    answer["search_steps_detail"] = [{k: s.get(k) for k in ("target_qps", "qps_completed", "latency_ms_p99", "valid",
                                                             "meets_bound")} for s in found["steps"]]
    answer["capacity_qps_estimate"] = estimate["capacity_qps"]
    answer["batch1_ms_estimate"] = estimate["batch1_ms"]
    best = by_target.get(found["largest_valid_qps"])
    status, error = ("ok", None) if found["largest_valid_qps"] else ("error", "no target QPS met the bound")
    fields = dict(scenario="server", server_qps_at_bound=found["largest_valid_qps"], **answer)
    if best is not None:
        fields.update({k: best.get(k) for k in ("latency_ms_p50", "latency_ms_p99", "qps_completed", "valid",
                                                 "loadgen_version", "log_summary", "log_detail",
                                                 "batches_in_flight", "max_batch", "max_queue_delay_ms")})
        fields["throughput"] = best.get("qps_completed")
    ctx.emit(make_record(ctx, job, lane.device, facts, status, error, **fields))


class _Stopped(Exception):
    """The run was interrupted; the search in flight is dropped, not recorded."""
