"""Largest batch size: the seed's method, made exact.

Grow the batch exponentially until a trial fails, then bisect between the
last success and the first failure. The search itself is pure (it only sees
trial outcomes) so that the driver can run it over a worker that may die and
be replaced mid-search, and so that tests can drive it with a fake.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

#: Default largest batch tried on GPU; on CPU the memory cap ends the search.
DEFAULT_CAP = 65536


@dataclass
class Trial:
    batch_size: int
    status: str  # "ok", or why it failed: "oom", "crash", "timeout", "error"
    seconds: float
    error: str | None = None


@dataclass
class SearchResult:
    max_batch_size: int  # 0 when even batch 1 failed
    first_failing_batch: int | None
    capped: bool
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0


def search(try_batch: Callable[[int], Trial], cap: int = DEFAULT_CAP, start: int = 1) -> SearchResult:
    """Exact largest batch in [start, cap] for which ``try_batch`` succeeds.

    Assumes monotonicity: if b fails, every larger batch fails too.
    """
    if cap < start:
        raise ValueError(f"cap {cap} is below start {start}")
    began = time.perf_counter()
    trials: list[Trial] = []

    def ok(batch: int) -> bool:
        trial = try_batch(batch)
        trials.append(trial)
        return trial.status == "ok"

    last_ok, first_fail = 0, None
    batch = start
    while True:
        if ok(batch):
            last_ok = batch
            if batch == cap:
                break
            batch = min(batch * 2, cap)
        else:
            first_fail = batch
            break
    if first_fail is not None:
        low, high = last_ok, first_fail  # invariant: low runs (or is 0), high fails
        while high - low > 1:
            mid = (low + high) // 2
            if ok(mid):
                low = mid
            else:
                high = mid
        last_ok, first_fail = low, high
    return SearchResult(
        max_batch_size=last_ok, first_failing_batch=first_fail, capped=first_fail is None,
        trials=trials, seconds=time.perf_counter() - began,
    )


def probe(runner, batch_size: int, iters: int = 1) -> dict[str, Any]:
    """Worker side of one trial: run the batch ``iters`` times (OOM raises).

    One pass suffices for inference: nothing is kept between passes, so a
    second pass allocates what the first did.
    """
    began = time.perf_counter()
    with getattr(runner, "probing", contextlib.nullcontext)():
        inputs = runner.make_inputs(batch_size)
        for _ in range(iters):
            out = runner.run(inputs)
            del out
        runner.synchronize()
        del inputs
    return {"seconds": time.perf_counter() - began}
