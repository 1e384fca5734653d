"""GPU timing against an independent measurement; skipped without CUDA."""
import statistics

import numpy as np

import pytest
import torch

pytestmark = pytest.mark.gpu

# fp32 eager, and the configuration `dlmark tune` found fastest for ResNet-v1-50 on an H200.
CONFIGS = {"fp32-eager": {}, "tuned": {"precision": "fp16", "layout": "channels_last", "compile_mode": "default"}}


def _plain_loop_img_per_s(run, x, batch: int, min_s: float = 1.0) -> float:
    """No dlmark code: synchronise, run the model back to back, synchronise, perf_counter."""
    import time

    iters = 1
    while True:
        torch.cuda.synchronize()
        began = time.perf_counter()
        for _ in range(iters):
            run(x)
        torch.cuda.synchronize()
        elapsed = time.perf_counter() - began
        if elapsed >= min_s:
            return batch * iters / elapsed
        iters *= 2


@pytest.mark.parametrize("config", list(CONFIGS))
def test_cuda_throughput_within_3_percent_of_a_plain_loop(config):
    from torch.utils import benchmark as tb

    from dlmark.backends import RunConfig
    from dlmark.backends.pytorch import load
    from dlmark.measure.power import ClockSampler, handle_for_torch_device
    from dlmark.tasks.throughput import measure_throughput

    runner = load("ResNet-v1-50", RunConfig(device="cuda:0", **CONFIGS[config]))
    batch = 256
    x = runner.make_inputs(batch)
    handle = handle_for_torch_device(runner.device)
    figures: dict[str, list[tuple[float, float | None]]] = {"ours": [], "theirs": []}  # (img/s, mean SM MHz)
    for i in range(4):
        # Alternating which goes first: a GPU that heats (and clocks down) over a pair favours the first.
        for method in ("ours", "theirs") if i % 2 == 0 else ("theirs", "ours"):
            with ClockSampler(handle) as clocks:
                if method == "ours":
                    rate = measure_throughput(runner, batch, {"min_run_s": 1.0})["throughput"]
                else:
                    rate = _plain_loop_img_per_s(runner.run, x, batch)
            figures[method].append((rate, clocks.mean_sm_clock_mhz))
    ours, theirs = ([rate for rate, _ in figures[m]] for m in ("ours", "theirs"))
    ratio = statistics.median(ours) / statistics.median(theirs)
    # At the power cap the plain loop's 2.5 s of back-to-back batches run at a lower SM clock than
    # dlmark's shorter blocks (an H200, tuned: 1,767 against 1,825 MHz, 3.1% apart in img/s as in
    # MHz; results/h200-serving-16). Compared per MHz the two timings are compared at one clock.
    if handle is not None and all(mhz for pairs in figures.values() for _, mhz in pairs):
        per_mhz = {m: statistics.median(rate / mhz for rate, mhz in pairs) for m, pairs in figures.items()}
        at_one_clock = per_mhz["ours"] / per_mhz["theirs"]
    else:
        at_one_clock = ratio  # no NVML: only the plain ratio
    # torch.utils.benchmark beside them, for the record: it read the compiled fp16 model 3-4% below
    # both on an H200 with its default num_threads=1 (BENCHMARKS.md); here with this process's threads.
    timer = tb.Timer(stmt="run(x)", globals={"run": runner.run, "x": x}, num_threads=torch.get_num_threads())
    tb_rate = batch / timer.blocked_autorange(min_run_time=1.0).median
    print(f"{config} b{batch}: dlmark {figures['ours']} plain loop {figures['theirs']} (img/s, SM MHz); "
          f"ratio {ratio:.4f}, at one clock {at_one_clock:.4f}; torch.utils.benchmark {tb_rate:.1f}")
    assert abs(at_one_clock - 1) < 0.03
    # The clocks explain a power cap, not a timing error: unnormalised the two still agree closely.
    assert abs(ratio - 1) < 0.06


def test_peak_allocated_memory_grows_linearly_with_batch():
    from dlmark.backends import RunConfig
    from dlmark.backends.pytorch import load

    runner = load("ResNet-v1-50", RunConfig(device="cuda:0"))
    peaks = {}
    for b in (16, 32, 64, 128, 256):
        x = runner.make_inputs(b)
        runner.run(x)
        peaks[b] = runner.memory(x)["peak_mem_allocated_mb"]
        del x
    # Linear in the least-squares sense: weights are a constant, activations scale with the batch.
    # (Pairwise slopes vary ~30% because cuDNN picks a different workspace per shape.)
    xs, ys = np.array(list(peaks)), np.array(list(peaks.values()))
    slope, intercept = np.polyfit(xs, ys, 1)
    r2 = 1 - ((ys - (slope * xs + intercept)) ** 2).sum() / ((ys - ys.mean()) ** 2).sum()
    assert slope > 0 and r2 > 0.99, peaks


def test_largest_batch_trials_report_the_allocator_peak_and_budget():
    from dlmark.backends import RunConfig
    from dlmark.backends.pytorch import load
    from dlmark.tasks.max_batch_size import probe

    runner = load("ResNet-v1-18", RunConfig(device="cuda:0"))
    small, large = probe(runner, 64), probe(runner, 512)
    free, total = torch.cuda.mem_get_info()
    for trial in (small, large):
        assert 0 < trial["allocated_bytes"] <= trial["peak_bytes"] <= trial["budget_bytes"] <= total
    # 448 more images of ResNet-18 activations (megabytes each) raise the peak by far more than rounding.
    assert large["peak_bytes"] - small["peak_bytes"] > 100 * 2**20


def test_a_largest_batch_trial_stops_past_the_memory_peak_at_the_same_peak():
    from dlmark.backends import RunConfig
    from dlmark.backends.pytorch import load
    from dlmark.tasks.max_batch_size import probe, profile

    runner = load("ResNet-v1-50", RunConfig(device="cuda:0"))
    where = profile(runner)
    assert where["exit_call"] is not None and where["exit_call"] < where["leaf_calls"] - 1, where
    probe(runner, 1024), probe(runner, 1024, stop_after_call=where["exit_call"])  # first passes: cuDNN set-up
    whole = probe(runner, 1024)
    stopped = probe(runner, 1024, stop_after_call=where["exit_call"])
    assert stopped["partial"] and not whole["partial"]
    assert stopped["seconds"] < 0.8 * whole["seconds"], (stopped, whole)
    # The peak is behind the stop: both passes reach (nearly) the same allocated peak.
    assert stopped["allocated_bytes"] >= 0.9 * whole["allocated_bytes"], (stopped, whole)


def test_recording_each_calls_peak_keeps_the_trials_own_peaks():
    from dlmark.backends import RunConfig
    from dlmark.backends.pytorch import leaf_calls, load
    from dlmark.tasks.max_batch_size import probe

    runner = load("VGG-11", RunConfig(device="cuda:0"))
    calls = []
    with leaf_calls(runner.module, calls.append):
        runner.run(runner.make_inputs(1))
    probe(runner, 256)  # first pass at this shape: cuDNN set-up
    plain = probe(runner, 256)
    recorded = probe(runner, 256, record_calls=True)
    peaks = recorded["call_peaks"]
    assert len(peaks) == len(calls) and not recorded["partial"]
    # Resetting the allocator's peak after each call must not lose the trial's own peaks.
    assert recorded["allocated_bytes"] == plain["allocated_bytes"]
    assert recorded["peak_bytes"] == plain["peak_bytes"]
    assert max(peaks) <= recorded["allocated_bytes"] <= max(peaks) + 64 * 2**20
    stopped = probe(runner, 256, stop_after_call=peaks.index(max(peaks)), record_calls=True)
    assert stopped["partial"] and len(stopped["call_peaks"]) == peaks.index(max(peaks)) + 1


# Tuned read 0.78-0.81 (results/h200-gpu-tests-4, -5) while the batcher queued Offline's one query
# request by request under its lock before the first batch could start (results/h200-offline-timeline-1).
@pytest.mark.parametrize("config", ["fp32-eager", "tuned"])
def test_loadgen_offline_keeps_the_gpu_as_busy_as_a_plain_loop(config, tmp_path):
    """Offline with two batches in flight within 10% of a plain loop on the same input (issue 19)."""
    pytest.importorskip("mlperf_loadgen")
    from dlmark.backends import RunConfig
    from dlmark.backends.pytorch import load
    from dlmark.measure.loadgen import run_scenario

    runner = load("ResNet-v1-50", RunConfig(device="cuda:0", **CONFIGS[config]))
    batch = 256
    x = runner.make_inputs(batch)
    plain = _plain_loop_img_per_s(runner.run, x, batch)
    rec = run_scenario(runner, "offline", tmp_path, batch_size=batch, batches_in_flight=2, pad_batches=True,
                       min_duration_s=3.0)
    plain = max(plain, _plain_loop_img_per_s(runner.run, x, batch))
    ratio = rec["samples_per_s"] / plain
    print(f"{config} b{batch}: LoadGen Offline {rec['samples_per_s']:.1f} plain loop {plain:.1f} ratio {ratio:.4f}")
    assert rec["valid"], rec["invalid_reasons"]
    assert ratio > 0.9
