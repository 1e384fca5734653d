"""A dynamic batcher for LoadGen's scenarios.

Requests (one sample each: a sample index and LoadGen's response id) wait in a
queue until ``max_batch`` of them are waiting or the oldest has waited
``max_queue_delay_ms``; then one worker takes them (never more than
``max_batch``) and hands them to ``run_batch`` as one batch. ``batches_in_flight``
workers run batches at once, as a server's model instances do: while one runs,
another forms the next batch. Each request is taken by exactly one worker,
once.

With ``stack_only_full``, a batch beyond the first in flight is taken only when
full, or, at least half full, when the batches ahead of it are due to end within
the time a batch takes to reach the device: a GPU runs the batches of one stream
one after another, so a partial batch taken early only waits behind the first,
padded to full cost. Both times are learnt from the batches run: ``run_batch``
may return a callable that waits for the batch and answers it, and the batcher
times the two parts (an exponential average of each). Measured on an H200, this
did not beat one batch in flight for Server (BENCHMARKS.md, h200-serving-13).

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
        # Learnt under stack_only_full: host time from taking a batch to its launch returning, and
        # device time from a launch (or the batch before it ending) to the batch's end.
        self._lead_s: float | None = None
        self._service_s: float | None = None
        self._due: float | None = None  # when the last launched batch is due to end
        self._last_end = float("-inf")
        self._unlaunched = 0  # batches taken whose launch has not returned
        self._taken_ahead = 0  # batches taken before the ones ahead had ended, not being full
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
            ahead = self._ahead_from()
            # Ahead only at least half full: on an H200 at low load, batches of 15 taken ahead kept
            # the GPU busy with padded batches, each request waiting behind one, and no load from
            # 3,100 QPS up met 15 ms (results/h200-serving-12).
            if ahead is None or now < ahead or 2 * self._waiting < self.max_batch:
                return False  # taken when the running batches are answered, once full, or ahead
            now += self._lead_s  # the delay is judged when the batch would reach the device
        oldest = self._queue[0]
        return now - oldest.enqueued >= self.delay_s or oldest.seq + oldest.taken < self._flush_below

    def _ahead_from(self) -> float | None:
        """From when a batch may be taken beside running ones: their due end less the lead."""
        if self._unlaunched or self._due is None or self._lead_s is None:
            return None
        return self._due - self._lead_s

    def _wake_at(self) -> float | None:
        """When a waiting worker should look again without being notified."""
        oldest = self._queue[0].enqueued + self.delay_s
        if self.stack_only_full and self._running:
            ahead = self._ahead_from()
            return None if ahead is None else max(ahead, oldest - self._lead_s)
        return oldest

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
                    if self._running and n < self.max_batch:
                        self._taken_ahead += 1
                    batch = self._pop(n, now)
                    self._batch_sizes.append(n)
                    self._running += 1
                    self._unlaunched += 1
                    if self._queue:
                        self._cond.notify_all()  # another idle worker may form the next batch
                    return batch
                wake = self._wake_at()
                # None: a batch is running (stack_only_full) and its launch or answer wakes this worker.
                left = None if wake is None else wake - now
                self._cond.wait(timeout=left if left is None or left > 0 else None)

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
            taken = self.clock()
            launched = None
            try:
                finish = self.run_batch(batch)
                launched = self._launched(taken)
                if callable(finish):
                    finish()
            except BaseException as exc:  # noqa: BLE001 -- kept for close(); the worker goes on
                with self._cond:
                    self._errors.append(exc)
            finally:
                with self._cond:
                    if launched is None:
                        self._unlaunched -= 1
                    else:
                        self._learn_service(launched, self.clock())
                    self._running -= 1
                    self._cond.notify_all()

    def _launched(self, taken: float) -> float:
        """Mark a batch's launch as returned; the time it did."""
        now = self.clock()
        with self._cond:
            self._unlaunched -= 1
            self._lead_s = _average(self._lead_s, now - taken)
            if self._service_s is not None:
                self._due = max(now, self._due if self._due is not None else now) + self._service_s
            self._cond.notify_all()  # a worker waiting to take ahead now knows when
        return now

    def _learn_service(self, launched: float, ended: float) -> None:
        # The device ran this batch from its launch, or from the end of the one before if later.
        self._service_s = _average(self._service_s, ended - max(launched, self._last_end))
        self._last_end = max(self._last_end, ended)
        if not self._running - 1:
            self._due = None  # nothing left running: the next launch starts a fresh estimate

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
            "batches_taken_ahead": self._taken_ahead,
            "lead_ms": None if self._lead_s is None else self._lead_s * 1000.0,
            "service_ms": None if self._service_s is None else self._service_s * 1000.0,
            "queue_delay_ms_mean": float(delays_ms.mean()) if delays_ms.size else None,
            "queue_delay_ms_p50": float(np.percentile(delays_ms, 50)) if delays_ms.size else None,
            "queue_delay_ms_p99": float(np.percentile(delays_ms, 99)) if delays_ms.size else None,
            "queue_delay_ms_max": float(delays_ms.max()) if delays_ms.size else None,
        }


def _average(mean: float | None, value: float, weight: float = 0.2) -> float:
    """An exponential moving average: recent batches count most, as load and clocks drift."""
    return value if mean is None else mean + weight * (value - mean)
