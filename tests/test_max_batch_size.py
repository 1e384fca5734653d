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


def memory_oracle(limit_bytes, base, per_image, granule=2 * 2**20, fails_above=None):
    """A fake GPU: peak = base + per_image * b rounded up to the allocator's granule;
    a batch runs when its peak fits ``limit_bytes`` (and, if given, b <= fails_above)."""
    tried = []

    def peak(b):
        raw = base + per_image * b
        return -(-raw // granule) * granule

    def try_batch(b):
        tried.append(b)
        fits = peak(b) <= limit_bytes and (fails_above is None or b <= fails_above)
        if fits:
            return Trial(b, "ok", 0.0, peak_bytes=peak(b), budget_bytes=limit_bytes)
        return Trial(b, "oom", 0.0)

    true_limit = max(b for b in range(1, 200_000) if peak(b) <= limit_bytes and (fails_above is None or b <= fails_above))
    return try_batch, tried, true_limit


H200 = 140 * 2**30


@pytest.mark.parametrize("per_image_mb,base_mb", [(10.46, 300), (5.7, 200), (26.2, 1100), (1.3, 250)])
def test_memory_prediction_finds_the_exact_limit_with_few_costly_trials(per_image_mb, base_mb):
    try_batch, tried, limit = memory_oracle(H200, int(base_mb * 2**20), int(per_image_mb * 2**20))
    result = search(try_batch, cap=200_000)
    assert result.max_batch_size == limit and result.first_failing_batch == limit + 1
    assert len(set(tried)) == len(tried)
    # Near the limit a success costs a forward pass of a huge batch: the prediction
    # keeps those to a few, where plain bisection needs one per halving.
    costly = [t for t in result.trials if t.status == "ok" and t.batch_size > limit // 2]
    assert len(costly) <= 3, [(t.batch_size, t.status, t.chosen_by) for t in result.trials]
    assert any(t.chosen_by == "prediction" for t in result.trials)
    plain, plain_tried = oracle(limit)
    plain_costly = [b for b in (search(plain, cap=200_000), plain_tried)[1] if limit // 2 < b <= limit]
    assert len(costly) < len(plain_costly)


def test_a_misleading_memory_line_still_gives_the_exact_limit():
    # Memory says ~13,000 fit, but something else (a kernel's limit) stops at 9,001.
    try_batch, tried, limit = memory_oracle(H200, 300 * 2**20, int(10.46 * 2**20), fails_above=9_001)
    assert limit == 9_001
    result = search(try_batch, cap=65_536)
    assert result.max_batch_size == 9_001 and result.first_failing_batch == 9_002
    assert len(set(tried)) == len(tried)
    assert len(tried) <= 40


def test_without_memory_figures_the_search_is_plain_growth_and_bisection():
    try_batch, _ = oracle(1000)
    result = search(try_batch, cap=65536)
    assert {t.chosen_by for t in result.trials} == {"growth", "bisection"}
