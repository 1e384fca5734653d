"""dlmark report --baseline: the comparison page, from the same Comparison `dlmark compare` prints, and in a browser."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

from dlmark.analysis.compare import HEADER, compare, pair_cells
from dlmark.cli import main
from dlmark.cli.compare import load_side
from dlmark.report.compare_page import COLOURS, NO_VERDICT_COLOUR, drawn_pairs, ratio_figure

from test_site import browser, _wait_for_plots  # noqa: F401  (a fixture, and the wait for Bokeh's canvases)

SOURCE = Path(__file__).resolve().parents[2] / "results" / "h200-tune"  # committed H200 records, tight blocks
#: Per configuration, in turn: unchanged, 10% slower, 25% faster (block times multiplied by the factor).
FACTORS = (1.0, 1.10, 1 / 1.25)
EXPECTED = {1.0: "same", 1.10: "slower", 1 / 1.25: "faster"}


def _good(record: dict) -> bool:
    return (record.get("task") == "throughput" and record.get("status") == "ok" and not record.get("noisy")
            and not record.get("throttled") and len(record.get("block_times_s") or []) >= 8)


def _copy(record: dict, factor: float, run_id: str, timestamp: str | None = None) -> dict:
    out = json.loads(json.dumps(record))
    out["block_times_s"] = [t * factor for t in record["block_times_s"]]
    for k in ("throughput", "throughput_ci95_low", "throughput_ci95_high"):
        if out.get(k):
            out[k] = out[k] / factor
    out["run_id"] = run_id
    if timestamp:
        out["timestamp"] = timestamp
    return out


@pytest.fixture(scope="module")
def sides(tmp_path_factory):
    """Baseline and candidate folders: known changes, one noisy pair, one unpaired record on each side;
    and one folder holding both as two runs."""
    root = tmp_path_factory.mktemp("compare-page")
    sources = [(p.name, json.loads(p.read_text())) for p in sorted(SOURCE.glob("*.json"))]
    # Twelve configurations: each change four times over, and a site that builds in seconds.
    sources = [(name, r) for name, r in sources if _good(r)][:12]
    assert len(sources) == 12, "the committed records this test copies are missing"
    base_dir, cand_dir, both = root / "base", root / "cand", root / "both"
    for folder in (base_dir, cand_dir, both):
        folder.mkdir()
    factors = {}
    for i, (name, r) in enumerate(sources):
        base = _copy(r, 1.0, "run-a0001")
        (base_dir / name).write_text(json.dumps(base))
        (both / f"a-{name}").write_text(json.dumps(base))
        if i == 0:
            continue  # only in the baseline
        factor = FACTORS[i % len(FACTORS)]
        cand = _copy(r, factor, "run-b0002", "2099-01-01T00:00:00+00:00")
        if i == 1:
            cand["noisy"] = True  # a pair with a reason, not a verdict
        else:
            factors[(r["model"], r["batch_size"], r["compile_mode"], r["precision"], r["layout"],
                     json.dumps(r.get("extra_config"), sort_keys=True))] = factor
        (cand_dir / name).write_text(json.dumps(cand))
        (both / f"b-{name}").write_text(json.dumps(cand))
    extra = _copy(sources[0][1], 1.0, "run-b0002", "2099-01-01T00:00:00+00:00")
    extra["batch_size"] = 9999  # only in the candidate
    (cand_dir / "extra.json").write_text(json.dumps(extra))
    (both / "b-extra.json").write_text(json.dumps(extra))
    return root, factors


def _factor(factors, p):
    k = p.key
    return factors.get((k["model"], k["batch_size"], k["compile_mode"], k["precision"], k["layout"],
                        json.dumps(k["extra_config"], sort_keys=True)))


@pytest.fixture(scope="module")
def site(sides, tmp_path_factory):
    root, factors = sides
    out = tmp_path_factory.mktemp("compare-site")
    assert main(["report", str(root / "cand"), "-o", str(out), "--baseline", str(root / "base")]) == 0
    result = compare(load_side("baseline", str(root / "base")), load_side("candidate", str(root / "cand")))
    return out, result, factors


def _table(out, name: str):
    from dlmark.report.datatable import read_table

    return read_table(out / "data" / f"{name}.js")


def test_the_comparison_knows_the_changes(site):
    _, result, factors = site
    verdicts = [(p.verdict, EXPECTED[_factor(factors, p)]) for p in result.pairs if _factor(factors, p)]
    assert len(verdicts) == len(result.pairs) - 1  # all but the noisy one
    assert all(got == want for got, want in verdicts), verdicts
    assert [p.reason for p in result.pairs if p.verdict is None] == ["noisy"]


def test_page_holds_the_compare_table_and_the_unpaired_records(site):
    out, result, _ = site
    html = (out / "compare.html").read_text()
    pairs = _table(out, "compare-pairs")
    # Every pair, with dlmark compare's cells, in its order; numbers as numbers (they sort).
    assert len(pairs) == len(result.pairs) and list(pairs.columns) == list(HEADER)
    numeric = {"baseline/s": "baseline_throughput", "candidate/s": "candidate_throughput",
               "p": "p_value", "p (adj)": "p_adjusted"}
    for (_, row), p in zip(pairs.iterrows(), result.pairs):
        for header, cell in zip(HEADER, pair_cells(p)):
            if header in numeric and getattr(p, numeric[header]) is not None:
                assert row[header] == pytest.approx(getattr(p, numeric[header]), rel=1e-3, abs=1e-4)
            else:
                assert row[header] == cell, header
    assert set(pairs["verdict"]) == {"same", "slower", "faster", "noisy"}
    baseline_only = _table(out, "compare-unpaired-baseline")
    candidate_only = _table(out, "compare-unpaired-candidate")
    assert len(baseline_only) == 1 and len(candidate_only) == 1
    assert candidate_only["batch size"][0] == 9999 and candidate_only["run"][0] == "run-b0002"
    assert "Only in the baseline (1)" in html and "Only in the candidate (1)" in html
    # The summary line is dlmark compare's.
    assert re.search(r'id="compare-summary">\d+ pairs: ', html)
    # Linked from the index and every page's navigation.
    index = (out / "index.html").read_text()
    assert 'href="compare.html"' in index and 'href="compare.html"' in (out / "cnn.html").read_text()


def test_figure_rows_sorted_by_effect_coloured_by_verdict_with_the_band(site):
    _, result, _ = site
    from bokeh.models import BoxAnnotation, GlyphRenderer, Span

    fig = ratio_figure(result)
    pairs = drawn_pairs(result)
    factors = list(fig.y_range.factors)
    assert len(factors) == len(result.pairs) == len(set(factors))
    # Top row (the last factor) is the largest slowdown; ratios rise down the page.
    ratios = [p.ratio for p in pairs]
    assert ratios == sorted(ratios) and factors[-1].startswith(str(pairs[0].model))
    assert pairs[0].verdict == "slower" and pairs[-1].verdict == "faster"
    colours = {}
    for renderer in fig.select(type=GlyphRenderer):
        data = renderer.data_source.data
        colour = getattr(renderer.glyph, "line_color", None)
        for verdict in data["verdict"]:
            colours.setdefault(verdict, set()).add(colour)
    assert colours["slower"] == {COLOURS["slower"]} and colours["faster"] == {COLOURS["faster"]}
    assert colours["same"] == {COLOURS["same"]} and colours["noisy"] == {NO_VERDICT_COLOUR}
    # (the box-zoom tool has a BoxAnnotation of its own, not on the plot)
    [band] = [a for a in fig.center if isinstance(a, BoxAnnotation)]
    assert band.left == pytest.approx(1 / 1.02) and band.right == pytest.approx(1.02)
    assert [a.location for a in fig.center if isinstance(a, Span)] == [1.0]
    # Each whisker spans the pair's interval.
    for renderer in fig.select(type=GlyphRenderer):
        data = renderer.data_source.data
        assert all(lo <= r <= hi for lo, r, hi in zip(data["low"], data["ratio"], data["high"]))
        assert any(lo < hi for lo, hi in zip(data["low"], data["high"]))


def test_bad_baseline_is_one_line_exit_2_and_writes_nothing(sides, tmp_path, capsys):
    root, _ = sides
    empty = tmp_path / "empty"
    empty.mkdir()
    for baseline in (tmp_path / "missing", empty):
        site = tmp_path / f"site-{baseline.name}"
        assert main(["report", str(root / "cand"), "-o", str(site), "--baseline", str(baseline)]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and "the baseline" in err and "matches no result files" in err
        assert not site.exists()
    assert main(["report", str(root / "cand"), "-o", str(tmp_path / "s"), "--axis", "device"]) == 2
    assert "give --baseline" in capsys.readouterr().err


def test_two_runs_of_one_folder(sides, tmp_path, capsys):
    root, factors = sides
    both = root / "both"
    site = tmp_path / "site"
    assert main(["report", f"{both}@run-b", "-o", str(site), "--baseline", f"{both}@run-a"]) == 0
    out = capsys.readouterr().out
    assert "comparison with" in out
    verdicts = list(_table(site, "compare-pairs")["verdict"])
    expected = compare(load_side("baseline", str(root / "base")), load_side("candidate", str(root / "cand")))
    assert verdicts == [p.verdict or p.reason for p in expected.pairs]
    # The site itself is the whole folder: both runs.
    assert "2 runs" in out
    # A run that is not there names the ones that are.
    assert main(["report", str(both), "-o", str(tmp_path / "s2"), "--baseline", f"{both}@nope"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no run 'nope'" in err and "run-a0001" in err and "run-b0002" in err


@pytest.mark.slow
def test_comparison_page_in_chromium(site, browser):  # noqa: F811
    from selenium.webdriver.common.by import By

    out, result, _ = site
    browser.get((out / "compare.html").as_uri())
    assert browser.title == "dlmark report: comparison with the baseline"
    state = _wait_for_plots(browser, 1)
    assert state["bokeh"] and state["inked"] >= 1
    factors = browser.execute_script(
        "return Array.from(Bokeh.documents[0].roots()[0].y_range.factors)")
    assert len(factors) == len(result.pairs)
    cells = browser.find_elements(By.CSS_SELECTOR, "#compare-pairs tbody tr td:last-child")
    assert [c.text for c in cells] == [p.verdict or p.reason for p in result.pairs]
    assert len(browser.find_elements(By.CSS_SELECTOR, "#compare-unpaired-candidate tbody tr")) == 1
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
    # A screenshot for a person to look at: kept where DLMARK_ARTIFACTS points.
    if os.environ.get("DLMARK_ARTIFACTS"):
        shots = Path(os.environ["DLMARK_ARTIFACTS"])
        shots.mkdir(parents=True, exist_ok=True)
        browser.set_window_size(1500, browser.execute_script("return document.body.scrollHeight"))
        browser.save_screenshot(str(shots / "report-compare.png"))
        browser.set_window_size(1500, 1200)
    browser.get((out / "index.html").as_uri())
    browser.find_element(By.CSS_SELECTOR, "#link-compare a").click()
    assert browser.title == "dlmark report: comparison with the baseline"


def test_pairs_without_a_ratio_are_in_the_table_not_the_figure(tmp_path):
    from dlmark.records.load import load_records
    from dlmark.report.compare_page import comparison_frame

    old = [{"device": "Tesla V100-SXM2-16GB", "model": "AlexNet", "batch_size": 64, "throughput": 4000.0}]
    (tmp_path / "a.json").write_text(json.dumps(old))
    result = compare(load_records(tmp_path / "a.json"), load_records(tmp_path / "a.json"))
    assert ratio_figure(result) is None and drawn_pairs(result) == []
    [row] = comparison_frame(result).to_dict("records")
    assert row["verdict"] == "no samples"
    assert row["baseline/s"] == 4000.0  # numbers stay numbers: the page sorts them by value
