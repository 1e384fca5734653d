"""dlmark tune: the search over a fake measurer (known best, pruning, budget), and one real CPU tune."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from dlmark.run import tune
from dlmark.run.tune import EAGER, Config, Outcome, Search, SearchSpace, survivors

# A made-up GPU: per-image cost in ms of each (precision, layout), each mode's factor,
# and a fixed per-batch overhead that large batches and CUDA graphs amortise.
PAIR_MS = {("fp32", "nchw"): 0.20, ("fp32", "channels_last"): 0.21, ("tf32", "nchw"): 0.10,
           ("tf32", "channels_last"): 0.11, ("fp16", "nchw"): 0.070, ("fp16", "channels_last"): 0.050,
           ("bf16", "nchw"): 0.071, ("bf16", "channels_last"): 0.049, ("amp-bf16", "nchw"): 0.12,
           ("amp-bf16", "channels_last"): 0.10}
MODE_FACTOR = {EAGER: 1.0, "cudagraphs": 1.0, "default": 0.65, "default+freezing": 0.62,
               "reduce-overhead": 0.65, "reduce-overhead+freezing": 0.62, "max-autotune": 0.60}
LAUNCH_MS = {EAGER: 1.0, "cudagraphs": 0.1, "default": 0.7, "default+freezing": 0.7, "reduce-overhead": 0.08,
             "reduce-overhead+freezing": 0.08, "max-autotune": 0.7}
OOM_ABOVE = 2048


class FakeGPU:
    """measure(config, timeout) with a fake clock: every measurement costs virtual seconds."""

    def __init__(self, compile_s: float = 30.0, eager_s: float = 3.0, max_autotune_s: float = 1000.0):
        self.now = 0.0
        self.calls: list[Config] = []
        self.compile_s, self.eager_s, self.max_autotune_s = compile_s, eager_s, max_autotune_s

    def clock(self) -> float:
        return self.now

    def latency_ms(self, c: Config) -> float:
        return LAUNCH_MS[c.mode] + c.batch_size * PAIR_MS[c.pair] * MODE_FACTOR[c.mode]

    def __call__(self, c: Config, timeout_s: float) -> Outcome:
        self.calls.append(c)
        cost = {"max-autotune": self.max_autotune_s}.get(c.mode, self.compile_s if c.mode not in (EAGER, "cudagraphs") else self.eager_s)
        if cost > timeout_s:
            self.now += timeout_s
            return Outcome(c, "timeout", seconds=timeout_s, error="compile cap")
        self.now += cost
        if c.batch_size > OOM_ABOVE:
            return Outcome(c, "oom", seconds=cost)
        ms = self.latency_ms(c)
        return Outcome(c, "ok", c.batch_size / ms * 1e3, ms, cost)

    def true_best(self, space: SearchSpace) -> Config:
        configs = [Config(p, l, m, b) for (p, l) in PAIR_MS for m in MODE_FACTOR
                   for b in [2**i for i in range(12)] if b <= OOM_ABOVE and (m is EAGER or m in space.modes)]
        return max(configs, key=lambda c: c.batch_size / self.latency_ms(c))


def test_finds_the_known_best_throughput_and_latency_with_few_measurements():
    gpu = FakeGPU()
    space = SearchSpace(slow_modes=())
    result = Search(gpu, space, budget_s=10_000, clock=gpu.clock).run()
    best = result.best_throughput()
    truth = gpu.true_best(space)  # bf16/channels_last/default+freezing at the largest batch that fits
    assert (best.config.pair, best.config.mode) == (truth.pair, truth.mode)
    # Growth stops once doubling gains < 3%, so the answer is within 3% of the true optimum.
    true_speed = truth.batch_size / gpu.latency_ms(truth) * 1e3
    assert true_speed * (1 - space.min_gain) <= best.throughput <= true_speed
    fast = result.best_latency()
    # The best throughput used freezing, so the latency candidates compile with it too.
    assert fast.config == Config("bf16", "channels_last", "reduce-overhead+freezing", 1)
    assert result.baseline(256).config == Config("fp32", "nchw", EAGER, 256)
    full_grid = len(PAIR_MS) * (len(MODE_FACTOR) - 1) * 12
    assert len(gpu.calls) < full_grid / 8  # pruned: a small fraction of the grid
    assert len(set(gpu.calls)) == len(gpu.calls)  # nothing measured twice


def test_prunes_dominated_pairs_and_losing_modes():
    gpu = FakeGPU()
    Search(gpu, SearchSpace(slow_modes=()), budget_s=10_000, clock=gpu.clock).run()
    compiled_pairs = {c.pair for c in gpu.calls if c.mode is not EAGER}
    # Only the two fastest eager pairs (bf16 and fp16 channels-last, within 10%) reach the modes.
    assert compiled_pairs == {("bf16", "channels_last"), ("fp16", "channels_last")}
    assert not any(c.precision == "amp-bf16" and c.mode is not EAGER for c in gpu.calls)
    # cudagraphs loses > 10% at batch 256 on the best pair, so the runner-up pair does not try it.
    assert Config("fp16", "channels_last", "cudagraphs", 256) not in gpu.calls
    assert Config("bf16", "channels_last", "cudagraphs", 256) in gpu.calls


def test_survivors_keeps_pairs_within_the_margin_fastest_first():
    speeds = {("a", "x"): 100.0, ("b", "x"): 95.0, ("c", "x"): 89.0, ("d", "x"): 99.0}
    assert survivors(speeds, prune=0.10, keep=2) == [("a", "x"), ("d", "x")]
    assert survivors(speeds, prune=0.10, keep=5) == [("a", "x"), ("d", "x"), ("b", "x")]
    assert survivors({}, 0.1, 2) == []


def test_batch_growth_stops_when_the_gain_is_small():
    gpu = FakeGPU()
    space = SearchSpace(slow_modes=(), min_gain=0.5)  # only large gains continue
    result = Search(gpu, space, budget_s=10_000, clock=gpu.clock).run()
    grown = [c.batch_size for c in gpu.calls if c.batch_size > 256]
    assert grown == [512]  # 512 gains < 50% over 256, so 1024 is never tried
    assert result.best_throughput().config.batch_size == 512  # measured, and a little faster than 256


def test_respects_the_budget_and_says_so():
    gpu = FakeGPU(compile_s=30.0, eager_s=3.0)
    result = Search(gpu, SearchSpace(slow_modes=()), budget_s=100, clock=gpu.clock).run()
    assert gpu.now <= 100 + 1e-9  # a measurement never gets more than the budget left
    assert result.budget_exhausted
    assert result.best_throughput() is not None  # what was measured still answers
    assert "budget ran out" in tune.summary(result)


def test_a_slow_compile_is_capped_and_recorded_as_a_timeout():
    gpu = FakeGPU(max_autotune_s=1000.0)
    space = SearchSpace(slow_mode_timeout_s=120.0)
    result = Search(gpu, space, budget_s=10_000, clock=gpu.clock).run()
    slow = [o for o in result.outcomes if o.config.mode == "max-autotune"]
    assert len(slow) == 1 and slow[0].status == "timeout" and slow[0].seconds == 120.0
    assert result.best_throughput().config.mode != "max-autotune"


def test_baseline_batch_halves_on_oom():
    gpu = FakeGPU()
    space = SearchSpace(screen_batch=8192, slow_modes=(), max_batch=8192)
    result = Search(gpu, space, budget_s=10_000, clock=gpu.clock).run()
    assert [c.batch_size for c in gpu.calls[:3]] == [8192, 4096, 2048]
    assert result.baseline(2048) is not None


def test_summary_names_speedups_over_fp32_eager():
    gpu = FakeGPU()
    result = Search(gpu, SearchSpace(slow_modes=()), budget_s=10_000, clock=gpu.clock).run()
    text = tune.summary(result)
    best, base = result.best_throughput(), result.baseline()
    assert f"{best.throughput / base.throughput:.2f}x fp32 eager" in text
    assert "fastest batch-1 latency: bf16/channels_last/reduce-overhead+freezing/b1" in text


@pytest.mark.slow
def test_real_tune_on_cpu_writes_ordinary_throughput_records(tmp_path: Path):
    """A small real tune: worker, records, resume; eager only (compilation is minutes on CPU)."""
    from dlmark.cli import main

    args = ["tune", "py:tests.fixtures.models:tiny", "--device", "cpu", "--out", str(tmp_path),
            "--budget-s", "120", "--precisions", "fp32,bf16", "--layouts", "nchw", "--modes", "none",
            "--latency-modes", "eager", "--slow-modes", "none", "--screen-batch", "4", "--max-batch", "8"]
    assert main(args) == 0
    records = [json.loads(p.read_text()) for p in tmp_path.glob("*.json")]
    assert records and all(r["task"] == "throughput" for r in records)
    ok = [r for r in records if r["status"] == "ok"]
    assert {(r["precision"], r["batch_size"]) for r in ok} >= {("fp32", 4), ("fp32", 1), ("bf16", 4)}
    bf16 = next(r for r in ok if r["precision"] == "bf16")
    assert bf16["agreement_method"] and bf16["agreement_top1"] is not None
    assert not any("achieved_tflops" in r for r in ok)  # stored: what was measured; derived when read
    from dlmark.records.load import load_records

    derived = [r for r in load_records(str(tmp_path)) if r["status"] == "ok"]
    assert derived and all(r["achieved_tflops"] > 0 for r in derived)
    # Resume: nothing is measured again.
    before = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")}
    assert main(args) == 0
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("*.json")} == before
