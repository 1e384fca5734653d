import time

import pytest

from dlmark.measure.timing import MIN_BLOCKS_FLOOR, PerfCounterTimer, TimingConfig, time_callable, warm_up


class FakeTimer:
    """A timer over a script of per-pass durations; no real time passes."""

    name = "fake"

    def __init__(self, durations):
        self.durations = list(durations)
        self.calls = 0

    def time_block(self, fn, iters):
        total = 0.0
        for _ in range(iters):
            index = min(self.calls, len(self.durations) - 1)
            total += self.durations[index]
            self.calls += 1
        return total


def test_warm_up_runs_until_times_settle():
    # Five slow passes (a cold cache, a compile), then a steady 10 ms.
    timer = FakeTimer([0.5, 0.3, 0.2, 0.1, 0.05] + [0.01] * 100)
    config = TimingConfig(warmup_min_s=0.0, warmup_min_iters=3)
    times, _, settled = warm_up(lambda: None, timer, config)
    assert settled
    assert times[-1] == pytest.approx(0.01)
    assert len(times) >= 5 + 4  # every cold pass, then two agreeing windows


def test_blocks_are_sized_from_the_settled_pass_time():
    timer = FakeTimer([0.001])
    config = TimingConfig(min_run_s=0.2, min_blocks=10, warmup_min_s=0.0)
    result = time_callable(lambda: None, timer, config)
    assert result.iters_per_block == 20  # 0.02 s target block / 1 ms per pass
    assert len(result.block_times_s) == 10
    assert sum(result.block_times_s) >= config.min_run_s - 1e-9
    assert result.summary(batch_size=4)["throughput"] == pytest.approx(4000.0)


def test_slow_passes_still_get_a_spread_but_stop_at_max_time():
    timer = FakeTimer([5.0])
    config = TimingConfig(min_run_s=1.0, min_blocks=10, max_run_s=10.0, warmup_min_s=0.0, warmup_max_s=1.0)
    result = time_callable(lambda: None, timer, config)
    assert result.iters_per_block == 1
    assert len(result.block_times_s) == MIN_BLOCKS_FLOOR


def test_perf_counter_timing_matches_a_known_sleep():
    timer = PerfCounterTimer()
    config = TimingConfig(min_run_s=0.2, min_blocks=5, warmup_min_s=0.0, warmup_min_iters=2)
    result = time_callable(lambda: time.sleep(0.005), timer, config)
    per_pass = result.summary(1)["latency_ms_median"]
    assert 5.0 <= per_pass < 8.0  # sleep never returns early; scheduling adds a little
    assert all(t > 0 for t in result.block_times_s)
    assert result.timer == "perf_counter"
