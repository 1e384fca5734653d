"""The input pipeline: JPEG files -> decode -> the model's eval transform -> batch -> device -> forward.

Planned when ``--input images[:DIR]`` is given: one job per batch size and number of
data workers (``--pipeline-workers``), with the decoder (``--decoder``) and the image
set (``--images``) in the job's key. Driver side (``run_group``): the lane's worker loads
the model once for the group (``run.jobs.start_group``), then answers one
``pipeline.measure`` per job. Worker side (``measure_op``): open the images (the
generated set, cached on disk, or the user's folder) and measure every stage alone and
the whole path (``inputs.pipeline.measure_runner``).

Torch is imported inside functions: the driver imports this module.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any

from dlmark.errors import UserError

#: Rounds of (every stage, then the loader and end to end): two give both orders of the
#: loader/end-to-end pair, so a drift of the machine's load between them cancels, and keep
#: a CPU job short; the figures' intervals say how settled each is.
ROUNDS = 2
#: Fewer warm-up steps than a forward pass needs: a pipeline step is a whole batch of decoding.
TIMING_DEFAULTS = {"warmup_min_iters": 2, "warmup_min_s": 0.1}
#: Caps on the run's timing. Every figure is timed once per round (five figures, two rounds), so
#: a warm-up that never settles (a shared host's steps rarely agree within 5%) would be paid ten
#: times over; and a step is a whole batch, so six blocks already hold many images.
WARMUP_MAX_S = 2.0
MIN_BLOCKS = 6


def pipeline_timing(run_timing: dict[str, Any]) -> dict[str, Any]:
    """The timing options a pipeline job uses: the run's (suite, --min-time), warm-up and blocks capped."""
    timing = {**TIMING_DEFAULTS, **run_timing}
    timing["warmup_max_s"] = min(float(timing.get("warmup_max_s", WARMUP_MAX_S)), WARMUP_MAX_S)
    timing["min_blocks"] = min(int(timing.get("min_blocks", MIN_BLOCKS)), MIN_BLOCKS)
    return timing


# ----------------------------------------------------------------- worker side


def measure_op(runner, request: dict[str, Any]) -> dict[str, Any]:
    """Record fields of one (decoder, batch size, data workers) configuration on the loaded model."""
    from dlmark.inputs import jpegs, pipeline
    from dlmark.measure.timing import TimingConfig

    count = int(request["images"])
    images = jpegs.open_images(request.get("folder"), limit=count, count=count)
    timing = TimingConfig(**pipeline_timing(request.get("timing") or {}))
    fields = pipeline.measure_runner(runner, images, decoder=request["decoder"], batch_size=int(request["batch_size"]),
                                     data_workers=int(request["data_workers"]), timing=timing,
                                     rounds=int(request.get("rounds") or ROUNDS))
    fields.pop("threads", None)  # the worker's torch threads: the record's own column already says so
    fields["pipeline_timing"] = dataclasses.asdict(timing)
    # The seed's columns, so that tables and plots read a pipeline record like a throughput one:
    # what a deployed model gets, JPEG to logits. The model alone is beside it.
    fields.update(throughput=fields["e2e_throughput"], throughput_ci95_low=fields["e2e_throughput_ci95_low"],
                  throughput_ci95_high=fields["e2e_throughput_ci95_high"],
                  model_throughput=fields["stage_model_per_s"])
    return fields


WORKER_OPS = {"measure": measure_op}


# ----------------------------------------------------------------- driver side


def parse_workers(text: str | None) -> list[int]:
    """``--pipeline-workers 0,1,2`` -> [0, 1, 2]; None -> [0] (in-process)."""
    if text is None:
        return [0]
    try:
        counts = [int(part) for part in text.split(",")]
    except ValueError:
        counts = []
    if not counts or any(c < 0 for c in counts):
        raise UserError(f"bad --pipeline-workers {text!r}; give counts of 0 (in-process) or more, like 0,1,2")
    return list(dict.fromkeys(counts))


def folder_of(options) -> str | None:
    """The user's image folder, absolute (it is part of the job key), or None for the generated set."""
    from dlmark.inputs import jpegs

    _, folder = jpegs.parse_input(options.input)
    return os.path.abspath(os.path.expanduser(folder)) if folder else None


def image_extra(options) -> dict[str, Any]:
    """The images a job reads, as its key holds them: the input (a folder as an absolute path), decoder, count."""
    folder = folder_of(options)
    return {"input": f"images:{folder}" if folder else "images", "decoder": options.decoder,
            "images": int(options.pipeline_images)}


def job_extra(options, data_workers: int) -> dict[str, Any]:
    return {**image_extra(options), "data_workers": int(data_workers)}


def plan_jobs(options, model, variant, planned: set) -> list:
    from dlmark.run.plan import job

    return [job("pipeline", model, variant, b, **job_extra(options, w))
            for b in sorted(set(options.batch_sizes)) for w in options.pipeline_workers]


def preflight(options) -> None:
    """Before any work: the runtime feeds images, the decoder is installed and fits the device,
    and every image of the folder is read and decoded once (a bad file is named)."""
    if "pipeline" not in options.tasks:
        return
    from dlmark.backends.registry import expand
    from dlmark.inputs import decode

    others = sorted({backend for backend, _ in expand(options.runtimes, options.compile_modes)} - {"pytorch"})
    if others:
        raise UserError(f"the input pipeline feeds images to a PyTorch model; {', '.join(others)} cannot run it "
                        f"yet: use --backend pytorch (or pytorch-compile) with --input")
    if options.decoder == "nvjpeg":
        if not any(d.kind == "cuda" for d in options.devices):
            raise UserError("decoder nvjpeg decodes on a CUDA GPU, and this run is on the CPU; "
                            "use --decoder torchvision or --decoder pil, or --device cuda")
        # The GPU probe runs in the worker (a CUDA context here would hold GPU memory for the
        # whole run); here only that torchvision can decode, with its CPU decoder.
        check_images(options, decode.get_decoder("torchvision"))
    else:
        check_images(options)


def check_images(options, checker=None) -> None:
    """Before any work: the decoder (``checker``, else ``--decoder``) is installed and works, and every
    file of the folder the run would use is read and decoded once (a bad one is named).
    The serving scenarios' preflight shares it."""
    from dlmark.inputs import decode, jpegs

    checker = checker or decode.get_decoder(options.decoder)
    folder = folder_of(options)
    if folder is None:
        return  # the generated set is made and cached by the first job's worker
    images = jpegs.open_folder(folder, limit=options.pipeline_images)
    decode.decode_all(checker, [checker.prepare(data) for data in images.read()], images.paths, keep=0)


def run_group(group, lane, ctx) -> None:
    from dlmark.run.jobs import run_job, start_group, task_request

    started = start_group(group, lane, ctx)
    if started is None:
        return
    jobs, facts = started
    device = lane.device
    timing = ctx.options.timing_for(device.kind)
    oom_at: int | None = None
    for index, job in enumerate(jobs):
        if ctx.stop.is_set():
            return
        if oom_at is not None and job.batch_size >= oom_at:
            ctx.on_job_skipped(job, "after oom")
            continue
        if index:
            ctx.on_job_start(job, device)
        extra = job.extra
        request = task_request("pipeline", "measure", folder=extra["input"].partition(":")[2] or None,
                               images=extra["images"], decoder=extra["decoder"], batch_size=job.batch_size,
                               data_workers=extra["data_workers"], timing=timing, rounds=ROUNDS)
        record = run_job(ctx, lane, job, facts, request, **_config_fields(job))
        if record is None:
            return
        if record["status"] in ("crash", "timeout"):
            # A configuration that killed or hung the worker would likely do so again with more work.
            for rest in jobs[index + 1:]:
                ctx.on_job_skipped(rest, f"after {record['status']}")
            return
        if record["status"] == "oom":
            oom_at = job.batch_size  # larger batches would run out too; other worker counts at smaller ones may not


def _config_fields(job) -> dict[str, Any]:
    """What a failed job's record says about its configuration (an ok record has these from the measurement)."""
    return {"decoder": job.extra["decoder"], "data_workers": job.extra["data_workers"]}

