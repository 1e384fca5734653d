"""Throughput: time ``net(X)`` for a batch of b images; throughput is b / t."""
from __future__ import annotations

from typing import Any

from .. import power
from ..measure import TimingConfig, time_callable


def measure_throughput(runner, batch_size: int, timing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record fields for one batch size: statistics, raw blocks, memory of one pass."""
    config = TimingConfig(**(timing or {}))
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
