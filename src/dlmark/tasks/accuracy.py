"""Accuracy: top-1/top-5 on the ImageNet-1k validation set, or the weights' published figures.

Driver side (``run_group``): without a data set the record is built from the
published figure (no worker, no forward pass); with ``--imagenet DIR`` the
lane's worker loads the model with its pretrained weights and answers an
``accuracy`` request. Worker side (``evaluate``): each model's own evaluation
transform, a torch DataLoader with parallel decoding, and only the forward
passes are timed (``eval_forward_s``); no throughput is derived from this task.

Torch is imported inside functions: the driver imports this module.
"""
from __future__ import annotations

import math
import os
import time
from typing import Any

from ..backends import torch_source
from ..errors import UserError
# Each model's evaluation transform lives with the data sets: int8 calibration (backends.int8)
# reads images as this task does, and backends import no task.
from ..models.datasets.transforms import eval_transform  # noqa: F401 -- accuracy.eval_transform, as before

#: Images per forward pass: the seed's accuracy/throughput plot is at batch size 64.
DEFAULT_BATCH_SIZE = 64
#: z for a two-sided 95% interval.
Z95 = 1.959963984540054
#: Seconds allowed per image on top of the run's --timeout (slow CPUs, large nets).
TIMEOUT_PER_IMAGE_S = 0.5
#: Status of an accuracy record for weights whose published figure dlmark does not know (and of
#: every int8 variant without --imagenet): a stated absence (readers leave the model out and say
#: why), looked up again on every run.
NO_PUBLISHED_FIGURE = "unavailable"


# ----------------------------------------------------------------- statistics


def wilson_interval(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (95% by default).

    Chosen over the normal approximation because it stays inside [0, 1] and
    keeps close to nominal coverage for accuracies near 0 or 1 and small n.
    """
    if n <= 0:
        raise ValueError("n must be positive")
    if not 0 <= successes <= n:
        raise ValueError("successes must be between 0 and n")
    p = successes / n
    z2 = z * z
    centre = (p + z2 / (2 * n)) / (1 + z2 / n)
    half = z / (1 + z2 / n) * math.sqrt(p * (1 - p) / n + z2 / (4 * n * n))
    # At k = 0 and k = n one bound is exactly 0 or 1; say so instead of trusting the rounding.
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


# ----------------------------------------------------------------- weights


def missing_weights(spec) -> str | None:
    """Why ``spec``'s pretrained weights cannot be loaded offline, or None when they are on disk.

    Checked without building the model, so a run over many models can name
    every missing file before any work starts.
    """
    from dlmark.models import zoo

    if spec.source == "py":
        return None  # a py: model brings its own weights
    if spec.source == "torchvision":
        weights = zoo._torchvision_weights(spec.arch)
        if weights is None:
            return f"{spec.name}: torchvision has no pretrained weights"
        path = zoo.torch_hub_checkpoint(weights.url)
        return None if path.exists() else f"{spec.name}: expected {path} (fetch {weights.url})"
    import timm

    cfg = timm.get_pretrained_cfg(spec.arch)
    cfg_dict = cfg.to_dict() if cfg is not None else {}
    if zoo._timm_cached_weights(cfg_dict):
        return None
    repo = cfg_dict.get("hf_hub_id") or spec.arch
    return f"{spec.name}: not in the Hugging Face cache (fetch with: huggingface-cli download {repo})"


# ----------------------------------------------------------------- worker side


def _data_workers(requested: int | None) -> int:
    if requested is not None:
        return max(0, int(requested))
    return min(8, os.cpu_count() or 1)


def _forward(runner, images):
    """Logits (a CPU or device torch tensor) of one batch of images, on the runner's own inputs."""
    import numpy as np
    import torch

    if getattr(runner, "built", None) is not None:  # PyTorch: a tensor on its device, dtype and layout
        device = getattr(runner, "device", torch.device("cpu"))
        inputs = images.to(device, dtype=runner.dtype, non_blocking=True).contiguous(memory_format=runner.memory_format)
        return runner.run(inputs)
    out = runner.run(np.ascontiguousarray(images.numpy(), dtype=np.float32))
    return torch.from_numpy(np.array(runner.to_numpy(out), dtype=np.float32, copy=True))


def evaluate(runner, request: dict[str, Any]) -> dict[str, Any]:
    """Top-1/top-5 of the loaded model on the validation folder in ``request``.

    ``request``: imagenet (folder), limit (images, or None for all),
    batch_size, data_workers (None: up to 8). The runner's model is what runs:
    under ``--precision int8`` the same quantized artefact the throughput task times.
    """
    import torch
    from torch.utils.data import DataLoader

    from dlmark.models import zoo
    from dlmark.models.datasets import balanced_subset, open_imagenet
    from dlmark.models.datasets.images import ImageFiles, collate

    spec, weights, module, custom = torch_source.model_behind(runner)
    if spec.source != "py" and weights != "pretrained":
        zoo.build(spec, pretrained="require")  # raises the UserError that names the missing file
        raise UserError(f"{spec.name}: pretrained weights were not loaded; accuracy of random weights is never reported")

    dataset = open_imagenet(request["imagenet"])
    limit = request.get("limit")
    samples = balanced_subset(dataset.samples, int(limit)) if limit else list(dataset.samples)
    transform, described = eval_transform(spec, module, custom)
    batch_size = int(request.get("batch_size") or DEFAULT_BATCH_SIZE)
    workers = _data_workers(request.get("data_workers"))
    device = getattr(runner, "device", None)
    on_cuda = isinstance(device, torch.device) and device.type == "cuda"
    loader = DataLoader(ImageFiles(samples, transform), batch_size=batch_size, shuffle=False,
                        num_workers=workers, collate_fn=collate, pin_memory=on_cuda,
                        persistent_workers=False)

    correct1 = correct5 = seen = 0
    forward_s = wait_s = 0.0
    began = time.perf_counter()
    waited = time.perf_counter()
    for batch in loader:
        wait_s += time.perf_counter() - waited
        if "error" in batch:
            raise UserError(batch["error"])
        images, labels = batch["images"], batch["labels"]
        count = len(labels)
        if count < batch_size:
            # Keep every pass at one shape: CUDA graphs and static-shape compiles are built for it.
            images = torch.cat([images, images.new_zeros((batch_size - count, *images.shape[1:]))])
        runner.synchronize()
        start = time.perf_counter()
        logits = _forward(runner, images)
        runner.synchronize()
        forward_s += time.perf_counter() - start
        logits = logits[:count]
        if logits.ndim != 2 or logits.shape[1] <= int(labels.max()):
            raise UserError(f"{spec.name} outputs shape {tuple(logits.shape)}; ImageNet-1k accuracy needs "
                            f"(batch, 1000) logits in sorted-WordNet-id order")
        top = logits.float().topk(min(5, logits.shape[1]), dim=1).indices.cpu()
        hits = top == labels[:, None]
        correct1 += int(hits[:, 0].sum())
        correct5 += int(hits.any(dim=1).sum())
        seen += len(labels)
        waited = time.perf_counter()
    if not seen:
        raise UserError(f"no images to evaluate in {request['imagenet']}")

    fields: dict[str, Any] = {
        "accuracy": correct1 / seen, "top5": correct5 / seen,
        "correct_top1": correct1, "correct_top5": correct5, "num_images": seen,
        "num_images_available": len(dataset), "num_classes": len({s.label for s in samples}),
        "accuracy_source": "measured",
        "accuracy_reference": f"ILSVRC-2012 validation, {dataset.layout} layout, labels from {dataset.label_source}",
        "imagenet_dir": str(dataset.root), "imagenet_layout": dataset.layout, "limit": limit,
        "eval_transform": described, "data_workers": workers,
        "eval_forward_s": forward_s, "eval_data_wait_s": wait_s, "eval_wall_s": time.perf_counter() - began,
        "accuracy_ci95_low": None, "accuracy_ci95_high": None, "top5_ci95_low": None, "top5_ci95_high": None,
        "ci_method": None,
    }
    if seen < len(dataset):
        # A subset estimates the full-set figure; the whole set *is* the figure and needs no interval.
        fields["accuracy_ci95_low"], fields["accuracy_ci95_high"] = wilson_interval(correct1, seen)
        fields["top5_ci95_low"], fields["top5_ci95_high"] = wilson_interval(correct5, seen)
        fields["ci_method"] = "wilson"
    return fields


# ----------------------------------------------------------------- driver side


def job_extra(options) -> dict[str, Any]:
    """The configuration an accuracy job adds to its key: where the figure comes from."""
    if not options.imagenet:
        return {"accuracy_source": "published"}
    return {"accuracy_source": "measured", "imagenet": os.path.abspath(os.path.expanduser(options.imagenet)),
            "limit": options.accuracy_limit}


def preflight(options) -> None:
    """Before anything runs: the data set is readable and every model's weights are on disk."""
    if not options.imagenet or "accuracy" not in options.tasks:
        return
    from dlmark.models.datasets import open_imagenet

    dataset = open_imagenet(options.imagenet)
    if options.accuracy_limit and options.accuracy_limit > len(dataset):
        raise UserError(f"--limit {options.accuracy_limit} is more than the {len(dataset)} images in {dataset.root}")
    missing = [why for why in (missing_weights(spec) for spec in options.models) if why]
    if missing:
        raise UserError("accuracy needs pretrained weights, and these are not on disk (dlmark never downloads, "
                        "and never reports the accuracy of random weights): " + "; ".join(missing))


def plan_jobs(options, model, variant, planned: set) -> list:
    """One job per model and variant. Without ``--imagenet`` a published figure stands for every
    floating-point variant, so only the first of a model's gets one; an int8 variant has none
    (each runtime's quantizer makes another model), so each gets its record saying so."""
    from dlmark.run.plan import job

    if not options.imagenet:
        seen = (model.name, variant.backend, variant.compile_mode, "int8") if variant.precision == "int8" \
            else model.name
        if seen in planned:
            return []
        planned.add(seen)
    return [job("accuracy", model, variant, options.accuracy_batch_size, **job_extra(options))]


def evaluate_op(runner, request: dict[str, Any]) -> dict[str, Any]:
    return evaluate(runner, request)


WORKER_OPS = {"evaluate": evaluate_op}


def run_group(group, lane, ctx) -> None:
    """Run one accuracy job on ``lane``; it always ends as a record (or is skipped as done)."""
    from dlmark.run.jobs import make_record

    device = lane.device
    for job in group.jobs:
        done = ctx.finished.get(job.key(device, ctx.host))
        if done is not None and not ctx.options.force:
            ctx.on_job_skipped(job, "done")
            continue
        if ctx.stop.is_set():
            return
        ctx.on_job_start(job, device)
        if job.extra.get("accuracy_source") == "published":
            ctx.emit(_published_record(ctx, job, device, make_record))
        else:
            _measure(ctx, job, group, lane, make_record)


def _published_record(ctx, job, device, make_record) -> dict[str, Any]:
    """The weights' published figure, or a record whose status and error say none is known."""
    from dlmark.models import zoo
    from dlmark.models.published_accuracy import NoPublishedFigure, lookup

    if job.precision == "int8":
        return make_record(ctx, job, device, {"threads": job.threads}, NO_PUBLISHED_FIGURE,
                           f"no published int8 figure for {job.model.name}: the weights' published accuracy is "
                           f"of the floating-point model; measure int8 with --imagenet DIR",
                           accuracy_source="published")
    try:
        fields = lookup(job.model)
    except NoPublishedFigure as exc:
        return make_record(ctx, job, device, {}, NO_PUBLISHED_FIGURE, str(exc), accuracy_source="published")
    facts = {"weights_tag": fields.pop("weights_tag"), "threads": job.threads}
    try:
        facts["input_shape"] = list(zoo.input_shape(job.model))
    except Exception:  # noqa: BLE001 -- the shape is informative; the published figure stands without it
        pass
    return make_record(ctx, job, device, facts, "ok", **fields)


def _measure(ctx, job, group, lane, make_record) -> None:
    from dlmark.models.datasets import open_imagenet
    from dlmark.run.jobs import load_model, task_request
    from dlmark.run.local import WorkerFailed

    device, worker = lane.device, lane.worker
    num_images = job.extra.get("limit") or len(open_imagenet(job.extra["imagenet"]))
    facts: dict[str, Any] = {}
    try:
        answer = load_model(lane, group.backend, group.model.source_ref, group.variant)
        if not answer["ok"]:
            ctx.emit(make_record(ctx, job, device, {}, answer["status"], f"while loading the model: {answer['error']}",
                                 accuracy_source="measured"))
            return
        facts = answer
        request = task_request("accuracy", "evaluate", imagenet=job.extra["imagenet"], limit=job.extra.get("limit"),
                               batch_size=job.batch_size, data_workers=ctx.options.data_workers)
        answer = worker.request(request, ctx.options.timeout_s + TIMEOUT_PER_IMAGE_S * num_images)
    except WorkerFailed as exc:
        if ctx.stop.is_set():
            return
        worker.restart()
        ctx.emit(make_record(ctx, job, device, facts, exc.status, str(exc), accuracy_source="measured"))
        return
    if not answer["ok"]:
        ctx.emit(make_record(ctx, job, device, facts, answer["status"], answer["error"], accuracy_source="measured"))
        return
    fields = {k: v for k, v in answer.items() if k != "ok"}
    record = make_record(ctx, job, device, facts, "ok", **fields)
    if job.model.source == "py":
        record["weights"] = "own"  # a py: model's function supplies its weights; "random" would mislead
    ctx.emit(record)
