"""Helpers the non-PyTorch runners share: CPU memory of one pass, thread defaults, OOM texts."""
from __future__ import annotations

import gc
from typing import Any, Callable

from dlmark.measure import timing
from dlmark.measure.environment import usable_cpus

_OOM_TEXTS = ("out of memory", "failed to allocate", "bad_alloc", "cannot allocate memory", "not enough memory")


def threads_for(configured: int | None) -> int:
    """Intra-op threads: the user's figure, else every CPU this process may use.

    Set explicitly on every runtime (their own defaults differ: physical cores,
    logical cores, OMP settings), so runtimes side by side use the same number.
    """
    return configured or usable_cpus()


def cpu_pass_memory(run_once: Callable[[], Any]) -> dict[str, float | None]:
    """Peak resident memory of the worker during one pass (the seed's device_mem on CPU)."""
    timing.reset_peak_rss()
    out = run_once()
    del out
    rss = timing.peak_rss_mb()
    return {"peak_rss_mb": rss, "device_mem": rss}


def is_oom(exc: BaseException) -> bool:
    if isinstance(exc, MemoryError):
        return True
    text = str(exc).lower()
    return any(t in text for t in _OOM_TEXTS)


def recover() -> None:
    gc.collect()
