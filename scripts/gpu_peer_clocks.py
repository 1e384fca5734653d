"""Why the tuned peer reads apart: dlmark's throughput beside two plain loops, with the GPU's clock.

In one process, alternating, for ResNet-v1-50 b256 in the tuned configuration (fp16,
channels_last, compiled): dlmark's `measure_throughput` (blocks of calls); a plain loop run
back to back for about 2 s, doubling its count as tests/backends/test_gpu.py does, timed
by perf_counter; and a loop that synchronises after every batch and times each with CUDA
events (timm's benchmark.py times each step apart the same way). An NVML sampler notes
the SM clock and the power every 20 ms, so each line says what clock its figure ran at.

    python scripts/gpu_peer_clocks.py [--device cuda:0] [--rounds 4] > peer_clocks.log
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
# The peer test's own plain loop, so that this script times exactly the loop the test compares with.
from tests.backends.test_gpu import _plain_loop_img_per_s as continuous  # noqa: E402


def per_batch_events(run, x, batch: int, min_s: float = 1.0) -> float:
    times = []
    while sum(times) < min_s:
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        run(x)
        end.record()
        end.synchronize()
        times.append(start.elapsed_time(end) / 1000.0)
    return batch / statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    from dlmark.backends import RunConfig
    from dlmark.backends.pytorch import load
    from dlmark.measure.power import ClockSampler, handle_for_torch_device
    from dlmark.tasks.throughput import measure_throughput

    runner = load("ResNet-v1-50", RunConfig(device=args.device, precision="fp16", layout="channels_last",
                                           compile_mode="default"))
    batch = 256
    x = runner.make_inputs(batch)
    methods = {
        "dlmark": lambda: measure_throughput(runner, batch, {"min_run_s": 1.0})["throughput"],
        "continuous": lambda: continuous(runner.run, x, batch),
        "per-batch events": lambda: per_batch_events(runner.run, x, batch),
    }
    continuous(runner.run, x, batch)  # compiled and warm before the first round
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name in methods}  # (img/s, mean SM MHz)
    handle = handle_for_torch_device(runner.device)
    for round_ in range(args.rounds):
        names = list(methods) if round_ % 2 == 0 else list(methods)[::-1]
        for name in names:
            with ClockSampler(handle) as clocks:
                began = time.perf_counter()
                figure = methods[name]()
                took = time.perf_counter() - began
            mhz, watts = clocks.mean_sm_clock_mhz or float("nan"), clocks.mean_power_w or float("nan")
            figures[name].append((figure, mhz))
            print(f"round {round_} {name:17s} {figure:10,.1f} img/s  {took:5.2f} s  SM {mhz:,.0f} MHz, {watts:,.0f} W",
                  flush=True)
    rate = {name: statistics.median(f for f, _ in pairs) for name, pairs in figures.items()}
    per_mhz = {name: statistics.median(f / mhz for f, mhz in pairs) for name, pairs in figures.items()}
    for name in figures:
        print(f"{name:17s} median {rate[name]:10,.1f}  dlmark / this {rate['dlmark'] / rate[name]:.4f}  "
              f"per MHz {per_mhz[name]:.3f}  at one clock {per_mhz['dlmark'] / per_mhz[name]:.4f}")


if __name__ == "__main__":
    main()
