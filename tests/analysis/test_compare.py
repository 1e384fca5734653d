"""dlmark compare's core: pairing, the statistics on real block times, verdicts, output, the gate."""
from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from dlmark.analysis.compare import (
    _u_null_cdf, benjamini_hochberg, compare, format_markdown, format_terminal, gate, holm,
    ratio_with_significance, to_json,
)
from dlmark.records.load import load_records
from dlmark.errors import UserError

RESULTS = Path(__file__).resolve().parents[2] / "results"
REAL = ["h200-cnn-sweep-2", "cpu-runtimes-1t", "cpu-runtimes-2t", "cpu-runtimes-2t-quiet", "h200-tune"]


@pytest.fixture(scope="module")
def real():
    """Committed throughput records good enough for a verdict: the known set the power checks use."""
    recs = [r for name in REAL for r in load_records(RESULTS / name)]
    recs = [r for r in recs if r.get("task") == "throughput" and r.get("status") == "ok"
            and not r.get("noisy") and not r.get("throttled") and len(r.get("block_times_s") or []) >= 8]
    # one record per configuration, so that every record pairs with its own copy
    seen, out = set(), []
    for r in sorted(recs, key=lambda r: r["timestamp"], reverse=True):
        key = (r["model"], r["batch_size"], r["backend"], r["precision"], r["layout"], r["compile_mode"],
               r["threads"], r["device"], json.dumps(r.get("extra_config"), sort_keys=True))
        if key not in seen:
            seen.add(key)
            out.append(r)
    assert len(out) > 100, "the committed results the power check needs are missing"
    return out


def scaled(r, time_factor, blocks=None):
    """A copy whose block times are multiplied by time_factor: its throughput is 1/time_factor of the original."""
    c = copy.deepcopy(r)
    c["block_times_s"] = [t * time_factor for t in (r["block_times_s"] if blocks is None else blocks)]
    c["num_blocks"] = len(c["block_times_s"])
    c["throughput"] = r["throughput"] / time_factor
    c["run_id"], c["host"], c["timestamp"] = "cand", "other-host", "2099-01-01T00:00:00+00:00"
    return c


FACTORS = [1.0, 1.05, 1.10, 1.25, 1 / 1.10, 1 / 1.25]


def test_power_on_real_block_times_copies(real):
    # Each configuration gets one factor; one comparison holds them all, as a real change would.
    factor = {id(r): FACTORS[i % len(FACTORS)] for i, r in enumerate(real)}
    cand = [scaled(r, factor[id(r)]) for r in real]
    result = compare(real, cand)
    assert len(result.pairs) == len(real) and not result.unpaired_baseline and not result.unpaired_candidate
    by_key = {(r["model"], r["batch_size"], r["backend"], r["threads"], r["device"], r["compile_mode"],
               r["precision"], r["layout"], json.dumps(r.get("extra_config"), sort_keys=True)): factor[id(r)] for r in real}
    covered = 0
    for p in result.pairs:
        k = p.key
        f = by_key[(k["model"], k["batch_size"], k["backend"], k["threads"], k["device"], k["compile_mode"],
                    k["precision"], k["layout"], json.dumps(k["extra_config"], sort_keys=True))]
        true = 1 / f
        covered += p.ci_low <= true <= p.ci_high
        assert p.ratio == pytest.approx(true)
        if f in (1.10, 1.25):
            assert p.verdict == "slower", (p.model, p.label, p.p_adjusted)
        elif f in (1 / 1.10, 1 / 1.25):
            assert p.verdict == "faster", (p.model, p.label, p.p_adjusted)
        elif f == 1.0:
            assert p.verdict == "same"
    assert covered / len(result.pairs) >= 0.95
    # the 5% ones mostly, but not necessarily all: a record with a 4% spread cannot show 5% for sure
    five = [p for p in result.pairs if abs(p.ratio - 1 / 1.05) < 1e-9]
    assert sum(p.verdict == "slower" for p in five) >= 0.6 * len(five)


def test_power_and_coverage_on_real_blocks_split_in_two(real):
    # Copies make the ratio exact; here the two sides are the even and the odd blocks
    # of one real run, so each side's median is estimated and the interval must earn its coverage.
    factor = {id(r): FACTORS[i % len(FACTORS)] for i, r in enumerate(real)}
    base = [scaled(r, 1.0, r["block_times_s"][0::2]) for r in real]
    for b in base:
        b["run_id"], b["host"] = "base", "vm"
    cand = [scaled(r, factor[id(r)], r["block_times_s"][1::2]) for r in real]
    result = compare(base, cand)
    f_of = {id(c): factor[id(r)] for r, c in zip(real, cand)}
    judged = [p for p in result.pairs if p.ci_low is not None]
    covered = calls_unscaled = big = big_slower = 0
    for c in cand:
        f = f_of[id(c)]
        p = next(q for q in result.pairs if q.key["model"] == c["model"] and q.key["batch_size"] == c["batch_size"]
                 and q.key["backend"] == c["backend"] and q.key["threads"] == c["threads"]
                 and q.key["device"] == c["device"] and q.key["compile_mode"] == c["compile_mode"]
                 and q.key["precision"] == c["precision"] and q.key["layout"] == c["layout"]
                 and q.key["extra_config"] == c.get("extra_config"))
        covered += p.ci_low <= 1 / f <= p.ci_high
        if f == 1.0:
            calls_unscaled += p.verdict in ("faster", "slower")
        if f == 1.25 and p.reason is None:
            big += 1
            big_slower += p.verdict == "slower"
    assert len(judged) == len(result.pairs)
    assert covered / len(cand) >= 0.95
    assert calls_unscaled == 0
    assert big > 10 and big_slower >= 0.9 * big


def test_a_candidate_of_the_baselines_own_blocks_reads_same(real):
    rng = np.random.default_rng(7)
    permuted, resampled = [], []
    for r in real:
        blocks = list(r["block_times_s"])
        permuted.append(scaled(r, 1.0, list(rng.permutation(blocks))))
        resampled.append(scaled(r, 1.0, list(rng.choice(blocks, size=len(blocks), replace=True))))
    for cand in (permuted, resampled):
        result = compare(real, cand)
        assert {p.verdict for p in result.pairs} == {"same"}
    assert all(p.ratio == pytest.approx(1.0) for p in compare(real, permuted).pairs)


def test_the_exact_null_distribution_matches_scipy():
    rng = np.random.default_rng(3)
    for n, m in ((5, 5), (8, 10), (12, 7)):
        x, y = rng.normal(size=n), rng.normal(size=m) + 0.8
        u = int(np.sum(y[None, :] < x[:, None]))  # U of x: pairs where x beats y
        lower = min(u, n * m - u)
        exact = mannwhitneyu(x, y, method="exact").pvalue
        assert 2 * _u_null_cdf(n, m)[lower] == pytest.approx(exact)


def test_interval_coverage_on_independent_samples():
    # iid lognormal blocks, known true ratio: the exact rank interval covers it at least 95%
    # (more, from the discreteness). 600 trials: 93% is three standard errors below 95%.
    rng = np.random.default_rng(11)
    hits = 0
    trials = 600
    for i in range(trials):
        n, m = 8 + i % 7, 10
        base = {"status": "ok", "task": "throughput", "batch_size": 1, "iters_per_block": 1,
                "block_times_s": list(np.exp(rng.normal(0, 0.03, n)))}
        cand = dict(base, block_times_s=list(1.07 * np.exp(rng.normal(0, 0.03, m))))
        out = ratio_with_significance(base, cand)
        hits += out["ci_low"] <= 1 / 1.07 <= out["ci_high"]
    assert 0.93 <= hits / trials <= 0.99


def test_corrections():
    p = [0.01, 0.04, 0.03, 0.2]
    assert holm(p) == pytest.approx([0.04, 0.09, 0.09, 0.2])
    assert benjamini_hochberg(p) == pytest.approx([0.04, 0.04 * 4 / 3, 0.04 * 4 / 3, 0.2])


# ----------------------------------------------------------------------- pairing


@pytest.fixture
def template(real):
    r = next(x for x in real if x["device_spec"] == "cpu" and x["backend"] == "pytorch" and len(x["block_times_s"]) >= 8)
    return copy.deepcopy(r)


def rec(t, **changes):
    r = copy.deepcopy(t)
    env = dict(r.get("env") or {})
    for k in [k for k in changes if k.startswith("env_")]:
        env[k[4:]] = changes.pop(k)
    r.update(changes)
    r["env"] = env
    return r


def test_pairs_across_two_machines_of_one_kind_and_lists_the_unpaired(template):
    base = [rec(template, batch_size=b, host="alpha") for b in (1, 2, 4)]
    cand = [rec(template, batch_size=b, host="beta", run_id="r2") for b in (2, 4, 8)]
    result = compare(base, cand)
    assert sorted(p.key["batch_size"] for p in result.pairs) == [2, 4]
    assert [r["batch_size"] for r in result.unpaired_baseline] == [1]
    assert [r["batch_size"] for r in result.unpaired_candidate] == [8]
    text = format_terminal(result)
    assert "only in baseline (1):" in text and "only in candidate (1):" in text
    assert re.search(r"^  .* bs 8$", text, re.M)


def test_device_names_and_indices(template):
    a = rec(template, device="NVIDIA H100", device_spec="cuda:0")
    b = rec(template, device="NVIDIA H100", device_spec="cuda:3")
    assert len(compare([a], [b]).pairs) == 1  # the index is not part of the configuration
    c = rec(template, device="NVIDIA H200", device_spec="cuda:0")
    with pytest.raises(UserError, match="--axis"):
        compare([a], [c])  # two GPUs are two configurations unless the axis says so
    result = compare([a], [c], axis=["device"])
    assert len(result.pairs) == 1 and result.pairs[0].axis_values == {"device": ["NVIDIA H100", "NVIDIA H200"]}
    assert "NVIDIA H100 -> NVIDIA H200" in format_terminal(result)
    cpu = rec(template, device="NVIDIA H200", device_spec="cpu")
    with pytest.raises(UserError):
        compare([c], [cpu], axis=["device"])  # the device kind still differs


def test_two_torch_versions(template):
    base = [rec(template, batch_size=b, env_torch="2.10.0") for b in (1, 2)]
    cand = [rec(template, batch_size=b, env_torch="2.11.0") for b in (1, 2)]
    # env is never part of the configuration, so the versions pair either way; without
    # the axis the comparison says the versions differ, with it that is the point.
    plain = compare(base, cand)
    assert len(plain.pairs) == 2
    assert any("env.torch differs (2.10.0 vs 2.11.0)" in w for w in plain.warnings)
    named = compare(base, cand, axis=["env.torch"])
    assert len(named.pairs) == 2 and not any("env.torch" in w for w in named.warnings)
    assert named.pairs[0].axis_values == {"env.torch": ["2.10.0", "2.11.0"]}
    # a side holding both versions of one configuration keeps the newest and says so
    old = rec(template, batch_size=1, env_torch="2.10.0", timestamp="2026-01-01T00:00:00+00:00", throughput=1.0)
    result = compare(base, [old] + cand)
    assert any("candidate: 1 configuration(s) measured more than once" in w for w in result.warnings)
    assert next(p for p in result.pairs if p.key["batch_size"] == 1).candidate_throughput != 1.0


def test_axis_backend_and_unknown_axis(template):
    ort = rec(template, backend="onnxruntime")
    with pytest.raises(UserError):
        compare([template], [ort])
    assert len(compare([template], [ort], axis=["backend"]).pairs) == 1
    assert compare([template], [ort], axis="backend,env.torch").axis == ("backend", "env.torch")
    with pytest.raises(UserError, match="unknown --axis 'env.tensorflow'"):
        compare([template], [ort], axis=["env.tensorflow"])
    with pytest.raises(UserError, match="unknown --axis"):
        compare([template], [ort], axis=["colour"])
    with pytest.raises(UserError, match="no records"):
        compare([], [ort])


def test_failed_records_are_listed_without_a_verdict(template):
    base = [rec(template, batch_size=b) for b in (1, 2)]
    cand = [rec(template, batch_size=1), rec(template, batch_size=2, status="oom", block_times_s=None)]
    result = compare(base, cand)
    failed = result.failed
    assert len(failed) == 1 and failed[0].verdict is None and failed[0].reason == "failed (candidate: oom)"


# ---------------------------------------------------------------------- reasons


@pytest.mark.parametrize("field,value,reason", [
    ("noisy", True, "noisy"), ("throttled", True, "throttled"), ("contended", True, "contended"),
])
def test_flagged_records_get_a_reason_not_a_verdict(template, field, value, reason):
    slow = scaled(template, 1.5)
    slow[field] = value
    result = compare([template], [slow])
    p = result.pairs[0]
    assert p.verdict is None and p.reason == reason
    assert p.ratio == pytest.approx(1 / 1.5)  # the figures are still shown
    assert gate(result, 0.05) == 0
    if reason == "contended":
        assert any("idle machine" in w for w in result.warnings)


def test_too_few_blocks(template):
    three = scaled(template, 1.5, template["block_times_s"][:3])
    assert compare([template], [three]).pairs[0].reason == "too few blocks"
    # a record that says how many it wanted is held to that
    short = dict(scaled(template, 1.5), min_blocks=len(template["block_times_s"]) + 1)
    assert compare([template], [short]).pairs[0].reason == "too few blocks"
    assert compare([template], [scaled(template, 1.5)]).pairs[0].verdict == "slower"


def test_no_samples_for_2018_records(tmp_path):
    old = [{"device": "Tesla V100-SXM2-16GB", "model": "AlexNet", "batch_size": 64, "throughput": 4000.0,
            "device_mem": 1200, "workload": "Inference"}]
    (tmp_path / "a.json").write_text(json.dumps(old))
    (tmp_path / "b.json").write_text(json.dumps([dict(old[0], throughput=3000.0)]))
    result = compare(load_records(tmp_path / "a.json"), load_records(tmp_path / "b.json"))
    p = result.pairs[0]
    assert p.reason == "no samples" and p.verdict is None and p.ratio is None
    assert p.baseline_throughput == 4000.0 and p.candidate_throughput == 3000.0


SERVING = Path(__file__).resolve().parents[2] / "results" / "h200-serving-2"


def _search(qps_at_bound, first_invalid, p99, run_id="a", steps=()):
    """A server search's answer as `tasks.serving._search` writes it (fields of the committed H200 records)."""
    extra = {"scenario": "server", "latency_bound_ms": 15.0, "max_batch": 8, "search": "largest_qps_within_bound"}
    return {"task": "serving", "status": "ok", "model": "ResNet-v1-50", "scenario": "server", "batch_size": 8,
            "device": "NVIDIA H200", "device_spec": "cuda:0", "extra_config": extra, "run_id": run_id,
            "job_key": f"search-{run_id}", "server_qps_at_bound": qps_at_bound, "largest_valid_qps": qps_at_bound,
            "last_valid_qps": qps_at_bound, "first_invalid_qps": first_invalid, "converged": True,
            "resolution": 0.05, "latency_ms_p99": p99, "valid": True, "search_step_keys": [s["job_key"] for s in steps]}


def _step(target, run_id="a"):
    return {"task": "serving", "status": "ok", "model": "ResNet-v1-50", "scenario": "server", "batch_size": 8,
            "device": "NVIDIA H200", "device_spec": "cuda:0", "run_id": run_id, "job_key": f"step-{run_id}-{target}",
            "extra_config": {"scenario": "server", "latency_bound_ms": 15.0, "max_batch": 8, "target_qps": target},
            "samples_per_s": target, "latency_ms_p99": 10.0, "valid": True}


def test_server_searches_compare_on_their_qps_at_the_bound_within_their_brackets():
    # The committed search: 1391 QPS met the 15 ms bound, 1453 did not.
    steps_a = [_step(942.0), _step(1391.2)]
    base = _search(1391.2, 1452.8, 11.26, steps=steps_a)
    steps_b = [_step(1100.0, "b"), _step(777.0, "b")]
    slower = _search(1100.0, 1160.0, 12.5, run_id="b", steps=steps_b)
    result = compare([base, *steps_a], [slower, *steps_b])
    # The steps (their loads chosen by each run's own search) are left out, and said so.
    assert len(result.pairs) == 1 and not result.unpaired_baseline and not result.unpaired_candidate
    assert any("2 server search step(s) not compared" in w for w in result.warnings)
    p = result.pairs[0]
    assert p.ratio == pytest.approx(1100.0 / 1391.2) and p.p99_ratio == pytest.approx(12.5 / 11.26)
    # The interval is the ratios both brackets allow; the brackets do not overlap: slower.
    assert (p.ci_low, p.ci_high) == (pytest.approx(1100.0 / 1452.8), pytest.approx(1160.0 / 1391.2))
    assert p.interval == "search bracket" and p.p_value is None and p.verdict == "slower"
    assert gate(result, 0.05) == 1
    assert "bracket, p99 1.110" in format_terminal(result)
    # Overlapping brackets: the searches cannot tell the two apart.
    near = _search(1420.0, 1490.0, 11.0, run_id="b")
    p = compare([base], [near]).pairs[0]
    assert p.ci_low < 1 < p.ci_high and p.verdict == "same"
    faster = _search(1600.0, 1680.0, 11.0, run_id="b")
    assert compare([base], [faster]).pairs[0].verdict == "faster"
    # Beyond its bracket but within the threshold: same.
    tight = _search(1391.2, 1400.0, 11.0)
    assert compare([tight], [_search(1405.0, 1410.0, 11.0, run_id="b")]).pairs[0].verdict == "same"
    # A search that found no failing load has no upper end: no interval, no verdict.
    open_ended = _search(1600.0, None, 11.0, run_id="b")
    p = compare([base], [open_ended]).pairs[0]
    assert p.verdict is None and p.reason == "no interval" and p.ratio == pytest.approx(1600.0 / 1391.2)
    p = compare([base], [dict(slower, contended=True)]).pairs[0]
    assert p.verdict is None and p.reason == "contended"
    p = compare([base], [dict(slower, status="error", server_qps_at_bound=None)]).pairs[0]
    assert p.reason == "failed (candidate: error)"


def test_other_serving_scenarios_show_their_figure_without_a_verdict():
    # One LoadGen run gives one figure: the ratio and the p99 ratio, no interval.
    recs = [r for r in load_records(SERVING) if r.get("task") == "serving"]
    single = next(r for r in recs if r.get("scenario") == "single-stream")
    offline = next(r for r in recs if r.get("scenario") == "offline")
    slow_single = dict(single, latency_ms_p90=single["latency_ms_p90"] * 1.25, latency_ms_p99=single["latency_ms_p99"] * 2)
    slow_offline = dict(offline, samples_per_s=offline["samples_per_s"] / 2)
    result = compare([single, offline], [slow_single, slow_offline])
    by = {p.key["scenario"]: p for p in result.pairs}
    assert by["single-stream"].ratio == pytest.approx(1 / 1.25)  # queries/s at the p90 latency
    assert by["single-stream"].baseline_throughput == pytest.approx(1000 / single["latency_ms_p90"])
    assert by["single-stream"].p99_ratio == pytest.approx(2.0)
    assert by["offline"].ratio == pytest.approx(0.5)
    assert {p.reason for p in result.pairs} == {"no interval"} and {p.verdict for p in result.pairs} == {None}
    # A run LoadGen called INVALID (e.g. too few queries) has no figure to judge.
    p = compare([offline], [dict(slow_offline, valid=False)]).pairs[0]
    assert p.reason == "invalid (candidate)" and p.ratio == pytest.approx(0.5)


def test_the_committed_serving_runs_pair_their_searches():
    recs = load_records(SERVING)
    fp32 = [r for r in recs if r.get("run_id") == "217402dcd397"]
    result = compare(fp32, fp32)
    server = [p for p in result.pairs if p.key["scenario"] == "server"]
    assert len(server) == 1 and server[0].ratio == 1.0 and server[0].verdict == "same"
    assert server[0].interval == "search bracket"
    assert any("6 server search step(s) not compared" in w for w in result.warnings)


def test_select_run_by_id_or_prefix():
    from dlmark.analysis.compare import run_ids, select_run

    recs = [{"run_id": "abc123", "timestamp": "2026-01-02T00:00:00", "suite": "quick"},
            {"run_id": "abc999", "timestamp": "2026-01-01T00:00:00", "suite": "cnn"},
            {"run_id": "abc123", "timestamp": "2026-01-02T00:01:00", "suite": "quick"}, {"run_id": None}]
    assert len(select_run(recs, "abc123", "runs")) == 2 and len(select_run(recs, "abc9", "runs")) == 1
    assert run_ids(recs)[1:] == ["abc999 (cnn, 1 records, 2026-01-01 00:00)", "abc123 (quick, 2 records, 2026-01-02 00:00)"]
    with pytest.raises(UserError, match="prefix of 2 runs in runs"):
        select_run(recs, "abc", "runs")
    with pytest.raises(UserError, match=r"no run 'x' in runs; its runs: \(no run id\) \(1 records\); abc999"):
        select_run(recs, "x", "runs")


# ----------------------------------------------------------------- output, gate


def test_output_formats_and_gate(template):
    base = [rec(template, batch_size=b) for b in (1, 2, 4)]
    cand = [scaled(base[0], 1.10), scaled(base[1], 1.0), scaled(base[2], 1 / 1.25), rec(template, batch_size=16)]
    result = compare(base, cand)
    verdicts = {p.key["batch_size"]: p.verdict for p in result.pairs}
    assert verdicts == {1: "slower", 2: "same", 4: "faster"}
    assert result.geomean["overall"].pairs == 3
    g = result.geomean[template["model"]]
    assert g.ratio == pytest.approx((1 / 1.10 * 1 * 1.25) ** (1 / 3))
    assert g.ci_low <= g.ratio <= g.ci_high

    plain = format_terminal(result, colour=False)
    assert "\033[" not in plain
    lines = plain.splitlines()
    header = lines[0]
    col = header.index("verdict")
    rows = lines[2:5]
    assert all(len(r) >= col and r[col:].split()[0] in ("slower", "same", "faster") for r in rows)
    assert "1 faster, 1 slower, 1 same" in plain
    coloured = format_terminal(result, colour=True)
    assert "\033[31m" in coloured and "\033[32m" in coloured and re.sub(r"\033\[[0-9;]*m", "", coloured) == plain

    md = format_markdown(result)
    assert md.splitlines()[0].startswith(":red_circle: **3 pairs")
    assert "| model | configuration |" in md and "|---|---|---:|" in md
    assert "Only in candidate: 1" in md and re.search(r"^- .*: bs 16$", md, re.M)

    data = to_json(result)
    assert json.loads(json.dumps(data)) == data
    assert [p["verdict"] for p in data["pairs"]] == [p.verdict for p in result.pairs]

    assert gate(result, 0.05) == 1  # 10% slower
    assert gate(result, 0.15) == 0  # slower, but not by that much
    assert gate(result, None) == 0
    fine = compare(base, [scaled(b, 1.0) for b in base] + [scaled(base[2], 1 / 1.25)])
    assert gate(fine, 0.0) == 0


def test_ratio_with_significance_matches_compare(template):
    for f in (1.0, 1.03, 1.10, 1 / 1.10):
        cand = scaled(template, f)
        one = ratio_with_significance(template, cand)
        p = compare([template], [cand]).pairs[0]
        assert one["verdict"] == p.verdict and one["ratio"] == pytest.approx(p.ratio)
        assert (one["ci_low"], one["ci_high"]) == (p.ci_low, p.ci_high)
        assert one["p_value"] == pytest.approx(p.p_adjusted)  # one pair: nothing to correct
    noisy = dict(scaled(template, 1.5), noisy=True)
    assert ratio_with_significance(template, noisy)["verdict"] is None


def test_threshold_makes_small_significant_differences_same(template):
    # 1% with tight blocks: significant, but below the 2% threshold
    tight = dict(template, block_times_s=[0.1 * (1 + 0.001 * math.sin(i)) for i in range(12)], noisy=False)
    cand = scaled(tight, 1.01)
    result = compare([tight], [cand])
    p = result.pairs[0]
    assert p.p_adjusted < 0.05 and p.verdict == "same"
    assert compare([tight], [cand], threshold=0.005).pairs[0].verdict == "slower"


def test_p_values_match_scipy_exact_and_asymptotic():
    from dlmark.analysis import compare as mod

    rng = np.random.default_rng(5)
    for n, m, shift in ((9, 11, 0.7), (5, 5, 2.0), (12, 20, 0.1)):
        x, y = rng.normal(size=n), rng.normal(size=m) + shift
        assert mod._mannwhitney_p(x, y) == pytest.approx(mannwhitneyu(y, x, method="exact").pvalue)
    # ties, and more pairs than the exact distribution is built for: SciPy's normal approximation
    x, y = np.round(rng.normal(size=9), 1), np.round(rng.normal(size=11) + 0.7, 1)
    assert mod._mannwhitney_p(x, y) == pytest.approx(mannwhitneyu(y, x, method="asymptotic").pvalue)
    x, y = rng.normal(size=60), rng.normal(size=50) + 0.3
    assert mod._mannwhitney_p(x, y) == pytest.approx(mannwhitneyu(y, x, method="asymptotic").pvalue)
    assert mod._mannwhitney_p(np.ones(6), np.ones(6)) == 1.0


def test_parse_fraction():
    from dlmark.analysis.compare import parse_fraction

    assert parse_fraction("5%") == pytest.approx(0.05) and parse_fraction("0.02") == 0.02
    for bad in ("five", "150%", "-1%"):
        with pytest.raises(UserError):
            parse_fraction(bad)


# ------------------------------------------------------------------ across runs (--repetitions)


def test_student_t_matches_scipy():
    from scipy.stats import t as student

    from dlmark.analysis.compare import t_quantile, t_sf

    for df in (1.3, 2.0, 3.7, 8.0, 40.0):
        for value in (0.0, 0.4, 1.5, 3.0, 9.0):
            assert t_sf(value, df) == pytest.approx(student.sf(value, df), rel=1e-9, abs=1e-14)
        assert t_quantile(0.975, df) == pytest.approx(student.ppf(0.975, df), rel=1e-9)


def runs_of(t, side: str, figures, **changes):
    """One record per run of one configuration: its blocks scaled so that the run's median is the figure,
    repetition numbers in extra_config as `dlmark run --repetitions` writes them."""
    out = []
    blocks = np.asarray(t["block_times_s"], dtype=float)
    for i, figure in enumerate(figures):
        factor = t["throughput"] / figure
        r = rec(t, run_id=f"{side}", timestamp=f"2026-01-01T00:00:{i:02d}+00:00", throughput=figure,
                block_times_s=list(blocks * factor), noisy=False, contended=False, **changes)
        r["extra_config"] = {**(t.get("extra_config") or {}), **({"repetition": i + 1} if i else {})}
        out.append(r)
    return out


def test_identical_code_on_a_drifting_machine_reads_same_across_runs_but_not_on_blocks(template):
    # The machine moves 8% (log sd) between runs and hardly within one: the blocks of one run
    # then call most pairs, the runs almost none (issue 15's A/A).
    rng = np.random.default_rng(15)
    base, cand, newest_b, newest_c = [], [], [], []
    for b in range(1, 61):
        figures = template["throughput"] * np.exp(rng.normal(0, 0.08, 6))
        base += runs_of(template, "A", figures[:3], batch_size=b)
        cand += runs_of(template, "B", figures[3:], batch_size=b)
        newest_b.append(base[-1])
        newest_c.append(cand[-1])
    across = compare(base, cand)
    assert all(p.baseline_runs == 3 and p.candidate_runs == 3 for p in across.pairs) and len(across.pairs) == 60
    called = [p for p in across.pairs if p.verdict in ("faster", "slower")]
    assert len(called) <= 3, [(p.ratio, p.p_adjusted) for p in called]  # 5% of 60
    assert any("judged across runs (3 vs 3 records each)" in w for w in across.warnings)
    blocks = compare(newest_b, newest_c)
    called = sum(p.verdict in ("faster", "slower") for p in blocks.pairs)
    assert called > 20
    assert any(w.startswith(f"{called} pair(s) called on one run a side") and "--repetitions" in w
               for w in blocks.warnings)
    assert not any("called on one run a side" in w for w in across.warnings)


def test_a_real_change_is_found_across_runs_with_its_interval(template):
    rng = np.random.default_rng(16)
    base, cand = [], []
    for b in range(1, 21):
        noise = np.exp(rng.normal(0, 0.03, 6))
        base += runs_of(template, "A", template["throughput"] * noise[:3], batch_size=b)
        cand += runs_of(template, "B", template["throughput"] / 1.25 * noise[3:], batch_size=b)
    result = compare(base, cand)
    assert all(p.verdict == "slower" for p in result.pairs)
    inside = sum(p.ci_low <= 1 / 1.25 <= p.ci_high for p in result.pairs)
    assert inside >= 18  # a 95% interval
    assert all(p.interval == "95% across runs" for p in result.pairs)


def test_repetitions_pair_with_a_plain_run_and_one_sided_repeats_say_so(template):
    base = runs_of(template, "A", [template["throughput"]] * 3)
    plain = [rec(template, run_id="B")]
    result = compare(base, plain)
    assert len(result.pairs) == 1 and result.pairs[0].baseline_runs == 1  # blocks of the newest on each side
    assert any(w.startswith("baseline: 1 configuration(s) measured more than once") for w in result.warnings)


def test_a_contended_run_withholds_the_verdict_across_runs(template):
    base = runs_of(template, "A", [100.0, 101.0, 99.0])
    cand = runs_of(template, "B", [80.0, 81.0, 79.0])
    assert compare(base, cand).pairs[0].verdict == "slower"
    cand[1]["contended"] = True
    assert compare(base, cand).pairs[0].reason == "contended"
