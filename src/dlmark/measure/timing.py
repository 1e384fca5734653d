"""Timing: warm-up until settled, adaptive blocks, raw samples kept.

Modelled on torch.utils.benchmark's ``blocked_autorange``: a block runs the
forward pass n times between two timestamps, n chosen so that a block lasts
long enough for timer overhead to vanish; blocks repeat until a minimum total
time *and* a minimum number of blocks are reached. Nothing synchronises the
host inside a block. On GPU the timestamps are CUDA events on the current
stream; on CPU ``time.perf_counter``.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from dlmark.measure.contention import ContentionProbe
from dlmark.measure.stats import summarize_latency


@dataclass(frozen=True)
class TimingConfig:
    """How long to measure. Defaults suit one configuration in a sweep."""

    min_run_s: float = 1.0  # total timed time at least this ...
    min_blocks: int = 10  # ... and at least this many blocks
    max_run_s: float = 30.0  # stop past this, once MIN_BLOCKS_FLOOR blocks exist
    warmup_min_iters: int = 3
    warmup_min_s: float = 0.2
    warmup_max_s: float = 20.0
    settle_tolerance: float = 0.05  # warm-up ends when consecutive windows agree this closely

    @property
    def block_target_s(self) -> float:
        return self.min_run_s / self.min_blocks


#: Never fewer blocks than this, however slow one pass is: a spread needs samples.
MIN_BLOCKS_FLOOR = 3
SETTLE_WINDOW = 3


class PerfCounterTimer:
    """Wall-clock blocks for synchronous (CPU) execution."""

    name = "perf_counter"

    def time_block(self, fn: Callable[[], Any], iters: int) -> float:
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        return time.perf_counter() - start


class CudaEventTimer:
    """CUDA events around a block; the host waits only after the end event."""

    name = "cuda_event"

    def __init__(self, device: Any = None):
        import torch

        self._torch = torch
        self._device = device

    def time_block(self, fn: Callable[[], Any], iters: int) -> float:
        torch = self._torch
        start = torch.cuda.Event(enable_timing=True)
        end = torch.cuda.Event(enable_timing=True)
        start.record()
        for _ in range(iters):
            fn()
        end.record()
        end.synchronize()
        return start.elapsed_time(end) / 1e3


@dataclass
class Timing:
    """Raw result of timing one callable."""

    block_times_s: list[float]
    iters_per_block: int
    warmup_iters: int
    warmup_s: float
    warmup_settled: bool
    timer: str
    min_blocks: int | None = None  # the config's: how many blocks were wanted
    contention: dict[str, Any] = field(default_factory=dict)  # ContentionProbe's fields over the timed blocks

    @property
    def per_iter_s(self) -> list[float]:
        return [t / self.iters_per_block for t in self.block_times_s]

    def summary(self, batch_size: int) -> dict[str, Any]:
        """Record fields: statistics plus the raw samples they came from."""
        out: dict[str, Any] = summarize_latency(self.per_iter_s, batch_size)
        out.update(
            block_times_s=self.block_times_s,
            iters_per_block=self.iters_per_block,
            num_blocks=len(self.block_times_s),
            warmup_iters=self.warmup_iters,
            warmup_s=self.warmup_s,
            warmup_settled=self.warmup_settled,
            timer=self.timer,
        )
        out.update(self.contention)
        if self.min_blocks is not None:
            # Below min_blocks the time cap stopped the blocks: they are what the cap left, not
            # the sample the interval was designed for, so it is not read as a 95% interval.
            below = len(self.block_times_s) < self.min_blocks
            out.update(min_blocks=self.min_blocks, blocks_below_min=below,
                       ci_is_95=not below and _median_ci_reaches_95(len(self.block_times_s)))
        return out


def _median_ci_reaches_95(n: int) -> bool:
    """Whether ``stats.median_ci`` of n samples covers the median with at least 95%.

    With too few samples it returns the whole range, which covers with 1 - 2 / 2**n:
    93.75% at 5 samples, 96.9% at 6; from 6 on it finds order statistics that reach 95%.
    """
    return 1 - 2 * 0.5 ** n >= 0.95


def _settled(times: list[float], tolerance: float) -> bool:
    if len(times) < 2 * SETTLE_WINDOW:
        return False
    recent = statistics.median(times[-SETTLE_WINDOW:])
    before = statistics.median(times[-2 * SETTLE_WINDOW:-SETTLE_WINDOW])
    return abs(recent - before) <= tolerance * before


def warm_up(fn: Callable[[], Any], timer, config: TimingConfig) -> tuple[list[float], float, bool]:
    """Run single passes until their times settle; returns (times, seconds, settled)."""
    times: list[float] = []
    start = time.perf_counter()
    settled = False
    while True:
        times.append(timer.time_block(fn, 1))
        elapsed = time.perf_counter() - start
        settled = _settled(times, config.settle_tolerance)
        enough = len(times) >= config.warmup_min_iters and elapsed >= config.warmup_min_s
        if (enough and settled) or (elapsed >= config.warmup_max_s and len(times) >= config.warmup_min_iters):
            return times, elapsed, settled


def time_callable(fn: Callable[[], Any], timer=None, config: TimingConfig | None = None) -> Timing:
    """Warm up, size blocks from the settled pass time, then time blocks."""
    config = config or TimingConfig()
    timer = timer or PerfCounterTimer()
    warm_times, warm_s, settled = warm_up(fn, timer, config)
    per_pass = statistics.median(warm_times[-SETTLE_WINDOW:])
    iters = max(1, round(config.block_target_s / per_pass)) if per_pass > 0 else 1
    blocks: list[float] = []
    total = 0.0
    # What else ran during the timed blocks (a few /proc reads, well under a ms each end). A timer
    # that reads an NVML device (power.EnergyTimer on a GPU) lends its handle for the GPU's processes.
    probe = ContentionProbe(handle=getattr(timer, "handle", None))
    probe.start()
    while True:
        block = timer.time_block(fn, iters)
        blocks.append(block)
        total += block
        if total >= config.min_run_s and len(blocks) >= config.min_blocks:
            break
        if total >= config.max_run_s and len(blocks) >= MIN_BLOCKS_FLOOR:
            break
    contention = probe.stop()
    return Timing(
        block_times_s=blocks, iters_per_block=iters, warmup_iters=len(warm_times),
        warmup_s=warm_s, warmup_settled=settled, timer=timer.name,
        min_blocks=config.min_blocks, contention=contention,
    )


# ----------------------------------------------------------------------- memory


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux); False if unsupported."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def peak_rss_mb() -> float | None:
    """This process's peak resident memory (VmHWM) in MB, since start or the last reset."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def nvml_memory_used_mb(uuid: str | None = None, index: int = 0) -> float | None:
    """Device memory in use as NVML (nvidia-smi) reports it.

    By UUID when known, since CUDA_VISIBLE_DEVICES renumbers devices for CUDA
    but not for NVML.
    """
    try:
        import pynvml

        pynvml.nvmlInit()
        handle = (pynvml.nvmlDeviceGetHandleByUUID(uuid) if uuid
                  else pynvml.nvmlDeviceGetHandleByIndex(index))
        return pynvml.nvmlDeviceGetMemoryInfo(handle).used / 2**20
    except Exception:  # noqa: BLE001 -- NVML missing or not permitted: the figure is simply absent
        return None
