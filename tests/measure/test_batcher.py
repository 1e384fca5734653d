import threading
import time

import pytest

from dlmark.measure.batcher import Batch, DynamicBatcher


def same(indices) -> tuple[list[int], list[int]]:
    """Requests whose response ids are their sample indices: submit(*same(range(4)))."""
    return list(indices), list(indices)


class Recorder:
    """A run_batch that sleeps ``service_s`` and records what it was given and when."""

    def __init__(self, service_s: float = 0.0):
        self.service_s = service_s
        self.lock = threading.Lock()
        self.batches: list[tuple[float, Batch]] = []
        self.running = 0
        self.most_running = 0

    def __call__(self, batch):
        with self.lock:
            self.running += 1
            self.most_running = max(self.most_running, self.running)
            self.batches.append((time.perf_counter(), batch))
        time.sleep(self.service_s)
        with self.lock:
            self.running -= 1


def test_full_batch_goes_at_once_without_waiting_for_the_delay():
    rec = Recorder()
    batcher = DynamicBatcher(rec, max_batch=4, max_queue_delay_ms=5000)
    start = time.perf_counter()
    batcher.submit([100 + i for i in range(4)], list(range(4)))
    while not rec.batches and time.perf_counter() - start < 2:
        time.sleep(0.001)
    assert rec.batches and rec.batches[0][0] - start < 0.5  # far below the 5 s delay
    assert rec.batches[0][1].indices == [0, 1, 2, 3] and rec.batches[0][1].ids == [100, 101, 102, 103]
    batcher.close()


def test_partial_batch_waits_for_the_delay():
    rec = Recorder()
    batcher = DynamicBatcher(rec, max_batch=8, max_queue_delay_ms=80)
    start = time.perf_counter()
    batcher.submit(*same([0, 1]))
    time.sleep(0.03)
    assert not rec.batches  # 30 ms < 80 ms: still waiting for more
    while not rec.batches and time.perf_counter() - start < 2:
        time.sleep(0.001)
    waited = rec.batches[0][0] - start
    assert 0.075 <= waited < 0.3
    assert len(rec.batches[0][1]) == 2
    stats = batcher.stats()
    assert stats["batches_run"] == 1 and stats["queue_delay_ms_mean"] >= 75
    batcher.close()


def test_flush_sends_waiting_requests_now():
    rec = Recorder()
    batcher = DynamicBatcher(rec, max_batch=8, max_queue_delay_ms=10_000)
    batcher.submit(*same([0]))
    batcher.flush()
    batcher.close()  # close runs the rest anyway; flush must have sent it before
    assert len(rec.batches) == 1


def test_close_runs_what_is_queued_and_stops_the_workers():
    rec = Recorder()
    batcher = DynamicBatcher(rec, max_batch=3, max_queue_delay_ms=10_000, batches_in_flight=2)
    batcher.submit(*same(range(7)))
    batcher.close()
    assert sorted(i for _, b in rec.batches for i in b.indices) == list(range(7))
    assert not any(w.is_alive() for w in batcher._workers)
    with pytest.raises(RuntimeError):
        batcher.submit(*same([99]))


@pytest.mark.parametrize("in_flight", [1, 3])
def test_many_threads_no_request_lost_or_answered_twice_never_larger_than_max(in_flight):
    rec = Recorder(service_s=0.0005)
    batcher = DynamicBatcher(rec, max_batch=5, max_queue_delay_ms=1.0, batches_in_flight=in_flight)
    per_thread, threads = 400, 6

    def produce(t):
        for i in range(per_thread):
            batcher.submit(*same([t * per_thread + i]))
            if i % 50 == 0:
                time.sleep(0.001)

    producers = [threading.Thread(target=produce, args=(t,)) for t in range(threads)]
    for p in producers:
        p.start()
    for p in producers:
        p.join()
    batcher.close()
    ids = [i for _, b in rec.batches for i in b.ids]
    assert len(ids) == per_thread * threads
    assert len(set(ids)) == len(ids)
    sizes = [len(b) for _, b in rec.batches]
    assert max(sizes) <= 5 and min(sizes) >= 1
    assert any(s == 5 for s in sizes)  # under this load full batches do form
    assert rec.most_running <= in_flight
    stats = batcher.stats()
    assert stats["samples_batched"] == len(ids) and stats["batch_size_max"] <= 5
    if in_flight > 1:
        assert rec.most_running > 1


def test_an_error_in_run_batch_is_raised_by_close_and_work_goes_on():
    seen = []

    def run(batch):
        seen.extend(batch.indices)
        if batch.indices[0] == 0:
            raise ValueError("boom")

    batcher = DynamicBatcher(run, max_batch=1, max_queue_delay_ms=0)
    batcher.submit(*same([0, 1]))
    with pytest.raises(ValueError, match="boom"):
        batcher.close()
    assert seen == [0, 1]


def test_a_huge_submission_is_queued_in_bulk_and_sliced_by_the_workers():
    # Offline's one query holds every sample of the run (420,000 on an H200): queueing it entry
    # by entry took about 2 s before the first batch could start.
    release = threading.Event()
    seen = []

    def run(batch):
        seen.append(batch.indices)
        release.wait()

    n = 1_000_000
    batcher = DynamicBatcher(run, max_batch=4, max_queue_delay_ms=0, batches_in_flight=2)
    began = time.perf_counter()
    batcher.submit(list(range(n, 2 * n)), list(range(n)))
    while not seen and time.perf_counter() - began < 5:
        time.sleep(0.001)
    assert seen[:1] == [[0, 1, 2, 3]]
    assert time.perf_counter() - began < 0.5  # a few list copies, not a million entries
    release.set()
    batcher.close()
    order = [i for batch in seen for i in batch]
    assert sorted(order) == list(range(n)) and all(len(b) == 4 for b in seen)
    stats = batcher.stats()
    assert stats["samples_batched"] == n and stats["queue_delay_ms_max"] >= stats["queue_delay_ms_p50"]


def test_ids_and_indices_must_pair_up():
    batcher = DynamicBatcher(lambda batch: None, max_batch=4, max_queue_delay_ms=0)
    with pytest.raises(ValueError, match="3 response ids for 2 sample indices"):
        batcher.submit([1, 2, 3], [0, 1])
    batcher.close()


def test_the_queue_is_compacted_once_much_of_it_was_taken():
    # Taken requests are dropped from the flat lists now and then; the order and every id survive it.
    release = threading.Event()
    seen: list[int] = []
    heads: list[int] = []

    def run(batch):
        release.wait()
        seen.extend(batch.ids)
        if batcher._waiting:  # not the last batch, after which the lists start afresh anyway
            heads.append(batcher._head)

    batcher = DynamicBatcher(run, max_batch=1000, max_queue_delay_ms=0)
    total = 200_000
    for first in range(0, total, 5000):
        batcher.submit(list(range(first, first + 5000)), [0] * 5000)
    release.set()
    batcher.close()
    assert seen == list(range(total))
    assert any(later < earlier for earlier, later in zip(heads, heads[1:]))  # dropped mid-run
    assert batcher._waiting == 0


def test_batches_span_submissions_in_order():
    rec = Recorder()
    batcher = DynamicBatcher(rec, max_batch=4, max_queue_delay_ms=10_000)
    for first in (0, 3, 6):
        batcher.submit(*same(range(first, first + 3)))
    batcher.close()
    assert [b.indices for _, b in rec.batches] == [[0, 1, 2, 3], [4, 5, 6, 7], [8]]


def test_with_stack_only_full_a_second_batch_in_flight_goes_only_when_full():
    rec = Recorder(service_s=0.2)
    batcher = DynamicBatcher(rec, max_batch=4, max_queue_delay_ms=1, batches_in_flight=2, stack_only_full=True)
    start = time.perf_counter()
    batcher.submit(*same([0, 1]))  # partial: goes after the delay, nothing runs
    time.sleep(0.05)
    batcher.submit(*same([2, 3]))  # partial while one runs: waits for its answer
    time.sleep(0.05)
    assert len(rec.batches) == 1
    batcher.submit(*same(range(4, 12)))  # now full batches wait: one goes beside it
    time.sleep(0.05)
    assert len(rec.batches) == 2 and rec.batches[1][1].indices == [2, 3, 4, 5]
    assert rec.most_running == 2
    batcher.close()
    taken = [b.indices for _, b in rec.batches]
    assert taken == [[0, 1], [2, 3, 4, 5], [6, 7, 8, 9], [10, 11]]
    assert rec.batches[1][0] - start < 0.2  # the full batch did not wait for the first to end


def test_without_stack_only_full_a_partial_batch_goes_beside_a_running_one():
    rec = Recorder(service_s=0.2)
    batcher = DynamicBatcher(rec, max_batch=4, max_queue_delay_ms=1, batches_in_flight=2)
    batcher.submit(*same([0, 1]))
    time.sleep(0.05)
    batcher.submit(*same([2]))
    time.sleep(0.05)
    assert [b.indices for _, b in rec.batches] == [[0, 1], [2]]
    batcher.close()



def test_a_batchs_outputs_are_let_go_before_the_next_batch_is_launched():
    # A CUDA graph replays into the memory of its last outputs: one still held by the worker when
    # the next batch launches makes torch.compile's reduce-overhead record a fresh graph instead.
    import gc
    import weakref

    class Outputs:
        pass

    held: list[weakref.ref] = []
    alive_at_launch: list[bool] = []

    def run_batch(batch):
        alive_at_launch.append(any(ref() is not None for ref in held))
        out = Outputs()
        held.append(weakref.ref(out))
        return lambda: out  # waits for (here: holds) the outputs, as the system under test's does

    gc.disable()  # only reference counting frees them, as it does a tensor
    try:
        batcher = DynamicBatcher(run_batch, max_batch=1, max_queue_delay_ms=0)
        for i in range(4):
            batcher.submit(*same([i]))
            time.sleep(0.02)
        batcher.close()
    finally:
        gc.enable()
    assert alive_at_launch == [False] * 4
