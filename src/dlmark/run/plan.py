"""Planning: options -> groups of jobs.

A job is one model x one configuration x one batch size (or one largest-batch
search). Jobs that share a model and configuration form a group, run in order
by one worker so the model is built once. Devices are not part of a group:
an executor lane brings its device, so the same plan spreads over GPUs.
Each task plans its own jobs (``tasks/``); this module only crosses models with variants.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from dlmark import tasks
from dlmark.backends import CalibrationSet, RunConfig
from dlmark.backends.registry import expand, layouts_for
from dlmark.measure.devices import Device
from dlmark.models.zoo import ModelSpec
from dlmark.records import schema


@dataclass(frozen=True)
class Variant:
    """How a model runs, apart from the device and the batch: the one configuration type
    of the planner, the worker protocol (``RunConfig``) and ``dlmark tune``."""

    backend: str = "pytorch"
    precision: str = "fp32"
    layout: str = "nchw"
    compile_mode: str | None = None  # None: eager; a torch.compile mode, "cudagraphs", ...
    threads: int | None = None
    in_flight: int | str = 1  # requests running at once; "auto": the runtime's recommendation
    calibration: CalibrationSet | None = None  # int8: what the quantizer calibrates on (None: the default)

    def run_config(self, device: Device) -> RunConfig:
        """What the worker's ``load`` is told (the backend travels beside it)."""
        return RunConfig(device=device.worker_device, precision=self.precision, layout=self.layout,
                         compile_mode=self.compile_mode, threads=self.threads, in_flight=self.in_flight,
                         calibration=self.calibration)

    def describe(self) -> str:
        config = "/".join(x for x in (self.precision, self.layout if self.layout != "nchw" else "",
                                      f"compile:{self.compile_mode}" if self.compile_mode else "",
                                      f"in-flight:{self.in_flight}" if self.in_flight != 1 else "",
                                      f"calibration:{self.calibration.source}-{self.calibration.samples}"
                                      if self.calibration else "") if x)
        return config + (f" on {self.backend}" if self.backend != "pytorch" else "")


class _Configured:
    """Read-through names for a job's or group's variant (``job.precision`` ...)."""

    variant: Variant

    @property
    def backend(self) -> str:
        return self.variant.backend

    @property
    def precision(self) -> str:
        return self.variant.precision

    @property
    def layout(self) -> str:
        return self.variant.layout

    @property
    def compile_mode(self) -> str | None:
        return self.variant.compile_mode

    @property
    def threads(self) -> int | None:
        return self.variant.threads


@dataclass(frozen=True)
class Job(_Configured):
    task: str
    model: ModelSpec
    variant: Variant
    batch_size: int | None  # None for a search (largest batch)
    extra: dict[str, Any] = field(default_factory=dict, hash=False, compare=False)

    def config_fields(self, device: Device, host: str) -> dict[str, Any]:
        """The fields that identify this measurement on a device (see schema.CONFIG_FIELDS)."""
        extra = dict(self.extra)
        if self.variant.in_flight != 1:
            # In extra_config, and only when not 1: the keys of one-request jobs (every folder
            # written before requests in flight existed) stay what they were, so resume finds them.
            extra["in_flight"] = self.variant.in_flight
        if self.variant.calibration is not None:
            # Likewise only when not the default generated set: another calibration is another model.
            extra["calibration"] = asdict(self.variant.calibration)
        return {
            "task": self.task, "source": self.model.source_ref, "backend": self.backend,
            "precision": self.precision, "layout": self.layout, "compile_mode": self.compile_mode,
            "threads": self.threads, "batch_size": self.batch_size, "device": device.name,
            "host": host, "extra_config": extra or None,
            # device_spec and input_shape are left out on purpose: identical GPUs are
            # interchangeable, and the input shape follows from the source.
            "device_spec": None, "input_shape": None,
        }

    def key(self, device: Device, host: str) -> str:
        return schema.job_key(self.config_fields(device, host))

    def describe(self) -> str:
        what = f"b={self.batch_size}" if self.batch_size else tasks.info(self.task).describe
        if self.extra.get("scenario"):
            what = f"{self.extra['scenario']} {what}"
        again = f" (repetition {self.extra['repetition']})" if self.extra.get("repetition") else ""
        return f"{self.model.name} {what} {self.variant.describe()}{again}"


@dataclass
class Group(_Configured):
    """Jobs one worker runs in order on one model and configuration."""

    task: str
    model: ModelSpec
    variant: Variant
    jobs: list[Job]


def plan(options) -> list[Group]:
    """Groups in the order they run: per model, every configuration, tasks in the order asked;
    with ``repetitions`` N, that whole pass N times over (``repeated``)."""
    groups: list[Group] = []
    planned: dict[str, set] = {}  # what a task has planned already (a published figure once per model)
    for model in options.models:
        for variant in variants(options):
            for task in options.tasks:
                jobs = tasks.get(task).plan_jobs(options, model, variant, planned.setdefault(task, set()))
                if jobs:
                    groups.append(Group(task=task, model=model, variant=variant, jobs=jobs))
    return repeated(groups, getattr(options, "repetitions", 1))


#: Tasks whose figure is a timing, worth sampling more than once; a largest batch, an accuracy or a
#: published figure is what it is the first time.
REPEATED_TASKS = ("throughput", "serving", "pipeline")


def repeated(groups: list[Group], repetitions: int) -> list[Group]:
    """The pass ``repetitions`` times, one after another: a configuration's repetitions are a
    pass apart, so the machine's drift between moments shows between them, not inside one.
    Repetition r > 1 is in the job's extra (its key and record's ``extra_config``); the first
    keeps the key a plain run gives it, so a plain run's folder resumes as the first pass."""
    out = list(groups)
    for r in range(2, repetitions + 1):
        out += [Group(task=g.task, model=g.model, variant=g.variant,
                      jobs=[Job(task=j.task, model=j.model, variant=j.variant, batch_size=j.batch_size,
                                extra={**j.extra, "repetition": r}) for j in g.jobs])
                for g in groups if g.task in REPEATED_TASKS]
    return out


def variants(options) -> list[Variant]:
    """Every runtime x precision x layout x compile mode x requests in flight asked for, in order."""
    out = []
    calibration = calibration_set(options)
    for backend, compile_modes in expand(options.runtimes, options.compile_modes):
        for precision in options.precisions:
            for layout in layouts_for(backend, options.layouts):
                for compile_mode in compile_modes:
                    for n in options.in_flight:
                        out.append(Variant(backend=backend, precision=precision, layout=layout,
                                           compile_mode=compile_mode, threads=options.threads, in_flight=n,
                                           calibration=calibration if precision == "int8" else None))
    return out


def calibration_set(options) -> CalibrationSet | None:
    """int8's calibration set: ImageNet validation images under ``--imagenet``, else generated
    samples; None for the default generated set (so its job keys stay those of earlier runs)."""
    import os

    samples = getattr(options, "calibration_samples", None)
    if getattr(options, "imagenet", None):
        return CalibrationSet(source="imagenet", samples=samples or CalibrationSet.samples,
                              imagenet=os.path.abspath(os.path.expanduser(options.imagenet)))
    if samples and samples != CalibrationSet.samples:
        return CalibrationSet(source="generated", samples=samples)
    return None


def job(task: str, model: ModelSpec, variant: Variant, batch_size: int | None, **extra: Any) -> Job:
    return Job(task=task, model=model, variant=variant, batch_size=batch_size, extra=extra)

