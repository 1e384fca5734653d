"""Serving scenarios through MLPerf's LoadGen: Offline, SingleStream, MultiStream, Server.

LoadGen (``mlperf_loadgen``, PyPI ``mlcommons-loadgen``) owns the test: it
schedules queries (Poisson arrivals in Server), measures latency from each
query's scheduled issue time (queueing counts), applies early stopping and
decides VALID/INVALID. dlmark supplies the system under test over a Runner and
the sample library, and reads LoadGen's own logs back into a record.

How the system under test batches (every scenario goes through one
``DynamicBatcher``, whose worker threads live for the whole test):

- offline: LoadGen issues every sample in one query; it is cut into batches of
  ``batch_size``, ``batches_in_flight`` of them running at once.
- single-stream: one sample per query, run as a batch of one.
- multi-stream: ``samples_per_query`` samples per query, run as one batch.
- server: one sample per query, gathered until ``max_batch`` wait or the oldest
  has waited ``max_queue_delay_ms``.

A batch is assembled by copying the requested samples out of the preloaded
pool into a new batch tensor (``index_select`` on the runner's device, ``take``
for numpy runtimes). The copy is charged to the system under test on purpose:
a server receives requests in separate buffers and must build each batch.
Responses are completed only once the batch's outputs exist (``wait_for``: the
runner's ``wait_for``, else its ``synchronize``), so a result exists before
LoadGen stops its clock.
"""
from __future__ import annotations

import contextlib
import gc

import json
import math
import re
import sys
import threading
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Callable

from dlmark.errors import UserError
from dlmark.measure.batcher import Batch, DynamicBatcher

SCENARIOS = ("offline", "single-stream", "multi-stream", "server")
_LG_SCENARIO = {"offline": "Offline", "single-stream": "SingleStream", "multi-stream": "MultiStream", "server": "Server"}
#: Percentiles every record carries, as LoadGen names them in its detail log.
PERCENTILES = {"p50": "50.00", "p90": "90.00", "p95": "95.00", "p97": "97.00", "p99": "99.00", "p999": "99.90"}
#: MLPerf's model whose rules apply by default: image classification (ResNet-50) is the one
#: benchmark of the suite whose inputs and task match dlmark's image models.
MLPERF_MODEL = "resnet50"
#: Offline's expected QPS, when estimated, is the warm-up's times this (LoadGen sizes its one query by it).
OFFLINE_QPS_MARGIN = 1.5
#: After a stop, closed-loop scenarios (one query at a time) answer this late, so that LoadGen's
#: remaining minimum duration is not filled with a storm of empty queries.
STOP_PACE_S = 0.001


def _lg():
    try:
        import mlperf_loadgen
    except ImportError:
        import sys

        raise UserError(f"serving scenarios need MLPerf LoadGen in {sys.executable}; install it with: "
                        f"{sys.executable} -m pip install mlcommons-loadgen") from None
    return mlperf_loadgen


@dataclass(frozen=True)
class ServingSettings:
    """What a scenario run is asked to do; everything here is recorded."""

    target_qps: float | None = None  # server: offered load; offline: LoadGen's expected QPS (sizes its one query)
    latency_bound_ms: float | None = None  # server: the p99 bound LoadGen judges; None: 100 ms (LoadGen's default)
    expected_latency_ms: float | None = None  # single/multi-stream: sizes LoadGen's pre-generated queries
    samples_per_query: int = 8  # multi-stream
    min_duration_s: float = 10.0
    min_query_count: int = 1024
    max_duration_s: float = 0.0  # 0: no ceiling (LoadGen's default)
    batch_size: int = 32  # offline
    max_batch: int = 8  # server
    max_queue_delay_ms: float = 2.0  # server
    batches_in_flight: int = 1
    sample_count: int = 128  # samples preloaded in the library (LoadGen's performance sample count)
    mlperf_rules: bool = False  # MLPerf's own durations and query counts from LoadGen's built-in mlperf.conf
    mlperf_model: str = MLPERF_MODEL
    seed: int = 0
    warmup_batches: int = 3  # untimed passes per batch size before the two that size LoadGen's queries
    # Every batch padded to the scenario's batch with copies of its first sample (answered once):
    # one input shape, so a compiled model never recompiles and cuDNN never re-tunes mid-run.
    pad_batches: bool = False
    # Server: with padding, each batch padded up to the smallest of these that holds it (the batcher's
    # size is always one of them): a few shapes, each warmed before the run, so that a small batch at
    # low load does not pay for a full one.
    pad_sizes: tuple[int, ...] = ()
    # Each batch in flight on its own CUDA stream: the GPU runs them side by side, not one after
    # another, so a batch taken while another runs starts at once instead of waiting behind it
    # (worse on an H200 for ResNet-50, whose batch alone fills the GPU: docs/serving.md).
    own_streams: bool = False
    # Python's GIL switch interval during the LoadGen test (None: the interpreter's, 5 ms). A thread
    # launching a compiled model holds the GIL for milliseconds of Python; LoadGen's issue thread and
    # a worker waking to answer its batch wait for it up to this long.
    switch_interval_ms: float | None = None
    # Every object alive when the test starts moved out of the cyclic collector's reach (gc.freeze):
    # a full collection walks every tracked object, and after torch.compile those are half a million,
    # so one stops every Python thread for a tenth of a second or more. Recorded either way.
    gc_freeze: bool = True

    def validate(self, scenario: str) -> None:
        if scenario not in SCENARIOS:
            raise UserError(f"unknown scenario {scenario!r}; available: {', '.join(SCENARIOS)}")
        for name in ("target_qps", "latency_bound_ms", "expected_latency_ms"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"{name.replace('_', '-')} must be positive, not {value}")
        for name in ("samples_per_query", "batch_size", "max_batch", "batches_in_flight", "sample_count",
                     "min_query_count"):
            if getattr(self, name) < 1:
                raise UserError(f"{name.replace('_', '-')} must be at least 1, not {getattr(self, name)}")
        if self.max_queue_delay_ms < 0 or self.min_duration_s < 0 or self.max_duration_s < 0:
            raise UserError("max-queue-delay-ms, min-duration and max-duration cannot be negative")
        if self.switch_interval_ms is not None and not self.switch_interval_ms > 0:
            raise UserError(f"gil-switch-interval-ms must be positive, not {self.switch_interval_ms}")
        if any(not isinstance(n, int) or n < 1 for n in self.pad_sizes):
            raise UserError(f"pad-sizes must be positive integers, not {list(self.pad_sizes)}")

    def padded_sizes(self, scenario: str) -> list[int]:
        """The batch shapes a padded run uses, smallest first (empty: no padding)."""
        if not (self.pad_batches or self.pad_sizes):
            return []
        largest = {"offline": self.batch_size, "single-stream": 1, "multi-stream": self.samples_per_query,
                   "server": self.max_batch}[scenario]
        smaller = self.pad_sizes if scenario == "server" else ()
        return sorted({n for n in smaller if n < largest} | {largest})


def quick_settings(**overrides: Any) -> ServingSettings:
    """Exploring defaults: 10 s and 1,024 queries per run, not MLPerf-compliant."""
    return replace(ServingSettings(), **overrides)


def mlperf_settings(**overrides: Any) -> ServingSettings:
    """MLPerf's rules (600 s, the scenario's query counts) as LoadGen's built-in mlperf.conf states them."""
    return replace(ServingSettings(mlperf_rules=True), **overrides)


# -- the sample library
class SampleLibrary:
    """N inputs of the model's own shape, loaded when LoadGen asks: generated by the runner (seeded),
    or decoded images (``images``: an ``inputs.samples.ImageSamples``) in the runner's own input form."""

    def __init__(self, runner: Any, count: int, seed: int = 0, images: Any = None):
        self.runner = runner
        self.count = count
        self.seed = seed
        self.images = images
        self._pool: Any = None
        self._rows: dict[int, int] = {}
        self._rows_are_indices = False
        self._torch = None
        self._gather = None
        self._on_cuda = False

    def load(self, indices: list[int]) -> None:
        indices = sorted(set(indices) | set(self._rows))
        if self.images is None:
            # One seeded block: the same samples on every runtime (backends.seeded_input).
            self._pool = self.runner.make_inputs(len(indices), seed=self.seed)
        else:
            from dlmark.inputs.samples import like

            # Decoded and transformed here, as MLPerf's QSL loads its samples: not timed. One
            # generated input is the template of the runner's own type, device, dtype and layout.
            self._pool = like(self.images.stack(indices, self.count), self.runner.make_inputs(1, seed=self.seed))
        self._rows = {index: row for row, index in enumerate(indices)}
        self._rows_are_indices = indices == list(range(len(indices)))  # LoadGen's usual set: no lookup
        # A runtime with its own array type says how to take rows of it (MXNet's NDArray).
        self._gather = getattr(self.runner, "gather", None)
        if self._gather is None and hasattr(self._pool, "index_select"):
            import torch

            from dlmark.inputs.samples import is_channels_last

            self._torch = torch
            # index_select returns a contiguous batch of the tensor it selects from. A channels-last
            # model must get the layout it was measured (and compiled) with: rows are taken from
            # the pool's own NHWC storage, viewed back as NCHW, with no second copy.
            self._from_nhwc = is_channels_last(self._pool)
            self._select_from = self._pool.permute(0, 2, 3, 1) if self._from_nhwc else self._pool
            self._on_cuda = self._pool.device.type == "cuda"
        elif self._gather is None and not (hasattr(self._pool, "take") and hasattr(self._pool, "ndim")):
            raise UserError(f"backend {getattr(self.runner, 'backend', '?')}: its inputs "
                            f"({type(self._pool).__name__}) cannot be batched from samples yet")
        self.runner.synchronize()

    def describe(self) -> dict[str, Any]:
        """Record fields: where the samples came from."""
        if self.images is None:
            return {"samples_source": "generated"}
        return self.images.describe(self.count)

    def unload(self, indices: list[int]) -> None:
        for index in indices:
            self._rows.pop(index, None)
        self._rows_are_indices = False
        if not self._rows:
            self._pool = self._select_from = None

    def assemble(self, indices: list[int]) -> Any:
        """A new batch holding these samples, in this order (a real copy)."""
        rows = indices if self._rows_are_indices else [self._rows[i] for i in indices]
        if self._gather is not None:
            return self._gather(self._pool, rows)
        if self._torch is not None:
            index = self._torch.tensor(rows)
            if self._on_cuda:
                # A pageable host-to-device copy waits for the whole stream, that is for every
                # batch already queued: from pinned memory it is queued behind them instead, and
                # the next batch is launched while the GPU still runs the one before. (Reusing a
                # few pinned buffers instead measured no faster: h200-serving-20's assemble probe.)
                index = index.pin_memory().to(self._pool.device, non_blocking=True)
            batch = self._select_from.index_select(0, index)
            return batch.permute(0, 3, 1, 2) if self._from_nhwc else batch
        return self._pool.take(rows, axis=0)


# -- the system under test
class _SystemUnderTest:
    def __init__(self, lg, runner: Any, library: SampleLibrary, scenario: str, s: ServingSettings,
                 stop: threading.Event):
        self.lg = lg
        self.runner = runner
        self.library = library
        self.stop = stop
        self.closed_loop = scenario in ("single-stream", "multi-stream")
        self.errors: list[BaseException] = []
        max_batch, delay_ms = {
            "offline": (s.batch_size, 0.0),
            "single-stream": (1, 0.0),
            "multi-stream": (s.samples_per_query, 0.0),
            "server": (s.max_batch, s.max_queue_delay_ms),
        }[scenario]
        # Single/multi-stream have one query outstanding at a time: one worker.
        in_flight = 1 if self.closed_loop else s.batches_in_flight
        # Responses come from these long-lived threads only: LoadGen 6.0.17 crashed (SIGSEGV) when
        # a thread that had completed samples exited while the test was still running.
        self.pad_sizes = s.padded_sizes(scenario)
        warm_sizes = self.pad_sizes or [max_batch]

        queues_work = bool(getattr(runner, "queues_work", False))
        if s.own_streams and not queues_work:
            raise UserError(f"--own-streams needs a CUDA device (each batch in flight on a stream of its own); "
                            f"{getattr(runner, 'backend', 'this runner')} here runs its batches side by side already")
        self.own_streams = s.own_streams and not self.closed_loop

        def warm_up() -> None:
            if self.own_streams:
                runner.use_own_stream()  # this worker thread's current stream from now on
            for size in warm_sizes:
                for _ in range(2):
                    with self._launching:
                        out = runner.run(library.assemble([i % library.count for i in range(size)]))
                    runner.synchronize()
                    del out

        # Where run() only queues work on one CUDA stream, one worker queues a batch at a time, so
        # that each batch's kernels stay together on the stream: two compiled models launched from
        # two threads at once interleave their kernels, and Offline read 0.89 of a plain loop with
        # two batches in flight (results/h200-offline-timeline-2). Where run() computes (a CPU), or
        # each worker has its own stream, the workers launch their batches at once.
        shared_stream = queues_work and not self.own_streams
        self._launching = threading.Lock() if shared_stream else contextlib.nullcontext()
        # On one stream a second batch in flight only waits behind the first: it goes only full.
        self.stacks_only_full = shared_stream and in_flight > 1
        # Set before the batcher's workers start, which use them.
        self.padded_samples = 0
        self._responses = threading.local()  # each worker's reused responses (_answer)
        self.batcher = DynamicBatcher(self._run, max_batch, delay_ms, in_flight, warm_up=warm_up,
                                      stack_only_full=self.stacks_only_full)

    def issue_queries(self, ids: list[int], indices: list[int]) -> None:
        self.batcher.submit(ids, indices)  # LoadGen's fast issue callback: two lists of ints

    def flush_queries(self) -> None:
        self.batcher.flush()

    def _run(self, batch: Batch) -> Callable[[], None]:
        """Launch a batch; what waits for it and answers it."""
        try:
            if not self.stop.is_set():
                indices = batch.indices
                if self.pad_sizes:
                    pad_to = next(n for n in self.pad_sizes if n >= len(indices))
                    self.padded_samples += pad_to - len(indices)
                    indices = indices + [indices[0]] * (pad_to - len(indices))
                with self._launching:
                    out = self.runner.run(self.library.assemble(indices))
                    # Taken before another worker may launch: waited on later, it is this batch's
                    # end, not that of a batch queued after it on the same stream.
                    done = launched(self.runner, out)
                return lambda: self._finish(batch, done, out)
            if self.closed_loop:
                time.sleep(STOP_PACE_S)
        except BaseException as exc:  # noqa: BLE001 -- kept and raised after LoadGen has returned
            self._fail(exc)
        return lambda: self._answer(batch)

    def _finish(self, batch: Batch, done: Any, outputs: Any) -> None:
        # ``outputs`` are held until the batch is answered, as a server holds them to send them.
        try:
            wait_for(self.runner, done)  # the result exists before LoadGen's clock stops
        except BaseException as exc:  # noqa: BLE001
            self._fail(exc)
        finally:
            self._answer(batch)

    def _fail(self, exc: BaseException) -> None:
        self.errors.append(exc)
        self.stop.set()

    def _answer(self, batch: Batch) -> None:
        # Answered even on failure or stop: LoadGen waits for every response it issued.
        # LoadGen copies the responses before it returns, so each worker thread reuses its own:
        # setting an id costs a third of making a response (answering a batch of 128 took 0.31 ms
        # on an H200 host with new responses, 0.10 ms after: h200-serving-19, -20).
        responses = getattr(self._responses, "free", None)
        if responses is None:  # a batch never holds more than the batcher's max_batch
            responses = self._responses.free = [self.lg.QuerySampleResponse(0, 0, 0)
                                                for _ in range(self.batcher.max_batch)]
        for response, response_id in zip(responses, batch.ids):
            response.id = response_id
        self.lg.QuerySamplesComplete(responses[:len(batch)])


def launched(runner: Any, outputs: Any) -> Any:
    """What to wait on for the batch just launched: the runner's ``launched`` handle where it has
    one (on a GPU, an event recorded behind the batch), else its outputs."""
    mark = getattr(runner, "launched", None)
    return outputs if mark is None else mark(outputs)


def wait_for(runner: Any, outputs: Any) -> None:
    """Block until ``outputs`` exist: the runner's own ``wait_for`` where it has one, else its
    ``synchronize``. On a GPU that waits for this batch only: a device-wide synchronize would
    also wait for the batch another worker queued after it, leaving the GPU idle while both
    threads complete and launch again."""
    wait = getattr(runner, "wait_for", None)
    if wait is None:
        runner.synchronize()
    else:
        wait(outputs)


# -- LoadGen's settings
def _test_settings(lg, scenario: str, s: ServingSettings, estimate: dict[str, float]) -> tuple[Any, dict[str, Any]]:
    ts = lg.TestSettings()
    lg_scenario = _LG_SCENARIO[scenario]
    if s.mlperf_rules:
        # conf_type 0: only LoadGen's built-in mlperf.conf (the path is not read).
        if ts.FromConfig("mlperf.conf", s.mlperf_model, lg_scenario, 0) != 0:
            raise UserError(f"LoadGen could not apply MLPerf's rules for model {s.mlperf_model!r}")
    else:
        ts.min_duration_ms = int(round(s.min_duration_s * 1000))
        ts.min_query_count = s.min_query_count
        ts.multi_stream_samples_per_query = s.samples_per_query
    ts.scenario = getattr(lg.TestScenario, lg_scenario)
    ts.mode = lg.TestMode.PerformanceOnly
    if s.max_duration_s:
        ts.max_duration_ms = int(round(s.max_duration_s * 1000))
    # What MLPerf leaves to the submitter (user.conf): the load and the expected latencies.
    if scenario == "server":
        ts.server_target_qps = float(s.target_qps or estimate["server_qps"])
        if s.latency_bound_ms is not None:
            ts.server_target_latency_ns = int(round(s.latency_bound_ms * 1e6))
    elif scenario == "offline":
        ts.offline_expected_qps = float(s.target_qps or estimate["offline_qps"])
    else:
        latency_ms = s.expected_latency_ms or estimate[f"{scenario}_ms"]
        if scenario == "single-stream":
            ts.single_stream_expected_latency_ns = int(round(latency_ms * 1e6))
        else:
            ts.multi_stream_expected_latency_ns = int(round(latency_ms * 1e6))
    fields: dict[str, Any] = {"mlperf_rules": s.mlperf_rules}
    if scenario in ("single-stream", "multi-stream"):
        fields["expected_latency_ms"] = latency_ms
    if s.mlperf_rules:
        fields["mlperf_model"] = s.mlperf_model
    return ts, fields


def _estimate(runner: Any, library: SampleLibrary, scenario: str, s: ServingSettings) -> dict[str, float]:
    """Warm the runner at the batch sizes the scenario uses; their times size LoadGen's queries."""
    # A padded Server run warms (compiles) every padded shape here, before LoadGen starts.
    sizes = {"offline": [s.batch_size], "single-stream": [1], "multi-stream": [s.samples_per_query],
             "server": sorted({1, s.max_batch, *s.padded_sizes("server")})}[scenario]
    times: dict[int, float] = {}
    for size in sizes:
        indices = [i % library.count for i in range(size)]
        best = math.inf
        # Untimed warm-up passes, then the best of two timed ones.
        for timed in [False] * s.warmup_batches + [True, True]:
            t0 = time.perf_counter()
            out = runner.run(library.assemble(indices))
            runner.synchronize()
            del out
            if timed:
                best = min(best, time.perf_counter() - t0)
        times[size] = best
    estimate: dict[str, float] = {}
    if scenario == "offline":
        # Too low an expected QPS ends the run before the minimum duration (INVALID); too high only
        # makes it longer. A warm-up on a busy machine can be slower than the run: a margin.
        estimate["offline_qps"] = OFFLINE_QPS_MARGIN * s.batch_size * s.batches_in_flight / times[s.batch_size]
    elif scenario == "server":
        # Half the batcher's capacity: a load that should be met; the QPS search finds the real limit.
        estimate["server_qps"] = 0.5 * s.max_batch * s.batches_in_flight / times[s.max_batch]
    else:
        # Halved: too long an expected latency makes LoadGen run out of pre-generated queries
        # before the minimum duration (INVALID); too short only costs memory.
        estimate[f"{scenario}_ms"] = times[sizes[0]] * 1000.0 / 2
    return estimate


# -- LoadGen's logs
def parse_detail_log(path: str | Path) -> dict[str, Any]:
    """The ``:::MLLOG`` entries of a LoadGen detail log: key -> value (repeated keys: the last),
    with ``warnings`` and ``errors`` the messages LoadGen flagged."""
    entries: dict[str, Any] = {"warnings": [], "errors": []}
    for line in Path(path).read_text(errors="replace").splitlines():
        if not line.startswith(":::MLLOG "):
            continue
        try:
            entry = json.loads(line[len(":::MLLOG "):])
        except json.JSONDecodeError:
            continue
        meta = entry.get("metadata") or {}
        if meta.get("is_error"):
            entries["errors"].append(str(entry.get("value")))
        elif meta.get("is_warning"):
            entries["warnings"].append(str(entry.get("value")))
        entries[entry.get("key")] = entry.get("value")
    return entries


_SATISFIED = re.compile(r"^\s*(.+?)\s+satisfied\s*:\s*(Yes|NO)\s*$", re.IGNORECASE)


def parse_summary_log(path: str | Path) -> dict[str, Any]:
    """The verdict part of a LoadGen summary log: ``result`` (VALID/INVALID), ``checks``
    (name -> satisfied, as LoadGen words them) and its ``recommendations``."""
    result, checks, recommendations = None, {}, []
    in_recommendations = False
    for line in Path(path).read_text(errors="replace").splitlines():
        if line.startswith("Result is"):
            result = line.split(":", 1)[1].strip()
        elif m := _SATISFIED.match(line):
            checks[m.group(1).strip()] = m.group(2).lower() == "yes"
        elif line.startswith("Recommendations:"):
            in_recommendations = True
        elif in_recommendations:
            if line.strip().startswith("*"):
                recommendations.append(line.strip().lstrip("* ").strip())
            elif not line.strip() or not line.startswith(" "):
                in_recommendations = False
    return {"result": result, "checks": checks, "recommendations": recommendations}


def _ms(ns: Any) -> float | None:
    return None if ns is None else float(ns) / 1e6


def _record_from_logs(scenario: str, detail: dict[str, Any], summary: dict[str, Any]) -> dict[str, Any]:
    rec: dict[str, Any] = {"loadgen_version": detail.get("loadgen_version")}
    # The settings LoadGen actually used ("effective_"), not what was asked.
    rec["min_duration_s"] = detail["effective_min_duration_ms"] / 1000.0
    rec["min_query_count"] = detail["effective_min_query_count"]
    rec["min_sample_count"] = detail.get("effective_min_sample_count")  # Offline's one query: counted in samples
    rec["max_duration_s"] = detail["effective_max_duration_ms"] / 1000.0
    rec["samples_per_query"] = detail.get("generated_samples_per_query", detail["effective_samples_per_query"])
    rec["target_latency_percentile"] = detail.get("effective_target_latency_percentile")
    rec["sample_count"] = detail.get("effective_performance_sample_count")
    if scenario == "server":
        rec["target_qps"] = detail["effective_target_qps"]
        rec["latency_bound_ms"] = _ms(detail["effective_target_latency_ns"])
        rec["qps_scheduled"] = detail.get("result_scheduled_samples_per_sec")
        rec["qps_completed"] = detail.get("result_completed_samples_per_sec")
        rec["samples_per_s"] = rec["qps_completed"]
        rec["overlatency_queries"] = detail.get("result_overlatency_query_count")
    elif scenario == "offline":
        rec["target_qps"] = detail["effective_target_qps"]  # the expected QPS that sized the query
        rec["samples_per_s"] = detail.get("result_samples_per_second")
    # Multi-stream's figure is per query (of samples_per_query samples).
    infix = "_per_query" if scenario == "multi-stream" else ""
    for name, pct in PERCENTILES.items():
        rec[f"latency_ms_{name}"] = _ms(detail.get(f"result_{pct}_percentile{infix}_latency_ns"))
    rec["latency_ms_mean"] = _ms(detail.get(f"result_mean{'_query' if infix else ''}_latency_ns"))
    rec["latency_ms_min"] = _ms(detail.get(f"result_min{'_query' if infix else ''}_latency_ns"))
    rec["latency_ms_max"] = _ms(detail.get(f"result_max{'_query' if infix else ''}_latency_ns"))
    # Early stopping's estimate of the scenario's percentile, where LoadGen gives one (0: none).
    for key, pct in (("early_stopping_latency_ss", "p90"), ("early_stopping_latency_ms", "p99")):
        if detail.get(key):
            rec[f"latency_ms_early_stopping_{pct}"] = _ms(detail[key])
    if detail.get("early_stopping_result"):
        rec["early_stopping_result"] = " ".join(str(detail["early_stopping_result"]).split())
    rec["num_queries"] = detail.get("result_query_count")
    rec["valid"] = detail.get("result_validity") == "VALID"
    reasons = [f"{name} not satisfied" for name, ok in summary["checks"].items() if not ok]
    if summary["checks"].get("Early stopping") is False and rec.get("early_stopping_result"):
        reasons.append(f"early stopping: {rec['early_stopping_result']}")
    if detail.get("result_invalid_reason"):
        reasons.append(" ".join(str(detail["result_invalid_reason"]).split()))
    reasons += [r for r in summary["recommendations"] if r not in reasons]
    rec["invalid_reasons"] = reasons if not rec["valid"] else []
    for check, ok in summary["checks"].items():  # flat: loadgen_min_duration_met, loadgen_early_stopping_met, ...
        rec[f"loadgen_{re.sub(r'[^a-z0-9]+', '_', check.lower()).strip('_')}_met"] = ok
    rec["loadgen_errors"] = detail["errors"]
    rec["loadgen_warnings"] = detail["warnings"]
    return rec


# -- one run
def run_scenario(runner: Any, scenario: str, log_dir: str | Path, settings: ServingSettings | None = None, *,
                 name: str | None = None, stop: threading.Event | None = None, images: Any = None,
                 **overrides: Any) -> dict[str, Any]:
    """One LoadGen test of ``scenario`` on ``runner``; a flat record of LoadGen's results.

    ``overrides`` replace fields of ``settings`` (quick defaults when None). LoadGen's summary
    and detail logs stay in ``log_dir`` as ``<name>.mlperf_log_summary.txt`` / ``..._detail.txt``.
    ``stop`` (or Ctrl-C) ends the run early: outstanding and later queries are answered without
    running the model, LoadGen finishes its schedule (at most its minimum duration), and the
    record says ``stopped``; Ctrl-C is re-raised afterwards.
    A failure of the runner (an OOM, an error) stops the run the same way and is raised.
    ``images`` (``inputs.samples.ImageSamples``): the library holds these decoded images, not generated inputs.
    """
    s = replace(settings or ServingSettings(), **overrides)
    s.validate(scenario)
    stop = stop or threading.Event()
    log_dir = Path(log_dir)
    log_dir.mkdir(parents=True, exist_ok=True)
    name = name or f"{scenario}-{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:6]}"
    rec = _run_once(runner, scenario, log_dir, s, name, stop, images)
    if scenario == "offline" and s.target_qps is None and _ended_too_soon(rec):
        # LoadGen sizes Offline's one query by the expected QPS, which dlmark estimated from its
        # warm-up: a runner that got faster after it (a tiny model, a machine that became quiet)
        # finished the query before the minimum duration. Once more, sized by the rate just
        # measured; the record keeps the first estimate. A user's own --target-qps is not retried.
        first_qps = rec["target_qps"]
        rec = _run_once(runner, scenario, log_dir, replace(s, target_qps=OFFLINE_QPS_MARGIN * rec["samples_per_s"]),
                        name, stop, images)
        rec["offline_expected_qps_estimated"] = first_qps
        rec["offline_reran_for_min_duration"] = True
    return rec


@contextlib.contextmanager
def _gil_switch_interval(ms: float | None):
    """Python's GIL switch interval set to ``ms`` inside (None: left as it is), given back however
    the block ends: it is the whole process's; yields the interval in force."""
    saved = sys.getswitchinterval()
    if ms is not None:
        sys.setswitchinterval(ms / 1000.0)
    try:
        yield sys.getswitchinterval()
    finally:
        sys.setswitchinterval(saved)


@contextlib.contextmanager
def _collector_watched(freeze: bool):
    """Python's cyclic garbage collector during a LoadGen test: with ``freeze``, the objects alive
    at the start are moved out of its reach for the test (and given back after); either way it
    yields a dict that is filled, when the block ends, with what the collector did meanwhile: a
    collection holds the GIL, so its pause is every Python thread's, the batcher's included."""
    started: list[float] = []
    pauses: list[list[float]] = [[], [], []]

    def watch(phase: str, info: dict[str, Any]) -> None:
        # A collection starts and stops in one thread holding the GIL: one start at a time.
        if phase == "start":
            started.append(time.perf_counter())
        elif started:
            pauses[info["generation"]].append(time.perf_counter() - started.pop())

    facts: dict[str, Any] = {"gc_frozen": freeze, "gc_tracked_objects": len(gc.get_objects())}
    if freeze:
        # No collection first: over a compiled model's heap it takes a tenth of a second or more,
        # and a Ctrl-C that lands in one of its callbacks is lost ("Exception ignored"). What
        # garbage is frozen with the rest is collected after the test, once it is given back.
        gc.freeze()
    gc.callbacks.append(watch)
    try:
        yield facts
    finally:
        gc.callbacks.remove(watch)
        if freeze:
            gc.unfreeze()
        every = [p for generation in pauses for p in generation]
        facts["gc_collections"] = [len(generation) for generation in pauses]
        facts["gc_pause_ms_total"] = 1e3 * sum(every)
        facts["gc_pause_ms_max"] = 1e3 * max(every, default=0.0)


def _ended_too_soon(rec: dict[str, Any]) -> bool:
    """An Offline run INVALID only because its query ended before the minimum duration."""
    return (not rec["valid"] and not rec["stopped"] and rec.get("loadgen_min_duration_met") is False
            and rec.get("loadgen_min_queries_met") is not False and bool(rec.get("samples_per_s"))
            and rec.get("loadgen_performance_constraints_met") is not False)


def _run_once(runner: Any, scenario: str, log_dir: Path, s: ServingSettings, name: str, stop: threading.Event,
              images: Any) -> dict[str, Any]:
    lg = _lg()
    probe = lg.TestSettings()
    if s.mlperf_rules:
        probe.FromConfig("mlperf.conf", s.mlperf_model, _LG_SCENARIO[scenario], 0)
        # MultiStream's query size is MLPerf's (8): the batch must be the query.
        s = replace(s, samples_per_query=probe.multi_stream_samples_per_query)
    sample_count = max(s.sample_count, probe.performance_sample_count_override or 0)
    if scenario == "multi-stream":
        sample_count = max(sample_count, s.samples_per_query)
    library = SampleLibrary(runner, sample_count, seed=s.seed, images=images)
    library.load(list(range(sample_count)))  # for the warm-up; LoadGen's own load call follows
    estimate = _estimate(runner, library, scenario, s)
    ts, fields = _test_settings(lg, scenario, s, estimate)

    log_settings = lg.LogSettings()
    log_settings.log_output.outdir = str(log_dir)
    log_settings.log_output.prefix = f"{name}.mlperf_log_"
    log_settings.log_output.copy_summary_to_stdout = False
    log_settings.enable_trace = False

    sut = _SystemUnderTest(lg, runner, library, scenario, s, stop)
    handles: list[Callable[[], None]] = []  # LoadGen's, destroyed after the batcher has stopped
    try:
        sut_handle = lg.ConstructFastSUT(sut.issue_queries, sut.flush_queries)
        handles.append(lambda: lg.DestroyFastSUT(sut_handle))
        qsl_handle = lg.ConstructQSL(sample_count, sample_count, library.load, library.unload)
        handles.append(lambda: lg.DestroyQSL(qsl_handle))
        failure: list[BaseException] = []
        done = threading.Event()

        def test() -> None:
            try:
                lg.StartTestWithLogSettings(sut_handle, qsl_handle, ts, log_settings)
            except BaseException as exc:  # noqa: BLE001 -- handed to the caller's thread
                failure.append(exc)
            finally:
                done.set()

        # LoadGen runs in its own thread so that this one stays able to take Ctrl-C
        # (a signal reaches Python only between bytecodes of the main thread). Waited for
        # on an Event: a Thread.join interrupted by Ctrl-C can later return while the
        # thread still runs (CPython < 3.13), and LoadGen must have returned before
        # its SUT and QSL are destroyed.
        thread = threading.Thread(target=test, name="dlmark-loadgen", daemon=True)
        interrupted = False
        with _gil_switch_interval(s.switch_interval_ms) as switch_interval_s, \
                _collector_watched(freeze=s.gc_freeze) as collector:
            t0 = time.perf_counter()
            thread.start()
            while True:
                try:
                    while not done.wait(timeout=0.1):
                        pass
                    break
                except KeyboardInterrupt:
                    interrupted = True
                    stop.set()  # the SUT answers everything now; LoadGen ends on its own
            duration = time.perf_counter() - t0
            thread.join()
    finally:
        # However the block ended (a Ctrl-C before LoadGen started included): no worker outlives it.
        try:
            sut.batcher.close()
        finally:
            for destroy in reversed(handles):
                destroy()
    if failure:
        raise failure[0]
    if sut.errors:
        raise sut.errors[0]
    summary_path = log_dir / f"{name}.mlperf_log_summary.txt"
    detail_path = log_dir / f"{name}.mlperf_log_detail.txt"
    for extra in ("accuracy.json", "trace.json"):  # empty in a performance run
        (log_dir / f"{name}.mlperf_log_{extra}").unlink(missing_ok=True)
    detail = parse_detail_log(detail_path)
    rec: dict[str, Any] = {"scenario": scenario, **fields, **library.describe()}
    rec.update(_record_from_logs(scenario, detail, parse_summary_log(summary_path)))
    # A bound other than MLPerf's own for the model is the user's, not MLPerf's rule.
    own_bound = scenario != "server" or s.latency_bound_ms is None or (
        abs(s.latency_bound_ms * 1e6 - probe.server_target_latency_ns) < 1)
    rec["mlperf_compliant"] = bool(s.mlperf_rules and own_bound and rec["valid"] and not rec["loadgen_errors"])
    if scenario == "offline":
        rec["batch_size"] = s.batch_size
    if scenario in ("offline", "server"):
        rec["batches_in_flight"] = s.batches_in_flight
        rec["stacks_only_full_batches"] = sut.stacks_only_full
        rec["own_streams"] = sut.own_streams
    if scenario == "server":
        rec["max_batch"] = s.max_batch
        rec["max_queue_delay_ms"] = s.max_queue_delay_ms
    rec.update({f"batcher_{k}": v for k, v in sut.batcher.stats().items()})
    rec["pad_batches"] = bool(sut.pad_sizes)
    rec["gil_switch_interval_s"] = switch_interval_s
    rec.update(collector)
    if scenario == "server" and sut.pad_sizes:
        rec["pad_sizes"] = sut.pad_sizes
    rec["batcher_padded_samples"] = sut.padded_samples
    rec["stopped"] = stop.is_set()
    if rec["stopped"]:
        rec["valid"] = False
        rec["mlperf_compliant"] = False
        rec["invalid_reasons"] = ["stopped before the end: queries after the stop were answered without running"] \
            + rec["invalid_reasons"]
    rec["duration_s"] = duration
    rec["log_summary"] = str(summary_path)
    rec["log_detail"] = str(detail_path)
    if interrupted:
        raise KeyboardInterrupt
    return rec


# -- the largest load under a bound
def search_server_qps(run_at: Callable[[float], dict[str, Any]], start_qps: float, latency_bound_ms: float, *,
                      resolution: float = 0.05, growth: float = 2.0, max_steps: int = 12,
                      max_down_steps: int = 3) -> dict[str, Any]:
    """The largest target QPS whose run is VALID with p99 within ``latency_bound_ms``.

    ``run_at(qps)`` runs one Server test at that target and returns its record (``valid``,
    ``latency_ms_p99``, ``qps_completed``). The target grows by ``growth`` until a run fails,
    then is bisected until the bracket is narrower than ``resolution`` (relative) or
    ``max_steps`` runs were made. If the first run already fails, the target shrinks by
    ``growth`` until one passes. Always terminates.
    """
    if not start_qps > 0 or not latency_bound_ms > 0:
        raise UserError("the QPS search needs a positive start QPS and latency bound")
    if not 0 < resolution < 1 or not growth > 1 or max_steps < 1:
        raise ValueError("resolution must be in (0, 1), growth > 1, max_steps >= 1")
    t0 = time.perf_counter()
    steps: list[dict[str, Any]] = []
    good: float | None = None  # largest passing target
    bad: float | None = None  # smallest failing target

    def probe(qps: float) -> bool:
        rec = run_at(qps)
        p99 = rec.get("latency_ms_p99")
        ok = bool(rec.get("valid")) and p99 is not None and p99 <= latency_bound_ms
        steps.append({"target_qps": qps, "qps_completed": rec.get("qps_completed"), "latency_ms_p99": p99,
                      "valid": bool(rec.get("valid")), "meets_bound": ok,
                      "invalid_reasons": rec.get("invalid_reasons", []), "record": rec})
        return ok

    qps = start_qps
    while len(steps) < max_steps:
        if good is not None and bad is not None:
            if bad / good - 1 <= resolution:
                break
            qps = math.sqrt(good * bad)  # bisection on a log scale: the bracket spans a ratio
        if probe(qps):
            good = qps
            if bad is None:
                qps = qps * growth
        else:
            bad = qps
            if good is None:
                # Down only a few steps: a load far below the start failing too means the bound is
                # out of reach (each low-load run also takes long: LoadGen's query count).
                if sum(not step["meets_bound"] for step in steps) > max_down_steps:
                    break
                qps = qps / growth
    converged = good is not None and bad is not None and bad / good - 1 <= resolution
    return {
        "largest_valid_qps": good,
        "latency_bound_ms": latency_bound_ms,
        "last_valid_qps": good,
        "first_invalid_qps": bad,
        "converged": converged,
        "resolution": resolution,
        "search_steps": len(steps),
        "search_s": time.perf_counter() - t0,
        "steps": steps,
    }



def estimate_capacity(runner: Any, settings: ServingSettings | None = None, images: Any = None) -> dict[str, float]:
    """Batch-1 latency (ms) and the Server batcher's capacity (samples/s at ``max_batch``), from the
    same warm-up passes a Server run sizes itself with: where a QPS search starts, and the floor
    below which no latency bound can be met."""
    s = settings or ServingSettings()
    library = SampleLibrary(runner, max(s.sample_count, s.max_batch), seed=s.seed, images=images)
    library.load(list(range(library.count)))
    server = _estimate(runner, library, "server", s)  # 0.5 x capacity, see _estimate
    single = _estimate(runner, library, "single-stream", s)
    return {"capacity_qps": 2 * server["server_qps"], "batch1_ms": 2 * single["single-stream_ms"]}
