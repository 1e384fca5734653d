"""Where a Server batch's time goes at one batch in flight, step by step (issue 19's Server ceiling).

    python scripts/gpu_server_timeline.py [--device cuda:0] [--qps 19000,24000] [--switch-ms 5,0.2]
                                          [--compile-modes default,reduce-overhead] [--seconds 6]

The tuned ResNet-v1-50 (fp16, channels_last, compiled), LoadGen Server at each offered load and
GIL switch interval, batcher 128 padded, 4 ms queue delay, one batch in flight; then Offline at
batch 128 (one query: no issue traffic). Every step of the batcher's worker is timed on the host
(wall and the thread's own CPU time: where wall exceeds CPU the thread waited for the GIL or was
descheduled), the model call has a CUDA event pair, and one event synchronised at the start maps
GPU times onto the host clock, so that the GPU's idle gap between batches splits into the wake
after the batch ends, answering, taking the next batch, assembling it, and the launch up to its
first kernel. Medians over the batches of the run's middle (the first and last 10% left out).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time

import torch

from gpu_offline_timeline import TUNED, Nvml, loop

from dlmark.backends import RunConfig
from dlmark.backends.pytorch import load
from dlmark.measure import batcher, loadgen

STEPS = ("take", "assemble", "run", "wait", "answer")


class HostEvent:
    """A CUDA event's two methods on the host clock: lets the script try itself out on a CPU."""

    def record(self):
        self.ns = time.perf_counter_ns()

    def synchronize(self):
        pass

    def elapsed_time(self, other) -> float:
        return (other.ns - self.ns) / 1e6


ON_GPU = torch.cuda.is_available()  # False: host clocks only (a CPU, or --emulate)


def event():
    return torch.cuda.Event(enable_timing=True) if ON_GPU else HostEvent()


def synchronize():
    if ON_GPU:
        torch.cuda.synchronize()


class EmulatedGpu:
    """A runner with a GPU's timing and none of its work, for trying the host side on a CPU: ``run``
    spends ``launch_ms`` of Python (holding the GIL as a compiled model's launch does) and queues
    ``gpu_ms`` of device time on one stream from the launch's start; waits sleep (GIL released)."""

    backend = "emulated-gpu"
    queues_work = True
    config = "emulated"

    def __init__(self, gpu_ms: float, launch_ms: float, shape=(3, 16, 16)):
        self.gpu_s, self.launch_s, self.input_shape = gpu_ms / 1e3, launch_ms / 1e3, shape
        self._free_at = 0.0

    def make_inputs(self, n, seed=None):
        return torch.zeros((n, *self.input_shape))

    def run(self, inputs):
        t0 = time.perf_counter()
        self._free_at = max(t0, self._free_at) + self.gpu_s
        while time.perf_counter() - t0 < self.launch_s:
            pass
        return inputs

    def launched(self, outputs):
        return self._free_at  # where the stream ends now: this batch's end

    def wait_for(self, outputs):
        until = outputs if isinstance(outputs, float) else self._free_at  # else: all queued so far
        time.sleep(max(0.0, until - time.perf_counter()))

    def synchronize(self):
        self.wait_for(None)


class Trace:
    """Host marks of the worker's steps, a CUDA event pair around every model call, and the time
    LoadGen's issue thread spends inside dlmark's ``issue_queries``."""

    def __init__(self):
        self.marks: list[tuple[str, int, int, int]] = []  # (step+0/1, thread, wall ns, thread cpu ns)
        self.events: list[tuple[torch.cuda.Event, torch.cuda.Event]] = []
        self.waiting_at_take: list[int] = []
        self.issue_ns = 0
        self.issue_calls = 0
        self.origin: tuple[torch.cuda.Event, int] | None = None

    def mark(self, label: str) -> None:
        self.marks.append((label, threading.get_ident(), time.perf_counter_ns(), time.thread_time_ns()))

    def align(self) -> None:
        """An event the host saw complete: GPU times become host times through it."""
        origin = event()
        origin.record()
        origin.synchronize()
        self.origin = (origin, time.perf_counter_ns())

    def reset(self) -> None:
        synchronize()
        self.marks, self.events, self.waiting_at_take = [], [], []
        self.issue_ns = self.issue_calls = 0
        self.align()


def install(trace: Trace):
    """Wrap the worker's steps; returns a function that takes the wrappers off again."""
    saved = []

    def wrap(owner, name, label, before=None):
        inner = getattr(owner, name)
        saved.append((owner, name, inner))

        def timed(*args, **kwargs):
            if before is not None:
                before(*args)
            trace.mark(label + "0")
            try:
                return inner(*args, **kwargs)
            finally:
                trace.mark(label + "1")
        setattr(owner, name, timed)

    wrap(batcher.DynamicBatcher, "_take", "take", before=lambda self: trace.waiting_at_take.append(self._waiting))
    wrap(loadgen.SampleLibrary, "assemble", "assemble")
    wrap(loadgen, "wait_for", "wait")  # _finish looks it up in the module at each call
    wrap(loadgen._SystemUnderTest, "_answer", "answer")

    issue = loadgen._SystemUnderTest.issue_queries
    saved.append((loadgen._SystemUnderTest, "issue_queries", issue))

    def counted_issue(self, *query):
        t0 = time.perf_counter_ns()
        issue(self, *query)
        trace.issue_ns += time.perf_counter_ns() - t0
        trace.issue_calls += 1
    loadgen._SystemUnderTest.issue_queries = counted_issue

    def remove():
        for owner, name, inner in reversed(saved):
            setattr(owner, name, inner)
    return remove


class TracedRunner:
    """The runner with host marks and a CUDA event pair around each ``run``."""

    def __init__(self, runner, trace: Trace):
        self._runner, self._trace = runner, trace

    def __getattr__(self, name):
        return getattr(self._runner, name)

    def run(self, inputs):
        start, end = event(), event()
        self._trace.mark("run0")
        start.record()
        out = self._runner.run(inputs)
        end.record()
        self._trace.mark("run1")
        self._trace.events.append((start, end))
        return out


def summarise(trace: Trace, worker: int, max_batch: int) -> dict[str, float]:
    """Per-batch medians (ms) of each step, the gaps between them, and the GPU's own spans."""
    synchronize()
    marks = [m for m in trace.marks if m[1] == worker]
    origin, origin_ns = trace.origin
    batches: list[dict[str, tuple[int, int]]] = []
    current: dict[str, tuple[int, int]] = {}
    for label, _, wall, cpu in marks:
        if label == "take0" and current:
            batches.append(current)
            current = {}
        current[label] = (wall, cpu)
    # The first batch of the trace was taken before it began (no take0): it still owns the first
    # event pair, so batches and event pairs are paired first and incomplete batches skipped after.
    gpu = [(origin_ns + origin.elapsed_time(s) * 1e6, origin_ns + origin.elapsed_time(e) * 1e6)
           for s, e in trace.events]
    n = min(len(batches), len(gpu))  # the warm-up ran before the trace began: one event pair per batch
    cut = n // 10
    rows = []
    for i in range(cut, n - cut - 1):
        b, nxt = batches[i], batches[i + 1]
        if not all(f"{s}{e}" in x for x in (b, nxt) for s in STEPS for e in "01"):
            continue
        (g0, g1), (h0, _) = gpu[i], gpu[i + 1]
        row = {f"{s}_ms": (b[s + "1"][0] - b[s + "0"][0]) / 1e6 for s in STEPS}
        row.update({f"{s}_cpu_ms": (b[s + "1"][1] - b[s + "0"][1]) / 1e6 for s in ("run", "answer")})
        row["gpu_ms"] = (g1 - g0) / 1e6
        row["gpu_idle_ms"] = (h0 - g1) / 1e6
        row["wake_ms"] = (b["wait1"][0] - g1) / 1e6  # the batch's end on the GPU to its wait returning
        row["answered_to_take_ms"] = (nxt["take0"][0] - b["answer1"][0]) / 1e6
        row["take_to_assemble_ms"] = (nxt["assemble0"][0] - nxt["take1"][0]) / 1e6
        row["assemble_to_run_ms"] = (nxt["run0"][0] - nxt["assemble1"][0]) / 1e6
        # The start event runs as soon as the stream reaches it: after the assembly's copies, before
        # the model's first kernel; a launch slower than the GPU shows as a longer gpu_ms instead.
        row["run_to_start_event_ms"] = (h0 - nxt["run0"][0]) / 1e6
        row["cycle_ms"] = (nxt["take0"][0] - b["take0"][0]) / 1e6
        row["waiting_at_take"] = trace.waiting_at_take[i] if i < len(trace.waiting_at_take) else float("nan")
        rows.append(row)
    out = {k: statistics.median(r[k] for r in rows) for k in rows[0]} if rows else {}
    out["batches"] = len(rows)
    out["ready_fraction"] = statistics.fmean(r["waiting_at_take"] >= max_batch for r in rows) if rows else float("nan")
    return out


def report(label: str, rec: dict, t: dict[str, float], trace: Trace, gpu: str) -> None:
    issue_ms = trace.issue_ns / 1e6 / max(1, t.get("batches", 1))
    print(f"{label}: {rec.get('qps_completed') or rec.get('samples_per_s'):,.1f} completed/s, valid {rec['valid']}, "
          f"p99 {rec.get('latency_ms_p99')}, batch mean {rec.get('batcher_batch_size_mean')}, "
          f"{t.get('batches')} batches, ready at take {t.get('ready_fraction', float('nan')):.2f} | {gpu}", flush=True)
    keys = ["cycle_ms", "gpu_ms", "gpu_idle_ms", "wake_ms", "wait_ms", "answer_ms", "answer_cpu_ms",
            "answered_to_take_ms", "take_ms", "take_to_assemble_ms", "assemble_ms", "assemble_to_run_ms",
            "run_to_start_event_ms", "run_ms", "run_cpu_ms"]
    print("    " + ", ".join(f"{k[:-3]} {t[k]:.3f}" for k in keys if k in t)
          + f", issue_queries {issue_ms:.3f} ms/batch ({trace.issue_calls} calls)", flush=True)


def probe_assemble(runner, size: int, calls: int = 2000) -> None:
    """Host microseconds of a batch's assembly, whole and step by step: the index tensor, pinned, on
    the device, the rows selected, and the channels-last copy that dlmark made before
    h200-serving-20 (rows now come from the pool's NHWC storage, viewed back as NCHW)."""
    library = loadgen.SampleLibrary(runner, size)
    library.load(list(range(size)))
    pool = library._pool
    rows = [(i * 37) % size for i in range(size)]
    index = torch.tensor(rows)
    pinned = index.pin_memory()
    on_device = pinned.to(pool.device)
    selected = pool.index_select(0, on_device)
    steps = {
        "library.assemble (this tree)": lambda: library.assemble(rows),
        "torch.tensor(rows)": lambda: torch.tensor(rows),
        ".pin_memory()": lambda: index.pin_memory(),
        ".to(device, non_blocking=True)": lambda: pinned.to(pool.device, non_blocking=True),
        "pool.index_select(0, index)": lambda: pool.index_select(0, on_device),
        ".contiguous(channels_last)": lambda: selected.contiguous(memory_format=torch.channels_last),
    }
    for label, step in steps.items():
        for _ in range(20):
            step()
        synchronize()
        spent = 0
        for i in range(calls):
            t0 = time.perf_counter_ns()
            step()
            spent += time.perf_counter_ns() - t0
            if i % 50 == 49:
                synchronize()  # the stream never backs up behind the copies
        print(f"    assemble b{size}: {label:32s} {spent / calls / 1e3:7.1f} us", flush=True)


def phases(a, runner) -> None:
    trace = Trace()
    traced = TracedRunner(runner, trace)
    base = dict(max_batch=a.max_batch, max_queue_delay_ms=4.0, batches_in_flight=a.in_flight, pad_batches=True,
                min_duration_s=a.seconds, latency_bound_ms=15.0)
    worker_ids: list[int] = []
    warm_up_take = batcher.DynamicBatcher._work

    def remember_worker(self):
        worker_ids.append(threading.get_ident())
        warm_up_take(self)
    batcher.DynamicBatcher._work = remember_worker
    remove = install(trace)
    # The trace starts at LoadGen's first query: the estimate and the worker's warm-up come before it.
    sut_issue = loadgen._SystemUnderTest.issue_queries

    def first_issue_resets(self, *query):
        if not getattr(self, "_traced", False):
            self._traced = True
            trace.reset()
        sut_issue(self, *query)
    loadgen._SystemUnderTest.issue_queries = first_issue_resets
    if ON_GPU:
        probe_assemble(runner, a.max_batch)
    x = runner.make_inputs(a.max_batch)
    for _ in range(5):
        loadgen.wait_for(runner, runner.run(x))
    rate = loop(runner, x, a.seconds / 2)
    print(f"plain loop b{a.max_batch}: {rate:,.1f} img/s = {a.max_batch * 1e3 / rate:.3f} ms a batch", flush=True)
    del x
    try:
        runs = [("server", qps, ms) for qps in a.qps for ms in a.switch_ms] + [("offline", None, None)]
        for scenario, qps, ms in runs:
            nvml = Nvml(torch.device(a.device)) if ON_GPU else None
            if nvml is not None:
                nvml.start()
            with tempfile.TemporaryDirectory() as logs:
                if scenario == "server":
                    rec = loadgen.run_scenario(traced, "server", logs, target_qps=qps, switch_interval_ms=ms, **base)
                    label = f"Server {qps:,.0f} QPS, switch {ms} ms"
                else:
                    rec = loadgen.run_scenario(traced, "offline", logs, batch_size=a.max_batch, batches_in_flight=1,
                                               pad_batches=True, min_duration_s=a.seconds)
                    label = f"Offline b{a.max_batch}, 1 in flight"
            gpu = nvml.stop() if nvml is not None else "no NVML"
            report(label, rec, summarise(trace, worker_ids[-1], a.max_batch), trace, gpu)
    finally:
        loadgen._SystemUnderTest.issue_queries = sut_issue
        remove()
        batcher.DynamicBatcher._work = warm_up_take


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--model", default="ResNet-v1-50")
    ap.add_argument("--qps", default="19000,24000", type=lambda s: [float(q) for q in s.split(",")])
    ap.add_argument("--switch-ms", default="5,0.2", type=lambda s: [float(q) for q in s.split(",")])
    ap.add_argument("--compile-modes", default="default")
    ap.add_argument("--seconds", type=float, default=6.0)
    ap.add_argument("--max-batch", type=int, default=128)
    ap.add_argument("--in-flight", type=int, default=1,
                    help="Server's batches in flight (the steps are read from one worker's batches)")
    ap.add_argument("--emulate", metavar="GPU_MS,LAUNCH_MS",
                    help="no model: a runner with a GPU's timing (e.g. 5.1,3.9, the H200's b128), on any machine")
    a = ap.parse_args()
    if a.emulate:
        global ON_GPU
        ON_GPU = False
        gpu_ms, launch_ms = (float(v) for v in a.emulate.split(","))
        print(f"emulated GPU: {gpu_ms} ms a batch, {launch_ms} ms of Python launch; Python {sys.version.split()[0]}",
              flush=True)
        return phases(a, EmulatedGpu(gpu_ms, launch_ms))
    for mode in a.compile_modes.split(","):
        config = dict(TUNED, compile_mode=mode) if a.device.startswith("cuda") else {}  # CPU: a dry run
        try:
            runner = load(a.model, RunConfig(device=a.device, **config))
            print(f"config {a.model} {runner.config} on {a.device}, torch {torch.__version__}, "
                  f"Python {sys.version.split()[0]}", flush=True)
            phases(a, runner)
        except Exception as exc:  # noqa: BLE001 -- a mode that fails is reported, the next one still runs
            print(f"compile mode {mode}: {type(exc).__name__}: {exc}", flush=True)


if __name__ == "__main__":
    main()
