"""Power and clocks: NVML reason decoding, energy arithmetic, None on CPU; the GPU path where there is one."""
from __future__ import annotations

import time

import pytest

from dlmark.measure import power


def test_decode_reasons_names_every_bit():
    assert power.decode_reasons(0) == []
    assert power.decode_reasons(None) is None
    assert power.decode_reasons(0x1) == ["gpu_idle"]
    assert power.decode_reasons(0x4 | 0x40) == ["sw_power_cap", "hw_thermal_slowdown"]
    assert power.decode_reasons(0x800 | 0x2) == ["applications_clocks_setting", "bit_0x800"]


def test_bits_match_nvml_constants():
    pynvml = pytest.importorskip("pynvml")
    by_name = {"gpu_idle": "GpuIdle", "sw_power_cap": "SwPowerCap", "hw_slowdown": "HwSlowdown",
               "sw_thermal_slowdown": "SwThermalSlowdown", "hw_thermal_slowdown": "HwThermalSlowdown",
               "hw_power_brake_slowdown": "HwPowerBrakeSlowdown", "sync_boost": "SyncBoost"}
    bits = {name: bit for bit, name in power.REASON_BITS.items()}
    for ours, nvml in by_name.items():
        assert getattr(pynvml, f"nvmlClocksThrottleReason{nvml}") == bits[ours]


def test_throttled_means_power_or_heat_not_idle():
    assert power.is_throttled(["gpu_idle"]) is False
    assert power.is_throttled([]) is False
    assert power.is_throttled(["sw_power_cap"]) is True
    assert power.is_throttled(None) is None


class _FakeTimer:
    name = "fake"

    def time_block(self, fn, iters):
        for _ in range(iters):
            fn()
        return 0.1


def test_energy_timer_takes_only_the_timed_blocks(monkeypatch):
    readings = iter(range(0, 100_000, 1000))  # the counter grows 1000 mJ at every read
    monkeypatch.setattr(power, "energy_mj", lambda handle: next(readings))
    timer = power.EnergyTimer(_FakeTimer(), handle=object())
    for _ in range(3):  # warm-up blocks: reads 0/1000, 2000/3000, 4000/5000
        timer.time_block(lambda: None, 1)
    for _ in range(2):  # timed blocks: reads 6000/7000, 8000/9000
        timer.time_block(lambda: None, 5)
    out = timer.summary(timed_blocks=2)
    assert out["energy_j"] == pytest.approx(3.0)  # 9000 - 6000 mJ
    assert "energy_j_per_sample" not in out  # derived when read, from the record's own blocks
    assert out["avg_power_w"] == pytest.approx(3.0 / out["energy_window_s"])


def test_everything_is_none_on_cpu():
    torch = pytest.importorskip("torch")
    handle = power.handle_for_torch_device(torch.device("cpu"))
    assert handle is None
    assert set(power.gpu_state(handle).values()) == {None}
    timer = power.EnergyTimer(_FakeTimer(), handle)
    timer.time_block(lambda: None, 1)
    assert set(timer.summary(1).values()) == {None}
    fields = power.state_fields(power.gpu_state(None), power.gpu_state(None))
    assert set(fields) | set(timer.summary(1)) == set(power.POWER_FIELDS)
    assert set(fields.values()) == {None}


def test_cpu_throughput_records_carry_power_fields_as_none():
    torch = pytest.importorskip("torch")
    from dlmark.backends import RunConfig, load
    from dlmark.tasks.throughput import measure_throughput

    runner = load("pytorch", "py:tests.fixtures.models:tiny", RunConfig(device="cpu"))
    fields = measure_throughput(runner, 2, {"min_run_s": 0.02, "min_blocks": 3, "warmup_min_s": 0.0,
                                            "warmup_max_s": 0.5})
    assert {k: fields[k] for k in power.POWER_FIELDS} == dict.fromkeys(power.POWER_FIELDS)


@pytest.mark.gpu  # NVML's energy counter and clocks
def test_gpu_energy_and_clocks_are_read():
    import torch

    handle = power.handle_for_torch_device(torch.device("cuda:0"))
    state = power.gpu_state(handle)
    assert state["sm_clock_mhz"] and state["power_limit_w"] and state["throttle_reasons"] is not None
    a = torch.randn(4096, 4096, device="cuda")
    timer = power.EnergyTimer(power_timer(), handle)
    timed = sum(timer.time_block(lambda: a @ a, 50) for _ in range(5))
    out = timer.summary(5)
    assert 10 < out["avg_power_w"] < 2000
    # The energy window brackets the five blocks: at least their timed seconds, a little more.
    assert timed <= out["energy_window_s"] < timed * 1.5 + 0.1
    assert out["energy_j"] == pytest.approx(out["avg_power_w"] * out["energy_window_s"])


def power_timer():
    from dlmark.measure.timing import CudaEventTimer

    return CudaEventTimer()


class _FakeNvml:
    """NVML's two reads that ClockSampler makes; the clock steps down 10 MHz a read."""

    NVML_CLOCK_SM = 1

    def __init__(self):
        self.clock = 1900

    def nvmlDeviceGetClockInfo(self, handle, which):
        assert which == self.NVML_CLOCK_SM
        self.clock -= 10
        return self.clock

    def nvmlDeviceGetPowerUsage(self, handle):
        return 650_000  # mW


def test_clock_sampler_averages_what_it_read_while_inside():
    nvml = _FakeNvml()
    with power.ClockSampler(handle=object(), period_s=0.005, nvml=nvml) as sampler:
        time.sleep(0.2)
    read = len(sampler.samples)
    assert read >= 5
    clocks = [c for c, _ in sampler.samples]
    assert clocks == [1890 - 10 * i for i in range(read)]
    assert sampler.mean_sm_clock_mhz == pytest.approx(sum(clocks) / read)
    assert sampler.mean_power_w == pytest.approx(650.0)
    time.sleep(0.05)
    assert len(sampler.samples) == read  # the thread stopped on leaving


def test_clock_sampler_without_a_gpu_reads_nothing():
    with power.ClockSampler(handle=None) as sampler:
        pass
    assert sampler.samples == [] and sampler.mean_sm_clock_mhz is None and sampler.mean_power_w is None
