"""A/B comparison of two sets of records: which configurations got faster or slower, and is it real.

Records are paired by configuration; for each pair the per-block throughputs
of the two records give a ratio of medians (candidate / baseline), a 95%
interval, a Mann-Whitney U p-value corrected over all pairs, and a verdict:
faster, slower or same, or a reason why there is none. Pure functions over
record dicts (``dlmark.records.load.load_records``).
"""
# The statistics, and why.
#
# Interval: the Hodges-Lehmann shift of the log throughputs with its exact rank
# interval (the pairwise differences between the order statistics that the
# Mann-Whitney null distribution allows). It is distribution-free, exact at the
# 8 to 20 blocks a record holds (a bootstrap of two medians of 8 samples has
# only a handful of distinct values and undercovers), needs no seed, and it is
# the interval of the rank test that gives the p-value, so the two agree. The
# reported ratio is the ratio of the medians, the figure `throughput` holds;
# under the shift model both estimate the same ratio.
#
# Block dependence: blocks of one run are not independent samples of "the
# code's speed". They share the run's process, memory layout, clock and
# neighbours and drift together, so two runs of identical code differ by more
# than the blocks' spread says. Measured on the committed H200 sweeps (one
# suite run two hours apart, results/h200-cnn-sweep and -2, with changes to
# dlmark between them, mostly its largest-batch search): a plain test on blocks gives
# p < 0.05 on 98 of 135 pairs, AlexNet at batch 128 differing by 0.4% at
# p < 1e-4. The test answers "did these two runs differ", not "did the code".
# Two guards turn it towards the second question: a minimum effect
# (`threshold`, 2%) below which a significant difference is `same`, and a
# coarser unit, each record's two halves of blocks: a difference smaller than
# either record's drift between its own halves is `same` too, since the run did
# not hold its own level to that precision (`_drift`). On the H200 records the
# halves differ by a median 0.2%, so the guard costs nothing there; on a busy
# 2-core CPU by 0 to 11% (median 11%). What neither guard can see is a whole
# run slowed by other work on the machine: the quick suite run twice on the
# 2-core machine with other work taking ~80% of its CPUs
# (scripts/compare_false_positives.py) gave throughputs that differed between
# runs by up to 100 times (MobileNet-v3-Small at batch 16: 279, later 2.6
# images/s), so the pairs differed for real: ignoring the records' flags, 21 and
# 6 of 24 pairs would have been called. `noisy`, `too few blocks` and
# `contended` (dlmark.measure.contention) are what hold those back: such pairs
# get a reason, not a verdict (no call was made in either run).
#
# Multiple pairs: Benjamini-Hochberg over every pair with a p-value. When
# nothing changed (an A/A comparison) it bounds the chance of any false call as
# Holm does; when a change moves many configurations at once, as a slower
# runtime or a new PyTorch does, Holm multiplies each p by nearly the number of
# pairs and misses most (10% slowdowns of 200 real records: Holm called 179,
# BH all 200). `correction="holm"` gives the family-wise guarantee instead.
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any, Iterable, Sequence

import numpy as np

from dlmark.errors import UserError
from dlmark.measure.contention import FIX as CONTENTION_FIX
from dlmark.measure.contention import cause as contention_cause

#: Fields that say what was measured; records equal in all of them (less the axis) pair.
CONFIG_FIELDS = ("model", "task", "scenario", "batch_size", "precision", "layout", "compile_mode",
                 "backend", "threads", "device_kind", "device", "input_shape", "extra_config")
#: Fields that are expected to differ between two runs of one configuration.
IGNORED_FIELDS = ("host", "timestamp", "run_id", "job_key", "env", "suite")
#: Tasks with a throughput to compare.
TASKS = ("throughput", "serving")
#: Below this many blocks the rank test cannot reach significance usefully (with
#: 4 against 4 the smallest two-sided p is 0.029): no verdict whatever the record says.
MIN_BLOCKS_FLOOR = 5
#: A record without ``min_blocks`` (schema 1 does not carry it yet) is held to the floor.
DEFAULT_MIN_BLOCKS = MIN_BLOCKS_FLOOR
VERDICTS = ("faster", "slower", "same")


# ------------------------------------------------------------------ statistics


@lru_cache(maxsize=256)
def _u_null_cdf(n: int, m: int) -> np.ndarray:
    """P(U <= u), u = 0..n*m, for the Mann-Whitney U of samples of n and m without ties.

    Counts the arrangements by the recurrence f(i, j, u) = f(i-1, j, u-j) + f(i, j-1, u)
    (the last of the i + j ordered values belongs to the first sample, where it beats
    all j of the second, or to the second).
    """
    size = n * m + 1
    prev = [np.zeros(size) for _ in range(m + 1)]  # row i-1, indexed by j
    for j in range(m + 1):
        prev[j][0] = 1.0  # i = 0: one arrangement, U = 0
    for i in range(1, n + 1):
        row = [np.zeros(size) for _ in range(m + 1)]
        row[0][0] = 1.0
        for j in range(1, m + 1):
            row[j][j:] += prev[j][:size - j]
            row[j] += row[j - 1]
        prev = row
    counts = prev[m]
    return np.cumsum(counts) / counts.sum()


def _rank_interval_index(n: int, m: int, alpha: float) -> int:
    """k: the interval is [d_(k), d_(nm+1-k)] of the n*m ordered pairwise differences (1-based).

    The shifts the test does not reject are those with k <= #{d < shift} <= nm - k,
    k the largest with P(U <= k - 1) <= alpha / 2. k = 0: no interval at that
    level exists and the whole range is returned, as ``stats.median_ci`` does.
    """
    if n * m <= 2500:
        cdf = _u_null_cdf(n, m)
        below = np.nonzero(cdf <= alpha / 2)[0]
        return int(below[-1]) + 1 if below.size else 0
    from statistics import NormalDist

    z = NormalDist().inv_cdf(1 - alpha / 2)
    return max(0, int(math.floor(n * m / 2 - z * math.sqrt(n * m * (n + m + 1) / 12) + 0.5)))


def _mannwhitney_p(x: np.ndarray, y: np.ndarray) -> float:
    """Two-sided Mann-Whitney U p-value: exact without ties (up to 2,500 pairs), else normal.

    The normal approximation has the tie correction and the continuity correction,
    as SciPy's ``method="asymptotic"``. Computed here rather than by SciPy, whose
    import alone took seconds on a busy 2-core machine, on every `dlmark compare`.
    """
    n, m = len(x), len(y)
    greater = float(np.sum(y[None, :] > x[:, None]))
    ties = float(np.sum(y[None, :] == x[:, None]))
    u = greater + 0.5 * ties
    if not ties and n * m <= 2500:
        return min(1.0, 2 * float(_u_null_cdf(n, m)[int(min(u, n * m - u))]))
    from statistics import NormalDist

    _, counts = np.unique(np.concatenate([x, y]), return_counts=True)
    total = n + m
    var = n * m / 12 * ((total + 1) - float(np.sum(counts ** 3 - counts)) / (total * (total - 1)))
    if var <= 0:  # every value equal: no evidence of a difference
        return 1.0
    z = max(0.0, abs(u - n * m / 2) - 0.5) / math.sqrt(var)
    return min(1.0, 2 * (1 - NormalDist().cdf(z)))


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm's step-down adjusted p-values (family-wise error), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i])
    k = len(p_values)
    out = [1.0] * k
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (k - rank) * p_values[i]))
        out[i] = running
    return out


def benjamini_hochberg(p_values: Sequence[float]) -> list[float]:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input order."""
    order = sorted(range(len(p_values)), key=lambda i: p_values[i], reverse=True)
    k = len(p_values)
    out = [1.0] * k
    running = 1.0
    for rank, i in enumerate(order):
        running = min(running, p_values[i] * k / (k - rank))
        out[i] = running
    return out


CORRECTIONS = {"bh": benjamini_hochberg, "holm": holm}


# Across runs: Welch's t on the log throughputs of a configuration's runs (its repetitions, or
# several runs in one folder), one figure per run. Three runs a side give a usable test; a rank
# test would need five (with three against three its smallest two-sided p is 0.1). Student's t
# comes from the regularized incomplete beta function (a continued fraction, Numerical Recipes'
# betacf): dlmark does not depend on scipy.

def _beta_fraction(a: float, b: float, x: float) -> float:
    tiny = 1e-300
    c, d = 1.0, 1.0 - (a + b) * x / (a + 1.0)
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 400):
        for numerator in (m * (b - m) * x / ((a + 2 * m - 1) * (a + 2 * m)),
                          -(a + m) * (a + b + m) * x / ((a + 2 * m) * (a + 2 * m + 1))):
            d = 1.0 + numerator * d
            d = 1.0 / (d if abs(d) > tiny else tiny)
            c = 1.0 + numerator / c
            c = c if abs(c) > tiny else tiny
            h *= d * c
        if abs(d * c - 1.0) < 1e-15:
            break
    return h


def _beta_regularized(a: float, b: float, x: float) -> float:
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_fraction(a, b, x) / a
    return 1.0 - front * _beta_fraction(b, a, 1.0 - x) / b


def t_sf(t: float, df: float) -> float:
    """P(T > t) for Student's t with ``df`` degrees of freedom."""
    tail = 0.5 * _beta_regularized(df / 2.0, 0.5, df / (df + t * t))
    return tail if t >= 0 else 1.0 - tail


def t_quantile(q: float, df: float) -> float:
    """The t with P(T <= t) = q, for q in (0.5, 1)."""
    low, high = 0.0, 1.0
    while t_sf(high, df) > 1.0 - q:
        high *= 2.0
    for _ in range(200):
        mid = (low + high) / 2.0
        low, high = (mid, high) if t_sf(mid, df) > 1.0 - q else (low, mid)
    return (low + high) / 2.0


def _across_runs(a: np.ndarray, b: np.ndarray, alpha: float) -> dict[str, Any]:
    """Ratio (geometric means, candidate / baseline), its interval and Welch's p, one figure per run."""
    x, y = np.log(a), np.log(b)
    diff = float(y.mean() - x.mean())
    va, vb = float(x.var(ddof=1)) / len(x), float(y.var(ddof=1)) / len(y)
    se = math.sqrt(va + vb)
    if se == 0.0:
        p, half = (1.0 if diff == 0.0 else 0.0), 0.0
    else:
        df = (va + vb) ** 2 / (va ** 2 / (len(x) - 1) + vb ** 2 / (len(y) - 1))
        p = min(1.0, 2.0 * t_sf(abs(diff) / se, df))
        half = t_quantile(1.0 - alpha / 2.0, df) * se
    return {"ratio": math.exp(diff), "ci_low": math.exp(diff - half), "ci_high": math.exp(diff + half),
            "p_value": p, "drift": 0.0, "interval": "95% across runs"}


def _runs_reason(base: list[dict[str, Any]], cand: list[dict[str, Any]]) -> str | None:
    """Why a pair judged across runs gets no verdict: a run timed on a throttled or busy machine.
    (A run's own block spread, ``noisy``, is what the test across runs measures: no reason.)"""
    for flag, reason in (("throttled", "throttled"), ("contended", "contended")):
        if any(r.get(flag) is True for r in base + cand):
            return reason
    return None


def block_throughputs(record: dict[str, Any]) -> np.ndarray | None:
    """Images/s of each timed block: batch_size * iters_per_block / block time; None without samples."""
    blocks, bs, ipb = record.get("block_times_s"), record.get("batch_size"), record.get("iters_per_block")
    if not blocks or not bs or not ipb:
        return None
    t = np.asarray([b for b in blocks if b is not None], dtype=float)
    t = t[np.isfinite(t) & (t > 0)]
    return bs * ipb / t if t.size else None


def _drift(thr: np.ndarray) -> float:
    """|log| of the median of a record's second half of blocks over its first half.

    The coarse unit: if a run's halves differ by 3%, its level is not known
    to better than 3%, whatever its blocks' spread. With few blocks this
    figure is noisy itself, and biased upwards, which errs towards `same`.
    """
    half = len(thr) // 2
    if half < 2:
        return 0.0
    return abs(math.log(float(np.median(thr[-half:])) / float(np.median(thr[:half]))))


def _ratio_stats(a: np.ndarray, b: np.ndarray, alpha: float) -> dict[str, float]:
    x, y = np.log(a), np.log(b)
    diffs = np.sort((y[None, :] - x[:, None]).ravel())
    k = max(0, min(_rank_interval_index(len(x), len(y), alpha), (len(diffs) + 1) // 2) - 1)  # 0-based
    return {
        "ratio": float(np.median(b) / np.median(a)),
        "ci_low": float(math.exp(diffs[k])),
        "ci_high": float(math.exp(diffs[len(diffs) - 1 - k])),
        "p_value": _mannwhitney_p(x, y),
        "drift": max(_drift(a), _drift(b)),
    }


def _decide(ratio: float, p: float, drift: float, threshold: float, alpha: float) -> str:
    if not (p < alpha):
        return "same"
    if abs(math.log(ratio)) < max(math.log1p(threshold), drift):
        return "same"
    return "faster" if ratio > 1 else "slower"


# -------------------------------------------------------------- record checks


def _reason(base: dict[str, Any], cand: dict[str, Any], default_min_blocks: int) -> str | None:
    """Why a pair gets no verdict, or None (first reason wins)."""
    for side, r in (("baseline", base), ("candidate", cand)):
        if r.get("status") != "ok":
            return f"failed ({side}: {r.get('status')})"
    for side, r in (("baseline", base), ("candidate", cand)):
        if r.get("task") == "serving" and r.get("valid") is False:  # LoadGen's verdict: its figure is not one
            return f"invalid ({side})"
    if base.get("task") != "serving":  # serving: decided on its search brackets, in _serving_stats
        for r in (base, cand):
            if block_throughputs(r) is None:
                return "no samples"
        for r in (base, cand):
            n = len(block_throughputs(r))
            wanted = r.get("min_blocks") or default_min_blocks
            if n < max(MIN_BLOCKS_FLOOR, wanted):
                return "too few blocks"
    if base.get("throttled") is True or cand.get("throttled") is True:
        return "throttled"
    if base.get("contended") is True or cand.get("contended") is True:
        return "contended"
    if base.get("noisy") is True or cand.get("noisy") is True:
        return "noisy"
    return None


def _scenario(r: dict[str, Any]) -> str | None:
    return r.get("scenario") or (r.get("extra_config") or {}).get("scenario")


def _positive(v: Any) -> float | None:
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 and math.isfinite(v) else None


def _serving_figure(r: dict[str, Any]) -> float | None:
    """The figure a serving record is judged on, higher is better (so ratios read as for throughput).

    A server search: its QPS at the latency bound. Offline, and a server run at a fixed
    load: samples/s. Single-stream and multi-stream, whose figure is a latency (p90 and
    p99, as ``analysis.serving`` shows them): queries/s at that latency, 1000 / ms.
    """
    if r.get("server_qps_at_bound") is not None:
        return _positive(r["server_qps_at_bound"])
    scenario = _scenario(r)
    if scenario in ("single-stream", "multi-stream"):
        ms = _positive(r.get("latency_ms_p90" if scenario == "single-stream" else "latency_ms_p99"))
        return 1000.0 / ms if ms else None
    for name in ("samples_per_s", "throughput"):
        if _positive(r.get(name)):
            return _positive(r.get(name))
    return None


def _bracket(r: dict[str, Any]) -> tuple[float, float] | None:
    """A server search's answer as the loads it ended between: the last that met the bound, the first that did not.

    The capacity within the bound lies between them (each step one LoadGen run, so
    up to that run's own noise). None for a search that found no failing load, and
    for every other scenario: one LoadGen run gives one figure, no interval.
    """
    low, high = _positive(r.get("largest_valid_qps") or r.get("server_qps_at_bound")), _positive(r.get("first_invalid_qps"))
    if r.get("server_qps_at_bound") is None or low is None or high is None or high <= low:
        return None
    return low, high


def _serving_stats(base: dict[str, Any], cand: dict[str, Any]) -> tuple[dict[str, Any], str | None]:
    """Serving records: the ratio of their figures (``_serving_figure``) and of their p99 latencies.

    Server searches on both sides get an interval from their brackets, the ratios
    both brackets allow: [low_c / high_b, high_c / low_b]. It is a resolution, not a
    95% interval (no p-value), and a verdict needs it to exclude 1 (``_decide_bracket``).
    Any other pair has no interval: reason 'no interval'.
    """
    a, b = _serving_figure(base), _serving_figure(cand)
    out: dict[str, Any] = {"ratio": b / a if a and b else None, "ci_low": None, "ci_high": None,
                           "p_value": None, "drift": 0.0}
    p99a, p99b = _positive(base.get("latency_ms_p99")), _positive(cand.get("latency_ms_p99"))
    out["p99_ratio"] = p99b / p99a if p99a and p99b else None
    if out["ratio"] is None:
        return out, "no samples"
    brackets = _bracket(base), _bracket(cand)
    if None in brackets:
        return out, "no interval"
    (low_b, high_b), (low_c, high_c) = brackets
    out.update(ci_low=low_c / high_b, ci_high=high_c / low_b, interval="search bracket")
    return out, None


def _decide_bracket(ratio: float, ci_low: float, ci_high: float, threshold: float) -> str:
    """faster or slower only when both searches' brackets exclude 'no change' and the ratio passes the threshold."""
    if abs(math.log(ratio)) < math.log1p(threshold):
        return "same"
    if ci_low > 1:
        return "faster"
    if ci_high < 1:
        return "slower"
    return "same"


def _verdict(stats: dict[str, Any], p: float | None, threshold: float, alpha: float) -> str | None:
    """The verdict of a pair without a reason: by its (corrected) p-value, or a serving pair by its brackets."""
    if p is not None:
        return _decide(stats["ratio"], p, stats.get("drift") or 0.0, threshold, alpha)
    if stats.get("interval") == "search bracket":
        return _decide_bracket(stats["ratio"], stats["ci_low"], stats["ci_high"], threshold)
    return None


def ratio_with_significance(baseline_record: dict[str, Any], candidate_record: dict[str, Any],
                            threshold: float = 0.02, alpha: float = 0.05,
                            default_min_blocks: int = DEFAULT_MIN_BLOCKS) -> dict[str, Any]:
    """One pair, uncorrected: ratio (candidate / baseline), ci_low, ci_high, p_value, verdict, reason.

    For ``dlmark ls --compare`` (a runtime against PyTorch eager in one run):
    the statistics of ``compare``, so both say "not significant" the same way.
    ``verdict`` is None when ``reason`` says why there is none.
    """
    stats, reason = _pair_stats(baseline_record, candidate_record, alpha, default_min_blocks)
    verdict = _verdict(stats, stats.get("p_value"), threshold, alpha) if reason is None and stats else None
    return {"ratio": stats.get("ratio"), "ci_low": stats.get("ci_low"), "ci_high": stats.get("ci_high"),
            "p_value": stats.get("p_value"), "verdict": verdict, "reason": reason}


def _pair_stats(base: dict[str, Any], cand: dict[str, Any], alpha: float,
                default_min_blocks: int) -> tuple[dict[str, Any], str | None]:
    reason = _reason(base, cand, default_min_blocks)
    if base.get("task") == "serving":
        stats, serving_reason = _serving_stats(base, cand)
        return stats, reason or serving_reason
    a, b = block_throughputs(base), block_throughputs(cand)
    if a is None or b is None or min(len(a), len(b)) < 2:
        return {}, reason or "no samples"
    return _ratio_stats(a, b, alpha), reason


# --------------------------------------------------------------------- pairing


def _device_kind(r: dict[str, Any]) -> str | None:
    spec = r.get("device_spec")
    return str(spec).split(":", 1)[0] if spec else None


def field_value(r: dict[str, Any], name: str) -> Any:
    """A record's value for a (dotted) field name; ``device_kind`` is device_spec without its index."""
    if name == "device_kind":
        return _device_kind(r)
    value: Any = r
    for part in name.split("."):
        if not isinstance(value, dict):
            return None
        value = value.get(part)
    return value


def _hashable(v: Any) -> Any:
    if isinstance(v, dict):
        return tuple(sorted((k, _hashable(x)) for k, x in v.items()))
    if isinstance(v, (list, tuple)):
        return tuple(_hashable(x) for x in v)
    return v


def _defaults(r: dict[str, Any], name: str) -> Any:
    # Records older than a field mean its default: pytorch eager fp32 NCHW.
    v = field_value(r, name)
    if name == "extra_config" and isinstance(v, dict):
        v = {k: x for k, x in v.items() if k != "repetition"} or None  # a repetition is the same configuration
    if v is None:
        return {"backend": "pytorch", "precision": "fp32", "layout": "nchw"}.get(name)
    return v


def _check_axis(axis: Sequence[str], records: list[dict[str, Any]]) -> tuple[str, ...]:
    known = set(CONFIG_FIELDS) | set(IGNORED_FIELDS) | {"device_spec"}
    for name in axis:
        if name in known:
            continue
        if any(field_value(r, name) is not None or (("." not in name) and name in r) for r in records):
            continue
        raise UserError(f"unknown --axis {name!r}: name a record field, e.g. env.torch, device, backend or threads")
    return tuple(axis)


def _key_fields(axis: tuple[str, ...]) -> tuple[str, ...]:
    drop = set(axis)
    if "device_spec" in drop:
        drop.add("device_kind")
    return tuple(f for f in CONFIG_FIELDS if f not in drop)


def _key(r: dict[str, Any], fields: tuple[str, ...]) -> tuple:
    return tuple(_hashable(_defaults(r, f)) for f in fields)


def _by_configuration(records: list[dict[str, Any]], fields: tuple[str, ...]) -> dict[tuple, list[dict[str, Any]]]:
    """Each configuration's records, newest first."""
    groups: dict[tuple, list[dict[str, Any]]] = {}
    for r in records:
        groups.setdefault(_key(r, fields), []).append(r)
    return {k: sorted(g, key=lambda r: str(r.get("timestamp") or ""), reverse=True) for k, g in groups.items()}


def _samples(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of one configuration that are samples of it: measured (status ok), a throughput."""
    return [r for r in records if r.get("status") == "ok" and _positive(r.get("throughput"))]


# ------------------------------------------------------------------- the result


@dataclass
class Pair:
    """One configuration on both sides."""

    model: str | None
    label: str
    key: dict[str, Any]
    baseline_throughput: float | None
    candidate_throughput: float | None
    ratio: float | None = None
    ci_low: float | None = None
    ci_high: float | None = None
    p_value: float | None = None
    p_adjusted: float | None = None
    verdict: str | None = None  # faster, slower, same; None when reason says why not
    reason: str | None = None
    drift: float | None = None
    p99_ratio: float | None = None  # serving: candidate p99 latency over the baseline's (lower is better)
    interval: str | None = None  # what ci_low..ci_high is: "95%" (rank interval), "search bracket" (serving)
    axis_values: dict[str, list[Any]] = field(default_factory=dict)
    baseline_blocks: int | None = None
    candidate_blocks: int | None = None
    baseline_runs: int = 1  # records of this configuration on the side: >= 2 each, and the run is the unit
    candidate_runs: int = 1


@dataclass
class Geomean:
    ratio: float
    ci_low: float | None
    ci_high: float | None
    pairs: int


@dataclass
class Comparison:
    pairs: list[Pair]
    unpaired_baseline: list[dict[str, Any]]
    unpaired_candidate: list[dict[str, Any]]
    geomean: dict[str, Geomean | None]  # "overall" and one per model
    warnings: list[str]
    axis: tuple[str, ...] = ()
    threshold: float = 0.02
    alpha: float = 0.05
    correction: str = "bh"

    @property
    def failed(self) -> list[Pair]:
        return [p for p in self.pairs if p.reason and p.reason.startswith("failed")]

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for p in self.pairs:
            name = p.verdict or p.reason or "?"
            out[name] = out.get(name, 0) + 1
        return out


def _label(r: dict[str, Any], varying: Iterable[str]) -> str:
    parts = [f"bs {r.get('batch_size')}"]
    for f in varying:
        if f in ("model", "batch_size", "task"):
            continue
        v = _defaults(r, f)
        if f == "compile_mode":
            v = v or "eager"
        if f == "threads":
            v = f"{v}t"
        if isinstance(v, (list, tuple)):
            v = "x".join(str(x) for x in v)
        if isinstance(v, dict):
            v = ",".join(f"{k}={x}" for k, x in sorted(v.items()))
        if v is not None:
            parts.append(str(v))
    return " ".join(parts)


def _geomean(pairs: list[Pair], z: float = 1.959964) -> Geomean | None:
    """Geometric mean of the pairs' ratios, with an interval from their own intervals.

    Each pair's log interval is read as +-1.96 standard errors; the mean of k
    independent logs has the root-sum-square error over k. That says how well
    these configurations were measured, and misses what moves two runs apart
    (drift between runs, above); so when the ratios scatter more than their
    intervals allow, their scatter (standard deviation over sqrt(k)) sets the
    error instead. A bootstrap over pairs would need more pairs than the 4 to 6
    batch sizes of one model.
    """
    use = [p for p in pairs if p.verdict in VERDICTS and p.ratio]
    if not use:
        return None
    logs = [math.log(p.ratio) for p in use]
    mean = sum(logs) / len(logs)
    ses = [(math.log(p.ci_high) - math.log(p.ci_low)) / (2 * z) for p in use if p.ci_low and p.ci_high]
    if len(ses) != len(use):
        return Geomean(math.exp(mean), None, None, len(use))
    se = math.sqrt(sum(s * s for s in ses)) / len(use)
    if len(use) > 1:
        scatter = math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(use) - 1) / len(use))
        se = max(se, scatter)
    return Geomean(math.exp(mean), math.exp(mean - z * se), math.exp(mean + z * se), len(use))


def _env_warnings(base: list[dict[str, Any]], cand: list[dict[str, Any]], axis: tuple[str, ...]) -> list[str]:
    out = []
    for name in ("torch", "torchvision", "timm", "cuda", "cudnn", "driver", "python", "dlmark"):
        if f"env.{name}" in axis:
            continue
        a = sorted({str(field_value(r, f"env.{name}")) for r in base if field_value(r, f"env.{name}") is not None})
        b = sorted({str(field_value(r, f"env.{name}")) for r in cand if field_value(r, f"env.{name}") is not None})
        if a and b and a != b:
            out.append(f"env.{name} differs ({', '.join(a)} vs {', '.join(b)}) and is not a named --axis: "
                       f"the ratios include that change (name it with --axis env.{name} to say it is intended)")
    return out


def _worst_contention(*sides: dict[tuple, dict[str, Any]]) -> str:
    """What competed with the most contended record, in the probe's words (``contention.cause``)."""
    def share(r: dict[str, Any]) -> float:
        capacity = (r.get("window_s") or 0.0) * (r.get("cpus_usable") or 1)
        return ((r.get("other_cpu_s") or 0.0) + (r.get("cpu_steal_s") or 0.0)) / capacity if capacity else 0.0

    contended = [r for side in sides for r in side.values() if r.get("contended") is True]
    worst = max(contended, key=share)
    return "worst: " + (contention_cause(worst) or "the machine was busy")


def compare(baseline: list[dict[str, Any]], candidate: list[dict[str, Any]], axis: Sequence[str] = (),
            threshold: float = 0.02, alpha: float = 0.05,
            default_min_blocks: int = DEFAULT_MIN_BLOCKS, correction: str = "bh") -> Comparison:
    """Pair the two sides' records by configuration (less ``axis``) and judge each pair.

    Raises UserError for an empty side, an unknown axis, or no pair at all.
    """
    if not baseline or not candidate:
        raise UserError(f"no records on the {'baseline' if not baseline else 'candidate'} side; "
                        "point at a results folder that `dlmark run` wrote")
    if not 0 <= threshold < 1:
        raise UserError(f"threshold must be a fraction in [0, 1), e.g. 0.02 for 2%; got {threshold}")
    if correction not in CORRECTIONS:
        raise UserError(f"unknown correction {correction!r}; use one of {', '.join(CORRECTIONS)}")
    if isinstance(axis, str):  # "env.torch,device", as the command line gives it
        axis = [a.strip() for a in axis.split(",") if a.strip()]
    axis = _check_axis(list(axis), baseline + candidate)
    fields = _key_fields(axis)
    warnings: list[str] = []
    sides = []
    for side, records in (("baseline", baseline), ("candidate", candidate)):
        usable = [r for r in records if r.get("task") in TASKS]
        skipped = len(records) - len(usable)
        if skipped:
            warnings.append(f"{side}: {skipped} record(s) of other tasks (largest batch, accuracy, peak) not compared")
        # A server search's steps ran at loads the search chose from that run's own figures, so they
        # rarely pair; the search's answer (QPS at the bound) is the figure to compare.
        steps = {key for r in usable for key in (r.get("search_step_keys") or [])}
        if steps:
            before = len(usable)
            usable = [r for r in usable if r.get("job_key") not in steps]
            warnings.append(f"{side}: {before - len(usable)} server search step(s) not compared; "
                            "their search's QPS at the bound is")
        sides.append(_by_configuration(usable, fields))
    base_all, cand_all = sides
    base = {k: g[0] for k, g in base_all.items()}  # the newest record of each configuration
    cand = {k: g[0] for k, g in cand_all.items()}
    common = [k for k in base if k in cand]
    if not common:
        raise UserError(f"no configuration is on both sides ({len(base)} baseline, {len(cand)} candidate); "
                        "name the field that differs with --axis (e.g. device, backend, env.torch)")
    varying = [f for f in fields if len({_key(r, (f,)) for r in list(base.values()) + list(cand.values())}) > 1]
    pairs: list[Pair] = []
    one_sided = {"baseline": 0, "candidate": 0}
    for k in common:
        b, c = base[k], cand[k]
        runs_b, runs_c = _samples(base_all[k]), _samples(cand_all[k])
        if b.get("task") != "serving" and len(runs_b) >= 2 and len(runs_c) >= 2:
            stats = _across_runs(np.array([r["throughput"] for r in runs_b], dtype=float),
                                 np.array([r["throughput"] for r in runs_c], dtype=float), alpha)
            reason = _runs_reason(runs_b, runs_c)
        else:
            one_sided["baseline"] += len(base_all[k]) > 1
            one_sided["candidate"] += len(cand_all[k]) > 1
            runs_b = runs_c = []
            stats, reason = _pair_stats(b, c, alpha, default_min_blocks)
        ab, ac = block_throughputs(b), block_throughputs(c)
        pairs.append(Pair(
            model=b.get("model"), label=_label(b, varying), key=dict(zip(fields, k)),
            baseline_throughput=_serving_figure(b) if b.get("task") == "serving" else b.get("throughput"),
            candidate_throughput=_serving_figure(c) if c.get("task") == "serving" else c.get("throughput"),
            ratio=stats.get("ratio"), ci_low=stats.get("ci_low"), ci_high=stats.get("ci_high"),
            p_value=stats.get("p_value"), reason=reason, drift=stats.get("drift"), p99_ratio=stats.get("p99_ratio"),
            interval=stats.get("interval") or ("95%" if stats.get("ci_low") is not None else None),
            axis_values={a: [field_value(b, a), field_value(c, a)] for a in axis},
            baseline_blocks=None if ab is None else len(ab), candidate_blocks=None if ac is None else len(ac),
            baseline_runs=max(1, len(runs_b)), candidate_runs=max(1, len(runs_c)),
        ))
        if runs_b:  # the side's figure is its runs' median, as the ratio is theirs
            pairs[-1].baseline_throughput = float(np.median([r["throughput"] for r in runs_b]))
            pairs[-1].candidate_throughput = float(np.median([r["throughput"] for r in runs_c]))
    across = [p for p in pairs if p.baseline_runs > 1]
    if across:
        counts = sorted({(p.baseline_runs, p.candidate_runs) for p in across})
        warnings.append(f"{len(across)} pair(s) judged across runs ({', '.join(f'{x} vs {y}' for x, y in counts)} "
                        "records each): one figure per run, Welch's t; the run, not the block, is the unit")
    for side, count in one_sided.items():
        if count:
            warnings.append(f"{side}: {count} configuration(s) measured more than once (resume, re-run or "
                            "--repetitions) but not on both sides: judged on the newest records' blocks")
    tested = [p for p in pairs if p.p_value is not None]
    for p, adj in zip(tested, CORRECTIONS[correction]([p.p_value for p in tested])):
        p.p_adjusted = adj
    for p in pairs:
        if p.reason is None:
            p.verdict = _verdict({"ratio": p.ratio, "drift": p.drift, "interval": p.interval,
                                  "ci_low": p.ci_low, "ci_high": p.ci_high}, p.p_adjusted, threshold, alpha)
            if p.verdict is None:
                p.reason = "no samples"
    pairs.sort(key=lambda p: (str(p.model), p.key.get("batch_size") or 0, p.label))
    geo: dict[str, Geomean | None] = {"overall": _geomean(pairs)}
    for model in sorted({str(p.model) for p in pairs}):
        geo[model] = _geomean([p for p in pairs if str(p.model) == model])
    warnings += _env_warnings(baseline, candidate, axis)
    contended = {side: sum(1 for r in recs.values() if r.get("contended") is True)
                 for side, recs in (("baseline", base), ("candidate", cand))}
    if any(contended.values()):
        warnings.append(f"contention: {contended['baseline']} baseline and {contended['candidate']} candidate "
                        f"record(s) were timed while other processes competed ({_worst_contention(base, cand)}): "
                        f"{CONTENTION_FIX}")
    noisy = sum(1 for p in pairs if p.reason == "noisy")
    if noisy:
        warnings.append(f"{noisy} pair(s) noisy (a block spread over 10% of the median): {CONTENTION_FIX}")
    small = sum(1 for p in pairs if p.reason is None and p.verdict == "same" and p.p_adjusted is not None
                and p.p_adjusted < alpha)
    if small:
        warnings.append(f"{small} pair(s) differ significantly but by less than the {threshold * 100:g}% threshold "
                        "or their runs' own drift: read as same (blocks of one run drift together)")
    called_on_blocks = sum(1 for p in pairs if p.baseline_runs == 1 and p.verdict in ("faster", "slower")
                           and p.interval == "95%")
    if called_on_blocks:
        warnings.append(f"{called_on_blocks} pair(s) called on one run a side: the blocks of one run do not see the "
                        "machine's drift between moments (docs/compare.md, \"Across runs\"); confirm with both "
                        "sides run with --repetitions 3")
    unpaired_b = [r for k, r in base.items() if k not in cand]
    unpaired_c = [r for k, r in cand.items() if k not in base]
    return Comparison(pairs, unpaired_b, unpaired_c, geo, warnings, axis, threshold, alpha, correction)


def run_ids(records: list[dict[str, Any]]) -> list[str]:
    """The runs among ``records``, oldest first, each as 'ID (suite, N records, first time)'."""
    runs: dict[Any, list[dict[str, Any]]] = {}
    for r in records:
        runs.setdefault(r.get("run_id"), []).append(r)

    def first(recs: list[dict[str, Any]]) -> str:
        return min(str(r.get("timestamp") or "") for r in recs)

    out = []
    for run, recs in sorted(runs.items(), key=lambda item: first(item[1])):
        suite = next((str(r["suite"]) for r in recs if r.get("suite")), None)
        when = first(recs)[:16].replace("T", " ")
        details = ", ".join(x for x in (suite, f"{len(recs)} records", when) if x)
        out.append(f"{run if run is not None else '(no run id)'} ({details})")
    return out


def select_run(records: list[dict[str, Any]], run: str, where: str) -> list[dict[str, Any]]:
    """The records of one run; ``run`` is its id or a prefix of one, as git shortens a commit.

    Raises UserError (one line, naming the runs there) when it matches no run or several.
    """
    ids = sorted({str(r["run_id"]) for r in records if r.get("run_id")})
    matches = [i for i in ids if i == run] or [i for i in ids if i.startswith(run)]
    if len(matches) == 1:
        return [r for r in records if r.get("run_id") == matches[0]]
    listed = run_ids(records)
    shown = "; ".join(listed[:12]) + (f"; and {len(listed) - 12} more" if len(listed) > 12 else "")
    if matches:
        raise UserError(f"run {run!r} is a prefix of {len(matches)} runs in {where} ({', '.join(matches[:12])}); "
                        "give more of it")
    raise UserError(f"no run {run!r} in {where}; its runs: {shown or 'none (its records carry no run id)'}")


def parse_fraction(text: str) -> float:
    """'5%' or '0.05' -> 0.05, for --threshold and --fail-on-slower."""
    raw = str(text).strip()
    try:
        value = float(raw[:-1]) / 100 if raw.endswith("%") else float(raw)
    except ValueError:
        raise UserError(f"bad fraction {text!r}; write it like 5% or 0.05") from None
    if not 0 <= value < 1:
        raise UserError(f"fraction must be between 0 and 1 (0% and 100%), got {text!r}")
    return value


def gate(result: Comparison, fail_on_slower: float | None) -> int:
    """1 when any pair is significantly slower by more than ``fail_on_slower`` (a fraction), else 0."""
    if fail_on_slower is None:
        return 0
    return int(any(p.verdict == "slower" and p.ratio is not None and p.ratio < 1 - fail_on_slower
                   for p in result.pairs))


# ---------------------------------------------------------------------- output


def _fmt_ratio(p: Pair) -> str:
    if p.ratio is None:
        return "-"
    text = f"{p.ratio:.3f}"
    if p.ci_low is not None:
        text += f" [{p.ci_low:.3f}, {p.ci_high:.3f}]"
    if p.interval == "search bracket":  # not a 95% interval: the searches' resolution (_serving_stats)
        text += " bracket"
    if p.p99_ratio is not None:
        text += f", p99 {p.p99_ratio:.3f}"
    return text


def _fmt_p(v: float | None) -> str:
    return "-" if v is None else (f"{v:.2g}" if v >= 1e-3 else "<0.001")


def _fmt_thr(v: Any) -> str:
    if not isinstance(v, (int, float)) or not math.isfinite(v):
        return "-"
    return f"{v:.0f}" if abs(v) >= 1000 else f"{v:.4g}"


def pair_cells(p: Pair) -> list[str]:
    """One pair's cells under HEADER, as every output (terminal, Markdown, the report's page) shows them."""
    return [str(p.model), p.label, _fmt_thr(p.baseline_throughput), _fmt_thr(p.candidate_throughput),
            _fmt_ratio(p), _fmt_p(p.p_value), _fmt_p(p.p_adjusted), p.verdict or p.reason or "-"]


HEADER = ["model", "configuration", "baseline/s", "candidate/s", "ratio [95% CI]", "p", "p (adj)", "verdict"]
_COLOURS = {"faster": "\033[32m", "slower": "\033[31m", "same": "\033[2m"}


def _record_label(r: dict[str, Any]) -> str:
    parts = [str(r.get("model")), f"bs {r.get('batch_size')}", str(_defaults(r, "precision")),
             str(_defaults(r, "backend")), str(r.get("compile_mode") or "eager"), str(r.get("device"))]
    if r.get("threads"):
        parts.append(f"{r['threads']}t")
    if r.get("status") != "ok":
        parts.append(f"({r.get('status')})")
    return " ".join(parts)


def unpaired_groups(records: list[dict[str, Any]]) -> list[str]:
    """One line per configuration less its batch size: 'VGG-11 fp32 pytorch eager NVIDIA H200 16t: bs 1, 2, 4'."""
    groups: dict[str, list[Any]] = {}
    for r in records:
        label = _record_label(r)
        head = label.replace(f" bs {r.get('batch_size')}", "", 1)
        groups.setdefault(head, []).append(r.get("batch_size"))
    return [f"{head}: bs " + ", ".join(str(b) for b in sorted(bs, key=lambda b: (b is None, b or 0)))
            for head, bs in sorted(groups.items())]


def summary_line(result: Comparison) -> str:
    c = result.counts()
    head = ", ".join(f"{c[v]} {v}" for v in VERDICTS if c.get(v))
    rest = ", ".join(f"{n} {k}" for k, n in sorted(c.items()) if k not in VERDICTS)
    g = result.geomean.get("overall")
    geo = "" if g is None else (f"; geometric mean ratio {g.ratio:.3f}"
                                + (f" [{g.ci_low:.3f}, {g.ci_high:.3f}]" if g.ci_low else ""))
    axes = "".join(f"; {a}: " + ", ".join(sorted({f"{v[0]} -> {v[1]}" for v in (p.axis_values[a] for p in result.pairs)}))
                   for a in result.axis)
    return (f"{len(result.pairs)} pairs: {head or 'no verdicts'}" + (f" (no verdict: {rest})" if rest else "")
            + geo + axes + f" (threshold {result.threshold * 100:g}%, alpha {result.alpha:g})")


def format_terminal(result: Comparison, colour: bool = False) -> str:
    """An aligned table, a summary line, unpaired records and warnings; ANSI colour only when asked."""
    rows = [pair_cells(p) for p in result.pairs]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(HEADER)]
    right = {2, 3, 5, 6}

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w) for i, (c, w) in enumerate(zip(cells, widths))).rstrip()

    out = [line(HEADER), line(["-" * w for w in widths])]
    for p, r in zip(result.pairs, rows):
        text = line(r)
        if colour:
            code = _COLOURS.get(p.verdict or "", "\033[33m")
            text = f"{code}{text}\033[0m"
        out.append(text)
    out += ["", summary_line(result)]
    for model, g in result.geomean.items():
        if model != "overall" and g is not None:
            ci = f" [{g.ci_low:.3f}, {g.ci_high:.3f}]" if g.ci_low else ""
            out.append(f"  {model}: geometric mean {g.ratio:.3f}{ci} over {g.pairs} pair(s)")
    for side, recs in (("baseline", result.unpaired_baseline), ("candidate", result.unpaired_candidate)):
        if recs:
            out.append(f"only in {side} ({len(recs)}):")
            out += [f"  {line}" for line in unpaired_groups(recs)]
    out += [f"warning: {w}" for w in result.warnings]
    return "\n".join(out)


def _md_escape(text: str) -> str:
    return re.sub(r"([|*_`\\])", r"\\\1", text)


def format_markdown(result: Comparison) -> str:
    """Markdown for a pull-request comment: summary line, table, unpaired records, warnings."""
    c = result.counts()
    slower = c.get("slower", 0)
    mark = ":red_circle:" if slower else ":white_check_mark:"
    out = [f"{mark} **{_md_escape(summary_line(result))}**", "",
           "| " + " | ".join(HEADER) + " |", "|" + "|".join("---:" if i in (2, 3, 5, 6) else "---"
                                                      for i in range(len(HEADER))) + "|"]
    for p in result.pairs:
        cells = [_md_escape(x) for x in pair_cells(p)]
        if p.verdict in ("faster", "slower"):
            cells[-1] = f"**{cells[-1]}**"
        out.append("| " + " | ".join(cells) + " |")
    geos = [(m, g) for m, g in result.geomean.items() if m != "overall" and g is not None]
    if geos:
        out += ["", "Geometric mean ratio per model: " + "; ".join(
            f"{_md_escape(m)} {g.ratio:.3f}" + (f" [{g.ci_low:.3f}, {g.ci_high:.3f}]" if g.ci_low else "")
            for m, g in geos)]
    for side, recs in (("baseline", result.unpaired_baseline), ("candidate", result.unpaired_candidate)):
        if recs:
            out += ["", f"<details><summary>Only in {side}: {len(recs)}</summary>", ""]
            out += [f"- {_md_escape(line)}" for line in unpaired_groups(recs)]
            out += ["", "</details>"]
    if result.warnings:
        out += [""] + [f"> {_md_escape(w)}" for w in result.warnings]
    return "\n".join(out) + "\n"


def _jsonable(v: Any) -> Any:
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, dict):
        return {str(k): _jsonable(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_jsonable(x) for x in v]
    return v


def to_json(result: Comparison) -> dict[str, Any]:
    """Everything as plain JSON types: pairs, unpaired records (their config fields), geomeans, warnings."""
    def brief(r: dict[str, Any]) -> dict[str, Any]:
        return {k: field_value(r, k) for k in CONFIG_FIELDS + ("device_spec", "status", "host", "run_id", "timestamp")}

    return _jsonable({
        "summary": summary_line(result), "counts": result.counts(), "axis": list(result.axis),
        "threshold": result.threshold, "alpha": result.alpha, "correction": result.correction,
        "pairs": [asdict(p) for p in result.pairs],
        "unpaired_baseline": [brief(r) for r in result.unpaired_baseline],
        "unpaired_candidate": [brief(r) for r in result.unpaired_candidate],
        "geomean": {k: (asdict(g) if g else None) for k, g in result.geomean.items()},
        "warnings": result.warnings,
    })
