import pytest

from dlmark.tasks.max_batch_size import Trial, search


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


def allocator_fake(budget, base, per_image, need_share=1.0, allocated_share=0.8, fails_above=None, granule=2 * 2**20):
    """A fake GPU shaped on the H200 traces (results/h200-cnn-sweep).

    The reserved peak grows on a line (rounded to the allocator's granule); a batch runs
    while what it really needs (``need_share`` of the line: DenseNets' allocator makes
    room by freeing its cache) fits the budget. Past the line a success reports a
    saturated peak or, on every other batch, a lower one, as the H200 did. A success
    costs a pass (batch / 3,800 img/s), a failure 0.7 s.
    """
    def natural(b):
        return -(-(base + per_image * b) // granule) * granule

    def need(b):
        return base + need_share * per_image * b

    def runs(b):
        return need(b) <= budget and (fails_above is None or b <= fails_above)

    def try_batch(b):
        if not runs(b):
            return Trial(b, "oom", 0.7)
        reserved = natural(b)
        if reserved > budget:
            reserved = budget if b % 2 else int(need(b) + (budget - need(b)) / 3)
        return Trial(b, "ok", b / 3800, peak_bytes=int(reserved), budget_bytes=budget,
                     allocated_bytes=int(0.8 * base + allocated_share * per_image * b))

    limit = max(b for b in range(1, 300_000) if runs(b))
    return try_batch, limit


def plain_cost(limit, cap):
    """Seconds the search spends without memory figures, on the same cost model."""
    def try_batch(b):
        return Trial(b, "ok", b / 3800) if b <= limit else Trial(b, "oom", 0.7)

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
    near = [(t.batch_size, t.status, t.chosen_by) for t in result.trials if t.batch_size > limit // 2]
    # The short jump, the confirmation (fails: cheap), the prediction: the limit itself.
    assert [s for _, s, _ in near] == ["ok", "oom", "ok"], near
    assert sum(t.seconds for t in result.trials) < plain_cost(limit, 65536) / 2


@pytest.mark.parametrize("shape", [
    dict(base=100 * MB, per_image=int(17.9 * MB), need_share=0.72, allocated_share=0.6),  # DenseNet-121
    dict(base=190 * MB, per_image=int(26 * MB), need_share=0.69, allocated_share=0.55),  # DenseNet-161
])
def test_a_network_past_its_reserved_line_costs_no_more_than_plain_bisection(shape):
    try_batch, limit = allocator_fake(H200, **shape)
    result = search(try_batch, cap=65536)
    assert result.max_batch_size == limit and result.first_failing_batch == limit + 1
    assert any(t.chosen_by == "ceiling" for t in result.trials)
    assert sum(t.seconds for t in result.trials) <= 1.05 * plain_cost(limit, 65536)


def test_a_misleading_memory_line_still_gives_the_exact_limit():
    # Memory says ~10,800 fit, but something else (a kernel's limit) stops at 9,001.
    try_batch, limit = allocator_fake(H200, 200 * MB, int(12.8 * MB), fails_above=9_001)
    result = search(try_batch, cap=65_536)
    assert result.max_batch_size == 9_001 and result.first_failing_batch == 9_002
    tried = [t.batch_size for t in result.trials]
    assert len(set(tried)) == len(tried)
    gallop = [t for t in result.trials if t.chosen_by == "gallop"]
    assert 1 <= len(gallop) <= 4  # a few cheap steps down, then plain bisection
    assert sum(t.seconds for t in result.trials) <= 1.25 * plain_cost(9_001, 65_536)


def test_the_cap_ends_a_prediction_beyond_it():
    try_batch, limit = allocator_fake(H200, 250 * MB, int(1.7 * MB))  # AlexNet: ~84,000 would fit
    result = search(try_batch, cap=65_536)
    assert limit > 65_536 and result.max_batch_size == 65_536 and result.capped


def test_without_memory_figures_the_search_is_plain_growth_and_bisection():
    try_batch, _ = oracle(1000)
    result = search(try_batch, cap=65536)
    assert {t.chosen_by for t in result.trials} == {"growth", "bisection"}
