"""Planning: suite + options -> groups of jobs.

A job is one model x one configuration x one batch size (or one largest-batch
search). Jobs that share a model and configuration form a group, run in order
by one worker so the model is built once. Devices are not part of a group:
an executor lane brings its device, so the same plan spreads over GPUs.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from dlmark.records import schema
from dlmark.backends import LAYOUTS, PRECISIONS
from dlmark.measure.devices import Device
from dlmark.errors import UserError
from dlmark.backends.registry import expand, layouts_for
from dlmark.measure.timing import TimingConfig
from dlmark.suites import Suite
from dlmark.tasks import TASKS, normalize_task
from dlmark.models.zoo import ModelSpec


@dataclass(frozen=True)
class RunOptions:
    """Everything a run needs, validated. Built by the CLI or by library users."""

    suite: Suite
    models: list[ModelSpec]
    tasks: list[str]
    batch_sizes: list[int]
    devices: list[Device]
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    layouts: list[str] = field(default_factory=lambda: ["nchw"])
    compile_modes: list[str | None] = field(default_factory=lambda: [None])
    backend: str = "pytorch"
    backends: list[str] = field(default_factory=list)  # several runtimes side by side; empty: [backend]
    threads: int | None = None
    timing: dict[str, Any] = field(default_factory=dict)
    max_batch_cap: int = 65536
    memory_limit_bytes: int | None = None
    timeout_s: float = 900.0
    force: bool = False
    # accuracy task: validation folder (None: published figures), class-balanced subset size,
    # images per forward pass, DataLoader worker processes (None: up to 8)
    imagenet: str | None = None
    accuracy_limit: int | None = None
    accuracy_batch_size: int = 64
    data_workers: int | None = None

    def __post_init__(self) -> None:
        for task in self.tasks:
            if task not in TASKS:
                raise UserError(f"unknown task {task!r}; use one of {', '.join(t.replace('_', '-') for t in TASKS)}")
        for precision in self.precisions:
            if precision not in PRECISIONS:
                raise UserError(f"unknown precision {precision!r}; use one of {', '.join(PRECISIONS)}")
        for layout in self.layouts:
            if layout not in LAYOUTS:
                raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
        if not self.batch_sizes or any(b < 1 for b in self.batch_sizes):
            raise UserError("batch sizes must be positive integers, e.g. --batch-sizes 1,2,4")
        if self.max_batch_cap < 1:
            raise UserError("--max-batch-cap must be a positive integer")
        if self.threads is not None and self.threads < 1:
            raise UserError("--threads must be a positive integer")
        expand(self.backends or [self.backend], self.compile_modes)  # an unknown runtime name is a UserError
        known = set(TimingConfig.__dataclass_fields__)
        for where, options in [("", self.timing)] + [
                (f" for {kind}", v) for kind, v in self.timing.items() if isinstance(v, dict)]:
            unknown = {k for k, v in options.items() if not isinstance(v, dict)} - known
            unknown |= {k for k, v in options.items() if isinstance(v, dict) and (where or k not in DEVICE_KINDS)}
            if unknown:
                raise UserError(f"unknown timing option(s){where} {sorted(unknown)}; known: {sorted(known)}, "
                                f"and per device kind: {', '.join(f'[timing.{k}]' for k in DEVICE_KINDS)}")
        if self.accuracy_batch_size < 1 or (self.accuracy_limit is not None and self.accuracy_limit < 1):
            raise UserError("--accuracy-batch-size and --limit must be positive integers")
        if (self.imagenet or self.accuracy_limit) and "accuracy" not in self.tasks:
            raise UserError("--imagenet and --limit are for the accuracy task; add --task accuracy")
        if self.accuracy_limit and not self.imagenet:
            raise UserError("--limit picks images from the validation set; give it with --imagenet DIR")


    def timing_for(self, device_kind: str) -> dict[str, Any]:
        """Timing options on one kind of device: the common ones, then that kind's
        (a suite's ``[timing.cuda]``: CUDA events are precise enough for shorter runs)."""
        common = {k: v for k, v in self.timing.items() if not isinstance(v, dict)}
        return {**common, **self.timing.get(device_kind, {})}


#: Device kinds a suite's timing may be specialised for.
DEVICE_KINDS = ("cpu", "cuda")


@dataclass(frozen=True)
class Job:
    task: str
    model: ModelSpec
    batch_size: int | None  # None for a largest-batch search
    backend: str
    precision: str
    layout: str
    compile_mode: str | None
    threads: int | None
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def config_fields(self, device: Device, host: str) -> dict[str, Any]:
        """The fields that identify this measurement on a device (see schema.CONFIG_FIELDS)."""
        return {
            "task": self.task, "source": self.model.source_ref, "backend": self.backend,
            "precision": self.precision, "layout": self.layout, "compile_mode": self.compile_mode,
            "threads": self.threads, "batch_size": self.batch_size, "device": device.name,
            "host": host, "extra_config": self.extra or None,
            # device_spec and input_shape are left out on purpose: identical GPUs are
            # interchangeable, and the input shape follows from the source.
            "device_spec": None, "input_shape": None,
        }

    def key(self, device: Device, host: str) -> str:
        return schema.job_key(self.config_fields(device, host))

    def describe(self) -> str:
        what = f"b={self.batch_size}" if self.batch_size else "largest batch"
        config = "/".join(x for x in (self.precision, self.layout if self.layout != "nchw" else "",
                                      f"compile:{self.compile_mode}" if self.compile_mode else "") if x)
        runtime = f" on {self.backend}" if self.backend != "pytorch" else ""
        return f"{self.model.name} {what} {config}{runtime}"


@dataclass
class Group:
    """Jobs one worker runs in order on one model and configuration."""

    task: str
    model: ModelSpec
    backend: str
    precision: str
    layout: str
    compile_mode: str | None
    threads: int | None
    jobs: list[Job]


def plan(options: RunOptions) -> list[Group]:
    """Groups in the order they run: per model, every configuration, throughput first."""
    groups: list[Group] = []
    published: set[str] = set()  # models that already have a published-accuracy job
    for model in options.models:
        for backend, compile_modes, precision in _variants(options):
            for layout in layouts_for(backend, options.layouts):
                for compile_mode in compile_modes:
                    common = dict(model=model, backend=backend, precision=precision, layout=layout,
                                  compile_mode=compile_mode, threads=options.threads)
                    for task in options.tasks:
                        if task == "throughput":
                            jobs = [Job(task=task, batch_size=b, **common) for b in sorted(set(options.batch_sizes))]
                        elif task == "accuracy":
                            from dlmark.tasks.accuracy import job_extra

                            if not options.imagenet and model.name in published:
                                continue  # a published figure does not depend on how the model runs
                            published.add(model.name)
                            jobs = [Job(task=task, batch_size=options.accuracy_batch_size,
                                        extra=job_extra(options), **common)]
                        else:
                            extra = {"cap": options.max_batch_cap}
                            if options.memory_limit_bytes:
                                extra["memory_limit_bytes"] = options.memory_limit_bytes
                            jobs = [Job(task=task, batch_size=None, extra=extra, **common)]
                        groups.append(Group(task=task, jobs=jobs, **common))
    return groups


def _variants(options: RunOptions):
    """(backend, compile modes, precision) for every runtime asked for (``--backend``), in order."""
    for backend, modes in expand(options.backends or [options.backend], options.compile_modes):
        for precision in options.precisions:
            yield backend, modes, precision


def parse_tasks(text: str) -> list[str]:
    return [normalize_task(t) for t in text.split(",") if t.strip()]
