"""A dynamic batcher for LoadGen's scenarios.

Requests (one sample each: a sample index and LoadGen's response id) wait in a
queue until ``max_batch`` of them are waiting or the oldest has waited
``max_queue_delay_ms``; then one worker takes them (never more than
``max_batch``) and hands them to ``run_batch`` as one batch. ``batches_in_flight``
workers run batches at once, as a server's model instances do: while one runs,
another forms the next batch. Each request is taken by exactly one worker,
once.

With ``stack_only_full``, a batch beyond the first in flight is taken only when
full: a GPU runs the batches of one stream one after another, so a second,
partial batch only waits behind the first, padded to full cost, while the
requests that arrive meanwhile would have made the next batch fuller. (Taking a
partial batch just ahead of the running one's end, from learnt launch and
device times, was tried and measured worse on an H200: BENCHMARKS.md,
h200-serving-12 and -13.)

``run_batch`` may return a callable that waits for the batch and answers it
(the launch and the wait apart, as on a GPU); the worker calls it, then lets
go of it before taking the next batch, so that no batch's outputs outlive its
answer (a CUDA graph's replay may reuse their memory).

A submission is queued whole, as the caller's sequence (not copied, not looked
into): workers slice batches off it. Offline's one query holds every sample of
the run (420,000 on an H200); turning each into a queue entry under the lock
took about 2 s in which no batch could start (results/h200-offline-timeline-1).

``run_batch`` must answer (complete) its requests even when it fails: LoadGen
waits for every response it issued. An exception it lets through is kept and
re-raised by ``close``.
"""
from __future__ import annotations

import collections
import threading
import time
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np


@dataclass(frozen=True)
class Request:
    """What a worker reads of a request; LoadGen's own ``QuerySample`` has the same two fields."""

    index: int  # the sample's index in the sample library
    id: int  # LoadGen's id for its response


@dataclass
class _Arrival:
    """One submission in the queue, with how many of its requests workers have taken."""

    seq: int  # the sequence number of requests[0]
    enqueued: float
    requests: Sequence[Request]
    taken: int = 0


class DynamicBatcher:
    def __init__(self, run_batch: Callable[[list[Request]], None], max_batch: int,
                 max_queue_delay_ms: float, batches_in_flight: int = 1, clock: Callable[[], float] = time.perf_counter,
                 warm_up: Callable[[], None] | None = None, stack_only_full: bool = False):
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, not {max_batch}")
        if max_queue_delay_ms < 0:
            raise ValueError(f"max_queue_delay_ms must be >= 0, not {max_queue_delay_ms}")
        if batches_in_flight < 1:
            raise ValueError(f"batches_in_flight must be >= 1, not {batches_in_flight}")
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.delay_s = max_queue_delay_ms / 1000.0
        self.batches_in_flight = batches_in_flight
        self.clock = clock
        self.stack_only_full = stack_only_full
        self._running = 0  # batches taken and not yet answered
        self._cond = threading.Condition()
        self._queue: collections.deque[_Arrival] = collections.deque()
        self._waiting = 0  # requests queued and not yet taken
        self._seq = 0
        self._flush_below = 0  # requests with a smaller seq go now, without waiting for the delay
        self._closing = False
        self._errors: list[BaseException] = []
        self._batch_sizes: list[int] = []
        self._queue_delays_s: list[tuple[float, int]] = []  # (enqueue -> taken by a worker, requests)
        # Each worker warms up in its own thread before the first request: CUDA libraries keep
        # per-thread handles (cuDNN, cuBLAS), whose first use in a new thread took seconds on an
        # H200, and a stall at a run's start queues every query behind it.
        self._warm_up = warm_up
        self._warmed = threading.Barrier(batches_in_flight + 1)
        self._workers = [threading.Thread(target=self._work, name=f"dlmark-batcher-{i}", daemon=True)
                         for i in range(batches_in_flight)]
        for worker in self._workers:
            worker.start()
        self._warmed.wait()

    # -- producer side (LoadGen's issue thread)
    def submit(self, requests: Sequence[Request]) -> None:
        """Queue ``requests`` (held, not copied: the caller leaves the sequence as it is)."""
        now = self.clock()
        with self._cond:
            if self._closing:
                raise RuntimeError("submit after close")
            if not requests:
                return
            self._queue.append(_Arrival(self._seq, now, requests))
            self._seq += len(requests)
            self._waiting += len(requests)
            self._cond.notify_all()

    def flush(self) -> None:
        """Send what is waiting now without waiting for the delay (LoadGen's flush_queries)."""
        with self._cond:
            self._flush_below = self._seq
            self._cond.notify_all()

    def close(self) -> None:
        """Run what is still queued, stop the workers, re-raise the first error of ``run_batch``."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        for worker in self._workers:
            worker.join()
        if self._errors:
            raise self._errors[0]

    # -- workers
    def _ready(self, now: float) -> bool:
        if self._waiting >= self.max_batch or self._closing:
            return True
        if self.stack_only_full and self._running:
            return False  # taken when the running batch is answered, or once full
        oldest = self._queue[0]
        return now - oldest.enqueued >= self.delay_s or oldest.seq + oldest.taken < self._flush_below

    def _pop(self, n: int, now: float) -> list[Request]:
        """The ``n`` oldest requests, off the queue."""
        batch: list[Request] = []
        while len(batch) < n:
            oldest = self._queue[0]
            k = min(n - len(batch), len(oldest.requests) - oldest.taken)
            batch.extend(oldest.requests[oldest.taken:oldest.taken + k])
            self._queue_delays_s.append((now - oldest.enqueued, k))
            oldest.taken += k
            if oldest.taken == len(oldest.requests):
                self._queue.popleft()
        self._waiting -= n
        return batch

    def _take(self) -> list[Request] | None:
        """The next batch, or None once closed and empty."""
        with self._cond:
            while True:
                if not self._queue:
                    if self._closing:
                        return None
                    self._cond.wait()
                    continue
                now = self.clock()
                if self._ready(now):
                    n = min(self.max_batch, self._waiting)
                    batch = self._pop(n, now)
                    self._batch_sizes.append(n)
                    self._running += 1
                    if self._queue:
                        self._cond.notify_all()  # another idle worker may form the next batch
                    return batch
                left = self._queue[0].enqueued + self.delay_s - now
                # Past the delay and still not ready: a batch is running (stack_only_full); its
                # answer wakes this worker.
                self._cond.wait(timeout=left if left > 0 else None)

    def _work(self) -> None:
        try:
            if self._warm_up is not None:
                self._warm_up()
        except BaseException as exc:  # noqa: BLE001 -- kept for close()
            with self._cond:
                self._errors.append(exc)
        finally:
            self._warmed.wait()
        while (batch := self._take()) is not None:
            try:
                finish = self.run_batch(batch)
                if callable(finish):
                    finish()
            except BaseException as exc:  # noqa: BLE001 -- kept for close(); the worker goes on
                with self._cond:
                    self._errors.append(exc)
            finally:
                finish = batch = None  # the batch's outputs go before the next launch
                with self._cond:
                    self._running -= 1
                    self._cond.notify_all()

    # -- counters
    def stats(self) -> dict[str, float | int | None]:
        with self._cond:
            sizes = list(self._batch_sizes)
            delays = np.asarray([d for d, _ in self._queue_delays_s], dtype=float)
            counts = np.asarray([k for _, k in self._queue_delays_s], dtype=int)
        delays_ms = np.repeat(delays, counts) * 1000.0
        return {
            "batches_run": len(sizes),
            "samples_batched": int(sum(sizes)),
            "batch_size_mean": float(np.mean(sizes)) if sizes else None,
            "batch_size_max": max(sizes) if sizes else None,
            "batches_full": sum(1 for s in sizes if s == self.max_batch),
            "queue_delay_ms_mean": float(delays_ms.mean()) if delays_ms.size else None,
            "queue_delay_ms_p50": float(np.percentile(delays_ms, 50)) if delays_ms.size else None,
            "queue_delay_ms_p99": float(np.percentile(delays_ms, 99)) if delays_ms.size else None,
            "queue_delay_ms_max": float(delays_ms.max()) if delays_ms.size else None,
        }

