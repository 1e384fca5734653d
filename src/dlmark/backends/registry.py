"""Which runtimes a run asks for, what each accepts, and which interpreter runs its worker.

``--backend`` names runtimes; some names are variants of one backend:
``pytorch-compile`` is PyTorch with ``torch.compile`` (modes from ``--compile``,
else ``default``), ``openvino-throughput`` is OpenVINO under its throughput
performance hint (``openvino`` alone: the latency hint). Nothing here imports a
runtime: availability is checked by module lookup, so a missing extra is one
line before any worker starts.
"""
from __future__ import annotations

import importlib.util
import sys

from dlmark.backends import BACKENDS
from dlmark.errors import UserError

#: runtime name -> (backend, fixed compile modes or None to take --compile)
RUNTIMES: dict[str, tuple[str, list[str | None] | None]] = {
    "pytorch": ("pytorch", None),
    "pytorch-compile": ("pytorch", None),
    "onnxruntime": ("onnxruntime", [None]),
    "openvino": ("openvino", ["latency"]),
    "openvino-throughput": ("openvino", ["throughput"]),
    "mxnet": ("mxnet", [None]),
}

#: backend -> Python modules it needs in dlmark's own interpreter
_MODULES = {"onnxruntime": ("onnxruntime", "onnx", "onnxscript"), "openvino": ("openvino",)}

#: backends that run in an environment of their own (dlmark.backends.envs)
SEPARATE_ENVS = {"mxnet": "mxnet"}


def expand(names: list[str], compile_modes: list[str | None]) -> list[tuple[str, list[str | None]]]:
    """(backend, compile modes) per requested runtime, in the order given."""
    out: list[tuple[str, list[str | None]]] = []
    for name in names:
        if name not in RUNTIMES:
            raise UserError(f"unknown backend {name!r}; use one of {', '.join(RUNTIMES)}")
        backend, fixed = RUNTIMES[name]
        if fixed is not None:
            modes = fixed
        elif name == "pytorch-compile":
            modes = [m for m in compile_modes if m] or ["default"]
        else:
            modes = compile_modes
        if (backend, modes) not in out:
            out.append((backend, modes))
    return out


def layouts_for(backend: str, layouts: list[str]) -> list[str]:
    """Channels-last is a PyTorch memory format; the other runtimes choose their own layouts."""
    return layouts if backend == "pytorch" else ["nchw"]


def check_installed(backend: str) -> None:
    """UserError naming the extra or command when ``backend`` cannot run here."""
    if backend in SEPARATE_ENVS:
        from dlmark.backends import envs

        envs.require(SEPARATE_ENVS[backend])
        return
    missing = [m for m in _MODULES.get(backend, ()) if _find(m) is None]
    if missing:
        raise UserError(f"backend {backend!r} is not installed (no module {missing[0]!r}); "
                        f"install it with: {BACKENDS[backend][1]}")


#: backend -> where --precision int8 runs (docs/int8.md): device kinds, and the quantizer's modules.
INT8 = {"onnxruntime": ("cpu", ("onnxruntime.quantization",)), "openvino": ("cpu", ("nncf",)),
        "pytorch": ("cpu", ())}
#: backends with a way to keep several requests in flight (backends.in_flight); those taking "auto".
IN_FLIGHT = ("onnxruntime", "openvino", "pytorch")
IN_FLIGHT_AUTO = ("openvino",)


def check_combination(backend: str, precision: str, device_kind: str, in_flight: int | str = 1) -> None:
    """UserError, before any work, for an int8 or in-flight request a runtime cannot serve here."""
    if precision == "int8":
        if backend not in INT8:
            raise UserError(f"--precision int8 runs on {', '.join(INT8)}, not {backend}")
        if device_kind != INT8[backend][0]:
            raise UserError(f"--precision int8 is CPU-only here ({backend}'s own quantizer, x86 kernels); "
                            f"use --device cpu")
    if in_flight != 1:
        if backend not in IN_FLIGHT:
            raise UserError(f"--in-flight runs on {', '.join(IN_FLIGHT)}, not {backend}; leave it at 1")
        if device_kind != "cpu":
            raise UserError("--in-flight is for CPU runs here; use --device cpu")
        if in_flight == "auto" and backend not in IN_FLIGHT_AUTO:
            raise UserError(f"--in-flight auto asks the runtime for its number of requests, which only "
                            f"{', '.join(IN_FLIGHT_AUTO)} gives; give {backend} a number")


def check_int8_installed(backend: str) -> None:
    """UserError naming the extra when ``backend``'s int8 quantizer is missing (nncf, torchao)."""
    from dlmark.backends.int8 import INSTALL

    for module in INT8.get(backend, ("", ()))[1]:
        if _find(module) is None:
            top = module.split(".")[0]
            raise UserError(f"--precision int8 on {backend} needs {top}, which is not installed; "
                            f"install it with: {INSTALL.get(top, 'pip install ' + top)}")
    if backend == "pytorch" and _find("torchao") is None and not _torch_ships_pt2e():
        raise UserError("--precision int8 on pytorch needs the PT2E quantizer, which this torch no longer ships; "
                        f"install it with: {INSTALL['torchao']}")


def _torch_ships_pt2e() -> bool:
    # Looked up on disk: importing torch here would cost the driver seconds.
    from pathlib import Path

    spec = _find("torch")
    return bool(spec and spec.origin and (Path(spec.origin).parent / "ao/quantization/quantize_pt2e.py").exists())


def _find(module: str):
    try:
        return importlib.util.find_spec(module)
    except (ImportError, ValueError):
        return None


def interpreter(backend: str) -> str:
    """The Python that runs ``backend``'s worker."""
    if backend in SEPARATE_ENVS:
        from dlmark.backends import envs

        return envs.require(SEPARATE_ENVS[backend])
    return sys.executable


def worker_env(backend: str) -> dict[str, str]:
    """Environment for a worker under another interpreter: where PyTorch is, for copying weights."""
    return {"DLMARK_TORCH_PYTHON": sys.executable} if backend in SEPARATE_ENVS else {}


def label(record: dict) -> str:
    """A runtime's name in tables: pytorch, pytorch-compile:default, openvino, onnxruntime, ..."""
    backend, mode = record.get("backend") or "pytorch", record.get("compile_mode")
    if backend == "pytorch" and mode:
        return f"pytorch-compile:{mode}" if mode != "cudagraphs" else "pytorch-cudagraphs"
    if backend == "openvino" and mode == "throughput":
        return "openvino-throughput"
    return backend
