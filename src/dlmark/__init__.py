"""dlmark: an open benchmark for deep-learning inference.

``import dlmark`` is cheap: submodules load on first use, so plotting and
loading results never import torch.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_SUBMODULES = {
    "benchmark", "plot", "zoo", "records", "measure", "report", "suites", "cli",
    "store", "devices", "environment", "plan", "executors", "stats", "tables",
}


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        module = importlib.import_module(f".{name}", __name__)
        globals()[name] = module
        return module
    raise AttributeError(f"module 'dlmark' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | _SUBMODULES)
