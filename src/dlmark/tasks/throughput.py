"""Throughput: time ``net(X)`` for a batch of b images; throughput is b / t."""
from __future__ import annotations

from typing import Any

from ..measure import TimingConfig, time_callable


def measure_throughput(runner, batch_size: int, timing: dict[str, Any] | None = None) -> dict[str, Any]:
    """Record fields for one batch size: statistics, raw blocks, memory of one pass."""
    config = TimingConfig(**(timing or {}))
    inputs = runner.make_inputs(batch_size)
    result = time_callable(lambda: runner.run(inputs), runner.timer(), config)
    fields = result.summary(batch_size)
    fields.update(runner.memory(inputs))
    del inputs
    return fields
