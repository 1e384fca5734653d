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
