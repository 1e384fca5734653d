"""The environment a measurement ran in: versions, driver, device, host.

Captured into every record. The driver-side facts need no torch; the worker
adds the runtime's versions.
"""
from __future__ import annotations

import importlib.metadata
import os
import platform
import socket
import sys
from functools import lru_cache
from typing import Any


@lru_cache(maxsize=None)
def cpu_model() -> str:
    """The CPU's model name as the OS reports it."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown CPU"


def host() -> str:
    return socket.gethostname()


def usable_cpus() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def package_version(name: str) -> str | None:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        return None


def nvml_driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # noqa: BLE001 -- no NVML, no driver figure
        return None


def torch_versions() -> dict[str, Any]:
    """Versions of the PyTorch stack; call only where torch is already imported.

    ``cuda`` and ``cudnn`` are the versions torch was built with and runs on a GPU;
    a process that sees no GPU (a CPU lane's worker hides them, a CPU-only host has
    none) leaves them out: on a CPU record they would describe the wheel, not the run.
    """
    import torch

    versions = {
        "torch": torch.__version__,
        "torchvision": package_version("torchvision"),
        "timm": package_version("timm"),
    }
    if torch.cuda.is_available():
        versions["cuda"] = torch.version.cuda
        versions["cudnn"] = torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None
    return versions


def capture() -> dict[str, Any]:
    """Driver-side environment (no torch): dlmark, Python, OS, CPU, driver, host."""
    from dlmark import __version__

    return {
        "dlmark": __version__,
        "python": platform.python_version(),
        "python_executable": sys.executable,
        "os": platform.platform(),
        "cpu_model": cpu_model(),
        "cpu_count": usable_cpus(),
        "host": host(),
        "driver": nvml_driver_version(),
    }
