"""dlmark: an open benchmark for deep-learning inference.

``import dlmark`` is cheap: submodules load on first use, so plotting and
loading results never import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

#: The seed-facing modules (benchmark, plot) and one package per concern.
_SUBMODULES = {
    "benchmark", "plot", "errors", "records", "models", "backends", "measure", "tasks", "run", "analysis",
    "report", "suites", "cli",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'dlmark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
