"""The options of a run: validated once, with their defaults, for the CLI and for library users alike."""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dlmark.backends import LAYOUTS, PRECISIONS
from dlmark.backends.registry import check_combination, check_installed, check_int8_installed, expand
from dlmark.errors import UserError
from dlmark.measure.devices import Device
from dlmark.measure.timing import TimingConfig
from dlmark.models.zoo import ModelSpec
from dlmark.suites import Suite
from dlmark.tasks import TASKS

#: The largest batch the largest-batch search tries unless the suite or the user caps it:
#: past this a GPU's memory, not the cap, ends the search; on CPU the memory limit does.
DEFAULT_MAX_BATCH_CAP = 65536

SCENARIOS = ("offline", "single-stream", "multi-stream", "server")
#: The settings a user may change from the command line or a suite (``--max-batch`` ...).
KNOBS = ("latency_bound_ms", "target_qps", "max_batch", "max_queue_delay_ms", "batches_in_flight",
         "samples_per_query", "min_duration_s", "min_query_count", "mlperf_rules", "pad_batches",
         "pad_sizes", "own_streams", "switch_interval_ms", "gc_freeze")
#: Seconds a job needs beyond LoadGen's minimum duration: the model's warm-up and LoadGen's tail.
OVERHEAD_S = 60.0
MLPERF_MIN_DURATION_S = 600.0

#: Device kinds a suite's timing may be specialised for.
DEVICE_KINDS = ("cpu", "cuda")


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
    # requests in flight at once (backends.in_flight): each value a variant of its own
    in_flight: list[int | str] = field(default_factory=lambda: [1])
    timing: dict[str, Any] = field(default_factory=dict)
    max_batch_cap: int = DEFAULT_MAX_BATCH_CAP
    memory_limit_bytes: int | None = None
    timeout_s: float = 900.0
    force: bool = False
    # the whole plan run this many times, one pass after another (run.plan): each configuration
    # sampled at moments spread over the run, for `dlmark compare` (analysis.compare)
    repetitions: int = 1
    # accuracy task: validation folder (None: published figures), class-balanced subset size,
    # images per forward pass, DataLoader worker processes (None: up to 8)
    imagenet: str | None = None
    accuracy_limit: int | None = None
    accuracy_batch_size: int = 64
    data_workers: int | None = None
    # int8: calibration samples (None: 32); under --imagenet they are validation images (run.plan.calibration_set)
    calibration_samples: int | None = None
    # serving task: LoadGen scenarios, and the settings that change them (KNOBS)
    scenarios: list[str] = field(default_factory=list)
    serving: dict[str, Any] = field(default_factory=dict)
    # pipeline task (and the serving scenarios' samples): --input images[:DIR] (None: no pipeline,
    # generated samples), the JPEG decoder, the DataLoader
    # worker counts swept (0: in-process), how many images (the generated set's size, a folder's limit)
    input: str | None = None
    decoder: str = "pil"
    pipeline_workers: list[int] = field(default_factory=lambda: [0])
    pipeline_images: int = 256

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
        if self.timeout_s <= 0:
            raise UserError("--timeout must be a positive number of seconds")
        if not isinstance(self.repetitions, int) or self.repetitions < 1:
            raise UserError(f"--repetitions must be a positive integer, not {self.repetitions}")
        expand(self.backends or [self.backend], self.compile_modes)  # an unknown runtime name is a UserError
        _check_compile_modes(self.compile_modes)
        self._check_int8_and_in_flight()
        _check_timing(self.timing)
        if self.accuracy_batch_size < 1 or (self.accuracy_limit is not None and self.accuracy_limit < 1):
            raise UserError("--accuracy-batch-size and --limit must be positive integers")
        if self.calibration_samples is not None and self.calibration_samples < 1:
            raise UserError("--calibration-samples must be a positive integer")
        if self.calibration_samples is not None and "int8" not in self.precisions:
            raise UserError("--calibration-samples is for int8's calibration; add --precision int8")
        if self.imagenet and "accuracy" not in self.tasks and "int8" not in self.precisions:
            raise UserError("--imagenet is for the accuracy task (and int8's calibration); add --task accuracy")
        if self.accuracy_limit and "accuracy" not in self.tasks:
            raise UserError("--imagenet and --limit are for the accuracy task; add --task accuracy")
        if self.accuracy_limit and not self.imagenet:
            raise UserError("--limit picks images from the validation set; give it with --imagenet DIR")
        if "serving" in self.tasks or self.scenarios or self.serving:
            if "serving" not in self.tasks or not self.scenarios:
                raise UserError("serving settings need a scenario: add --scenario offline,single-stream,multi-stream,server")
            _check_serving(self)
        self._check_pipeline()

    def _check_pipeline(self) -> None:
        from dlmark.inputs.decode import DECODERS
        from dlmark.inputs.jpegs import DEFAULT_COUNT, parse_input

        if self.input is None:
            if "pipeline" in self.tasks:
                raise UserError("the pipeline task reads JPEG files: add --input images (a generated set) "
                                "or --input images:DIR (your folder)")
            if self.decoder != "pil" or self.pipeline_workers != [0] or self.pipeline_images != DEFAULT_COUNT:
                raise UserError("--decoder, --pipeline-workers and --images are for the input pipeline; "
                                "add --input images or --input images:DIR")
            return
        parse_input(self.input)
        if "pipeline" not in self.tasks and "serving" not in self.tasks:
            raise UserError("--input is for the pipeline task and the serving scenarios; add pipeline to --task, "
                            "or give --scenario")
        if self.decoder not in DECODERS:
            raise UserError(f"unknown decoder {self.decoder!r}; use one of {', '.join(DECODERS)}")
        if "serving" in self.tasks:
            from dlmark.inputs.samples import SERVING_DECODERS

            if self.decoder not in SERVING_DECODERS:
                raise UserError(f"the serving scenarios decode their samples once on the CPU, before LoadGen's test; "
                                f"decoder {self.decoder} cannot: use --decoder {' or '.join(SERVING_DECODERS)}")
            if "pipeline" not in self.tasks and self.pipeline_workers != [0]:
                raise UserError("--pipeline-workers is for the pipeline task; the serving scenarios decode their "
                                "samples once, untimed: drop it, or add pipeline to --task")
        if not self.pipeline_workers or any(not isinstance(w, int) or w < 0 for w in self.pipeline_workers):
            raise UserError("--pipeline-workers takes counts of 0 (in-process) or more, e.g. --pipeline-workers 0,1,2")
        if self.decoder == "nvjpeg" and any(self.pipeline_workers):
            raise UserError("decoder nvjpeg decodes in the main process on the GPU; use --pipeline-workers 0 with it")
        if self.pipeline_images < 1:
            raise UserError(f"--images must be at least 1, not {self.pipeline_images}")

    def _check_int8_and_in_flight(self) -> None:
        from dlmark.backends.in_flight import parse_in_flight

        if not self.in_flight:
            raise UserError("--in-flight takes positive numbers of requests or 'auto', e.g. --in-flight 1,4")
        # "4" (from the command line) and 4 are one variant, and one job key.
        object.__setattr__(self, "in_flight", list(dict.fromkeys(parse_in_flight(n) for n in self.in_flight)))
        if self.in_flight != [1] and self.tasks != ["throughput"]:
            raise UserError("--in-flight is for the throughput task; add --task throughput "
                            "(run the other tasks separately)")
        for backend, _ in expand(self.runtimes, self.compile_modes):
            for device in self.devices:
                for precision in self.precisions:
                    for n in self.in_flight:
                        check_combination(backend, precision, device.kind, n)
        if "mxnet" in self.runtimes:
            from dlmark.backends.gluon_names import GLUON_NAMES

            # Refused here, not in the worker: the other runtimes' jobs would run first.
            outside = [m.name for m in self.models if m.name not in GLUON_NAMES]
            if outside:
                raise UserError(f"mxnet runs the Gluon model zoo's networks, not {', '.join(outside)}; "
                                f"drop mxnet from --backend or pick from: {', '.join(GLUON_NAMES)}")

    @property
    def runtimes(self) -> list[str]:
        return self.backends or [self.backend]

    def timing_for(self, device_kind: str) -> dict[str, Any]:
        """Timing options on one kind of device: the common ones, then that kind's
        (a suite's ``[timing.cuda]``: CUDA events are precise enough for shorter runs)."""
        common = {k: v for k, v in self.timing.items() if not isinstance(v, dict)}
        return {**common, **self.timing.get(device_kind, {})}

    def preflight(self, out_dir: Path | str | None = None) -> None:
        """Everything that can fail before any work, checked before any work: every runtime is
        installed, the results folder takes files, each task's own inputs (data sets, weights)."""
        for backend, _ in expand(self.runtimes, self.compile_modes):
            check_installed(backend)
            if "int8" in self.precisions:
                check_int8_installed(backend)
        if self.imagenet and "int8" in self.precisions:
            from dlmark.models.datasets import open_imagenet
            from dlmark.run.plan import calibration_set

            dataset = open_imagenet(self.imagenet)
            wanted = calibration_set(self).samples
            if wanted > len(dataset):
                raise UserError(f"int8 calibrates on {wanted} ImageNet images, but {dataset.root} holds "
                                f"{len(dataset)}; give --calibration-samples {len(dataset)} or fewer")
        from dlmark import tasks

        for name in self.tasks:
            tasks.get(name).preflight(self)
        if out_dir is not None:
            check_writable(Path(out_dir))


def with_min_time(timing: dict[str, Any], min_time_s: float | None) -> dict[str, Any]:
    """A suite's timing with the user's ``--min-time``, which holds on every device kind."""
    if min_time_s is None:
        return dict(timing)
    if min_time_s <= 0:
        raise UserError(f"--min-time must be a positive number of seconds, got {min_time_s:g}")
    merged = {k: ({**v} if isinstance(v, dict) else v) for k, v in timing.items()}
    merged["min_run_s"] = min_time_s
    for per_kind in (v for v in merged.values() if isinstance(v, dict)):
        per_kind.pop("min_run_s", None)
    return merged



#: Serving knobs whose command-line flag is not their name with dashes.
_SERVING_FLAGS = {"min_duration_s": "--serving-min-time", "min_query_count": "--serving-min-queries",
                  "latency_bound_ms": "--latency-bound-ms", "max_queue_delay_ms": "--max-queue-delay-ms",
                  "switch_interval_ms": "--gil-switch-interval-ms"}


def _serving_flag(name: str) -> str:
    return _SERVING_FLAGS.get(name, "--" + name.replace("_", "-"))


def _check_serving(options) -> None:
    """The serving task's scenarios and settings (tasks/serving.py runs them)."""
    for scenario in options.scenarios:
        if scenario not in SCENARIOS:
            raise UserError(f"unknown scenario {scenario!r}; use one of {', '.join(SCENARIOS)}")
    knobs = options.serving
    unknown = set(knobs) - set(KNOBS)
    if unknown:
        raise UserError(f"unknown serving setting(s) {sorted(unknown)}; known: {', '.join(KNOBS)}")
    for name in ("latency_bound_ms", "target_qps", "max_queue_delay_ms", "min_duration_s", "switch_interval_ms"):
        value = knobs.get(name)
        if value is not None and (not isinstance(value, (int, float)) or value < 0 or
                                  (value == 0 and name in ("latency_bound_ms", "target_qps", "switch_interval_ms"))):
            raise UserError(f"{_serving_flag(name)} must be a positive number, got {value!r}")
    for name in ("max_batch", "batches_in_flight", "samples_per_query", "min_query_count"):
        value = knobs.get(name)
        if value is not None and (not isinstance(value, int) or value < 1):
            raise UserError(f"{_serving_flag(name)} must be a positive integer, got {value!r}")
    sizes = knobs.get("pad_sizes")
    if sizes is not None and (not isinstance(sizes, (list, tuple)) or not sizes or
                              any(not isinstance(n, int) or isinstance(n, bool) or n < 1 for n in sizes)):
        raise UserError(f"--pad-sizes takes positive integers like 16,32,64, got {sizes!r}")
    if knobs.get("mlperf_rules") and options.timeout_s < MLPERF_MIN_DURATION_S + OVERHEAD_S:
        raise UserError(f"--mlperf-rules runs each scenario for at least {MLPERF_MIN_DURATION_S:.0f} s, which "
                        f"cannot fit --timeout {options.timeout_s:g}; give --timeout "
                        f"{MLPERF_MIN_DURATION_S + OVERHEAD_S:.0f} or more")
    if knobs.get("pad_sizes") is not None and "server" not in options.scenarios:
        raise UserError("--pad-sizes pads the Server scenario's batches; add --scenario server")
    if knobs.get("latency_bound_ms") is not None and "server" not in options.scenarios:
        raise UserError("--latency-bound-ms bounds the Server scenario's p99; add --scenario server")
    if not knobs.get("mlperf_rules"):
        duration = knobs.get("min_duration_s", 10.0)
        if duration + OVERHEAD_S > options.timeout_s:
            raise UserError(f"a {duration:g} s serving run cannot fit --timeout {options.timeout_s:g}")


def _check_compile_modes(modes: list[str | None]) -> None:
    from dlmark.backends.gpu_modes import COMPILE_MODES, GRAPH_MODE

    known = (*COMPILE_MODES, GRAPH_MODE)
    for mode in modes:
        if mode is None:
            continue
        base, _, modifier = mode.partition("+")
        if base not in known or modifier not in ("", "freezing"):
            raise UserError(f"unknown compile mode {mode!r}; use one of {', '.join(known)} (a torch.compile mode may "
                            f"take +freezing, e.g. default+freezing), or none for eager")


def _check_timing(timing: dict[str, Any]) -> None:
    known = set(TimingConfig.__dataclass_fields__)
    for where, options in [("", timing)] + [(f" for {kind}", v) for kind, v in timing.items() if isinstance(v, dict)]:
        unknown = {k for k, v in options.items() if not isinstance(v, dict)} - known
        unknown |= {k for k, v in options.items() if isinstance(v, dict) and (where or k not in DEVICE_KINDS)}
        if unknown:
            raise UserError(f"unknown timing option(s){where} {sorted(unknown)}; known: {sorted(known)}, "
                            f"and per device kind: {', '.join(f'[timing.{k}]' for k in DEVICE_KINDS)}")
        for name, value in options.items():
            if not isinstance(value, dict) and (not isinstance(value, (int, float)) or value < 0):
                raise UserError(f"timing option {name}{where} must be a non-negative number, got {value!r}")


def check_writable(out_dir: Path) -> None:
    """UserError unless ``out_dir`` can be made and takes a file: found by doing it, since
    permission bits say nothing for root (``os.access`` is always true there)."""
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise UserError(f"output folder {out_dir} is a file; choose a folder with --out")
    created = out_dir
    while not created.parent.exists() and created.parent != created:
        created = created.parent
    made = not created.exists()
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".dlmark-write-probe-", dir=out_dir)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise UserError(f"cannot write to output folder {out_dir} ({exc.strerror or exc}); "
                        f"choose another with --out") from None
    finally:
        if made and created.is_dir():
            shutil.rmtree(created, ignore_errors=True)  # the store makes it with its first record


def build(suite: str | Suite = "quick", *, models: list[str] | None = None, tasks: list[str] | None = None,
          batch_sizes: list[int] | None = None, device: str | None = None, devices: list[Device] | None = None,
          precisions: list[str] | None = None, layouts: list[str] | None = None,
          compile_modes: list[str | None] | None = None, backends: list[str] | None = None,
          min_time_s: float | None = None, max_batch_cap: int | None = None, **options: Any) -> RunOptions:
    """RunOptions from a suite (a shipped name or a .toml path) and what the user changed:
    anything left None takes the suite's value, devices are resolved, models looked up."""
    from dlmark import suites
    from dlmark.measure import devices as device_lookup
    from dlmark.models import zoo
    from dlmark.tasks import normalize_task

    if isinstance(suite, str):
        suite = suites.load(suite)
    devices = devices if devices is not None else device_lookup.resolve(device)
    if len(devices) > 1 and any(d.kind == "cpu" for d in devices):
        raise UserError("several CPU lanes would measure each other; use one device for CPU runs")
    if "tf32" in (precisions or suite.precisions) and all(d.kind == "cpu" for d in devices):
        raise UserError("tf32 is a CUDA matmul mode; on a CPU it would measure fp32 again: use --precision fp32")
    if options.get("scenarios"):  # a scenario asks for the serving task: alone, or beside the tasks named
        tasks = list(dict.fromkeys([*(tasks or []), "serving"]))
    if options.get("input") and not options.get("scenarios"):  # so does an input for the pipeline
        # (with a scenario the images are the serving scenarios' samples; --task pipeline adds the pipeline)
        tasks = list(dict.fromkeys([*(tasks or []), "pipeline"]))
    cap = max_batch_cap if max_batch_cap is not None else int(suite.max_batch_size.get("cap", DEFAULT_MAX_BATCH_CAP))
    modes = [None if m in (None, "none", "eager") else m for m in (compile_modes or [None])]
    return RunOptions(
        suite=suite, models=[zoo.get(name) for name in (models or suite.models)],
        tasks=[normalize_task(t) for t in (tasks or suite.tasks)],
        batch_sizes=batch_sizes or suite.batch_sizes,
        devices=devices,
        precisions=precisions or suite.precisions, layouts=layouts or ["nchw"], compile_modes=modes,
        backends=backends or ["pytorch"], timing=with_min_time(suite.timing, min_time_s), max_batch_cap=cap,
        **options)
