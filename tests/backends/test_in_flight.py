"""Requests in flight: windowed counting, scaling with a known per-request cost, the runtimes' async APIs."""
import threading
import time

import pytest

from dlmark.backends import in_flight
from dlmark.errors import UserError
from tests.backends.onnx_models import conv_relu_conv_pool_gemm

FAST = in_flight.WindowConfig(warmup_s=0.1, window_s=0.3, windows=3, min_requests_per_window=0)


def test_a_request_counts_in_the_one_window_its_end_falls_in():
    # Windows [0, 1) and [1, 2). Request ends: 0.5 (w0), 1.0 (w1, the boundary belongs to the later
    # window), 1.99 (w1), -0.1 (warm-up: not counted), 2.0 (after the last window: not counted).
    requests = [(0.0, 0.5), (0.2, 1.0), (1.5, 1.99), (-0.3, -0.1), (1.9, 2.0)]
    out = in_flight.count_windows(requests, [0.0, 1.0, 2.0], batch_size=4)
    assert out["requests_counted"] == 3 and out["requests_completed"] == 5
    assert out["throughput_windows"] == [4.0, 8.0] and out["throughput"] == 3 * 4 / 2.0
    assert out["_counted_mask"].tolist() == [True, True, True, False, False]
    assert out["latency_ms_min"] == pytest.approx(490.0) and out["latency_ms_median"] == pytest.approx(500.0)


def test_windows_lengthen_for_slow_requests_and_warm_up_waits_for_every_request():
    request = SleepingRequest(0.1)  # 10 per second per lane
    config = in_flight.WindowConfig(warmup_s=0.0, window_s=0.05, windows=2, min_requests_per_window=4)
    out = in_flight.run_threads([request, request], 1, config)
    # Warm-up waited for both lanes' first request (0.1 s at least); at about 20/s a window
    # holding 4 requests lasts about 0.2 s, not 0.05.
    assert out["_boundaries"][0] - min(e for e in request.ends) >= -0.01
    assert 0.12 < out["window_s"] < 0.5 and out["requests_counted"] >= 4


def test_warm_up_waits_for_every_lane_when_one_lane_s_first_call_holds_the_others():
    # As a compiled model's first call in a second thread does (PyTorch int8 ResNet-v1-50 at 2 in
    # flight): lane 1's first call takes 0.6 s and, from its start, blocks lane 0 too. Lane 0 has
    # completed several fast calls by then; a warm-up counting requests, not lanes, ended there
    # and left every window empty.
    compile_lock = threading.Lock()
    began = time.perf_counter()

    class Lane:
        def __init__(self, first_s):
            self.first_s, self.calls = first_s, 0

        def __call__(self):
            self.calls += 1
            if self.first_s and self.calls == 1:
                time.sleep(0.05)  # lane 0 completes some calls first
                with compile_lock:
                    time.sleep(self.first_s)
                return
            # Later calls wait out a compile in progress but do not hold the lock while they run:
            # a lock held through every call is unfair, and on a loaded machine lane 0 starved lane 1.
            with compile_lock:
                pass
            time.sleep(0.01)

    config = in_flight.WindowConfig(warmup_s=0.0, window_s=0.1, windows=2, min_requests_per_window=0)
    out = in_flight.run_threads([Lane(0.0), Lane(0.6)], 1, config)
    assert out["_boundaries"][0] - began >= 0.6
    assert out["requests_counted"] > 0 and min(out["requests_per_lane"]) > 0


def test_thread_split_and_parsing():
    assert in_flight.split_threads(8, 3) == [3, 3, 2] and in_flight.split_threads(2, 4) == [1, 1, 1, 1]
    assert in_flight.parse_in_flight("4") == 4 and in_flight.parse_in_flight("AUTO") == "auto"
    for bad in ("0", "-1", "many"):
        with pytest.raises(UserError, match="--in-flight"):
            in_flight.parse_in_flight(bad)


class SleepingRequest:
    """A request of known cost: sleeps ``cost_s`` (the GIL is released) and logs its own end time."""

    def __init__(self, cost_s):
        self.cost_s = cost_s
        self.ends = []
        self.lock = threading.Lock()

    def __call__(self):
        time.sleep(self.cost_s)
        with self.lock:
            self.ends.append(time.perf_counter())


@pytest.mark.slow
def test_throughput_scales_with_requests_in_flight_and_counts_each_once():
    cost, batch = 0.02, 3
    results = {}
    for n in (1, 2, 4):
        request = SleepingRequest(cost)
        out = in_flight.run_threads([request] * n, batch, FAST)
        b0, bk = out["_boundaries"][0], out["_boundaries"][-1]
        # Independently of the runner's own log: the requests that ended inside the windows.
        ended_inside = sum(b0 <= e < bk for e in request.ends)
        # The runner stamps its end just after ours: at each of the two outer boundaries a lane's
        # request may fall on either side.
        assert abs(out["requests_counted"] - ended_inside) <= 2 * n
        assert out["requests_completed"] == len(request.ends)  # every request logged once, none twice
        assert sum(out["requests_per_lane"]) == out["requests_counted"] < out["requests_completed"]
        assert out["throughput"] == pytest.approx(out["requests_counted"] * batch / (bk - b0))
        assert len(out["throughput_windows"]) == 3 and out["latency_ms_min"] >= cost * 1e3
        results[n] = out["throughput"]
    # n requests of 20 ms each in flight: n x 3 / 0.02 samples/s at most; a sleep overshoots, by more
    # on a loaded machine, but the same for every n.
    for n, value in results.items():
        assert 0.6 * n * batch / cost < value <= n * batch / cost * 1.01
    assert results[4] / results[1] == pytest.approx(4, rel=0.2)
    assert results[2] / results[1] == pytest.approx(2, rel=0.2)


def test_a_failing_request_is_raised_not_counted():
    def broken():
        raise ValueError("kernel exploded")

    with pytest.raises(ValueError, match="kernel exploded"):
        in_flight.run_threads([broken, broken], 1, FAST)


@pytest.mark.slow
def test_onnxruntime_sessions_and_a_shared_session(tmp_path):
    pytest.importorskip("onnxruntime")
    model = conv_relu_conv_pool_gemm(tmp_path / "m.onnx")
    for mode in ("sessions", "shared"):
        out = in_flight.onnxruntime_in_flight(str(model), 2, 4, (3, 8, 8), threads=2, mode=mode, config=FAST)
        assert out["in_flight"] == 2 and out["throughput"] > 0 and out["requests_counted"] > 0
        assert out["streams"] == (2 if mode == "sessions" else 1)
        assert out["threads_split"] == ([1, 1] if mode == "sessions" else [2])
        assert len(out["requests_per_lane"]) == 2 and all(c > 0 for c in out["requests_per_lane"])
    with pytest.raises(UserError, match="number"):
        in_flight.onnxruntime_in_flight(str(model), "auto", 1, (3, 8, 8), threads=2)


@pytest.mark.slow
def test_openvino_async_queue(tmp_path):
    ov = pytest.importorskip("openvino")
    model = conv_relu_conv_pool_gemm(tmp_path / "m.onnx")
    xml = tmp_path / "m.xml"
    ov.save_model(ov.convert_model(str(model)), str(xml), compress_to_fp16=False)
    out = in_flight.openvino_in_flight(str(xml), 3, 2, (3, 8, 8), hint="LATENCY", threads=2, config=FAST)
    assert out["in_flight"] == 3 and out["ov_performance_hint"] == "LATENCY" and out["streams"] >= 1
    assert out["requests_counted"] > 0 and out["requests_completed"] == len(out["_requests"])
    b0, bk = out["_boundaries"][0], out["_boundaries"][-1]
    assert out["requests_counted"] == sum(b0 <= e < bk for _, e in out["_requests"])
    # One in flight: a request's end is its start plus the runtime's own latency, so each ends
    # before the next one starts, and the requests fill most of the wall time (a latency read in
    # the wrong unit breaks one or the other).
    one = in_flight.openvino_in_flight(str(xml), 1, 2, (3, 8, 8), hint="LATENCY", threads=2, config=FAST)
    spans = one["_requests"]
    assert all(end <= next_start + 1e-4 for (_, end), (next_start, _) in zip(spans, spans[1:]))
    busy = sum(end - start for start, end in spans) / (spans[-1][1] - spans[0][0])
    assert 0.1 < busy <= 1.0
    auto = in_flight.openvino_in_flight(str(xml), "auto", 2, (3, 8, 8), hint="THROUGHPUT", threads=2, config=FAST)
    assert auto["in_flight"] == auto["ov_optimal_infer_requests"] >= 1 and auto["in_flight_requested"] == "auto"


@pytest.mark.slow
def test_pytorch_threads_split_and_restored():
    torch = pytest.importorskip("torch")
    from tests.fixtures.runtime_models import tiny

    before = torch.get_num_threads()
    out = in_flight.pytorch_in_flight(tiny().eval(), 2, 2, (3, 32, 32), threads=2, config=FAST)
    assert out["in_flight"] == 2 and out["threads_per_request"] == 1 and out["streams"] == 2
    assert out["requests_counted"] == sum(out["requests_per_lane"]) > 0
    b0, bk = out["_boundaries"][0], out["_boundaries"][-1]
    assert out["requests_counted"] == sum(b0 <= e < bk for _, e in out["_requests"])
    assert torch.get_num_threads() == before
