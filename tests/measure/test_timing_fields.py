"""What time_callable adds to a throughput record: the contention window and the block count it wanted."""
from __future__ import annotations

import sys
import time

import pytest

from dlmark.measure import contention
from dlmark.measure.timing import MIN_BLOCKS_FLOOR, PerfCounterTimer, TimingConfig, time_callable

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")


class ScriptedTimer:
    """Blocks of a fixed length per pass; no real time passes."""

    name = "scripted"

    def __init__(self, per_pass: float, handle=None):
        self.per_pass = per_pass
        if handle is not None:
            self.handle = handle

    def time_block(self, fn, iters):
        return self.per_pass * iters


def test_a_record_that_reached_min_blocks():
    config = TimingConfig(min_run_s=0.2, min_blocks=10, warmup_min_s=0.0)
    fields = time_callable(lambda: None, ScriptedTimer(0.001), config).summary(1)
    assert fields["num_blocks"] >= 10 and fields["min_blocks"] == 10
    assert fields["blocks_below_min"] is False and fields["ci_is_95"] is True
    assert set(contention.FIELDS) <= set(fields)


def test_the_time_cap_leaves_too_few_blocks():
    config = TimingConfig(min_run_s=1.0, min_blocks=10, max_run_s=10.0, warmup_min_s=0.0, warmup_max_s=1.0)
    fields = time_callable(lambda: None, ScriptedTimer(5.0), config).summary(1)
    assert fields["num_blocks"] == MIN_BLOCKS_FLOOR < fields["min_blocks"] == 10
    assert fields["blocks_below_min"] is True and fields["ci_is_95"] is False


@pytest.mark.parametrize("blocks,is_95", [(5, False), (6, True)])
def test_few_blocks_asked_for_are_not_a_95_interval(blocks, is_95):
    # Reached, but the order-statistics interval of 5 samples is their whole range (93.75%).
    config = TimingConfig(min_run_s=0.01, min_blocks=blocks, warmup_min_s=0.0)
    fields = time_callable(lambda: None, ScriptedTimer(0.001), config).summary(1)
    assert fields["blocks_below_min"] is False and fields["ci_is_95"] is is_95


@linux
def test_the_probe_brackets_the_timed_blocks_not_the_warm_up():
    config = TimingConfig(min_run_s=0.05, min_blocks=5, warmup_min_s=0.3, warmup_min_iters=2)
    result = time_callable(lambda: time.sleep(0.002), PerfCounterTimer(), config)
    fields = result.summary(1)
    timed = sum(result.block_times_s)
    assert result.warmup_s >= 0.3
    # The window holds every block and little else; the warm-up alone is longer than the margin.
    assert timed <= fields["window_s"] < timed + 0.1, (timed, fields["window_s"])
    assert fields["cpus_usable"] >= 1 and fields["other_cpu_s"] is not None
    assert isinstance(fields["contended"], bool)


@linux
def test_a_timer_on_a_gpu_lends_its_device_handle(monkeypatch):
    seen = []

    def others(handle, own):
        seen.append(handle)
        return 2 if handle == "handle-of-gpu-0" else None

    monkeypatch.setattr(contention, "_gpu_other_processes", others)
    config = TimingConfig(min_run_s=0.01, min_blocks=5, warmup_min_s=0.0)
    fields = time_callable(lambda: None, ScriptedTimer(0.001, handle="handle-of-gpu-0"), config).summary(1)
    assert seen == ["handle-of-gpu-0"] * 2  # read before and after the blocks
    assert fields["gpu_other_processes"] == 2 and fields["contended"] is True
    # A CPU timer has no handle: no NVML call, no GPU figure.
    seen.clear()
    fields = time_callable(lambda: None, ScriptedTimer(0.001), config).summary(1)
    assert seen == [] and fields["gpu_other_processes"] is None
