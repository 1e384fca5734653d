"""One configuration of the input pipeline, measured end to end and stage by stage.

The path: file bytes (in memory) -> decode -> the model's eval transform
(resize, crop, normalise) -> batch -> host-to-device copy -> forward pass.
CPU decoders run inside a ``torch.utils.data.DataLoader``: in-process with 0
workers, else in ``data_workers`` processes with prefetch. nvJPEG decodes in
the main process on the GPU, a batch per call.

Each stage is also timed alone: decode, transform (with batching) and the
loader (both, as one worker runs them one after the other, plus the hand-over
to the main process) with the same workers as the end-to-end run, so they say
what the loader can feed; copy and model in the main process. Stages that run
concurrently are the loader, the copy and the model; the slowest of them
bounds the end-to-end figure, and ``bottleneck`` names it (for the loader, the
slower of its two parts). Every figure comes from ``measure.time_callable``:
warm-up until settled, then timed blocks, median and a 95% interval.
"""
from __future__ import annotations

import os
import statistics
import time
from typing import Any, Callable, Sequence

from ..errors import UserError
from ..measure.timing import PerfCounterTimer, TimingConfig, time_callable
from ..measure.stats import summarize_latency
from ..models.datasets.transforms import eval_transform, pil_transform
from .decode import decode_all, get_decoder
from .jpegs import ImageSet

STAGES = ("decode", "transform", "copy", "model")
#: Blocks long enough to hold several batches: workers deliver batches in bursts.
PIPELINE_TIMING = TimingConfig(min_run_s=2.0, min_blocks=6, max_run_s=30.0, warmup_min_iters=3,
                               warmup_min_s=0.5, warmup_max_s=15.0)
PREFETCH_FACTOR = 2
#: Decoded images kept as the transform stage's input (decoded images are ~10x their files).
DECODED_KEEP = 128
DEFAULT_RECIPE = {"resize": 256, "crop": 224, "interpolation": "bilinear",
                  "mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


# ------------------------------------------------------------------ transforms


def tensor_transform(described: dict[str, Any]):
    """uint8 (3, H, W) tensor -> normalised float tensor with ``torchvision.transforms.v2``, on the tensor's device.

    Resize and crop on uint8 before converting, so the float work is on the 224x224 crop.
    """
    import torch
    from torchvision.transforms import v2

    interpolation = v2.InterpolationMode(described.get("interpolation") or "bilinear")
    crop = int(described["crop"])
    mode = described.get("crop_mode") or "center"
    if mode == "squash":
        resize = [v2.Resize((crop, crop), interpolation=interpolation, antialias=True)]
    elif mode == "center" and described.get("resize"):
        resize = [v2.Resize(int(described["resize"]), interpolation=interpolation, antialias=True), v2.CenterCrop(crop)]
    else:
        raise UserError(f"the eval transform's crop mode {mode!r} has no tensor version here; use --decoder pil")
    return v2.Compose([*resize, v2.ToDtype(torch.float32, scale=True),
                       v2.Normalize(list(described["mean"]), list(described["std"]))])


def transform_for(decoder, described: dict[str, Any], pil_transform_fn: Callable | None = None) -> tuple[Callable, str]:
    """(the eval transform that takes ``decoder``'s output, which implementation it is: ``transform_path``).

    A PIL image gets the model's own PIL transform when given (else the recipe's); a uint8
    tensor gets the same recipe in ``torchvision.transforms.v2``, on the tensor's device.
    """
    if decoder.output == "pil":
        if pil_transform_fn is not None:
            return pil_transform_fn, "the model's PIL eval transform"
        return pil_transform(described), "PIL eval transform (torchvision.transforms)"
    return tensor_transform(described), f"torchvision.transforms.v2 on uint8 tensors ({decoder.device})"


# ------------------------------------------------------------------ the loader's work


class _Files:
    """Map-style dataset over in-memory items; ``__getitems__`` does one stage's work on a whole batch.

    ``work``: "decode" (decode, drop), "transform" (transform and stack decoded
    images, drop) or "full" (decode, transform, stack: the batch). Each batch
    carries the time it started, for the end-to-end latency (``perf_counter`` is
    CLOCK_MONOTONIC on Linux, one clock for all processes).
    """

    def __init__(self, items: Sequence[Any], work: str, decoder=None, transform=None):
        self.items, self.work, self.decoder, self.transform = list(items), work, decoder, transform

    def __len__(self) -> int:
        return len(self.items)

    def __getitems__(self, indices):
        import torch

        started = time.perf_counter()
        picked = [self.items[i % len(self.items)] for i in indices]
        if self.work == "decode":
            for item in picked:
                self.decoder.decode(item)
            return {"count": len(picked), "started": started}
        if self.work == "transform":
            torch.stack([self.transform(image) for image in picked])
            return {"count": len(picked), "started": started}
        images = torch.stack([self.transform(self.decoder.decode(item)) for item in picked])
        return {"images": images, "count": len(picked), "started": started}


def _as_is(batch):
    return batch  # ``__getitems__`` already returns the batch


class _EndlessBatches:
    """Batches of indices forever, cycling over the set.

    One iterator (and its workers) lives through warm-up and every timed block:
    what persistent workers give across epochs, without an epoch's refill bubble.
    """

    def __init__(self, n: int, batch_size: int):
        self.n, self.batch_size = n, batch_size

    def __iter__(self):
        start = 0
        while True:
            yield [(start + j) % self.n for j in range(self.batch_size)]
            start = (start + self.batch_size) % self.n


class _LoaderStream:
    """Batches from a DataLoader (0 workers: in-process)."""

    def __init__(self, dataset: _Files, batch_size: int, workers: int, pin: bool):
        from torch.utils.data import DataLoader

        loader = DataLoader(dataset, batch_sampler=_EndlessBatches(len(dataset), batch_size), num_workers=workers,
                            collate_fn=_as_is, pin_memory=pin, prefetch_factor=PREFETCH_FACTOR if workers else None)
        self._it = iter(loader)  # starts the workers

    def next(self):
        return next(self._it)

    def close(self) -> None:
        # The iterator's finaliser stops and joins its workers: no worker outlives its stage.
        self._it = None


class _GpuStream:
    """nvJPEG batches in the main process: one batched decode call, then the transform on the GPU."""

    def __init__(self, dataset: _Files, batch_size: int, device: str, wait: bool):
        # ``wait``: synchronise after each batch, timed alone; end to end, the forward pass's sync covers it.
        self.dataset, self.batch_size, self.device, self.wait = dataset, batch_size, device, wait
        self._batches = iter(_EndlessBatches(len(dataset), batch_size))

    def next(self):
        import torch

        started = time.perf_counter()
        picked = [self.dataset.items[i] for i in next(self._batches)]
        work = self.dataset.work
        if work == "decode":
            self.dataset.decoder.decode_batch(picked)
            torch.cuda.synchronize(self.device)
            return {"count": len(picked), "started": started}
        images = picked if work == "transform" else self.dataset.decoder.decode_batch(picked)
        batch = torch.stack([self.dataset.transform(image) for image in images])
        if self.wait:
            torch.cuda.synchronize(self.device)
        if work == "transform":
            return {"count": len(picked), "started": started}
        return {"images": batch, "count": len(picked), "started": started}

    def close(self) -> None:
        pass


# ------------------------------------------------------------------ CPU time of this process and its workers


_CLK_TCK = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _stat_fields(pid: int | str) -> list[str] | None:
    try:
        with open(f"/proc/{pid}/stat") as f:
            text = f.read()
    except OSError:
        return None
    return text[text.rfind(")") + 2:].split()  # the name may hold spaces and parentheses


def _descendants(pid: int) -> list[int]:
    """Every live process below ``pid`` (DataLoader workers, and their forkserver's under that start method)."""
    children: dict[int, list[int]] = {}
    try:
        names = os.listdir("/proc")
    except OSError:
        return []
    for name in names:
        if name.isdigit():
            fields = _stat_fields(name)
            if fields:
                children.setdefault(int(fields[1]), []).append(int(name))
    out, todo = [], [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


class _CpuClock:
    """CPU seconds (user + system, waited-for children included) of this process and its workers."""

    def __init__(self):
        self.pids: list[int | str] = ["self", *_descendants(os.getpid())]
        self.available = _stat_fields("self") is not None

    def sample(self) -> tuple[float, float]:
        total = 0
        for pid in self.pids:
            fields = _stat_fields(pid)
            if fields:
                total += sum(int(v) for v in fields[11:15])  # utime stime cutime cstime
        return time.perf_counter(), total / _CLK_TCK


# ------------------------------------------------------------------ timing


class _Pooled:
    """One figure's timed steps over all rounds: a pooled median and its 95% interval."""

    def __init__(self, images_per_step: int):
        self.images_per_step = images_per_step
        self.per_step_s: list[float] = []
        self.rounds: list[float] = []  # each round's median throughput, to show drift
        self.cpu_s = self.wall_s = 0.0
        self.warmup_s = 0.0
        self.settled = True

    def add(self, step: Callable[[], None], timing: TimingConfig, clock: "_CpuClock | None" = None):
        """Time ``step`` once more (warm-up, then blocks); returns the Timing."""
        marks: list[tuple[float, float]] = []

        def fn():
            if clock is not None:
                marks.append(clock.sample())
            step()

        result = time_callable(fn, PerfCounterTimer(), timing)
        if clock is not None and clock.available and len(marks) > result.warmup_iters:
            wall0, cpu0 = marks[result.warmup_iters]
            wall1, cpu1 = clock.sample()
            self.cpu_s += cpu1 - cpu0
            self.wall_s += wall1 - wall0
        self.per_step_s.extend(result.per_iter_s)
        self.rounds.append(self.images_per_step / statistics.median(result.per_iter_s))
        self.warmup_s += result.warmup_s
        self.settled = self.settled and result.warmup_settled
        self.iters_per_block = result.iters_per_block
        return result

    def summary(self) -> dict[str, Any]:
        return summarize_latency(self.per_step_s, self.images_per_step)

    @property
    def cores(self) -> float | None:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else None


def _stage_fields(name: str, pooled: _Pooled | None) -> dict[str, Any]:
    if pooled is None:
        return {f"stage_{name}_per_s": None, f"stage_{name}_per_s_ci95_low": None,
                f"stage_{name}_per_s_ci95_high": None, f"stage_{name}_per_s_rounds": None}
    s = pooled.summary()
    return {f"stage_{name}_per_s": s["throughput"], f"stage_{name}_per_s_ci95_low": s["throughput_ci95_low"],
            f"stage_{name}_per_s_ci95_high": s["throughput_ci95_high"], f"stage_{name}_per_s_rounds": pooled.rounds}


def name_bottleneck(fields: dict[str, Any]) -> tuple[str, float]:
    """(the stage that bounds the end-to-end figure, the bound it puts there) from stage fields.

    With data workers, loader, copy and model run concurrently and the slowest
    bounds; in one process (0 workers, nvJPEG) they take turns, so their times
    add up and the bound is 1 / (1/loader + 1/copy + 1/model), the stage named
    being the one that takes the largest share. Decode and transform run one
    after the other in the same worker: together they are one stage (the
    loader), and when it bounds, the slower of the two is named.
    """
    rates = {"loader": fields.get("stage_loader_per_s"), "copy": fields.get("stage_copy_per_s"),
             "model": fields.get("stage_model_per_s")}
    rates = {k: v for k, v in rates.items() if v is not None}
    stage, bound = min(rates.items(), key=lambda kv: kv[1])
    if not stages_overlap(fields):
        bound = 1.0 / sum(1.0 / v for v in rates.values())
    if stage == "loader":
        decode, transform = fields["stage_decode_per_s"], fields["stage_transform_per_s"]
        stage = "decode" if decode <= transform else "transform"
    return stage, bound


def stages_overlap(fields: dict[str, Any]) -> bool:
    """Whether loader, copy and model run at once: only with DataLoader workers."""
    return bool(fields.get("data_workers"))


# ------------------------------------------------------------------ one configuration


#: Rounds of (every stage, then end to end): a machine's load drifts, and figures
#: compared with each other must have seen the same load.
DEFAULT_ROUNDS = 3


def measure_pipeline(images: ImageSet, forward: Callable[[Any], Any], *, decoder: str = "pil",
                     described: dict[str, Any] | None = None, pil_transform_fn: Callable | None = None,
                     batch_size: int = 32, data_workers: int = 0, device: str = "cpu", dtype=None,
                     memory_format=None, synchronize: Callable[[], None] | None = None,
                     timing: TimingConfig | None = None, rounds: int = DEFAULT_ROUNDS) -> dict[str, Any]:
    """End-to-end and per-stage figures of one (decoder, batch size, data workers) configuration.

    ``forward(batch)`` runs the model on a batch already on ``device``;
    ``synchronize()`` waits for it (the Runner's). ``described`` is the eval
    transform's description (``models.datasets.transforms.eval_transform``); the pil
    decoder uses ``pil_transform_fn`` (the model's own) when given. Each of
    ``rounds`` rounds times every stage and then the whole path with ``timing``;
    a figure pools its blocks over the rounds.
    """
    import torch

    if batch_size < 1:
        raise UserError(f"the batch size must be at least 1, not {batch_size}")
    if data_workers < 0:
        raise UserError(f"--data-workers must be 0 (in-process) or more, not {data_workers}")
    if rounds < 1:
        raise ValueError("rounds must be at least 1")
    timing = timing or PIPELINE_TIMING
    described = dict(described or DEFAULT_RECIPE)
    device = str(device)
    dtype = dtype or torch.float32
    memory_format = memory_format or torch.contiguous_format
    synchronize = synchronize or (lambda: None)
    dec = get_decoder(decoder, device)
    on_gpu_decoder = dec.name == "nvjpeg"
    if on_gpu_decoder and data_workers:
        raise UserError("decoder nvjpeg decodes in the main process on the GPU; use --data-workers 0 with it")
    transform, transform_path = transform_for(dec, described, pil_transform_fn)

    # Read and decode every file once before timing: an undecodable file is named now.
    encoded = [dec.prepare(data) for data in images.read()]
    decoded = decode_all(dec, encoded, images.paths, keep=DECODED_KEEP)
    pin = device.startswith("cuda") and not on_gpu_decoder

    def move(x):
        return x.to(device=device, dtype=dtype, non_blocking=True).contiguous(memory_format=memory_format)

    def stream(work: str, end_to_end: bool = False):
        items = decoded if work == "transform" else encoded
        dataset = _Files(items, work, dec, transform)
        if on_gpu_decoder:
            return _GpuStream(dataset, batch_size, dec.device, wait=not end_to_end)
        return _LoaderStream(dataset, batch_size, data_workers, pin and work == "full")

    # A loader step takes as many batches as there are workers: they arrive in bursts of that size.
    per_step = max(1, data_workers)

    # One real batch, for the copy and the model alone.
    first = stream("full")
    try:
        sample = first.next()["images"]
    finally:
        first.close()
    if pin:
        sample = sample.pin_memory()
    moved = move(sample)
    copy_none = on_gpu_decoder or moved is sample

    pooled = {work: _Pooled(per_step * batch_size) for work in ("decode", "transform", "full", "e2e")}
    pooled["copy"] = None if copy_none else _Pooled(batch_size)
    pooled["model"] = _Pooled(batch_size)
    latencies: list[float] = []

    def loader_stage(work: str) -> None:
        s = stream(work)
        try:
            def step():
                for _ in range(per_step):
                    s.next()
            pooled[work].add(step, timing)
        finally:
            s.close()

    def copy_step():
        move(sample)
        synchronize()

    def model_step():
        forward(moved)
        synchronize()  # per batch, as the end-to-end loop must before it takes the logits

    def end_to_end() -> None:
        s = stream("full", end_to_end=True)
        clock = _CpuClock()  # after the stream: its workers exist now
        mine: list[float] = []
        counted: list[int] = []

        def step():
            counted.append(len(mine))
            for _ in range(per_step):
                batch = s.next()
                forward(move(batch["images"]))
                synchronize()
                mine.append(time.perf_counter() - batch["started"])

        try:
            result = pooled["e2e"].add(step, timing, clock)
        finally:
            s.close()
        # Only batches of the timed blocks: the warm-up's first ones waited for workers to start.
        latencies.extend(mine[counted[result.warmup_iters]:] if len(counted) > result.warmup_iters else mine)

    for r in range(rounds):
        for work in ("decode", "transform"):
            loader_stage(work)
        if pooled["copy"] is not None:
            pooled["copy"].add(copy_step, timing)
        pooled["model"].add(model_step, timing)
        # The loader and the whole path side by side, in alternating order: a drift of the
        # machine's load between them then cancels over the rounds.
        if r % 2 == 0:
            loader_stage("full")
            end_to_end()
        else:
            end_to_end()
            loader_stage("full")
    del moved

    fields: dict[str, Any] = {
        **images.describe(), **dec.facts(), "batch_size": batch_size, "data_workers": data_workers,
        "loader": "inprocess" if data_workers == 0 else "dataloader",
        "prefetch_factor": PREFETCH_FACTOR if data_workers else None, "pinned_memory": pin,
        "transform_path": transform_path, "eval_transform": described, "pipeline_device": device,
        "threads": torch.get_num_threads(), "pipeline_rounds": rounds,
    }
    fields.update(_stage_fields("decode", pooled["decode"]))
    fields.update(_stage_fields("transform", pooled["transform"]))
    fields.update(_stage_fields("loader", pooled["full"]))
    fields.update(_stage_fields("copy", pooled["copy"]))
    fields.update(_stage_fields("model", pooled["model"]))
    if copy_none:
        fields["copy"] = ("inside the decoder (nvJPEG reads the file bytes from the host)" if on_gpu_decoder
                          else "none (the batch is already on the model's device, in its dtype and layout)")
    else:
        fields["copy"] = f"host to {device}" + (" from pinned memory, non_blocking" if pin else "")
    e2e = pooled["e2e"]
    summary = e2e.summary()
    ms = sorted(t * 1e3 for t in latencies)
    fields.update({
        "e2e_throughput": summary["throughput"], "e2e_throughput_ci95_low": summary["throughput_ci95_low"],
        "e2e_throughput_ci95_high": summary["throughput_ci95_high"], "e2e_throughput_rounds": e2e.rounds,
        "e2e_rel_iqr": summary["rel_iqr"], "e2e_noisy": summary["noisy"],
        "e2e_latency_ms_median": statistics.median(ms), "e2e_latency_ms_p90": ms[min(len(ms) - 1, int(0.9 * len(ms)))],
        "e2e_batches_timed": len(ms), "e2e_batches_per_block": per_step * e2e.iters_per_block,
        "e2e_step_times_s": e2e.per_step_s, "e2e_warmup_s": e2e.warmup_s, "e2e_warmup_settled": e2e.settled,
        "cpu_cores_used": e2e.cores,
    })
    fields["stages_overlap"] = stages_overlap(fields)
    fields["bottleneck"], fields["bottleneck_per_s"] = name_bottleneck(fields)
    # Paired by round (measured next to each other), so the machine's drift between rounds cancels.
    stage_rounds = {name: pooled[key].rounds for name, key in (("loader", "full"), ("copy", "copy"), ("model", "model"))
                    if fields[f"stage_{name}_per_s"] is not None}
    bounds = [name_bottleneck({**fields, **{f"stage_{name}_per_s": r[i] for name, r in stage_rounds.items()}})[1]
              for i in range(len(e2e.rounds))]
    fields["e2e_of_bottleneck"] = statistics.median(e / b for e, b in zip(e2e.rounds, bounds))
    fields["e2e_of_model"] = statistics.median(e / m for e, m in zip(e2e.rounds, pooled["model"].rounds))
    return fields


def measure_runner(runner, images: ImageSet, *, decoder: str = "pil", batch_size: int = 32, data_workers: int = 0,
                   timing: TimingConfig | None = None, rounds: int = DEFAULT_ROUNDS) -> dict[str, Any]:
    """``measure_pipeline`` for a loaded pytorch Runner: its model, device, dtype, layout and eval transform."""
    built = getattr(runner, "built", None)
    if built is None:
        raise UserError(f"the input pipeline is measured with the pytorch backend; {runner.backend} has no "
                        f"model to feed images")
    own_transform, described = eval_transform(built.spec, built.module)
    return measure_pipeline(
        images, runner.run, decoder=decoder, described=described, pil_transform_fn=own_transform,
        batch_size=batch_size, data_workers=data_workers, device=str(runner.device), dtype=runner.dtype,
        memory_format=runner.memory_format, synchronize=runner.synchronize, timing=timing, rounds=rounds)
