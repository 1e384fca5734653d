"""Largest batch size: the seed's method, made exact, and fast where memory is observable.

Grow the batch exponentially until a trial fails, then bisect between the
last success and the first failure. On a GPU each successful trial also
reports the allocator's peak and what the device could have given it; once
two successes are far enough apart to fit peak memory as a line in the batch
size, the search jumps to the batch the line predicts and refines from there.
Near the limit a successful trial costs a whole forward pass of a huge batch
(3-6 s for ResNet-50 or DenseNet-161 on an H200) and a failed one a fraction
of that. It only chooses which batch to try next: the answer is still a batch
that ran next to one that did not.

On the H200 (results/h200-cnn-sweep) the line predicted the ResNets' limits to
within a batch. Past the line's limit the allocator frees its cache and goes on
with less reserve: a success there reports a lower peak, and the line through it
reached the next limit of ResNet-v2-50 and SqueezeNet-1.0 exactly and of the
DenseNets (38% past the first line) in two or three steps. Variants tried on
fakes shaped on those traces (saturated points left out, the cheap failing
batch tried first, stepping down after a miss) did not beat this one overall.

The search itself is pure (it only sees trial outcomes) so that the driver can
run it over a worker that may die and be replaced mid-search, and so that
tests can drive it with a fake.
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


@dataclass
class Trial:
    batch_size: int
    status: str  # "ok", or why it failed: "oom", "crash", "timeout", "error"
    seconds: float
    error: str | None = None
    peak_bytes: int | None = None  # allocator peak (reserved) of a successful GPU trial
    budget_bytes: int | None = None  # what the allocator could hold: reserved + free before the trial
    allocated_bytes: int | None = None  # peak of live tensors in that trial (kept for analysis)
    chosen_by: str = "growth"  # growth | prediction | confirmation | bisection | verification
    partial: bool = False  # ran only up to the stop after the memory peak (see early_exit_call)


@dataclass
class SearchResult:
    max_batch_size: int  # 0 when even batch 1 failed
    first_failing_batch: int | None
    capped: bool
    trials: list[Trial] = field(default_factory=list)
    seconds: float = 0.0


def predicted_limit(trials: list[Trial]) -> int | None:
    """Largest batch whose peak, on the line through the two largest successes, fits the budget."""
    points = sorted((t.batch_size, t.peak_bytes, t.budget_bytes) for t in trials
                    if t.status == "ok" and t.peak_bytes is not None and t.budget_bytes is not None)
    if len(points) < 2:
        return None
    b2, p2, budget = points[-1]
    spread = max(MIN_FIT_SPREAD_BYTES, MIN_FIT_SPREAD * budget)
    for b1, p1, _ in reversed(points[:-1]):
        if p2 - p1 >= spread:
            slope = (p2 - p1) / (b2 - b1)
            return b2 + int((budget - p2) // slope)
    return None


def search(try_batch: Callable[[int], Trial], cap: int = DEFAULT_CAP, start: int = 1,
           verify: Callable[[int], Trial] | None = None) -> SearchResult:
    """Exact largest batch in [start, cap] for which ``try_batch`` succeeds.

    Assumes monotonicity: if b fails, every larger batch fails too. With ``verify``
    (a whole pass, where ``try_batch`` stops after the memory peak), the answer is
    run whole once more; should that fail, the search starts again below it with
    whole passes only, so the answer always ran whole.
    """
    began = time.perf_counter()
    result = _search(try_batch, cap, start)
    if verify is None or result.max_batch_size < start:
        return result
    check = verify(result.max_batch_size)
    check.chosen_by = "verification"
    result.trials.append(check)
    if check.status != "ok":  # a later layer needed more than the stop allowed for
        again = _search(verify, result.max_batch_size - 1, start) if result.max_batch_size > start else None
        if again is None:
            result.max_batch_size, result.first_failing_batch, result.capped = 0, start, False
        else:
            result.trials.extend(again.trials)
            result.max_batch_size, result.capped = again.max_batch_size, False
            result.first_failing_batch = again.first_failing_batch or check.batch_size
    result.seconds = time.perf_counter() - began
    return result


def _search(try_batch: Callable[[int], Trial], cap: int, start: int) -> SearchResult:
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
    """The next batch to try, and why: growth, a prediction, its confirmation, or bisection.

    A prediction says "``guess`` runs"; a confirmation says "``low`` is the limit, so
    ``low + 1`` fails". When the line has just been proved wrong, or points at a batch
    that already failed, the next step is a plain bisection: the answer never depends
    on the line, only the number of trials does.
    """
    last = trials[-1]
    guess = predicted_limit(trials)
    if high is None:  # nothing has failed yet
        if guess is not None and guess > low:
            if last.chosen_by != "prediction":  # first jump: aim short, for a close second point
                guess = low + max(1, int((guess - low) * (1 - FIRST_JUMP_SHORTFALL)))
            return min(guess, cap), "prediction"
        if guess is not None and last.chosen_by == "prediction":
            return low + 1, "confirmation"
        return min(max(low, 1) * 2, cap), "growth"
    line_wrong = ((last.chosen_by == "prediction" and last.status != "ok")
                  or (last.chosen_by == "confirmation" and last.status == "ok"))
    if guess is not None and guess < high and not line_wrong:
        return (guess, "prediction") if guess > low else (low + 1, "confirmation")
    return (low + high) // 2, "bisection"


class StopForward(Exception):
    """Raised by a runner's hook to end a trial's forward pass past its memory peak."""


#: Batch sizes whose per-call memory peaks give each call's growth per image.
PROFILE_BATCHES = (16, 64)
#: A trial may stop once no later call grows by more than this share of the steepest one.
LATER_CALLS_SHARE = 0.9


def early_exit_call(slopes: list[float], later_share: float = LATER_CALLS_SHARE) -> int | None:
    """The leaf call after which a trial can stop, or None (run whole).

    ``slopes[i]``: bytes per image by which the memory peak of call i grows with the
    batch. At a huge batch the pass peaks at the steepest call; past it, once every
    later call grows by at most ``later_share`` of that, the rest of the pass needs
    less memory than the part already run, with room to spare.
    """
    if not slopes or max(slopes) <= 0:
        return None
    top = slopes.index(max(slopes))
    for call in range(top, len(slopes) - 1):
        if max(slopes[call + 1:]) <= later_share * slopes[top]:
            return call
    return None


def profile(runner) -> dict[str, Any]:
    """Worker side, once per search: where a trial of this model can stop (None: nowhere).

    Measured as trials run (``probing``: no cuDNN autotuning, whose workspace tries
    would count as the calls' memory).
    """
    slopes = None
    if hasattr(runner, "memory_slopes"):
        with getattr(runner, "probing", contextlib.nullcontext)():
            slopes = runner.memory_slopes(*PROFILE_BATCHES)
    return {"exit_call": early_exit_call(slopes) if slopes else None, "leaf_calls": len(slopes) if slopes else None}


def probe(runner, batch_size: int, iters: int = 1, stop_after_call: int | None = None) -> dict[str, Any]:
    """Worker side of one trial: run the batch ``iters`` times (OOM raises).

    One pass suffices for inference: nothing is kept between passes, so a
    second pass allocates what the first did. Runners that can see their
    allocator (PyTorch on CUDA) add its peak and budget for the search. With
    ``stop_after_call`` the pass ends after that leaf call (``partial`` in the answer).
    """
    began = time.perf_counter()
    memory = getattr(runner, "probe_memory", None)
    def stopping():  # a fresh hook per pass: its call count starts at zero
        return runner.stop_after_call(stop_after_call) if stop_after_call is not None else contextlib.nullcontext()

    partial = False
    with getattr(runner, "probing", contextlib.nullcontext)():
        budget = memory.start() if memory else None
        inputs = runner.make_inputs(batch_size)
        for _ in range(iters):
            try:
                with stopping():
                    out = runner.run(inputs)
                del out
            except StopForward:
                partial = True
        runner.synchronize()
        del inputs
        peaks = memory.peaks() if memory and budget is not None else None
    result: dict[str, Any] = {"seconds": time.perf_counter() - began, "partial": partial}
    if budget is not None and peaks is not None:
        result.update(budget_bytes=budget, peak_bytes=peaks[0], allocated_bytes=peaks[1])
    return result
