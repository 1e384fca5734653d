import math
import random

import pytest

from dlmark.measure.stats import NOISY_REL_IQR, median_ci, summarize_latency


def _binomial_coverage(n: int, drop: int) -> float:
    """P(x_(drop+1) <= median <= x_(n-drop)) for a continuous distribution."""
    tail = sum(math.comb(n, k) for k in range(drop + 1)) / 2**n
    return 1 - 2 * tail


@pytest.mark.parametrize("n", [6, 10, 25, 100])
def test_median_ci_uses_the_binomial_order_statistics(n):
    xs = list(range(n))
    lo, hi = median_ci(xs)
    drop = int(lo)  # with samples 0..n-1 the value is the rank
    assert hi == n - 1 - drop
    # The interval covers the median with at least 95% ...
    assert _binomial_coverage(n, drop) >= 0.95
    # ... and is the narrowest such order-statistic interval.
    assert _binomial_coverage(n, drop + 1) < 0.95


def test_median_ci_with_too_few_samples_is_the_whole_range():
    assert median_ci([3.0, 1.0, 2.0]) == (1.0, 3.0)


def test_median_ci_covers_the_true_median_about_95_percent_of_the_time():
    rng = random.Random(0)
    hits = 0
    trials = 2000
    for _ in range(trials):
        lo, hi = median_ci([rng.expovariate(1.0) for _ in range(20)])
        hits += lo <= math.log(2) <= hi
    assert 0.94 <= hits / trials <= 0.985


def test_summary_throughput_is_batch_over_median_time():
    s = summarize_latency([0.010, 0.011, 0.012, 0.010, 0.010, 0.011, 0.010], batch_size=8)
    assert s["latency_ms_median"] == pytest.approx(10.0)
    assert s["throughput"] == pytest.approx(800.0)
    assert s["throughput_ci95_low"] <= s["throughput"] <= s["throughput_ci95_high"]
    assert s["latency_ms_p90"] >= s["latency_ms_median"]
    assert s["latency_ms_p99"] >= s["latency_ms_p90"]
    assert s["noisy"] is False


def test_summary_flags_a_wide_spread_as_noisy():
    s = summarize_latency([1.0, 1.0, 1.5, 2.0, 1.0, 2.0, 1.2, 1.9], batch_size=1)
    assert s["rel_iqr"] > NOISY_REL_IQR
    assert s["noisy"] is True
