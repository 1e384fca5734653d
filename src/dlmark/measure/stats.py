"""Statistics of timing samples: pure functions, no torch."""
from __future__ import annotations

import math
from typing import Sequence

import numpy as np

#: Above this interquartile range relative to the median, a figure is flagged noisy
#: (torch.utils.benchmark warns at the same threshold).
NOISY_REL_IQR = 0.10


def median_ci(samples: Sequence[float], level: float = 0.95) -> tuple[float, float]:
    """Distribution-free confidence interval of the median from order statistics.

    With n samples the interval [x_(l), x_(n+1-l)] covers the median with
    probability 1 - 2 P(Binomial(n, 1/2) < l). With too few samples for the
    level, the whole range is returned, which is the honest answer.
    """
    xs = sorted(float(x) for x in samples)
    n = len(xs)
    if n == 0:
        raise ValueError("no samples")
    alpha = (1.0 - level) / 2.0
    cumulative = 0.0
    lower_rank = 0  # number of order statistics we may drop from each side
    for k in range(n):
        cumulative += math.comb(n, k) / 2.0**n
        if cumulative > alpha:
            break
        lower_rank = k + 1
    if lower_rank == 0:
        return xs[0], xs[-1]
    return xs[lower_rank - 1], xs[n - lower_rank]


def summarize_latency(per_iter_s: Sequence[float], batch_size: int) -> dict[str, float | bool]:
    """Median throughput, latency percentiles and spread from per-iteration times."""
    times = np.asarray(per_iter_s, dtype=float)
    if times.size == 0:
        raise ValueError("no timing samples")
    median = float(np.median(times))
    q25, q75, p90, p99 = (float(v) for v in np.percentile(times, [25, 75, 90, 99]))
    lo, hi = median_ci(times)
    iqr = q75 - q25
    rel_iqr = iqr / median if median > 0 else float("inf")
    return {
        "throughput": batch_size / median,
        "throughput_ci95_low": batch_size / hi,
        "throughput_ci95_high": batch_size / lo,
        "latency_ms_median": median * 1e3,
        "latency_ms_p90": p90 * 1e3,
        "latency_ms_p99": p99 * 1e3,
        "latency_ms_min": float(times.min()) * 1e3,
        "latency_ms_iqr": iqr * 1e3,
        "rel_iqr": rel_iqr,
        "noisy": bool(rel_iqr > NOISY_REL_IQR),
    }
