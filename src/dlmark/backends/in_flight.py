"""N inference requests in flight at once, through each runtime's own concurrency.

OpenVINO: an ``AsyncInferQueue`` of N infer requests on a model compiled under a
performance hint (``auto``: the compiled model's OPTIMAL_NUMBER_OF_INFER_REQUESTS).
ONNX Runtime: N sessions of the same file on N threads, the intra-op threads
split between them (or one session shared by N threads, ``ort_mode="shared"``).
PyTorch: N threads calling the module, each with its share of intra-op threads.

Counting: every request keeps its start and end time; after a warm-up, the
timed span is cut into back-to-back windows and a request counts in the one
window its end falls in, so none is counted twice and none that ended outside
the windows is counted at all. Throughput is completed samples over the windows'
wall time; the spread is that of the per-window throughputs; latency is per
request (submit to completion, queueing included). Keys starting with ``_``
(the raw request times and window boundaries) are for checks, not for records.
"""
from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from ..errors import UserError
from dlmark.measure.stats import NOISY_REL_IQR, median_ci


@dataclass(frozen=True)
class WindowConfig:
    """How long to measure: warm-up, then ``windows`` back-to-back windows.

    The warm-up lasts ``warmup_s`` and at least until every request in flight has
    completed once (a first inference is often far slower); a window lasts
    ``window_s``, lengthened so that it holds about ``min_requests_per_window``
    requests at the warm-up's rate (a window holding one or two requests would
    make the count's edges decide the figure). The warm-up has no cap of its own:
    windows started while a request is still in its first call (a cold compile of
    PyTorch's int8 graph took over the 20 s single-call cap) would count nothing;
    a hung request is the job's timeout's to end.
    """

    warmup_s: float = 1.0
    window_s: float = 1.0
    windows: int = 5
    min_requests_per_window: int = 5

    def __post_init__(self) -> None:
        if self.windows < 1 or self.window_s <= 0 or self.warmup_s < 0:
            raise UserError("in-flight timing needs at least one window of positive length")


def parse_in_flight(value: str | int) -> int | str:
    """``--in-flight`` value: a positive count or ``auto``."""
    if isinstance(value, int) or str(value).isdigit():
        n = int(value)
        if n >= 1:
            return n
    elif str(value).lower() == "auto":
        return "auto"
    raise UserError(f"--in-flight takes a positive number of requests or 'auto', not {value!r}")


def split_threads(total: int, n: int) -> list[int]:
    """``total`` intra-op threads over ``n`` requests, as evenly as possible, at least one each."""
    if n > total:
        return [1] * n
    base, extra = divmod(total, n)
    return [base + (i < extra) for i in range(n)]


def count_windows(requests: Sequence[tuple[float, float]], boundaries: Sequence[float],
                  batch_size: int) -> dict[str, Any]:
    """Record fields from (start, end) times of requests and window boundaries b0 < b1 < ... < bK.

    A request counts in window i when b_i <= end < b_{i+1}; those ending before b0
    (warm-up) or at or after bK (drained after the last window) are not counted.
    """
    ends = np.asarray([e for _, e in requests], dtype=float)
    lat = np.asarray([e - s for s, e in requests], dtype=float)
    edges = np.asarray(boundaries, dtype=float)
    index = np.searchsorted(edges, ends, side="right") - 1  # window of each request, -1 or K outside
    inside = (index >= 0) & (index < len(edges) - 1)
    per_window = np.bincount(index[inside], minlength=len(edges) - 1)
    spans = np.diff(edges)
    rates = per_window * batch_size / spans
    counted = int(inside.sum())
    if counted == 0:
        raise RuntimeError("no request completed inside the timed windows; lengthen the windows")
    total_s = float(edges[-1] - edges[0])
    lo, hi = median_ci(rates)
    q25, q50, q75 = (float(v) for v in np.percentile(rates, [25, 50, 75]))
    latencies = lat[inside]
    p50, p90, p99 = (float(v) for v in np.percentile(latencies, [50, 90, 99]))
    rel_iqr = (q75 - q25) / q50 if q50 > 0 else float("inf")
    return {
        "throughput": counted * batch_size / total_s,
        "_boundaries": [float(b) for b in edges],
        "throughput_ci95_low": float(lo), "throughput_ci95_high": float(hi),
        "throughput_windows": [float(r) for r in rates],
        "latency_ms_median": p50 * 1e3, "latency_ms_p90": p90 * 1e3, "latency_ms_p99": p99 * 1e3,
        "latency_ms_min": float(latencies.min()) * 1e3,
        "requests_counted": counted, "requests_completed": len(requests),
        "timed_s": total_s, "num_windows": len(spans), "rel_iqr": rel_iqr, "noisy": bool(rel_iqr > NOISY_REL_IQR),
        "_counted_mask": inside,
    }


def _window_boundaries(config: WindowConfig, stop_if: Callable[[], BaseException | None],
                       completed: Callable[[], int], in_flight: int,
                       warmed: Callable[[], bool] | None = None) -> tuple[list[float], float]:
    """Warm up, then mark the window boundaries; returns (boundaries, window length).

    The warm-up ends once ``warmed()`` (default: ``in_flight`` requests have completed): where
    requests run in lanes of their own, every lane must have completed one, or a lane still in
    its slow first call (a compile that holds the others too) can leave the windows empty.
    """
    warmed = warmed or (lambda: completed() >= in_flight)
    start = time.perf_counter()
    time.sleep(config.warmup_s)
    while not warmed():
        failure = stop_if()
        if failure is not None:
            raise failure
        time.sleep(0.01)
    elapsed = time.perf_counter() - start
    rate = completed() / elapsed if elapsed > 0 else 0.0
    window = config.window_s
    if rate > 0 and config.min_requests_per_window:
        window = max(window, config.min_requests_per_window / rate)
    boundaries = [time.perf_counter()]
    for _ in range(config.windows):
        time.sleep(window)
        boundaries.append(time.perf_counter())
        failure = stop_if()
        if failure is not None:
            raise failure
    return boundaries, window


def run_threads(requests: Sequence[Callable[[], Any]], batch_size: int,
                config: WindowConfig = WindowConfig()) -> dict[str, Any]:
    """One thread per callable, each running its request back to back; the windowed count of all of them.

    Each callable runs one request synchronously (it must release the GIL while it
    computes for the threads to overlap: runtimes' run calls do).
    """
    stop = threading.Event()
    done: list[list[tuple[float, float]]] = [[] for _ in requests]
    failures: list[BaseException] = []

    def loop(i: int, request: Callable[[], Any]) -> None:
        log = done[i]
        try:
            while not stop.is_set():
                start = time.perf_counter()
                request()
                log.append((start, time.perf_counter()))
        except BaseException as exc:  # noqa: BLE001 -- handed to the main thread, which raises it
            failures.append(exc)
            stop.set()

    threads = [threading.Thread(target=loop, args=(i, r), daemon=True, name=f"dlmark-in-flight-{i}")
               for i, r in enumerate(requests)]
    for t in threads:
        t.start()
    try:
        boundaries, window = _window_boundaries(config, lambda: failures[0] if failures else None,
                                                lambda: sum(len(log) for log in done), len(requests),
                                                warmed=lambda: all(done))
    finally:
        stop.set()
        for t in threads:
            t.join()
    if failures:
        raise failures[0]
    lanes = [i for i, log in enumerate(done) for _ in log]
    flat = [r for log in done for r in log]
    out = count_windows(flat, boundaries, batch_size)
    mask = out.pop("_counted_mask")
    out["_requests"] = flat
    out["window_s"] = window
    out["requests_per_lane"] = [int(sum(1 for lane, m in zip(lanes, mask) if m and lane == i))
                                for i in range(len(requests))]
    return out


# ------------------------------------------------------------------ OpenVINO


def openvino_in_flight(model: Any, n: int | str, batch_size: int, input_shape: tuple[int, ...],
                       hint: str = "THROUGHPUT", threads: int | None = None, precision: str = "f32",
                       config: WindowConfig = WindowConfig(), core: Any = None, seed: int = 0,
                       extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """``n`` (or ``auto``) requests in flight through an AsyncInferQueue; ``model`` an IR path or ov.Model."""
    import openvino as ov

    from . import seeded_input

    core = core or ov.Core()
    properties: dict[str, Any] = {"PERFORMANCE_HINT": hint, "INFERENCE_PRECISION_HINT": precision, **(extra or {})}
    if threads:
        properties["INFERENCE_NUM_THREADS"] = threads
    if n != "auto":
        # The hint sizes its streams for this many requests (benchmark_app's -nireq does the same).
        properties.setdefault("PERFORMANCE_HINT_NUM_REQUESTS", int(n))
    source = core.read_model(str(model)) if isinstance(model, (str, bytes)) or hasattr(model, "__fspath__") else model
    if batch_size and source.inputs[0].get_partial_shape().is_dynamic:
        source.reshape({source.inputs[0]: ov.PartialShape([batch_size, *input_shape])})
    compiled = core.compile_model(source, "CPU", properties)
    optimal = int(compiled.get_property("OPTIMAL_NUMBER_OF_INFER_REQUESTS"))
    jobs = optimal if n == "auto" else int(n)
    x = seeded_input((batch_size, *input_shape), seed)
    queue = ov.AsyncInferQueue(compiled, jobs)
    for slot in range(jobs):  # the input set once per request, as benchmark_app does, not on every start
        queue[slot].set_input_tensor(ov.Tensor(x, shared_memory=True))
    # No Python callback: one would take the GIL on the runtime's own inference thread after every
    # request, a cost benchmark_app does not pay (SqueezeNet-1.1 at about 1 ms a request read
    # 0.84-0.88 of it, results/cpu-tables-7). As benchmark_app does, a request's latency is the
    # runtime's own figure, read when its slot is next idle; its end is its start plus that.
    started: list[float | None] = [None] * jobs
    log: list[tuple[float, float]] = []
    failures: list[BaseException] = []
    stop = threading.Event()

    def completed(slot: int) -> None:
        if started[slot] is not None:
            log.append((started[slot], started[slot] + queue[slot].latency / 1000.0))
            started[slot] = None

    def submit() -> None:
        try:
            while not stop.is_set():
                slot = queue.get_idle_request_id()  # blocks until a request is free
                completed(slot)
                started[slot] = time.perf_counter()
                queue.start_async()  # starts the idle request just found, on its input
        except BaseException as exc:  # noqa: BLE001 -- raised by the measuring thread
            failures.append(exc)
            stop.set()

    feeder = threading.Thread(target=submit, daemon=True, name="dlmark-ov-feeder")
    feeder.start()
    try:
        boundaries, window = _window_boundaries(config, lambda: failures[0] if failures else None,
                                                lambda: len(log), jobs)
    finally:
        stop.set()
        feeder.join()
        queue.wait_all()
    if failures:
        raise failures[0]
    for slot in range(jobs):  # those still in flight when the feeder stopped (after the windows)
        completed(slot)
    requests = sorted(log)
    out = count_windows(requests, boundaries, batch_size)
    out.pop("_counted_mask")
    out["_requests"] = requests
    out["window_s"] = window
    streams = int(compiled.get_property("NUM_STREAMS"))
    used_threads = int(compiled.get_property("INFERENCE_NUM_THREADS"))
    return {**out, "in_flight": jobs, "in_flight_requested": n, "ov_optimal_infer_requests": optimal,
            "streams": streams, "threads": used_threads,
            "threads_per_request": max(1, used_threads // max(streams, 1)),
            "ov_performance_hint": hint, "in_flight_api": "openvino AsyncInferQueue"}


# ------------------------------------------------------------------ ONNX Runtime


def onnxruntime_in_flight(path: str, n: int, batch_size: int, input_shape: tuple[int, ...], threads: int,
                          mode: str = "sessions", config: WindowConfig = WindowConfig(), seed: int = 0,
                          level: str = "ORT_ENABLE_ALL") -> dict[str, Any]:
    """``n`` threads each running a request at a time: on ``n`` sessions (threads split) or one shared session."""
    import onnxruntime as ort

    from . import seeded_input

    if n == "auto":
        raise UserError("onnxruntime has no recommended number of requests; give --in-flight a number")
    n = int(n)
    if mode not in ("sessions", "shared"):
        raise UserError(f"onnxruntime in-flight mode is 'sessions' or 'shared', not {mode!r}")
    shares = split_threads(threads, n) if mode == "sessions" else [threads]

    def session(intra: int) -> Any:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = intra
        options.inter_op_num_threads = 1
        return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    sessions = [session(t) for t in shares]
    name = sessions[0].get_inputs()[0].name
    x = seeded_input((batch_size, *input_shape), seed)
    lanes = [sessions[i % len(sessions)] for i in range(n)]
    # InferenceSession.run may be called from several threads at once (it is documented thread-safe);
    # in "shared" mode the concurrent runs share one intra-op thread pool.
    out = run_threads([lambda s=s: s.run(None, {name: x}) for s in lanes], batch_size, config)
    return {**out, "in_flight": n, "threads": threads, "streams": len(sessions),
            "threads_per_request": shares[0] if mode == "sessions" else threads,
            "ort_in_flight_mode": mode, "threads_split": shares,
            "in_flight_api": f"onnxruntime: {n} threads on {len(sessions)} session(s)"}


# ------------------------------------------------------------------ PyTorch


def pytorch_in_flight(module: Any, n: int, batch_size: int, input_shape: tuple[int, ...], threads: int,
                      config: WindowConfig = WindowConfig(), seed: int = 0) -> dict[str, Any]:
    """``n`` Python threads calling ``module`` under ``inference_mode``, intra-op threads split between them.

    ``torch.set_num_threads`` is per process; each worker sets its share, but with
    one ATen pool the shares are a request, not a guarantee, and Python code
    between operators holds the GIL: the record says what was asked.
    """
    import torch

    from . import seeded_input

    if n == "auto":
        raise UserError("pytorch has no recommended number of requests; give --in-flight a number")
    n = int(n)
    shares = split_threads(threads, n)
    x = torch.from_numpy(seeded_input((batch_size, *input_shape), seed))
    before = torch.get_num_threads()
    torch.set_num_threads(shares[0])

    def request() -> None:
        with torch.inference_mode():
            module(x)

    try:
        out = run_threads([request] * n, batch_size, config)
    finally:
        torch.set_num_threads(before)
    return {**out, "in_flight": n, "threads": threads, "streams": n, "threads_per_request": shares[0],
            "in_flight_api": f"pytorch: {n} Python threads, torch.set_num_threads({shares[0]})"}
