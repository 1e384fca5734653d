"""Runtimes behind one small interface.

A backend module exposes ``load(model_name, config) -> Runner``. A Runner
knows its device and can make inputs, run them, synchronise, time blocks,
measure memory of one pass, recover from an out-of-memory, and report its
versions. Backends are imported on demand so that a worker only pays for the
runtime it uses (and so that a worker under another interpreter, e.g. MXNet's,
needs none of the others).
"""
from __future__ import annotations

import importlib
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from ..errors import UserError

#: backend name -> (module, pip extra or install hint)
BACKENDS: dict[str, tuple[str, str]] = {
    "pytorch": ("dlmark.backends.pytorch", "pip install dlmark"),
    "onnxruntime": ("dlmark.backends.onnxruntime", "pip install -e '.[onnx]'"),
    "openvino": ("dlmark.backends.openvino", "pip install -e '.[openvino]'"),
    "mxnet": ("dlmark.backends.mxnet", "dlmark env create mxnet"),
}

#: int8: post-training static quantization by the runtime's own quantizer (backends.int8, docs/int8.md).
PRECISIONS = ("fp32", "tf32", "fp16", "bf16", "amp-fp16", "amp-bf16", "int8")
LAYOUTS = ("nchw", "channels_last")


@dataclass(frozen=True)
class CalibrationSet:
    """Which inputs an int8 quantizer calibrates on, as the planner states it (``backends.int8.Calibration``
    turns it into batches): ``generated`` seeded N(0, 1) samples, or ``imagenet`` validation images
    from the folder ``imagenet``, a class-balanced subset chosen by ``seed``."""

    source: str = "generated"
    samples: int = 32
    seed: int = 1
    imagenet: str | None = None


@dataclass(frozen=True)
class RunConfig:
    """How to run a model: everything that changes the measured figure."""

    device: str = "cpu"  # torch-style device inside the worker: cpu, cuda:0
    precision: str = "fp32"
    layout: str = "nchw"
    compile_mode: str | None = None  # None: eager; "default", "reduce-overhead", "max-autotune", ...
    threads: int | None = None  # CPU intra-op threads; None keeps the runtime's default
    in_flight: int | str = 1  # requests running at once (backends.in_flight); "auto": the runtime's choice
    calibration: CalibrationSet | None = None  # int8 only; None: the default generated set

    def __post_init__(self) -> None:
        if isinstance(self.calibration, dict):  # as it travels to the worker (JSON)
            object.__setattr__(self, "calibration", CalibrationSet(**self.calibration))

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class Runner(Protocol):
    backend: str
    input_shape: tuple[int, ...]

    def make_inputs(self, batch_size: int, seed: int | None = None) -> Any: ...
    def run(self, inputs: Any) -> Any: ...
    def synchronize(self) -> None: ...
    def timer(self) -> Any: ...
    def memory(self, inputs: Any) -> dict[str, float | None]: ...
    def is_oom(self, exc: BaseException) -> bool: ...
    def recover(self) -> None: ...
    def facts(self) -> dict[str, Any]: ...


class StopForward(Exception):
    """Raised inside ``Runner.stop_after_call``'s hook to end a forward pass early (largest-batch trials)."""


def seeded_input(shape: tuple[int, ...], seed: int) -> Any:
    """N(0, 1) float32 samples that are the same on every runtime and interpreter (numpy's PCG64),
    so that runtimes' outputs on ``make_inputs(batch, seed)`` can be compared."""
    import numpy as np

    return np.random.default_rng(seed).standard_normal(shape).astype(np.float32)


def load(backend: str, model: str, config: RunConfig) -> Runner:
    """Build ``model`` on ``backend``; UserError names the install step if it is missing."""
    if backend not in BACKENDS:
        raise UserError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    module_name, install = BACKENDS[backend]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise UserError(f"backend {backend!r} is not installed ({exc.name or exc}); install it with: {install}") from None
    return module.load(model, config)
