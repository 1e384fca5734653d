"""Power, energy and clocks of a GPU during a measurement, from NVML.

``nvmlDeviceGetTotalEnergyConsumption`` is a millijoule counter since the
driver loaded (Volta and newer); read at the start of the first timed block
and at the end of the last one it gives the energy of exactly the timed
passes, hence average power and energy per sample. Clocks, power limit,
temperature and the clock-event ("throttle") reasons are read before and
after the job so a throttled result can be recognised. Everything is None on
a CPU, or where NVML or a counter is missing.

The device is found by UUID, since CUDA_VISIBLE_DEVICES renumbers devices for
CUDA but not for NVML.
"""
from __future__ import annotations

import threading
import time
from typing import Any, Callable

#: NVML clock-event reason bits (nvml.h ``nvmlClocksEventReason*``, formerly ``...ThrottleReason*``).
REASON_BITS: dict[int, str] = {
    0x1: "gpu_idle",
    0x2: "applications_clocks_setting",
    0x4: "sw_power_cap",
    0x8: "hw_slowdown",
    0x10: "sync_boost",
    0x20: "sw_thermal_slowdown",
    0x40: "hw_thermal_slowdown",
    0x80: "hw_power_brake_slowdown",
    0x100: "display_clock_setting",
    0x200: "board_limit",
    0x400: "reliability",
}

#: Reasons that mean the chip ran slower than it could for power or heat; idle,
#: application clocks and sync boost are states, not throttling.
THROTTLING = frozenset({"sw_power_cap", "hw_slowdown", "sw_thermal_slowdown", "hw_thermal_slowdown",
                        "hw_power_brake_slowdown", "board_limit", "reliability"})


def decode_reasons(mask: int | None) -> list[str] | None:
    """NVML clock-event bitmask -> reason names (unknown bits as ``bit_0x...``)."""
    if mask is None:
        return None
    names = [name for bit, name in REASON_BITS.items() if mask & bit]
    unknown = mask & ~sum(REASON_BITS)
    bit = 1
    while unknown >= bit:
        if unknown & bit:
            names.append(f"bit_{bit:#x}")
        bit <<= 1
    return names


def is_throttled(reasons: list[str] | None) -> bool | None:
    if reasons is None:
        return None
    return bool(THROTTLING.intersection(reasons))


def _nvml():
    import pynvml

    pynvml.nvmlInit()
    return pynvml


def handle_for_uuid(uuid: str | None):
    """An NVML handle for a device UUID, or None (no NVML, no UUID)."""
    if not uuid:
        return None
    try:
        return _nvml().nvmlDeviceGetHandleByUUID(uuid)
    except Exception:  # noqa: BLE001 -- no NVML here: power figures are simply absent
        return None


def handle_for_torch_device(device: Any):
    """An NVML handle for a ``torch.device`` (None on CPU)."""
    if getattr(device, "type", None) != "cuda":
        return None
    try:
        import torch

        uuid = f"GPU-{torch.cuda.get_device_properties(device).uuid}"
    except Exception:  # noqa: BLE001 -- older torch without .uuid
        return None
    return handle_for_uuid(uuid)


def _read(fn: Callable[[], Any]) -> Any:
    try:
        return fn()
    except Exception:  # noqa: BLE001 -- a counter this device or driver does not offer
        return None


def energy_mj(handle) -> int | None:
    if handle is None:
        return None
    return _read(lambda: _nvml().nvmlDeviceGetTotalEnergyConsumption(handle))


def gpu_state(handle) -> dict[str, Any]:
    """Clocks (MHz), power limit (W), temperature (C), power draw (W) and clock-event reasons."""
    state: dict[str, Any] = dict.fromkeys(("sm_clock_mhz", "mem_clock_mhz", "power_limit_w", "temperature_c",
                                           "power_draw_w", "throttle_reasons"))
    if handle is None:
        return state
    nvml = _nvml()
    state["sm_clock_mhz"] = _read(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_SM))
    state["mem_clock_mhz"] = _read(lambda: nvml.nvmlDeviceGetClockInfo(handle, nvml.NVML_CLOCK_MEM))
    limit = _read(lambda: nvml.nvmlDeviceGetEnforcedPowerLimit(handle))
    state["power_limit_w"] = limit / 1000 if limit is not None else None
    state["temperature_c"] = _read(lambda: nvml.nvmlDeviceGetTemperature(handle, nvml.NVML_TEMPERATURE_GPU))
    draw = _read(lambda: nvml.nvmlDeviceGetPowerUsage(handle))
    state["power_draw_w"] = draw / 1000 if draw is not None else None
    reasons = getattr(nvml, "nvmlDeviceGetCurrentClocksEventReasons", None) or getattr(
        nvml, "nvmlDeviceGetCurrentClocksThrottleReasons", None)
    state["throttle_reasons"] = decode_reasons(_read(lambda: reasons(handle))) if reasons else None
    return state


class EnergyTimer:
    """Wraps a block timer and reads the energy counter around every block.

    The timing loop calls ``time_block`` for warm-up passes and then for the
    timed blocks; ``summary(n)`` takes the last ``n`` blocks, which are the
    timed ones. The counter is read while the device is idle (the previous
    block has been synchronised), so the reading brackets exactly its passes.
    """

    def __init__(self, timer: Any, handle: Any):
        self.timer = timer
        self.handle = handle
        self.name = timer.name
        self.marks: list[tuple[float, int | None, float, int | None]] = []  # (t0, e0, t1, e1)

    def time_block(self, fn: Callable[[], Any], iters: int) -> float:
        t0, e0 = time.perf_counter(), energy_mj(self.handle)
        seconds = self.timer.time_block(fn, iters)
        self.marks.append((t0, e0, time.perf_counter(), energy_mj(self.handle)))
        return seconds

    def summary(self, timed_blocks: int) -> dict[str, Any]:
        """Energy (J) and average power (W) over the last ``timed_blocks`` blocks (energy per
        sample is derived when read: ``analysis.efficiency``)."""
        out: dict[str, Any] = {"energy_j": None, "avg_power_w": None, "energy_window_s": None}
        if self.handle is None or timed_blocks <= 0 or len(self.marks) < timed_blocks:
            return out
        first, last = self.marks[-timed_blocks], self.marks[-1]
        if first[1] is None or last[3] is None:
            return out
        joules = (last[3] - first[1]) / 1000.0
        window = last[2] - first[0]
        out.update(energy_j=joules, energy_window_s=window,
                   avg_power_w=joules / window if window > 0 else None)
        return out


def state_fields(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """Flat record columns from the GPU state before and after a job."""
    out: dict[str, Any] = {}
    for key in ("sm_clock_mhz", "mem_clock_mhz", "temperature_c", "throttle_reasons"):
        out[f"{key}_before"] = before.get(key)
        out[f"{key}_after"] = after.get(key)
    out["power_limit_w"] = after.get("power_limit_w") or before.get("power_limit_w")
    out["throttled"] = is_throttled(after.get("throttle_reasons"))
    return out


#: Columns ``tasks.throughput`` adds from this module (documented in docs/records.md).
POWER_FIELDS = ("energy_j", "avg_power_w", "energy_window_s", "power_limit_w", "throttled",
                *(f"{k}_{w}" for k in ("sm_clock_mhz", "mem_clock_mhz", "temperature_c", "throttle_reasons")
                  for w in ("before", "after")))


class ClockSampler:
    """The SM clock (MHz) and power draw (W), read every ``period_s`` by a thread while inside.

    Two timings of one model compare only at one clock: under a power cap a longer run at full
    load runs at lower clocks (an H200 at 700 W: 1,767 against 1,825 MHz, results/h200-serving-16).
    """

    def __init__(self, handle: Any, period_s: float = 0.02, nvml: Any = None):
        self.handle, self.period_s = handle, period_s
        self.nvml = nvml if nvml is not None else (_nvml() if handle is not None else None)
        self.samples: list[tuple[float, float]] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> "ClockSampler":
        if self.handle is not None:
            self._thread = threading.Thread(target=self._sample, name="dlmark-clocks", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()

    def _sample(self) -> None:
        nvml = self.nvml
        while not self._stop.wait(self.period_s):
            clock = _read(lambda: nvml.nvmlDeviceGetClockInfo(self.handle, nvml.NVML_CLOCK_SM))
            draw = _read(lambda: nvml.nvmlDeviceGetPowerUsage(self.handle))
            if clock is not None and draw is not None:
                self.samples.append((float(clock), draw / 1000.0))

    @property
    def mean_sm_clock_mhz(self) -> float | None:
        return sum(c for c, _ in self.samples) / len(self.samples) if self.samples else None

    @property
    def mean_power_w(self) -> float | None:
        return sum(w for _, w in self.samples) / len(self.samples) if self.samples else None
