"""dlmark's throughput agrees with an independent torch.utils.benchmark measurement."""
import statistics

import torch
from torch.utils import benchmark as tb

from dlmark.backends import RunConfig
from dlmark.backends.pytorch import load
from dlmark.tasks.throughput import measure_throughput


def test_cpu_throughput_within_5_percent_of_torch_timer():
    # One thread: on a small shared machine a 2-thread pass stalls whenever either
    # core is taken, which adds noise to both measurements without testing either.
    runner = load("SqueezeNet-1.1", RunConfig(device="cpu", threads=1))
    batch = 2
    x = runner.make_inputs(batch)
    timer = tb.Timer(stmt="run(x)", globals={"run": runner.run, "x": x}, num_threads=1)
    ours, theirs = [], []
    # Many short alternating rounds, so that load changes on a shared machine hit both alike.
    for _ in range(7):
        ours.append(measure_throughput(runner, batch, {"min_run_s": 0.5, "min_blocks": 5})["throughput"])
        theirs.append(batch / timer.blocked_autorange(min_run_time=0.5).median)
    ratio = statistics.median(ours) / statistics.median(theirs)
    assert abs(ratio - 1) < 0.05, f"dlmark {ours} vs torch.utils.benchmark {theirs}"
