import pytest

from dlmark.tasks.max_batch_size import StopForward, StopPlan, Trial, early_exit_call, probe, profile, search


def oracle(limit, status="oom"):
    tried = []

    def try_batch(b):
        tried.append(b)
        return Trial(b, "ok" if b <= limit else status, 0.0)

    return try_batch, tried


@pytest.mark.parametrize("limit", [1, 2, 3, 5, 7, 8, 9, 100, 1000, 4097])
def test_search_finds_the_exact_largest_batch(limit):
    try_batch, tried = oracle(limit)
    result = search(try_batch, cap=65536)
    assert result.max_batch_size == limit
    assert result.first_failing_batch == limit + 1
    assert not result.capped
    # exponential growth then bisection: O(log limit) trials
    assert len(tried) <= 2 * (limit.bit_length() + 1)
    assert len(set(tried)) == len(tried)


def test_search_stops_at_the_cap():
    try_batch, tried = oracle(10**9)
    result = search(try_batch, cap=100)
    assert result.max_batch_size == 100
    assert result.capped
    assert tried[-1] == 100


def test_search_when_batch_one_fails():
    try_batch, _ = oracle(0)
    result = search(try_batch, cap=64)
    assert result.max_batch_size == 0
    assert result.first_failing_batch == 1


def test_a_crashed_trial_counts_as_a_failure():
    try_batch, _ = oracle(6, status="crash")
    result = search(try_batch, cap=64)
    assert result.max_batch_size == 6
    assert [t.status for t in result.trials].count("crash") >= 1


def allocator_fake(budget, base, per_image, shares=(1.0,), fails_above=None, success_s_per_image=1 / 3800,
                   fail_s=0.7):
    """A fake GPU shaped on the H200 traces (results/h200-cnn-sweep).

    The caching allocator's reserved peak grows as ``base + per_image * share * b``.
    When that would overflow the budget the allocator frees its cache and goes on
    with less reserve: the next share (DenseNets went through three). A batch fails
    when even the last share overflows. Right at the edge the peak reads as the
    budget, as the H200's did. A success costs a pass of the batch, a failure less.
    """
    def reserved(b):
        for share in shares:
            peak = base + per_image * share * b
            if peak <= budget:
                return peak
        return None

    def runs(b):
        return reserved(b) is not None and (fails_above is None or b <= fails_above)

    def try_batch(b):
        if not runs(b):
            return Trial(b, "oom", fail_s)
        peak = reserved(b)
        if peak > budget * (1 - 2e-4):
            peak = budget - 5 * 2**20
        return Trial(b, "ok", b * success_s_per_image, peak_bytes=int(peak), budget_bytes=budget,
                     allocated_bytes=int(0.8 * (base + per_image * shares[-1] * b)))

    limit = max(b for b in range(1, 300_000) if runs(b))
    return try_batch, limit


def plain_cost(limit, cap, success_s_per_image=1 / 3800, fail_s=0.7):
    """Seconds the search spends without memory figures, on the same cost model."""
    def try_batch(b):
        return Trial(b, "ok", b * success_s_per_image) if b <= limit else Trial(b, "oom", fail_s)

    return sum(t.seconds for t in search(try_batch, cap=cap).trials)


H200 = int(139.12 * 2**30)
MB = 2**20


@pytest.mark.parametrize("name, shape", [
    ("ResNet-v1-50", dict(base=200 * MB, per_image=int(12.8 * MB))),
    ("ResNet-v1-18", dict(base=100 * MB, per_image=int(6.5 * MB))),
    ("VGG-16", dict(base=1100 * MB, per_image=int(26.2 * MB))),
])
def test_a_network_on_its_reserved_line_costs_two_passes_near_the_limit(name, shape):
    try_batch, limit = allocator_fake(H200, **shape)
    result = search(try_batch, cap=65536)
    assert result.max_batch_size == limit and result.first_failing_batch == limit + 1
    near = [(t.batch_size, t.status) for t in result.trials if t.batch_size > limit // 2]
    # The short jump, the predicted limit, the confirmation that the next batch fails.
    assert [status for _, status in near] == ["ok", "ok", "oom"], near
    assert near[1][0] == limit
    assert sum(t.seconds for t in result.trials) < plain_cost(limit, 65536) / 2


@pytest.mark.parametrize("name, shares, bound", [
    ("ResNet-v2-50", (1.0, 0.816), 0.75),  # one squeeze: the line through it hits the limit
    ("SqueezeNet-1.0", (1.0, 0.903), 0.75),
    # Three squeezes: each line overshoots the next limit, and the search pays about a third more
    # than plain bisection would (on the H200: 26 trials, 74 s). Exact all the same.
    ("DenseNet-161", (1.0, 0.83, 0.724, 0.691), 1.4),
])
def test_a_network_past_its_first_line_is_still_exact(name, shares, bound):
    try_batch, limit = allocator_fake(H200, 190 * MB, int(20 * MB), shares=shares, success_s_per_image=1 / 1600)
    result = search(try_batch, cap=65536)
    assert result.max_batch_size == limit and result.first_failing_batch == limit + 1
    tried = [t.batch_size for t in result.trials]
    assert len(set(tried)) == len(tried)
    cost = sum(t.seconds for t in result.trials)
    assert cost <= bound * plain_cost(limit, 65536, success_s_per_image=1 / 1600)


def test_a_misleading_memory_line_still_gives_the_exact_limit():
    # Memory says ~11,100 fit, but something else (a kernel's limit) stops at 9,001.
    try_batch, limit = allocator_fake(H200, 200 * MB, int(12.8 * MB), fails_above=9_001)
    result = search(try_batch, cap=65_536)
    assert result.max_batch_size == 9_001 and result.first_failing_batch == 9_002
    tried = [t.batch_size for t in result.trials]
    assert len(set(tried)) == len(tried) and len(tried) <= 40


def test_a_prediction_missed_by_rounding_ends_on_the_batch_below_it():
    # VGG-16 on the H200: the line through 2,881 and 4,326 said 5,657 fits; 5,656 is the limit.
    # Plain bisection from there took 12 more whole passes.
    def try_batch(b):
        if b > 5656:
            return Trial(b, "oom", 0.5)
        # The reserved line says 5,657 fit (rounding): it does not.
        return Trial(b, "ok", 1.0, peak_bytes=int(1.1e9 + b * 26.4e6), budget_bytes=int(150.46e9))

    result = search(try_batch, cap=65536)
    assert result.max_batch_size == 5656 and result.first_failing_batch == 5657
    near = [(t.batch_size, t.status, t.chosen_by) for t in result.trials if t.batch_size > 4000]
    assert len(near) <= 4, near
    assert any(how == "near-miss" for *_, how in near), near


def test_a_near_miss_is_tried_once_when_the_line_is_far_off():
    # The line says 2,000 fit; only 1,500 do: one near-miss fails, the rest bisects.
    def try_batch(b):
        if b > 1500:
            return Trial(b, "oom", 0.1)
        return Trial(b, "ok", 0.1, peak_bytes=b * 10**6, budget_bytes=2000 * 10**6)

    result = search(try_batch, cap=65536)
    assert result.max_batch_size == 1500 and result.first_failing_batch == 1501
    assert [t.chosen_by for t in result.trials].count("near-miss") == 1
    assert len({t.batch_size for t in result.trials}) == len(result.trials)


def test_the_cap_ends_a_prediction_beyond_it():
    try_batch, limit = allocator_fake(H200, 250 * MB, int(1.7 * MB))  # AlexNet: ~84,000 would fit
    result = search(try_batch, cap=65_536)
    assert limit > 65_536 and result.max_batch_size == 65_536 and result.capped


def test_without_memory_figures_the_search_is_plain_growth_and_bisection():
    try_batch, _ = oracle(1000)
    result = search(try_batch, cap=65536)
    assert {t.chosen_by for t in result.trials} == {"growth", "bisection"}


# ----------------------------------------------------------------- trials that stop past the peak


def test_a_trial_stops_once_no_later_call_grows_as_fast_as_the_peak():
    # Growth per image of each leaf call: the peak at call 2, a second hump at call 5.
    slopes = [1.0, 4.0, 10.0, 6.0, 3.0, 9.5, 2.0, 1.0]
    assert early_exit_call(slopes) == 5  # call 5 grows by 95% of call 2: run past it
    assert early_exit_call(slopes, later_share=0.96) == 2
    assert early_exit_call([1.0, 2.0, 3.0]) is None  # the peak is the last call: nothing to skip
    assert early_exit_call([]) is None and early_exit_call([0.0, 0.0]) is None


def test_a_huge_stopped_trial_moves_the_stop_to_its_own_peak():
    # The small-batch profile said call 21 (cuDNN workspace); at a huge batch the peak is call 2.
    plan = StopPlan(21)
    assert plan.request() == {"stop_after_call": 21, "record_calls": True}
    peaks = [40, 70, 100, 60, 50, 45, 40] + [30] * 15  # calls 0..21
    small = {"call_peaks": peaks, "stop_after_call": 21, "allocated_bytes": 10, "budget_bytes": 1000}
    plan.learn(small)  # 1% of the budget: weights and workspaces still count, keep asking
    assert plan.call == 21 and plan.request()["record_calls"]
    plan.learn({**small, "allocated_bytes": 700})
    assert plan.call == 2 and plan.refined and plan.request() == {"stop_after_call": 2, "record_calls": False}
    plan.learn({**small, "call_peaks": [100] * 22, "allocated_bytes": 900})  # refined once only
    assert plan.call == 2 and plan.profiled_call == 21


def test_a_stop_stays_where_the_huge_trial_still_peaks_at_it():
    plan = StopPlan(5)
    plan.learn({"call_peaks": [10, 20, 30, 40, 50, 60], "stop_after_call": 5, "allocated_bytes": 60,
                "budget_bytes": 100})
    assert plan.call == 5 and plan.refined
    assert StopPlan(None).request() == {"stop_after_call": None, "record_calls": False}


def test_the_answer_of_stopped_trials_is_run_whole_and_corrected_if_it_fails():
    # Stopped trials run up to 120; a whole pass only up to 100 (a late layer needs more).
    tried = []

    def stopped(b):
        tried.append(("stopped", b))
        return Trial(b, "ok" if b <= 120 else "oom", 0.0, partial=True)

    def whole(b):
        tried.append(("whole", b))
        return Trial(b, "ok" if b <= 100 else "oom", 0.0)

    result = search(stopped, cap=1024, verify=whole)
    assert result.max_batch_size == 100 and result.first_failing_batch == 101
    assert [t.chosen_by for t in result.trials].count("verification") == 1
    assert ("whole", 120) in tried and tried[-1][0] == "whole"
    # When the stop was safe, the answer costs one whole pass, no other: the batch just below
    # a failure decides the answer, so it runs whole and needs no verification.
    tried.clear()
    result = search(lambda b: Trial(b, "ok" if b <= 77 else "oom", 0.0, partial=True), cap=1024,
                    verify=lambda b: tried.append(b) or Trial(b, "ok" if b <= 77 else "oom", 0.0))
    assert result.max_batch_size == 77 and tried == [77]
    assert result.trials[-1].batch_size == 77 and not result.trials[-1].partial
    assert "verification" not in [t.chosen_by for t in result.trials]
    # An answer that only ran stopped (its failing neighbour came later) is verified whole.
    tried.clear()

    def stopped(b):
        return Trial(b, "ok" if b <= 64 else "oom", 0.0, partial=True)

    result = search(stopped, cap=1024, verify=lambda b: tried.append(b) or Trial(b, "ok" if b <= 64 else "oom", 0.0))
    assert result.max_batch_size == 64 and tried[-1] == 64
    assert result.trials[-1].chosen_by == "verification" and result.trials[-1].status == "ok"


def test_a_runner_stops_its_pass_after_the_given_leaf_call():
    from dlmark.backends import RunConfig
    from dlmark.backends.pytorch import leaf_calls, load

    runner = load("py:tests.fixtures.models:tiny", RunConfig(device="cpu", threads=1))
    calls = []
    with leaf_calls(runner.module, calls.append):
        runner.run(runner.make_inputs(2))
    assert calls == list(range(7))  # conv, relu, pool, conv, relu, pool, linear: in call order
    seen = []
    with leaf_calls(runner.module, seen.append), pytest.raises(StopForward):
        with runner.stop_after_call(3):
            runner.run(runner.make_inputs(2))
    assert seen == [0, 1, 2, 3]  # the pass ended right after call 3
    answer = probe(runner, 4, iters=2, stop_after_call=3, record_calls=True)
    assert answer["partial"] is True and answer["stop_after_call"] == 3
    assert "peak_bytes" not in answer and "call_peaks" not in answer  # CPU: no allocator figures
    assert 0 < answer["pass_s"] < answer["seconds"]
    assert probe(runner, 4)["partial"] is False
    assert profile(runner) == {"exit_call": None, "leaf_calls": None}  # per-call peaks need CUDA
