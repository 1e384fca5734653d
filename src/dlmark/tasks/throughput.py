"""Throughput: time ``net(X)`` for a batch of b images; throughput is b / t."""
from __future__ import annotations

import dataclasses
from typing import Any

from dlmark.measure import power
from dlmark.measure.timing import TimingConfig, time_callable

#: The first measurement in a worker also brings the device out of idle: an idle H200
#: runs at 345 MHz and takes most of a second to clock up, during which short passes
#: look settled while still speeding up (seen as a noisy first batch-1 figure).
COLD_START_WARMUP_S = 1.0
_warm = False


def measure_throughput(runner, batch_size: int, timing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record fields for one batch size: statistics, raw blocks, memory of one pass."""
    global _warm
    config = TimingConfig(**(timing or {}))
    if not _warm:
        config = dataclasses.replace(config, warmup_min_s=max(config.warmup_min_s, COLD_START_WARMUP_S))
        _warm = True
    inputs = runner.make_inputs(batch_size)
    # NVML energy counter around the timed blocks, GPU clocks and throttling around the job (None on CPU).
    handle = power.handle_for_torch_device(getattr(runner, "device", None))
    before = power.gpu_state(handle)
    timer = power.EnergyTimer(runner.timer(), handle)
    result = time_callable(lambda: runner.run(inputs), timer, config)
    fields = result.summary(batch_size)
    fields.update(timer.summary(len(result.block_times_s), len(result.block_times_s) * result.iters_per_block * batch_size))
    fields.update(power.state_fields(before, power.gpu_state(handle)))
    fields.update(runner.memory(inputs))
    del inputs
    return fields
