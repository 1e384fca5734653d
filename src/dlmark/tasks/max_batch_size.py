"""Largest batch size: the seed's method, made exact, and fast where memory is observable.

Grow the batch exponentially until a trial fails, then bisect between the
last success and the first failure. On a GPU each successful trial also
reports the allocator's peak and what the device could have given it; once
two successes are far enough apart to fit peak memory as a line in the batch
size, the search jumps to the batch the line predicts and refines from there.
Near the limit a successful trial costs a whole forward pass of a huge batch
(3-6 s for ResNet-50 or DenseNet-161 on an H200) and a failed one a fraction
of that, so trials stop once the pass is past its memory peak (StopPlan) and
only the batch that decides the answer runs whole. The line only chooses which
batch to try next: the answer is still a batch that ran whole next to one that
did not.

On the H200 (results/h200-cnn-sweep-2) the line predicted the ResNets' and VGGs'
limits to within a batch, and a missed prediction was off by one as often as not
(hence the near-miss). Past the line's limit the allocator frees its cache and
goes on with less reserve: a success there reports a lower peak, and the line
through it reached the next limit of ResNet-v2-50 and SqueezeNet-1.0 exactly;
the DenseNets' limits lie well past it and cost a bisection (26 to 35 s each).

The search itself is pure (it only sees trial outcomes) so that the driver can
run it over a worker that may die and be replaced mid-search, and so that
tests can drive it with a fake.
"""
from __future__ import annotations

import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from dlmark.backends import StopForward

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
    chosen_by: str = "growth"  # growth | prediction | confirmation | near-miss | bisection | verification
    partial: bool = False  # ran only up to the stop after the memory peak (see early_exit_call)
    stop_after_call: int | None = None  # the leaf call it was to stop after (None: whole pass)
    pass_s: float | None = None  # the forward pass alone, without allocator set-up and clean-up


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


def search(try_batch: Callable[[int], Trial], cap: int, start: int = 1,
           verify: Callable[[int], Trial] | None = None) -> SearchResult:
    """Exact largest batch in [start, cap] for which ``try_batch`` succeeds.

    Assumes monotonicity: if b fails, every larger batch fails too. With ``verify``
    (a whole pass, where ``try_batch`` stops after the memory peak), a trial whose
    success would decide the answer (the batch just below a failure) runs whole, and
    an answer that only ran stopped is run whole once more; should that fail, the
    search starts again below it with whole passes only, so the answer always ran whole.
    """
    began = time.perf_counter()
    result = _search(try_batch, cap, start, whole=verify)
    if verify is None or result.max_batch_size < start:
        return result
    answer = next(t for t in reversed(result.trials) if t.batch_size == result.max_batch_size and t.status == "ok")
    if not answer.partial:
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


def _search(try_batch: Callable[[int], Trial], cap: int, start: int,
            whole: Callable[[int], Trial] | None = None) -> SearchResult:
    if cap < start:
        raise ValueError(f"cap {cap} is below start {start}")
    began = time.perf_counter()
    trials: list[Trial] = []
    low, high = start - 1, None  # invariant: low runs (or is below start), high fails (None: none failed yet)
    batch, chosen_by = start, "growth"
    while True:
        decisive = whole is not None and high is not None and batch == high - 1
        trial = (whole if decisive else try_batch)(batch)
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
    ``low + 1`` fails". A prediction that fails is usually off by the allocator's rounding
    (on the H200: ResNet-v1-50, -101, v2-18 and VGG-16 by one batch), so the batch just
    below it is tried once (near-miss). When the line has just been proved wrong, or
    points at a batch that already failed, the next step is a plain bisection: the
    answer never depends on the line, only the number of trials does.
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
    missed = last.chosen_by == "prediction" and last.status != "ok"
    if missed and not any(t.chosen_by == "near-miss" and t.status != "ok" for t in trials):
        return high - 1, "near-miss"
    line_wrong = missed or (last.chosen_by == "confirmation" and last.status == "ok")
    if guess is not None and guess < high and not line_wrong:
        return (guess, "prediction") if guess > low else (low + 1, "confirmation")
    return (low + high) // 2, "bisection"


#: Batch sizes whose per-call memory peaks give each call's growth per image.
PROFILE_BATCHES = (16, 64)
#: A trial may stop once no later call grows by more than this share of the steepest one.
LATER_CALLS_SHARE = 0.9


def early_exit_call(per_call: list[float], later_share: float = LATER_CALLS_SHARE) -> int | None:
    """The leaf call after which a trial can stop, or None (run whole).

    ``per_call[i]``: the memory of call i, either the bytes per image by which its peak
    grows with the batch (the profile) or its peak in a huge trial. The pass peaks at
    the largest; past it, once every later call needs at most ``later_share`` of that,
    the rest of the pass needs less memory than the part already run, with room to spare.
    """
    if not per_call or max(per_call) <= 0:
        return None
    top = per_call.index(max(per_call))
    for call in range(top, len(per_call) - 1):
        if max(per_call[call + 1:]) <= later_share * per_call[top]:
            return call
    return None


#: A stopped trial whose allocated peak is at least this share of the budget refines the
#: stop with its own per-call peaks: at such batches activations dwarf the weights and the
#: cuDNN workspaces that can mislead the small-batch profile (on the H200 VGG-16's profile
#: stopped after call 21 of 39; its huge-batch peak is call 2, the first block's second conv).
REFINE_MIN_SHARE = 0.25


@dataclass
class StopPlan:
    """Where a model's largest-batch trials stop: profiled at small batches, refined once at a huge one."""

    profiled_call: int | None  # from ``profile`` (None: every trial runs whole)
    call: int | None = None
    refined: bool = False

    def __post_init__(self) -> None:
        self.call = self.profiled_call

    def request(self) -> dict[str, Any]:
        """What the next trial's probe is asked: where to stop, and whether to record its calls' peaks."""
        return {"stop_after_call": self.call, "record_calls": self.call is not None and not self.refined}

    def learn(self, answer: dict[str, Any]) -> None:
        """Refine the stop from a stopped trial's call peaks, once, if its batch was huge enough."""
        peaks, stop = answer.get("call_peaks"), answer.get("stop_after_call", self.call)
        if self.refined or not peaks or stop is None or not answer.get("budget_bytes"):
            return
        if answer["allocated_bytes"] < REFINE_MIN_SHARE * answer["budget_bytes"]:
            return
        earlier = early_exit_call(peaks[:stop + 1])
        self.call = stop if earlier is None else min(earlier, stop)
        self.refined = True


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


def probe_op(runner, request: dict[str, Any]) -> dict[str, Any]:
    stop = request.get("stop_after_call")
    return probe(runner, int(request["batch_size"]), int(request.get("iters", 1)),
                 None if stop is None else int(stop), bool(request.get("record_calls")))


def profile_op(runner, request: dict[str, Any]) -> dict[str, Any]:
    return profile(runner)


def probe(runner, batch_size: int, iters: int = 1, stop_after_call: int | None = None,
          record_calls: bool = False) -> dict[str, Any]:
    """Worker side of one trial: run the batch ``iters`` times (OOM raises).

    One pass suffices for inference: nothing is kept between passes, so a
    second pass allocates what the first did. Runners that can see their
    allocator (PyTorch on CUDA) add its peak and budget for the search. With
    ``stop_after_call`` the pass ends after that leaf call (``partial`` in the answer);
    with ``record_calls`` the first pass also reports each call's allocated peak.
    """
    began = time.perf_counter()
    memory = getattr(runner, "probe_memory", None)
    call_peaks: list[int] = []
    record = record_calls and memory is not None

    def hooks(first: bool):  # fresh hooks per pass: their call count starts at zero
        stack = contextlib.ExitStack()
        if record and first:  # registered first, so the stopping call's peak is noted too
            stack.enter_context(runner.watch_calls(lambda _call: call_peaks.append(memory.note_call())))
        if stop_after_call is not None:
            stack.enter_context(runner.stop_after_call(stop_after_call))
        return stack

    partial = False
    with getattr(runner, "probing", contextlib.nullcontext)():
        budget = memory.start() if memory else None
        inputs = runner.make_inputs(batch_size)
        runner.synchronize()
        passes_began = time.perf_counter()
        for index in range(iters):
            try:
                with hooks(index == 0):
                    out = runner.run(inputs)
                del out
            except StopForward:
                partial = True
        runner.synchronize()
        pass_s = (time.perf_counter() - passes_began) / iters
        del inputs
        peaks = memory.peaks() if memory and budget is not None else None
    result: dict[str, Any] = {"seconds": time.perf_counter() - began, "partial": partial, "pass_s": pass_s,
                              "stop_after_call": stop_after_call}
    if budget is not None and peaks is not None:
        result.update(budget_bytes=budget, peak_bytes=peaks[0], allocated_bytes=peaks[1])
    if record:
        result["call_peaks"] = call_peaks
    return result


WORKER_OPS = {"probe": probe_op, "profile": profile_op}


# ----------------------------------------------------------------- driver side


def plan_jobs(options, model, variant, planned: set) -> list:
    from dlmark.run.plan import job

    extra = {"cap": options.max_batch_cap}
    if options.memory_limit_bytes:
        extra["memory_limit_bytes"] = options.memory_limit_bytes
    return [job("max_batch_size", model, variant, None, **extra)]


def preflight(options) -> None:
    """Nothing to check beyond the run's own options."""


def run_group(group, lane, ctx) -> None:
    from dlmark.run.jobs import start_group

    started = start_group(group, lane, ctx)
    if started is None:
        return
    jobs, facts = started
    for job in jobs:
        _search_on_lane(job, group, lane, ctx, facts)


class _Stopped(Exception):
    """The run was interrupted; the search in flight is dropped, not recorded."""


def _search_on_lane(job, group, lane, ctx, facts: dict[str, Any]) -> None:
    """The search runs here, driver-side, so a trial that kills the worker is just a failed trial."""
    from dataclasses import asdict

    from dlmark.run.jobs import load_model, make_record, task_request
    from dlmark.run.local import WorkerFailed

    device, worker = lane.device, lane.worker
    cap = int(job.extra["cap"])
    # Where a trial may stop past the memory peak: a success near the limit is a whole
    # pass of a huge batch otherwise. The answer itself is run whole (search's verify).
    where: dict[str, Any] = {}
    try:
        answer = worker.request(task_request("max_batch_size", "profile"), ctx.options.timeout_s)
        where = answer if answer.get("ok") else {}
    except WorkerFailed:
        worker.kill()  # the first trial loads the model again
    stops = StopPlan(where.get("exit_call"))

    def trial(batch: int, whole: bool) -> Trial:
        if ctx.stop.is_set():
            raise _Stopped()
        stop = {"stop_after_call": None} if whole else stops.request()
        began = time.perf_counter()
        try:
            reload = load_model(lane, group.backend, group.model.source_ref, group.variant)
            if not reload["ok"]:  # the previous trial took the worker down and it does not come back
                return Trial(batch, "error", time.perf_counter() - began, reload["error"])
            answer = worker.request(task_request("max_batch_size", "probe", batch_size=batch, **stop),
                                    ctx.options.timeout_s)
        except WorkerFailed as exc:
            if ctx.stop.is_set():
                raise _Stopped() from None
            worker.kill()
            return _shown(Trial(batch, exc.status, time.perf_counter() - began, str(exc)[:500],
                                stop_after_call=stop["stop_after_call"]))
        if answer["ok"]:
            stops.learn(answer)
        return _shown(Trial(batch, "ok" if answer["ok"] else answer["status"], time.perf_counter() - began,
                            answer.get("error"), peak_bytes=answer.get("peak_bytes"),
                            budget_bytes=answer.get("budget_bytes"), allocated_bytes=answer.get("allocated_bytes"),
                            partial=bool(answer.get("partial")), stop_after_call=stop["stop_after_call"],
                            pass_s=answer.get("pass_s")))

    def _shown(t: Trial) -> Trial:
        ctx.on_progress(job, f"trial batch {t.batch_size}: {t.status} in {t.seconds:.1f} s")
        return t

    try:
        result = search(lambda batch: trial(batch, whole=False), cap=cap,
                        verify=(lambda batch: trial(batch, whole=True)) if stops.profiled_call is not None else None)
    except _Stopped:
        return
    trials = [asdict(t) for t in result.trials]
    # The limit is whatever stopped the smallest failing batch: usually memory, sometimes a
    # kernel's own limit (32-bit indexing) at huge batches. Either way that batch does not run.
    limit = next((t for t in result.trials if t.batch_size == result.first_failing_batch and t.status != "ok"), None)
    if result.max_batch_size:
        status, error = "ok", None
    else:
        status = limit.status if limit else "error"
        error = f"even batch size 1 does not run: {limit.error if limit else 'unknown'}"
    memory_limit = ctx.options.memory_limit_bytes
    fields = dict(
        max_batch_size=result.max_batch_size, first_failing_batch=result.first_failing_batch,
        cap=cap, capped=result.capped, trials=trials, num_trials=len(trials), search_s=result.seconds,
        limit_status=limit.status if limit else None, limit_error=limit.error if limit else None,
        memory_limit_mb=(memory_limit / 2**20) if memory_limit else None,
        early_exit_call=stops.call, early_exit_call_profiled=stops.profiled_call, leaf_calls=where.get("leaf_calls"),
    )
    record = make_record(ctx, job, device, facts, status, error, **fields)
    record["batch_size"] = result.max_batch_size  # the seed's plot reads the largest batch from this column
    ctx.emit(record)
