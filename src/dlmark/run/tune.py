"""``dlmark tune MODEL``: the fastest configuration for throughput and for batch-1 latency.

The search is a pure function of a ``measure(config, timeout_s) -> Outcome``
callable and a clock, so tests drive it with fakes; ``WorkerMeasurer`` is the
real one, a worker process whose every answer becomes an ordinary throughput
record. Order of the search (each step skipped when the budget is spent):

1. fp32 eager at the screening batch (the baseline of every speed-up) and at batch 1;
2. every precision x layout, eager, at the screening batch; pairs more than
   ``prune`` slower than the best are dropped, at most ``keep`` go on;
3. execution modes (CUDA graphs, torch.compile and its variants) on the best
   pair; on the next pair only the modes that came within ``prune`` of the best;
4. batch 1 on the best pair: eager, CUDA graphs, reduce-overhead (the latency candidates);
5. the batch of the best configuration grows (x2) while throughput gains at least ``min_gain``;
6. with budget left: max-autotune at the best batch, under its own compile time cap.

A compilation that runs past its cap is killed and stored as a ``timeout`` record.
"""
from __future__ import annotations

import sys
import time
from dataclasses import dataclass, field, replace
from typing import Any, Callable

EAGER = None


@dataclass(frozen=True)
class Config:
    precision: str
    layout: str
    mode: str | None  # None: eager; "cudagraphs"; a torch.compile mode (optionally "+freezing")
    batch_size: int

    @property
    def pair(self) -> tuple[str, str]:
        return self.precision, self.layout

    def label(self) -> str:
        return f"{self.precision}/{self.layout}/{self.mode or 'eager'}/b{self.batch_size}"

    @property
    def variant(self):
        """The run's one configuration type (``run.plan.Variant``) for this search point."""
        from dlmark.run.plan import Variant

        return Variant(backend="pytorch", precision=self.precision, layout=self.layout, compile_mode=self.mode)


@dataclass
class Outcome:
    config: Config
    status: str  # ok, oom, error, timeout, crash, or "skipped" (not measured: budget)
    throughput: float | None = None  # samples/s
    latency_ms: float | None = None  # one pass of the whole batch
    seconds: float = 0.0  # wall time the measurement took (compile included)
    error: str | None = None

    @property
    def ok(self) -> bool:
        return self.status == "ok" and self.throughput is not None


Measure = Callable[[Config, float], Outcome]


@dataclass(frozen=True)
class SearchSpace:
    """What the tune searches and how hard it prunes."""

    precisions: tuple[str, ...] = ("fp32", "tf32", "fp16", "bf16", "amp-bf16")
    layouts: tuple[str, ...] = ("nchw", "channels_last")
    modes: tuple[str, ...] = ("default", "cudagraphs", "default+freezing")  # step 3, in this order
    latency_modes: tuple[str | None, ...] = (EAGER, "cudagraphs", "reduce-overhead")  # step 5
    slow_modes: tuple[str, ...] = ("max-autotune",)  # step 6
    screen_batch: int = 256
    max_batch: int = 4096
    prune: float = 0.10
    keep: int = 2
    min_gain: float = 0.03
    measure_timeout_s: float = 240.0  # one measurement, compilation included
    slow_mode_timeout_s: float = 180.0  # compile cap of the slow modes
    min_left_s: float = 5.0  # do not start a measurement with less budget than this

    def is_compiled(self, mode: str | None) -> bool:
        return mode not in (EAGER, "cudagraphs")


#: Wall-time budget of a tune by device kind, seconds.
DEFAULT_BUDGET_S = {"cuda": 600.0, "cpu": 300.0}


def default_space(device_kind: str) -> SearchSpace:
    """The search for a device kind. A GPU's: the dataclass defaults. A CPU's: batch 16 to screen
    (256 took longer than one measurement's cap on 2 cores), no CUDA graphs, no tf32 (it is fp32
    there), no fp16 (slow, emulated ops on most CPUs), one compile mode (minutes each on a CPU)."""
    if device_kind != "cpu":
        return SearchSpace()
    return SearchSpace(precisions=("fp32", "bf16", "amp-bf16"), modes=("default",), latency_modes=(EAGER,),
                       slow_modes=(), screen_batch=16, max_batch=256, measure_timeout_s=120.0)


@dataclass
class TuneResult:
    outcomes: list[Outcome] = field(default_factory=list)
    seconds: float = 0.0
    budget_exhausted: bool = False

    def ok(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.ok]

    def baseline(self, batch_size: int | None = None) -> Outcome | None:
        """fp32 nchw eager at ``batch_size`` (None: its best batch)."""
        found = [o for o in self.ok() if o.config.pair == ("fp32", "nchw") and o.config.mode is EAGER
                 and (batch_size is None or o.config.batch_size == batch_size)]
        return max(found, key=lambda o: o.throughput, default=None)

    def best_throughput(self) -> Outcome | None:
        return max(self.ok(), key=lambda o: o.throughput, default=None)

    def best_latency(self) -> Outcome | None:
        ones = [o for o in self.ok() if o.config.batch_size == 1]
        return max(ones, key=lambda o: o.throughput, default=None)


class Search:
    """Runs the steps of the module docstring over ``measure`` within ``budget_s`` of ``clock``."""

    def __init__(self, measure: Measure, space: SearchSpace | None = None, budget_s: float = 600.0,
                 clock: Callable[[], float] = time.monotonic, log: Callable[[str], None] = lambda s: None):
        self.measure = measure
        self.space = space or SearchSpace()
        self.budget_s = budget_s
        self.clock = clock
        self.log = log
        self.result = TuneResult()
        self._began = clock()
        self._done: dict[Config, Outcome] = {}

    # -- budget and bookkeeping
    def left_s(self) -> float:
        return self.budget_s - (self.clock() - self._began)

    def run_one(self, config: Config, cap_s: float | None = None) -> Outcome:
        if config in self._done:
            return self._done[config]
        left = self.left_s()
        if left < self.space.min_left_s:
            self.result.budget_exhausted = True
            outcome = Outcome(config, "skipped", error="tune budget spent")
        else:
            timeout = min(left, cap_s or self.space.measure_timeout_s)
            outcome = self.measure(config, timeout)
            self.result.outcomes.append(outcome)
            self.log(_describe(outcome))
        self._done[config] = outcome
        return outcome

    # -- the steps
    def run(self) -> TuneResult:
        batch = self._baseline()
        if batch is None:
            self.result.seconds = self.clock() - self._began
            return self.result
        self.run_one(Config("fp32", "nchw", EAGER, 1))
        pairs = self._screen(batch)
        best = self._modes(pairs, batch)
        if best is not None:
            self._latency(best.config)
            self._grow(best)
            self._slow_modes(best.config)
        self.result.seconds = self.clock() - self._began
        return self.result

    def _baseline(self) -> int | None:
        """fp32 eager at the screening batch, halved until it fits; the batch the screen uses."""
        batch = self.space.screen_batch
        while batch >= 1:
            outcome = self.run_one(Config("fp32", "nchw", EAGER, batch))
            if outcome.ok:
                return batch
            if outcome.status not in ("oom", "timeout"):
                return None  # neither memory nor time: a smaller batch would fail the same way
            batch //= 2
        return None

    def _screen(self, batch: int) -> list[tuple[str, str]]:
        """Eager precision x layout pairs at ``batch``; the survivors, fastest first."""
        speeds: dict[tuple[str, str], float] = {}
        for precision in self.space.precisions:
            for layout in self.space.layouts:
                outcome = self.run_one(Config(precision, layout, EAGER, batch))
                if outcome.ok:
                    speeds[(precision, layout)] = outcome.throughput
        return survivors(speeds, self.space.prune, self.space.keep)

    def _modes(self, pairs: list[tuple[str, str]], batch: int) -> Outcome | None:
        """Execution modes on the surviving pairs at ``batch``; the best outcome so far."""
        modes = list(self.space.modes)
        for rank, pair in enumerate(pairs):
            eager = self._done.get(Config(*pair, EAGER, batch))
            tried = {EAGER: eager.throughput if eager and eager.ok else 0.0}
            for mode in modes:
                outcome = self.run_one(Config(*pair, mode, batch))
                if outcome.ok:
                    tried[mode] = outcome.throughput
            if rank == 0:
                # Modes that lose clearly on the best pair are not tried on the others.
                top = max(tried.values())
                modes = [m for m in modes if tried.get(m, 0.0) >= top * (1 - self.space.prune)]
        return self.result.best_throughput()

    def _grow(self, best: Outcome) -> Outcome:
        """Double the batch of the best configuration while it gains at least ``min_gain``."""
        current = best
        while current.config.batch_size * 2 <= self.space.max_batch:
            outcome = self.run_one(replace(current.config, batch_size=current.config.batch_size * 2))
            if not outcome.ok or outcome.throughput < current.throughput * (1 + self.space.min_gain):
                break
            current = outcome
        return current

    def _latency(self, best: Config) -> None:
        """Batch 1 on the best pair; compiled modes inherit ``+freezing`` when the best used it."""
        freezing = bool(best.mode and best.mode.endswith("+freezing"))
        for mode in self.space.latency_modes:
            if freezing and self.space.is_compiled(mode) and "+" not in mode:
                mode = f"{mode}+freezing"
            self.run_one(Config(*best.pair, mode, 1))

    def _slow_modes(self, config: Config) -> None:
        best = self.result.best_throughput() or Outcome(config, "ok")
        for mode in self.space.slow_modes:
            self.run_one(replace(best.config, mode=mode), cap_s=self.space.slow_mode_timeout_s)


def survivors(speeds: dict[tuple[str, str], float], prune: float, keep: int) -> list[tuple[str, str]]:
    """Pairs within ``prune`` of the fastest, fastest first, at most ``keep``."""
    if not speeds:
        return []
    top = max(speeds.values())
    ranked = sorted(speeds, key=lambda p: -speeds[p])
    return [p for p in ranked if speeds[p] >= top * (1 - prune)][:keep]


def _describe(outcome: Outcome) -> str:
    if outcome.ok:
        return (f"  {outcome.config.label():42s} {outcome.throughput:12,.1f} img/s  "
                f"{outcome.latency_ms:9.3f} ms/batch  ({outcome.seconds:.0f} s)")
    first = (outcome.error or "").strip().splitlines()
    return f"  {outcome.config.label():42s} {outcome.status}: {first[0] if first else ''}"


def summary(result: TuneResult) -> str:
    """The two answers and their speed-ups over fp32 eager."""
    lines = []
    best, fast = result.best_throughput(), result.best_latency()
    base = result.baseline()
    base1 = result.baseline(1)
    if best is not None:
        speedup = f" = {best.throughput / base.throughput:.2f}x fp32 eager's best ({base.throughput:,.0f} img/s at b{base.config.batch_size})" if base else ""
        lines.append(f"fastest throughput: {best.config.label()}  {best.throughput:,.0f} img/s{speedup}")
    if fast is not None:
        speedup = f" = {base1.latency_ms / fast.latency_ms:.2f}x faster than fp32 eager ({base1.latency_ms:.3f} ms)" if base1 else ""
        lines.append(f"fastest batch-1 latency: {fast.config.label()}  {fast.latency_ms:.3f} ms{speedup}")
    if best is None:
        failed = [o for o in result.outcomes if not o.ok]
        why = f" (first: {failed[0].config.label()} {failed[0].status})" if failed else ""
        lines.append(f"no recommendation: no configuration was measured successfully{why}; "
                     f"try a smaller --screen-batch or a larger --budget-s")
    skipped = sum(1 for o in result.outcomes if not o.ok)
    lines.append(f"{len(result.outcomes)} configuration(s) measured in {result.seconds:.0f} s"
                 + (f", {skipped} not ok" if skipped else "")
                 + ("; the budget ran out before the search ended (raise --budget-s)" if result.budget_exhausted else ""))
    return "\n".join(lines)


# ------------------------------------------------------------------ the real measurer


class WorkerMeasurer:
    """``Measure`` over one worker process: loads a configuration when it changes, primes, times.

    Every outcome is stored as an ordinary throughput record (the same
    ``make_record`` as ``dlmark run``); one already in the results folder is
    reused instead of measured again, so an interrupted tune resumes.
    """

    def __init__(self, model, device, out_dir, timing: dict[str, Any] | None = None, force: bool = False,
                 suite_name: str = "tune"):
        from dlmark.measure import environment
        from dlmark.run.jobs import RunContext
        from dlmark.run.local import Lane
        from dlmark.run.options import RunOptions
        from dlmark.records.store import Store
        from dlmark.suites import Suite

        suite = Suite(name=suite_name, description="dlmark tune", file_prefix="tune.py", models=[model.name],
                      tasks=["throughput"], batch_sizes=[1], timing=dict(timing or {}))
        self.options = RunOptions(suite=suite, models=[model], tasks=["throughput"], batch_sizes=[1],
                                  devices=[device], timing=dict(timing or {}), force=force)
        self.store = Store(out_dir, suite.file_prefix)
        self.ctx = RunContext(options=self.options, emit=self.store.write,
                              finished={} if force else self.store.finished_keys(),
                              env=environment.capture(), host=environment.host())
        # Peaks measured earlier (dlmark peak) serve MFU even under --force.
        if force:
            self.ctx.finished.update({r["job_key"]: r for r in self.store.records() if r.get("task") == "peak"})
        self.model, self.device = model, device
        self.lane = Lane(device)
        self.loaded: tuple | None = None
        self.facts: dict[str, Any] = {}
        self.records: list[dict[str, Any]] = []

    def close(self) -> None:
        self.lane.close()

    def _job(self, config: Config):
        from dlmark.run.plan import Job

        return Job(task="throughput", model=self.model, batch_size=config.batch_size, variant=config.variant)

    def _emit(self, job, status: str, error: str | None = None, **fields: Any) -> dict[str, Any]:
        from dlmark.run.jobs import make_record

        record = make_record(self.ctx, job, self.device, self.facts, status, error, **fields)
        self.store.write(record)
        self.records.append(record)
        return record

    def __call__(self, config: Config, timeout_s: float) -> Outcome:
        from dlmark.run.jobs import load_model, task_request
        from dlmark.run.local import WorkerFailed

        job = self._job(config)
        done = self.ctx.finished.get(job.key(self.device, self.ctx.host))
        if done is not None and done.get("task") == "throughput":
            return _outcome(config, done, 0.0)
        began = time.monotonic()
        worker = self.lane.worker
        key = (config.precision, config.layout, config.mode)
        try:
            if self.loaded != key or not worker.alive():
                answer = load_model(self.lane, "pytorch", self.model.source_ref, config.variant, timeout_s)
                if not answer["ok"]:
                    self.loaded, self.facts = None, {}
                    record = self._emit(job, answer["status"], f"while loading the model: {answer['error']}")
                    return _outcome(config, record, time.monotonic() - began)
                self.loaded, self.facts = key, answer
            # The first passes compile (torch.compile), capture (CUDA graphs) and let cuDNN pick
            # its algorithms; done here so that the timed warm-up starts from a primed model.
            left = max(1.0, timeout_s - (time.monotonic() - began))
            primed = worker.request(task_request("max_batch_size", "probe", batch_size=config.batch_size, iters=2), left)
            if not primed["ok"]:
                record = self._emit(job, primed["status"], primed["error"])
                return _outcome(config, record, time.monotonic() - began)
            left = max(1.0, timeout_s - (time.monotonic() - began))
            answer = worker.request(task_request("throughput", "measure", batch_size=config.batch_size,
                                                 timing=self.options.timing_for(self.device.kind)), left)
        except WorkerFailed as exc:
            self.loaded = None
            worker.kill()
            why = f"{exc} (tune cap {timeout_s:.0f} s for this configuration, compilation included)"
            record = self._emit(job, exc.status, why)
            return _outcome(config, record, time.monotonic() - began)
        seconds = time.monotonic() - began
        if not answer["ok"]:
            record = self._emit(job, answer["status"], answer["error"])
        else:
            fields = {k: v for k, v in answer.items() if k != "ok"}
            record = self._emit(job, "ok", first_pass_s=primed.get("seconds"), tune_seconds=seconds, **fields)
        return _outcome(config, record, seconds)


def _outcome(config: Config, record: dict[str, Any], seconds: float) -> Outcome:
    return Outcome(config, record["status"], record.get("throughput"), record.get("latency_ms_median"),
                   seconds, record.get("error"))


#: Timing of one tune measurement: shorter than a sweep's, still 8 blocks with a spread.
TUNE_TIMING = {"min_run_s": 0.5, "min_blocks": 8, "warmup_min_s": 0.3, "warmup_max_s": 5.0}


def tune(model_name: str, device_spec: str | None, out_dir, budget_s: float | None = None,
         space: SearchSpace | None = None, force: bool = False, stream=None,
         overrides: dict[str, Any] | None = None) -> tuple[TuneResult, list[dict[str, Any]]]:
    """Run a tune of one model on one device; returns the search result and the records written.

    Without ``space`` the search is ``default_space`` of the device's kind with ``overrides``
    (SearchSpace fields) applied; without ``budget_s``, that kind's ``DEFAULT_BUDGET_S``."""
    from dlmark.measure import devices
    from dlmark.models import zoo
    from dlmark.errors import UserError

    stream = stream or sys.stderr
    found = devices.resolve(device_spec)
    if len(found) != 1:
        raise UserError("dlmark tune measures one device; name one, e.g. --device cuda:0")
    device = found[0]
    if space is None:
        space = replace(default_space(device.kind), **(overrides or {}))
    if budget_s is None:
        budget_s = DEFAULT_BUDGET_S.get(device.kind, DEFAULT_BUDGET_S["cuda"])
    model = zoo.get(model_name)
    measurer = WorkerMeasurer(model, device, out_dir, timing=TUNE_TIMING, force=force)

    def log(line: str) -> None:
        stream.write(line + "\n")
        stream.flush()

    log(f"tuning {model.name} on {device.spec} ({device.name}), budget {budget_s:.0f} s")
    try:
        result = Search(measurer, space, budget_s=budget_s, log=log).run()
    finally:
        measurer.close()
    return result, measurer.records
