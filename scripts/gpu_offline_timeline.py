"""Where LoadGen Offline's time goes on a GPU, batch by batch (issue 19's tuned Offline gap).

    python scripts/gpu_offline_timeline.py [--device cuda:0] [--model ResNet-v1-50] [--batch 256] [--tuned]

Each phase runs for about --seconds and prints img/s with, from CUDA events around every
model call: the GPU time per batch (from the stream reaching the call to its end, so a batch
whose kernels are launched slower than the GPU runs them reads long), the GPU's idle gap
between batches, and the SM clock and board power NVML saw meanwhile. Phases: a plain loop
on one input (the throughput task's way), the same loop in a warmed worker thread, LoadGen
Offline with 1 and 2 batches in flight, Offline with a 0.5 ms GIL switch interval, and the
plain loop again (the power state after the others).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time

import torch

from dlmark.backends import RunConfig
from dlmark.backends.pytorch import load
from dlmark.measure import loadgen, power
from dlmark.measure.loadgen import run_scenario, wait_for

TUNED = {"precision": "fp16", "layout": "channels_last", "compile_mode": "default"}


class Timed:
    """The runner, with a CUDA event pair and host times around each ``run``."""

    def __init__(self, runner):
        self._runner = runner
        self.marks: list[tuple[float, float, torch.cuda.Event, torch.cuda.Event]] = []
        self._lock = threading.Lock()

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def run(self, inputs):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        h0 = time.perf_counter()
        start.record()
        out = self._runner.run(inputs)
        end.record()
        h1 = time.perf_counter()
        with self._lock:
            self.marks.append((h0, h1, start, end))
        return out

    def take(self, since: float = 0.0) -> dict[str, float]:
        """Per-batch GPU ms, idle gap ms and host launch ms of the batches launched after ``since``
        (host time) and since the last take."""
        torch.cuda.synchronize()
        with self._lock:
            marks, self.marks = [m for m in self.marks if m[0] >= since], []
        first = marks[0][2]
        spans = sorted((first.elapsed_time(s), first.elapsed_time(e), h1 - h0) for h0, h1, s, e in marks)
        busy = [e - s for s, e, _ in spans]
        gaps = [max(0.0, s2 - e1) for (_, e1, _), (s2, _, _) in zip(spans, spans[1:])]
        return {"batches": len(spans), "gpu_ms": statistics.median(busy), "gpu_ms_mean": statistics.fmean(busy),
                "gap_ms_mean": statistics.fmean(gaps) if gaps else 0.0, "gap_ms_max": max(gaps) if gaps else 0.0,
                "launch_ms": statistics.median(h for _, _, h in spans) * 1e3,
                "busy_fraction": sum(busy) / (spans[-1][1] - spans[0][0])}


class Nvml(threading.Thread):
    """SM clock and power every 50 ms, and every clock-event reason seen, until stopped."""

    def __init__(self, device):
        super().__init__(daemon=True)
        self.handle = power.handle_for_torch_device(device)
        self.halt = threading.Event()
        self.clocks, self.watts, self.reasons = [], [], set()

    def run(self):
        import pynvml as nv

        while not self.halt.wait(0.05):
            self.clocks.append(nv.nvmlDeviceGetClockInfo(self.handle, nv.NVML_CLOCK_SM))
            self.watts.append(nv.nvmlDeviceGetPowerUsage(self.handle) / 1000)
            self.reasons.update(power.decode_reasons(nv.nvmlDeviceGetCurrentClocksEventReasons(self.handle)) or [])

    def stop(self) -> str:
        self.halt.set()
        self.join()
        if not self.clocks:
            return "nvml: no samples"
        return (f"SM {statistics.fmean(self.clocks):.0f} MHz (min {min(self.clocks)}), "
                f"{statistics.fmean(self.watts):.0f} W, reasons {sorted(self.reasons - {'gpu_idle'}) or '-'}")


def loop(runner, x, seconds: float) -> float:
    """The throughput task's way: one input, back to back, waited for at the end; img/s."""
    n, began = 0, time.perf_counter()
    while time.perf_counter() - began < seconds:
        for _ in range(10):
            runner.run(x)
        n += 10
        wait_for(runner, None)
    runner.synchronize()
    return n * x.shape[0] / (time.perf_counter() - began)


def phase(label: str, timed: Timed, device, fn) -> None:
    """``fn`` returns (img/s, a note, the host time its measured part began)."""
    sampler = Nvml(device)
    sampler.start()
    rate, extra, since = fn()
    gpu = sampler.stop()
    t = timed.take(since)
    print(f"{label:34s} {rate:9.1f} img/s | GPU {t['gpu_ms']:.2f} ms/batch (mean {t['gpu_ms_mean']:.2f}), "
          f"idle gap {t['gap_ms_mean']:.3f} ms (max {t['gap_ms_max']:.1f}), busy {t['busy_fraction']:.3f}, "
          f"launch {t['launch_ms']:.2f} ms, {t['batches']} batches | {gpu}{extra}", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--model", default="ResNet-v1-50")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tuned", action="store_true")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--compile-modes", default=None,
                    help="comma-separated compile modes to probe in turn (default: the configuration's own)")
    a = ap.parse_args()
    config = dict(TUNED if a.tuned else {})
    modes = a.compile_modes.split(",") if a.compile_modes else [config.get("compile_mode")]
    for mode in modes:
        config["compile_mode"] = None if mode in (None, "none", "eager") else mode
        try:
            probe(a, load(a.model, RunConfig(device=a.device, **config)))
        except Exception as exc:  # noqa: BLE001 -- a mode that fails is reported, the next one still runs
            print(f"compile mode {mode}: {type(exc).__name__}: {exc}", flush=True)


def probe(a, runner) -> None:
    device = torch.device(a.device)
    timed = Timed(runner)
    x = runner.make_inputs(a.batch)
    for _ in range(5):
        wait_for(runner, runner.run(x))
    print(f"config {a.model} b{a.batch} {runner.config} on {a.device}, torch {torch.__version__}", flush=True)

    def main_thread():
        since = time.perf_counter()
        return loop(timed, x, a.seconds), "", since

    def worker_thread():
        out = []

        def work():
            loop(timed, x, 1.0)  # CUDA's per-thread handles are made on a thread's first use
            out.append(time.perf_counter())
            out.append(loop(timed, x, a.seconds))

        worker = threading.Thread(target=work)
        worker.start()
        worker.join()
        return out[1], " (after 1 s warm in that thread)", out[0]

    # The measured part of an Offline run begins at LoadGen's one query (the estimate and the
    # batcher's warm-up run before it).
    issued = []
    issue = loadgen._SystemUnderTest.issue_queries

    def marked_issue(self, *query):
        issued.append(time.perf_counter())
        issue(self, *query)

    def offline(in_flight: int):
        def go():
            with tempfile.TemporaryDirectory() as logs:
                rec = run_scenario(timed, "offline", logs, batch_size=a.batch, batches_in_flight=in_flight,
                                   pad_batches=True, min_duration_s=a.seconds)
            return rec["samples_per_s"], f" | valid {rec['valid']}, {rec['duration_s']:.1f} s in all", issued[-1]
        return go

    loadgen._SystemUnderTest.issue_queries = marked_issue
    interval = sys.getswitchinterval()
    try:
        phase("plain loop, main thread", timed, device, main_thread)
        phase("plain loop, warmed worker thread", timed, device, worker_thread)
        for n in (1, 2):
            phase(f"LoadGen Offline, {n} in flight", timed, device, offline(n))
        sys.setswitchinterval(0.0005)
        phase("LoadGen Offline, 2, GIL 0.5 ms", timed, device, offline(2))
        sys.setswitchinterval(interval)
        phase("plain loop, main thread, again", timed, device, main_thread)
    finally:
        sys.setswitchinterval(interval)
        loadgen._SystemUnderTest.issue_queries = issue


if __name__ == "__main__":
    main()
