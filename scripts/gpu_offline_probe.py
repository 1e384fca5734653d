"""Where LoadGen Offline's time goes on a GPU, beside a plain loop (issue 19's Offline gap).

    python scripts/gpu_offline_probe.py [--device cuda:0] [--model ResNet-v1-50] [--batch 256] [--tuned]

Prints img/s for: a plain loop on one input; loops that assemble each batch from the sample
library and wait for it, in the main thread or others, with 0-2 batches launched ahead of the
wait; LoadGen Offline with 1..3 batches in flight; and whether a thread that waits for the GPU
lets other Python threads run.
"""
from __future__ import annotations

import argparse
import tempfile
import threading
import time

import torch

from dlmark.backends import RunConfig
from dlmark.backends.pytorch import load
from dlmark.measure.loadgen import SampleLibrary, run_scenario, wait_for

TUNED = {"precision": "fp16", "layout": "channels_last", "compile_mode": "default"}


def rate(runner, make_batch, batch: int, *, threads: int = 1, ahead: int = 0, in_main: bool = True,
         batches: int = 200) -> float:
    """img/s of ``batches`` batches per thread, each waited for; ``ahead`` more launched before a wait.

    Each thread first runs three batches untimed: CUDA's per-thread handles (cuBLAS, cuDNN) cost
    seconds on a thread's first use (results/h200-offline-probe-1 and -2 timed that, not the loop).
    """
    from collections import deque

    threads = 1 if in_main else threads
    ready = threading.Barrier(threads + (0 if in_main else 1))

    def work() -> None:
        for _ in range(3):
            wait_for(runner, runner.run(make_batch()))
        ready.wait()
        pending = deque()
        for _ in range(batches):
            pending.append(runner.run(make_batch()))
            if len(pending) > ahead:
                wait_for(runner, pending.popleft())
        while pending:
            wait_for(runner, pending.popleft())

    if in_main:
        runner.synchronize()
        began = time.perf_counter()  # includes the three warm batches: 200 make them under 2%
        work()
    else:
        pool = [threading.Thread(target=work) for _ in range(threads)]
        for t in pool:
            t.start()
        ready.wait()
        began = time.perf_counter()
        for t in pool:
            t.join()
    runner.synchronize()
    return batch * batches * threads / (time.perf_counter() - began)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--model", default="ResNet-v1-50")
    ap.add_argument("--batch", type=int, default=256)
    ap.add_argument("--tuned", action="store_true")
    ap.add_argument("--batches", type=int, default=200, help="batches per timed loop and thread")
    a = ap.parse_args()
    runner = load(a.model, RunConfig(device=a.device, **(TUNED if a.tuned else {})))
    b = a.batch
    x = runner.make_inputs(b)
    library = SampleLibrary(runner, 128)
    library.load(list(range(128)))
    rows = [i % 128 for i in range(b)]
    for _ in range(3):
        wait_for(runner, runner.run(library.assemble(rows)))
    print(f"config {a.model} b{b} {'tuned' if a.tuned else 'fp32 eager'} on {a.device}, torch {torch.__version__}")
    assembled = lambda: library.assemble(rows)  # noqa: E731
    print(f"plain loop, one input, no wait:      {rate(runner, lambda: x, b, ahead=10**9, batches=a.batches):10.1f} img/s")
    for label, kw in (("main thread, wait each", {}), ("main thread, 1 ahead", {"ahead": 1}),
                      ("main thread, 2 ahead", {"ahead": 2}), ("worker thread, wait each", {"in_main": False}),
                      ("worker thread, 1 ahead", {"in_main": False, "ahead": 1}),
                      ("2 threads, wait each", {"threads": 2, "in_main": False}),
                      ("3 threads, wait each", {"threads": 3, "in_main": False})):
        print(f"assembled, {label:26s} {rate(runner, assembled, b, batches=a.batches, **kw):10.1f}")

    # Phases of one served batch, host side (one thread, after the GPU is idle).
    for name, fn in (("assemble", lambda: library.assemble(rows)),):
        t0 = time.perf_counter()
        for _ in range(20):
            fn()
        print(f"host time of {name}: {(time.perf_counter() - t0) / 20 * 1e3:.3f} ms")
    wait_for(runner, x)
    t0 = time.perf_counter()
    out = runner.run(x)
    t1 = time.perf_counter()
    wait_for(runner, out)
    t2 = time.perf_counter()
    print(f"one batch: run() returns after {(t1 - t0) * 1e3:.2f} ms, its outputs exist after {(t2 - t0) * 1e3:.2f} ms")

    # Does a thread waiting on the GPU let other Python threads run (GIL released)?
    counter = [0]
    halt = threading.Event()

    def count() -> None:
        while not halt.is_set():
            counter[0] += 1

    outs = [runner.run(x) for _ in range(10)]  # ~10 batches queued
    c = threading.Thread(target=count)
    c.start()
    t0 = time.perf_counter()
    before = counter[0]
    wait_for(runner, outs[-1])
    waited = time.perf_counter() - t0
    during = counter[0] - before
    halt.set()
    c.join()
    print(f"a Python counter thread advanced {during} times during a {waited * 1e3:.1f} ms wait_for")
    del outs

    import mlperf_loadgen as lg

    complete = lg.QuerySamplesComplete
    spent = []

    def timed_complete(responses):  # LoadGen's own bookkeeping of a batch's responses, host side
        t0 = time.perf_counter()
        complete(responses)
        spent.append(time.perf_counter() - t0)

    lg.QuerySamplesComplete = timed_complete
    with tempfile.TemporaryDirectory() as logs:
        for n in (1, 2, 3):
            spent.clear()
            rec = run_scenario(runner, "offline", logs, batch_size=b, batches_in_flight=n, pad_batches=True,
                               min_duration_s=3.0)
            stats = {k: rec.get(f"batcher_{k}") for k in ("batches_run", "batch_size_mean")}
            print(f"LoadGen Offline, {n} in flight:       {rec['samples_per_s']:10.1f} (valid {rec['valid']}, {stats}, "
                  f"QuerySamplesComplete {sum(spent) / max(len(spent), 1) * 1e3:.3f} ms per batch)")


if __name__ == "__main__":
    main()
