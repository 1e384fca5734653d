"""dlmark report: the static site, its failure modes, and the pages in a real headless browser."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dlmark.cli import main
from dlmark.errors import UserError
from dlmark.report.site import build_site

import synthetic_results as synthetic

#: Real worker processes and real runs: minutes on a loaded 2-core machine (`-m "not slow"` skips them).
pytestmark = pytest.mark.slow


# Few models keep the build quick: Bokeh's serialisation dominates and grows with the figures.
SITE_MODELS = ("AlexNet", "ResNet-v1-50", "ResNet-v2-50", "VGG-16")


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    """A site built from synthetic results of two devices, a hostile model name and a broken file."""
    results = synthetic.write_results(tmp_path_factory.mktemp("results"), models=SITE_MODELS, xss=True)
    (results / "cnn.py__benchmark_throughput__broken.json").write_text("{ not json")
    out = tmp_path_factory.mktemp("site")
    return results, out, build_site(results, out)


@pytest.fixture(scope="module")
def real_site(tmp_path_factory):
    """A site from a real `dlmark run` on this CPU merged with synthetic GPU records and a hostile name."""
    results = synthetic.write_results(tmp_path_factory.mktemp("merged-results"), models=SITE_MODELS, xss=True)
    for path in synthetic.real_cpu_results().glob("*.json"):
        shutil.copy(path, results)
    out = tmp_path_factory.mktemp("real-site")
    return results, out, build_site(results, out)


def table_rows(html: str, table_id: str) -> list[str]:
    body = re.search(rf'<table class="sortable" id="{table_id}">.*?<tbody>(.*?)</tbody>', html, re.S)
    assert body, f"no table {table_id}"
    return re.findall(r"<tr>.*?</tr>", body.group(1), re.S)


def test_site_summary_and_files(site):
    results, out, summary = site
    assert summary.records == len(list(results.glob("*.json"))) - 1  # one record a file, less the broken one
    assert set(summary.devices) == {synthetic.GPU, synthetic.CPU}
    assert "AlexNet" in summary.models and synthetic.XSS_MODEL in summary.models
    assert len(summary.unreadable) == 1 and "broken.json" in summary.unreadable[0]
    for page in ("index.html", "cnn.html", "data/results.csv"):
        assert (out / page).is_file()
    assert "skipped 1 unreadable" in summary.line()


def test_csv_download_holds_every_record(site):
    results, out, summary = site
    csv = pd.read_csv(out / "data" / "results.csv")
    assert len(csv) == summary.records
    assert {"model", "device", "batch_size", "throughput", "env.torch"} <= set(csv.columns)
    assert csv.loc[csv.model == "AlexNet", "task"].value_counts()["throughput"] == 2 * len(synthetic.BATCH_SIZES)


def test_pages_load_nothing_from_the_network(site):
    _, out, _ = site
    for page in ("index.html", "cnn.html"):
        html = (out / page).read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), page
    bokeh_js = list((out / "static").glob("bokeh-*.min.js"))
    assert bokeh_js and all(path.stat().st_size > 100_000 for path in bokeh_js)


def test_strings_from_result_files_are_escaped_everywhere(site):
    _, out, _ = site
    for page in ("index.html", "cnn.html"):
        html = (out / page).read_text()
        assert "<script>document.title" not in html, page
    assert "&lt;script&gt;document.title" in (out / "index.html").read_text()


def test_tables_hold_the_expected_rows(site):
    results, out, _ = site
    index = (out / "index.html").read_text()
    assert len(table_rows(index, "devices-table")) == 2
    assert len(table_rows(index, "models-table")) == len(SITE_MODELS) + 1
    assert len(table_rows(index, "failed-table")) == 2  # the two oom records
    assert len(table_rows(index, "environment-table")) == 2
    assert "broken.json" in index
    cnn = (out / "cnn.html").read_text()
    ok_throughput = (len(SITE_MODELS) + 1) * len(synthetic.BATCH_SIZES) * 2
    assert len(table_rows(cnn, "throughput-table")) == ok_throughput
    assert len(table_rows(cnn, "largest-batch-table")) == (len(SITE_MODELS) + 1) * 2
    assert len(table_rows(cnn, "accuracy-table")) == len(SITE_MODELS)
    # Numbers carry raw values, so the browser sorts 9 before 10.
    assert re.search(r'<td class="num" data-value="64.0">64</td>', cnn)


def test_empty_or_unreadable_folders_are_one_line_user_errors(tmp_path, capsys):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(UserError, match="no result files"):
        build_site(empty, tmp_path / "site")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "a.json").write_text("[1, 2")
    with pytest.raises(UserError, match="none of the 1 result files"):
        build_site(broken, tmp_path / "site")
    assert main(["report", str(broken), "-o", str(tmp_path / "site")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("dlmark: error: none of the 1 result files")
    assert not (tmp_path / "site").exists()


def test_report_command_builds_the_site(tmp_path, capsys):
    results = synthetic.write_results(tmp_path / "results", models=("AlexNet", "VGG-16"), devices=(synthetic.CPU,))
    assert main(["report", str(results), "-o", str(tmp_path / "site")]) == 0
    assert "wrote" in capsys.readouterr().out
    cnn = (tmp_path / "site" / "cnn.html").read_text()
    assert "these results come from one device" in cnn  # the hardware section says why it is empty


# ---------------------------------------------------------------- the pages in a browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    if not (CHROMIUM and CHROMEDRIVER):
        pytest.skip("needs Debian's chromium and chromium-driver (apt-get install -y chromium chromium-driver)")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1500,1200",
                 f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
                 # Any host name fails to resolve: the pages must render with no network at all.
                 "--host-resolver-rules=MAP * ~NOTFOUND"):
        options.add_argument(flag)
    downloads = tmp_path_factory.mktemp("downloads")
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    # Headless Chromium drops downloads unless told where to put them.
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.set_page_load_timeout(120)
    driver.downloads = downloads
    yield driver
    driver.quit()


# Counts the canvases Bokeh drew into (they live in shadow roots) and the ones with ink on them.
_CANVAS_STATE = """
const canvases = [];
(function walk(root) {
  root.querySelectorAll('*').forEach(el => {
    if (el.tagName === 'CANVAS') canvases.push(el);
    if (el.shadowRoot) walk(el.shadowRoot);
  });
})(document);
let inked = 0;
for (const canvas of canvases) {
  if (canvas.width < 50 || canvas.height < 50) continue;
  const pixels = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let coloured = 0;
  for (let i = 0; i < pixels.length; i += 4 * 7) {
    if (pixels[i + 3] > 0 && (pixels[i] < 230 || pixels[i + 1] < 230 || pixels[i + 2] < 230)) coloured++;
  }
  if (coloured > 50) inked++;
}
return {canvases: canvases.length, inked: inked,
        bokeh: typeof window.Bokeh !== 'undefined' ? window.Bokeh.version : null};
"""


def _wait_for_plots(driver, expected_plots: int) -> dict:
    from selenium.webdriver.support.ui import WebDriverWait

    def rendered(d):
        state = d.execute_script(_CANVAS_STATE)
        return state if state["inked"] >= expected_plots else False
    # Generous: on two busy CPU cores BokehJS can take twenty seconds to lay out a page.
    return WebDriverWait(driver, 120, poll_frequency=0.5).until(rendered)


@pytest.mark.slow
def test_pages_render_offline_in_chromium_without_errors_or_injected_script(real_site, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    results, out, summary = real_site
    assert len(summary.devices) == 3  # the real CPU beside the synthetic GPU and CPU
    # Screenshots for a person to look at: kept where DLMARK_ARTIFACTS points, else in tmp.
    screenshots = Path(os.environ.get("DLMARK_ARTIFACTS") or tmp_path)
    screenshots.mkdir(parents=True, exist_ok=True)

    browser.get((out / "index.html").as_uri())
    assert browser.title == "dlmark report: overview"
    rows = browser.find_elements(By.CSS_SELECTOR, "#models-table tbody tr")
    assert len(rows) == len(summary.models)
    # The hostile name is on the page as text.
    assert any(row.text.startswith(synthetic.XSS_MODEL) for row in rows)
    # Sorting by parameters puts the largest model (VGG-16) last.
    browser.find_element(By.XPATH, "//table[@id='models-table']//th[.='parameters (M)']").click()
    first_column = [r.find_elements(By.TAG_NAME, "td")[0].text
                    for r in browser.find_elements(By.CSS_SELECTOR, "#models-table tbody tr")]
    assert first_column[-1] == "VGG-16"
    browser.save_screenshot(str(screenshots / "report-index.png"))

    browser.get((out / "cnn.html").as_uri())
    figures = browser.find_elements(By.CSS_SELECTOR, "figure div[data-root-id]")
    state = _wait_for_plots(browser, len(figures))
    assert state["bokeh"], "BokehJS did not load from the bundled file"
    assert state["inked"] >= len(figures) > 5
    # The injected script would have renamed the page; it must not have run anywhere.
    assert browser.title == "dlmark report: convolutional networks"
    browser.set_window_size(1500, browser.execute_script("return document.body.scrollHeight"))
    browser.save_screenshot(str(screenshots / "report-cnn.png"))
    browser.set_window_size(1500, 1200)

    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []

    # The CSV link downloads the data.
    browser.get((out / "index.html").as_uri())
    browser.find_element(By.ID, "csv-link").click()
    # (Chromium keeps the file's own name for file:// links, not the download attribute's.)
    csv_files = WebDriverWait(browser, 60).until(lambda _: list(browser.downloads.glob("*.csv")))
    assert len(pd.read_csv(csv_files[0])) == summary.records


def test_csv_quotes_text_a_spreadsheet_would_run_as_a_formula(tmp_path):
    from dlmark.report.site import _csv

    rows = pd.DataFrame({"model": ["=HYPERLINK(\"http://x\",\"y\")", "@SUM(A1)", "AlexNet", "-2+3"],
                         "throughput": [1.5, -2.0, 3.0, 4.0], "trials": [[1, 2], None, {"a": 1}, None]})
    _csv(rows, tmp_path / "r.csv")
    back = pd.read_csv(tmp_path / "r.csv")
    assert list(back.model) == ["'=HYPERLINK(\"http://x\",\"y\")", "'@SUM(A1)", "AlexNet", "'-2+3"]
    assert list(back.throughput) == [1.5, -2.0, 3.0, 4.0]  # numbers stay numbers, signs included
    assert back.trials[0] == "[1, 2]" and back.trials[2] == '{"a": 1}'
