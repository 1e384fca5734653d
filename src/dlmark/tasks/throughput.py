"""Throughput: time ``net(X)`` for a batch of b images; throughput is b / t.

A group is one model and variant over the batch sizes asked for; the sweep stops at
the first out-of-memory (larger batches would run out too), and a batch that killed
or hung the worker ends the group. Every variant but PyTorch fp32 eager is checked
against it on a seeded input first (``run.agreement``).

With ``--in-flight N`` (N != 1) a job keeps N requests running at once through the
runtime's own concurrency (``backends.in_flight``: OpenVINO's AsyncInferQueue, ONNX
Runtime sessions on threads, PyTorch threads): throughput is completed samples over
the wall time of back-to-back windows, latency is per request.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from dlmark.measure import power
from dlmark.measure.timing import TimingConfig, time_callable

#: The first measurement in a worker also brings the device out of idle: an idle H200
#: runs at 345 MHz and takes most of a second to clock up, during which short passes
#: look settled while still speeding up (seen as a noisy first batch-1 figure).
COLD_START_WARMUP_S = 1.0
_warm = False


def measure_throughput_op(runner, request: dict[str, Any]) -> dict[str, Any]:
    config = getattr(runner, "config", None)
    if getattr(config, "in_flight", 1) != 1:
        return measure_in_flight(runner, int(request["batch_size"]), request.get("timing") or {})
    return measure_throughput(runner, int(request["batch_size"]), request.get("timing") or {})


def window_config(timing: dict[str, Any]) -> Any:
    """The in-flight windows from the run's timing: ``min_run_s`` of timed windows, as many as
    ``min_blocks`` (3 to 10), after a warm-up of ``warmup_min_s`` and every request done once (however long that takes)."""
    from dlmark.backends.in_flight import WindowConfig

    config = TimingConfig(**timing)
    windows = max(3, min(config.min_blocks, 10))
    return WindowConfig(warmup_s=max(config.warmup_min_s, COLD_START_WARMUP_S if not _warm else 0.0),
                        window_s=config.min_run_s / windows, windows=windows)


def measure_in_flight(runner, batch_size: int, timing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record fields for one batch size with several requests in flight; peak RSS over all of them."""
    global _warm
    from dlmark.errors import UserError
    from dlmark.measure.timing import peak_rss_mb, reset_peak_rss

    if not hasattr(runner, "measure_in_flight"):
        raise UserError(f"{runner.backend} cannot keep several requests in flight; leave --in-flight at 1")
    config = window_config(timing or {})
    _warm = True
    reset_peak_rss()
    out = runner.measure_in_flight(batch_size, config)
    rss = peak_rss_mb()
    fields = {k: v for k, v in out.items() if not k.startswith("_")}  # raw request times: for checks only
    fields.update(timer="perf_counter (requests in flight)", peak_rss_mb=rss, device_mem=rss)
    return fields


def measure_throughput(runner, batch_size: int, timing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record fields for one batch size: statistics, raw blocks, memory of one pass."""
    global _warm
    config = TimingConfig(**(timing or {}))
    if not _warm:
        config = dataclasses.replace(config, warmup_min_s=max(config.warmup_min_s, COLD_START_WARMUP_S))
        _warm = True
    inputs = runner.make_inputs(batch_size)
    # NVML energy counter around the timed blocks, GPU clocks and throttling around the job (None on CPU).
    handle = power.handle_for_torch_device(getattr(runner, "device", None))
    before = power.gpu_state(handle)
    timer = power.EnergyTimer(runner.timer(), handle)
    result = time_callable(lambda: runner.run(inputs), timer, config)
    fields = result.summary(batch_size)
    fields.update(timer.summary(len(result.block_times_s)))
    fields.update(power.state_fields(before, power.gpu_state(handle)))
    fields.update(runner.memory(inputs))
    del inputs
    return fields


WORKER_OPS = {"measure": measure_throughput_op}


# ----------------------------------------------------------------- driver side


def plan_jobs(options, model, variant, planned: set) -> list:
    from dlmark.run.plan import job

    return [job("throughput", model, variant, b) for b in sorted(set(options.batch_sizes))]


def preflight(options) -> None:
    """Nothing to check beyond the run's own options."""


def run_group(group, lane, ctx) -> None:
    from dlmark.run import agreement
    from dlmark.run.jobs import ENDS_GROUP, restore, run_job, start_group, task_request

    started = start_group(group, lane, ctx, stop_after=lambda done: done.get("status") == "oom")
    if started is None:
        return
    jobs, facts = started
    facts = {**facts, **agreement.check(group, lane, facts, ctx.options.timeout_s)}
    if restore(group, lane, ctx, jobs, facts) is None:  # the check may have left the reference loaded
        return
    device = lane.device
    for index, job in enumerate(jobs):
        if ctx.stop.is_set():
            return
        if index:
            ctx.on_job_start(job, device)
        request = task_request("throughput", "measure", batch_size=job.batch_size,
                               timing=ctx.options.timing_for(device.kind))
        record = run_job(ctx, lane, job, facts, request)
        if record is None:
            return
        if record["status"] in ENDS_GROUP:
            for rest in jobs[index + 1:]:
                ctx.on_job_skipped(rest, f"after {record['status']}")
            return
