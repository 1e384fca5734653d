"""``dlmark peak``: what a device actually reaches, as a record MFU can be held against.

Dense matmul TFLOP/s per precision: large square ``C = A @ B`` (2·n³ FLOPs,
the datasheets' convention), several sizes, warm-up first, then repeated
timed blocks (CUDA events on GPU, ``perf_counter`` on CPU); the figure of a
size is the median block, the precision's figure the best size. Memory
bandwidth: a device-to-device copy of a large buffer, counted as bytes read
plus bytes written over the median time. The record (``task: "peak"``) lands
in the results folder, where later throughput records of the same device
name take their peaks from it instead of the datasheet table.
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any, Callable

PRECISIONS = ("fp32", "tf32", "fp16", "bf16")


@dataclass(frozen=True)
class PeakConfig:
    """Sizes and repeats; the defaults suit a data-centre GPU in well under a minute."""

    sizes: tuple[int, ...] = (4096, 8192, 16384)
    repeats: int = 7  # timed blocks per size
    block_s: float = 0.05  # target length of one timed block
    copy_bytes: int = 2 << 30  # buffer of the bandwidth test
    warmup: int = 3

    @classmethod
    def cpu(cls) -> "PeakConfig":
        return cls(sizes=(512,), repeats=5, block_s=0.05, copy_bytes=64 << 20, warmup=1)


def _timer(device) -> Callable[[Callable[[], Any], int], float]:
    """The block timers of dlmark.measure.timing: CUDA events on GPU, perf_counter on CPU."""
    from dlmark.measure.timing import CudaEventTimer, PerfCounterTimer

    return (CudaEventTimer(device) if device.type == "cuda" else PerfCounterTimer()).time_block


def _median_per_iter(fn: Callable[[], Any], timer, config: PeakConfig) -> float:
    """Median seconds per call over ``repeats`` blocks sized to ``block_s``."""
    for _ in range(config.warmup):
        timer(fn, 1)
    once = max(timer(fn, 1), 1e-7)
    iters = max(1, round(config.block_s / once))
    return statistics.median(timer(fn, iters) / iters for _ in range(config.repeats))


def matmul_tflops(device, precision: str, config: PeakConfig) -> dict[int, float]:
    """Dense matmul TFLOP/s per size for one precision (fp32 without TF32, tf32, fp16, bf16)."""
    import torch

    dtype = {"fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}[precision]
    matmul_tf32, cudnn_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = precision == "tf32"
    timer = _timer(device)
    results: dict[int, float] = {}
    try:
        for n in config.sizes:
            a = torch.randn(n, n, device=device, dtype=dtype)
            b = torch.randn(n, n, device=device, dtype=dtype)
            c = torch.empty(n, n, device=device, dtype=dtype)
            seconds = _median_per_iter(lambda: torch.matmul(a, b, out=c), timer, config)
            results[n] = 2 * n**3 / seconds / 1e12
            del a, b, c
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul_tf32, cudnn_tf32
    return results


def copy_bandwidth_gbs(device, config: PeakConfig) -> float:
    """Device-to-device copy: (bytes read + bytes written) / median time, in GB/s."""
    import torch

    n = config.copy_bytes // 4
    src = torch.empty(n, device=device, dtype=torch.float32).uniform_()
    dst = torch.empty_like(src)
    seconds = _median_per_iter(lambda: dst.copy_(src), _timer(device), config)
    return 2 * n * 4 / seconds / 1e9


def measure_peaks(device_spec: str, config: PeakConfig | None = None, precisions=PRECISIONS) -> dict[str, Any]:
    """Record fields of a peak measurement on a torch device (``cuda:0``, ``cpu``)."""
    import torch

    from dlmark.measure import power
    from dlmark.measure.environment import torch_versions

    device = torch.device(device_spec)
    if device.type == "cuda":
        torch.cuda.set_device(device)
    config = config or (PeakConfig.cpu() if device.type == "cpu" else PeakConfig())
    handle = power.handle_for_torch_device(device)
    before = power.gpu_state(handle)
    fields: dict[str, Any] = {}
    details: dict[str, dict[str, float]] = {}
    began = time.perf_counter()
    for precision in precisions:
        if device.type == "cpu" and precision in ("tf32", "fp16"):
            continue  # no TF32 on a CPU, and its fp16 matmul is an emulation nobody would deploy
        per_size = matmul_tflops(device, precision, config)
        details[precision] = {str(n): t for n, t in per_size.items()}
        fields[f"peak_tflops_{precision}"] = max(per_size.values())
    fields["peak_bandwidth_gbs"] = copy_bandwidth_gbs(device, config)
    fields["peak_details"] = {"matmul_tflops_by_size": details, "copy_bytes": config.copy_bytes,
                              "repeats": config.repeats, "method": "median of timed blocks; best size"}
    fields["peak_seconds"] = time.perf_counter() - began
    fields.update(power.state_fields(before, power.gpu_state(handle)))
    fields["versions"] = torch_versions()
    fields["device_name"] = torch.cuda.get_device_name(device) if device.type == "cuda" else None
    return fields


def peak_record(fields: dict[str, Any], device, env: dict[str, Any], host: str, run_id: str) -> dict[str, Any]:
    """A ``task: "peak"`` record for the store."""
    import datetime as dt

    from dlmark.records import schema

    env = dict(env)
    env.update(fields.pop("versions", {}) or {})
    env["device_name"] = device.name
    fields.pop("device_name", None)
    key = schema.job_key({"task": "peak", "device": device.name, "host": host})
    record = schema.new_record(
        job_key=key, task="peak", model="peak", family="peak", device=device.name, device_spec=device.spec,
        status="ok", env=env, host=host, run_id=run_id, suite="peak",
        timestamp=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
    )
    record.update(fields)
    return record


def format_peak(record: dict[str, Any]) -> str:
    """One table of the measured peaks beside the datasheet's, for the terminal."""
    from dlmark.analysis import efficiency as hardware
    from dlmark.report.tables import format_table

    entry = hardware.lookup(record["device"]) if str(record.get("device_spec", "")).startswith("cuda") else None
    rows = []
    for precision in PRECISIONS:
        measured = record.get(f"peak_tflops_{precision}")
        if measured is None:
            continue
        sheet = entry.tflops.get(precision) if entry else None
        rows.append({"what": f"{precision} matmul TFLOP/s", "measured": measured,
                     "datasheet": sheet, "ratio": measured / sheet if sheet else None})
    bw = record.get("peak_bandwidth_gbs")
    sheet_bw = entry.bandwidth_gbs if entry else None
    rows.append({"what": "copy bandwidth GB/s", "measured": bw, "datasheet": sheet_bw,
                 "ratio": bw / sheet_bw if bw and sheet_bw else None})
    return format_table(rows, [("what", "peak"), ("measured", "measured"), ("datasheet", "datasheet (dense)"),
                               ("ratio", "measured/datasheet")])


def run_peak(device_spec: str | None, out_dir, config: PeakConfig | None = None) -> dict[str, Any]:
    """Measure one device's peaks and store the record in ``out_dir``; returns the record."""
    import uuid

    from dlmark.measure import devices, environment
    from dlmark.errors import UserError
    from dlmark.records.store import Store

    found = devices.resolve(device_spec)
    if len(found) != 1:
        raise UserError("dlmark peak measures one device; name one, e.g. --device cuda:0")
    device = found[0]
    # In this process CUDA sees every GPU, so the device's CUDA index picks it.
    torch_device = "cpu" if device.kind == "cpu" else f"cuda:{device.index or 0}"
    fields = measure_peaks(torch_device, config)
    record = peak_record(fields, device, environment.capture(), environment.host(), uuid.uuid4().hex[:12])
    Store(out_dir, "peak.py").write(record)
    return record
