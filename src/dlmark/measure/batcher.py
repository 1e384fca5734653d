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

A submission is two parallel sequences, LoadGen's response ids and sample
indices (its "fast" issue callback hands them over as lists of ints), appended to
flat lists in bulk: a batch is a slice of each. Per-request Python objects cost
the issue thread and the worker microseconds each, that is tenths of a
millisecond per batch of 128 on the critical path of one batch in flight
(BENCHMARKS.md, h200-serving-19); Offline's one query of every sample of the
run (420,000 on an H200) is queued by a few list copies, not entry by entry
(which took about 2 s: results/h200-offline-timeline-1).

``run_batch`` must answer (complete) its requests even when it fails: LoadGen
waits for every response it issued. An exception it lets through is kept and
re-raised by ``close``.
"""
from __future__ import annotations

import threading
import time
from typing import Callable, Sequence

import numpy as np


class Batch:
    """The requests one worker took: LoadGen's response ids and the samples' indices, in order."""

    __slots__ = ("ids", "indices")

    def __init__(self, ids: list[int], indices: list[int]):
        self.ids = ids
        self.indices = indices

    def __len__(self) -> int:
        return len(self.ids)


class DynamicBatcher:
    def __init__(self, run_batch: Callable[[Batch], None], max_batch: int,
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
        # The queue: requests [_head:] of these three are waiting, oldest first.
        self._ids: list[int] = []
        self._indices: list[int] = []
        self._enqueued: list[float] = []
        self._head = 0
        self._taken = 0  # requests taken since the start: the next request's sequence number
        self._flush_below = 0  # requests with a smaller sequence number go now, without the delay
        self._closing = False
        self._errors: list[BaseException] = []
        self._batch_sizes: list[int] = []
        self._taken_at: list[tuple[float, list[float]]] = []  # (when a batch was taken, its enqueue times)
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
    def submit(self, ids: Sequence[int], indices: Sequence[int]) -> None:
        """Queue requests: LoadGen's response ids and the samples' indices, one of each per request."""
        if len(ids) != len(indices):
            raise ValueError(f"{len(ids)} response ids for {len(indices)} sample indices")
        now = self.clock()
        with self._cond:
            if self._closing:
                raise RuntimeError("submit after close")
            if not ids:
                return
            self._ids.extend(ids)
            self._indices.extend(indices)
            self._enqueued.extend([now] * len(ids))
            self._cond.notify_all()

    def flush(self) -> None:
        """Send what is waiting now without waiting for the delay (LoadGen's flush_queries)."""
        with self._cond:
            self._flush_below = self._taken + self._waiting
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
    @property
    def _waiting(self) -> int:
        """Requests queued and not yet taken."""
        return len(self._ids) - self._head

    def _ready(self, now: float) -> bool:
        if self._waiting >= self.max_batch or self._closing:
            return True
        if self.stack_only_full and self._running:
            return False  # taken when the running batch is answered, or once full
        return now - self._enqueued[self._head] >= self.delay_s or self._taken < self._flush_below

    def _pop(self, n: int, now: float) -> Batch:
        """The ``n`` oldest requests, off the queue."""
        head, end = self._head, self._head + n
        batch = Batch(self._ids[head:end], self._indices[head:end])
        self._taken_at.append((now, self._enqueued[head:end]))
        self._head = end
        self._taken += n
        if end == len(self._ids):
            self._ids, self._indices, self._enqueued, self._head = [], [], [], 0
        elif end > 65536 and 2 * end > len(self._ids):
            # Taken requests are dropped now and then, not at each batch (a copy of what waits).
            del self._ids[:end], self._indices[:end], self._enqueued[:end]
            self._head = 0
        return batch

    def _take(self) -> Batch | None:
        """The next batch, or None once closed and empty."""
        with self._cond:
            while True:
                if not self._waiting:
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
                    if self._waiting:
                        self._cond.notify_all()  # another idle worker may form the next batch
                    return batch
                left = self._enqueued[self._head] + self.delay_s - now
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
            taken = list(self._taken_at)
        delays_ms = (np.concatenate([now - np.asarray(enqueued) for now, enqueued in taken]) * 1000.0
                     if taken else np.zeros(0))
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

