"""Largest batch size: the seed's method, made exact, and fast where memory is observable.

Grow the batch exponentially until a trial fails, then bisect between the
last success and the first failure. On a GPU each successful trial also
reports the caching allocator's peaks (reserved and allocated) and what the
device could have given it. Near the limit a successful trial costs a whole
forward pass of a huge batch (3-6 s for ResNet-50 or DenseNet-161 on an H200)
and a failed one a fraction of that, so the search uses the peaks to choose
where to look:

* the *reserved* peak grows on a line until it meets the budget; that line
  predicts the limit of ResNets to within a batch or two on an H200;
* near the budget the allocator frees its cache and retries, so some networks
  (DenseNets: 38% further) run well past that line, and a trial there reports a
  saturated or even lower peak, which is no point on the line;
* the *allocated* peak (live tensors) must fit the budget in any case, so its
  line is a ceiling worth one (usually failing, cheap) trial.

Predictions only choose which batch to try next: the answer is still a batch
that ran next to one that did not. The search itself is pure (it only sees
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
#: A fit needs two successes whose peaks differ by at least this share of the budget
#: (and MIN_FIT_SPREAD_BYTES): closer points leave the slope to allocator rounding.
MIN_FIT_SPREAD = 0.04
MIN_FIT_SPREAD_BYTES = 256 * 2**20
#: The first jump aims this far short of the predicted limit: a success there is a
#: close second point for an accurate fit, a failure would cost a bisection step.
FIRST_JUMP_SHORTFALL = 0.03
#: A reserved peak this close to the budget is the allocator making room, not the line.
SATURATED = 0.99
#: Failed steps down from a failed prediction before the search falls back to bisection:
#: a line off by more than 2**MAX_GALLOP_MISSES batches is not "a little" off.
MAX_GALLOP_MISSES = 4


@dataclass
class Trial:
    batch_size: int
    status: str  # "ok", or why it failed: "oom", "crash", "timeout", "error"
    seconds: float
    error: str | None = None
    peak_bytes: int | None = None  # allocator peak (reserved) of a successful GPU trial
    budget_bytes: int | None = None  # what the allocator could hold: reserved + free before the trial
    allocated_bytes: int | None = None  # peak of live tensors in that trial
    chosen_by: str = "growth"  # growth | prediction | confirmation | ceiling | gallop | bisection


@dataclass
class SearchResult:
    max_batch_size: int  # 0 when even batch 1 failed
    first_failing_batch: int | None
    capped: bool
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0


def _line_limit(points: list[tuple[int, int]], budget: int) -> int | None:
    """Largest batch on the line through the largest point and one far enough below it."""
    if len(points) < 2:
        return None
    b2, p2 = points[-1]
    spread = max(MIN_FIT_SPREAD_BYTES, MIN_FIT_SPREAD * budget)
    for b1, p1 in reversed(points[:-1]):
        if p2 - p1 >= spread:
            slope = (p2 - p1) / (b2 - b1)
            return b2 + int((budget - p2) // slope)
    return None


def _budget(trials: list[Trial]) -> int | None:
    return next((t.budget_bytes for t in reversed(trials) if t.budget_bytes), None)


def predicted_limit(trials: list[Trial]) -> int | None:
    """Where the reserved peak's line meets the budget: where the allocator first runs out of room.

    Only successes on the line count: a saturated peak, or one below a smaller batch's,
    is the allocator freeing its cache under pressure.
    """
    budget = _budget(trials)
    points: list[tuple[int, int]] = []
    for t in sorted((t for t in trials if t.status == "ok" and t.peak_bytes is not None), key=lambda t: t.batch_size):
        if t.peak_bytes < SATURATED * budget and (not points or t.peak_bytes > points[-1][1]):
            points.append((t.batch_size, t.peak_bytes))
    return _line_limit(points, budget) if budget else None


def allocation_ceiling(trials: list[Trial]) -> int | None:
    """Where the allocated peak's line meets the budget: no larger batch can run."""
    budget = _budget(trials)
    points = sorted((t.batch_size, t.allocated_bytes) for t in trials
                    if t.status == "ok" and t.allocated_bytes is not None)
    return _line_limit(points, budget) if budget else None


def search(try_batch: Callable[[int], Trial], cap: int = DEFAULT_CAP, start: int = 1) -> SearchResult:
    """Exact largest batch in [start, cap] for which ``try_batch`` succeeds.

    Assumes monotonicity: if b fails, every larger batch fails too.
    """
    if cap < start:
        raise ValueError(f"cap {cap} is below start {start}")
    began = time.perf_counter()
    trials: list[Trial] = []
    low, high = start - 1, None  # invariant: low runs (or is below start), high fails (None: none failed yet)
    batch, chosen_by = start, "growth"
    while True:
        trial = try_batch(batch)
        trial.chosen_by = chosen_by
        trials.append(trial)
        if trial.status == "ok":
            low = batch
        else:
            high = batch
        if low == cap or (high is not None and high - low == 1):
            break
        batch, chosen_by = _next_batch(trials, low, high, cap)
    return SearchResult(
        max_batch_size=max(low, 0) if low >= start else 0, first_failing_batch=high, capped=high is None,
        trials=trials, seconds=time.perf_counter() - began,
    )


def _next_batch(trials: list[Trial], low: int, high: int | None, cap: int) -> tuple[int, str]:
    """The next batch to try, and why.

    growth: doubling, until the peaks can predict. prediction: "the limit is
    ``guess``, so it runs" (the first one aims a little short). confirmation:
    "so ``guess + 1`` fails", tried before ``guess`` itself because a failure is
    the cheap outcome. ceiling: the network ran past the reserved line, so try
    where the live tensors alone would fill the device. gallop: a prediction
    just failed, usually by a little, so step down from it with doubling steps.
    bisection: whenever the lines have nothing better to offer.
    """
    last = trials[-1]
    guess = predicted_limit(trials)
    # A success past the line, once, means the allocator makes room beyond it: stop trusting it.
    beaten = guess is not None and any(
        t.status == "ok" and (t.chosen_by == "confirmation" or t.batch_size > guess) for t in trials)
    if guess is None or beaten:
        if high is not None:
            return (low + high) // 2, "bisection"
        ceiling = allocation_ceiling(trials) if beaten else None
        if ceiling is not None and ceiling > low and not any(t.chosen_by == "ceiling" for t in trials):
            return min(ceiling, cap), "ceiling"
        return min(max(low, 1) * 2, cap), "growth"
    if high is None:  # nothing has failed yet
        if not any(t.chosen_by == "prediction" for t in trials):  # first jump: short, for a close second point
            return min(low + max(1, int((guess - low) * (1 - FIRST_JUMP_SHORTFALL))), cap), "prediction"
        return min(max(guess, low) + 1, cap), "confirmation"
    if last.status != "ok" and last.chosen_by in ("prediction", "gallop"):
        misses = 0
        for t in reversed(trials):
            if t.status == "ok" or t.chosen_by not in ("prediction", "gallop"):
                break
            misses += 1
        if misses <= MAX_GALLOP_MISSES:
            return max(high - 2 ** (misses - 1), (low + high + 1) // 2), "gallop"
    if low < guess < high:
        return guess, "prediction"
    return (low + high) // 2, "bisection"


def probe(runner, batch_size: int, iters: int = 1) -> dict[str, Any]:
    """Worker side of one trial: run the batch ``iters`` times (OOM raises).

    One pass suffices for inference: nothing is kept between passes, so a
    second pass allocates what the first did. Runners that can see their
    allocator (PyTorch on CUDA) add its peak and budget for the search.
    """
    began = time.perf_counter()
    memory = getattr(runner, "probe_memory", None)
    with getattr(runner, "probing", contextlib.nullcontext)():
        budget = memory.start() if memory else None
        inputs = runner.make_inputs(batch_size)
        for _ in range(iters):
            out = runner.run(inputs)
            del out
        runner.synchronize()
        del inputs
        peaks = memory.peaks() if memory and budget is not None else None
    result: dict[str, Any] = {"seconds": time.perf_counter() - began}
    if budget is not None and peaks is not None:
        result.update(budget_bytes=budget, peak_bytes=peaks[0], allocated_bytes=peaks[1])
    return result
