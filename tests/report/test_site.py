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
from dlmark.report.datatable import read_table
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


def table(out: Path, name: str) -> pd.DataFrame:
    """A table of the site as its page shows it (from its data file)."""
    return read_table(out / "data" / f"{name}.js")


def test_site_summary_and_files(site):
    results, out, summary = site
    assert summary.records == len(list(results.glob("*.json"))) - 1  # one record a file, less the broken one
    assert set(summary.devices) == {synthetic.GPU, synthetic.CPU}
    assert "AlexNet" in summary.models and synthetic.XSS_MODEL in summary.models
    assert len(summary.unreadable) == 1 and "broken.json" in summary.unreadable[0]
    for page in ("index.html", "cnn.html", "family-resnet.html", "family-alexnet.html", "data/results.csv"):
        assert (out / page).is_file()
    assert {"ResNet", "AlexNet", "VGG"} <= set(summary.families)  # ResNet-v1-50 and ResNet-v2-50 share a page
    assert "skipped 1 unreadable" in summary.line()


def test_csv_download_holds_every_record(site):
    results, out, summary = site
    csv = pd.read_csv(out / "data" / "results.csv")
    assert len(csv) == summary.records
    assert {"model", "device", "batch_size", "throughput", "env.torch"} <= set(csv.columns)
    assert csv.loc[csv.model == "AlexNet", "task"].value_counts()["throughput"] == 2 * len(synthetic.BATCH_SIZES)


def test_pages_load_nothing_from_the_network(site):
    _, out, _ = site
    for page in [p.name for p in out.glob("*.html")]:
        html = (out / page).read_text()
        assert not re.search(r"""(src|href)=["']?(https?:)?//""", html), page
    for data in (out / "data").glob("*.js"):
        assert "http://" not in data.read_text() and "https://" not in data.read_text(), data
    bokeh_js = list((out / "static").glob("bokeh-*.min.js"))
    assert bokeh_js and all(path.stat().st_size > 100_000 for path in bokeh_js)


def test_strings_from_result_files_are_escaped_everywhere(site):
    _, out, _ = site
    for page in out.glob("*.html"):
        assert "<script>document.title" not in page.read_text(), page
    assert "&lt;script&gt;document" in (out / "index.html").read_text()  # its family, in the list of families
    # In a data file the name is a JSON string, which the table script sets as text.
    assert synthetic.XSS_MODEL in set(table(out, "index-models")["model"])


def test_tables_hold_the_expected_rows(site):
    results, out, _ = site
    assert len(table(out, "index-devices")) == 2
    assert len(table(out, "index-models")) == len(SITE_MODELS) + 1
    assert len(table(out, "index-failed")) == 2  # the two oom records
    assert len(table(out, "index-environment")) == 2
    assert "broken.json" in (out / "index.html").read_text()
    ok_throughput = (len(SITE_MODELS) + 1) * len(synthetic.BATCH_SIZES) * 2
    assert len(table(out, "cnn-throughput")) == ok_throughput
    assert len(table(out, "cnn-largest-batch")) == (len(SITE_MODELS) + 1) * 2
    assert len(table(out, "cnn-accuracy")) == len(SITE_MODELS)
    # A family page holds its family's rows only.
    resnet = table(out, "family-resnet-throughput")
    assert set(resnet["model"]) == {"ResNet-v1-50", "ResNet-v2-50"}
    assert len(resnet) == 2 * len(synthetic.BATCH_SIZES) * 2
    # Numbers are numbers (the page sorts 9 before 10), rounded to what the page shows.
    assert resnet["batch size"].tolist()[:3] == [1, 2, 4]


def test_index_lists_every_model_and_configuration_once(site):
    results, out, summary = site
    rows = table(out, "index-configurations")
    # Per model: a throughput and a largest-batch row per device, an accuracy row where measured.
    alexnet = rows[rows["model"] == "AlexNet"]
    assert sorted(alexnet["task"]) == ["accuracy", "max_batch_size", "max_batch_size", "throughput", "throughput"]
    gpu = alexnet[(alexnet["task"] == "throughput") & (alexnet["device"] == synthetic.GPU)].iloc[0]
    assert gpu["batch sizes"] == len(synthetic.BATCH_SIZES)
    assert gpu["at batch"] == max(synthetic.BATCH_SIZES)  # throughput saturates: the largest batch is the best
    assert gpu["family"] == "AlexNet"
    # One configuration everywhere: no runtime or precision column to tell apart.
    assert "runtime" not in rows.columns and "precision" not in rows.columns


def test_configurations_are_told_apart_and_subfolders_are_read(tmp_path):
    """`dlmark run --backend pytorch,onnxruntime,openvino` into runs/rt: the report must read the
    subfolder and tell the runtimes apart in every table."""
    results = tmp_path / "runs"
    rt = results / "rt"
    rt.mkdir(parents=True)
    models = ("DenseNet-121", "AlexNet", "VGG-16", "ResNet-v1-18")
    for model in models:
        for backend, speed in (("pytorch", 1.0), ("onnxruntime", 1.5), ("openvino", 2.0)):
            for batch in (1, 8):
                r = synthetic.throughput_record(model, synthetic.CPU, batch)
                r.update(backend=backend, job_key=f"{r['job_key']}-{backend}", throughput=r["throughput"] * speed,
                         block_times_s=[t / speed * (1 + 0.01 * i) for i, t in enumerate(r["block_times_s"])])
                synthetic.write_record(rt, r, "throughput")
        published = synthetic.accuracy_record(model, synthetic.CPU, 8)
        published.update(accuracy_source="published", weights_tag="IMAGENET1K_V1")
        synthetic.write_record(rt, published, "accuracy")
    out = tmp_path / "site"
    summary = build_site(results, out)
    assert summary.records == len(models) * 3 * 2 + len(models)
    configurations = table(out, "index-configurations")
    throughput = configurations[configurations["task"] == "throughput"]
    assert len(throughput) == len(models) * 3
    assert set(throughput["runtime"]) == {"pytorch", "onnxruntime", "openvino"}
    detail = table(out, "cnn-throughput")
    assert "runtime" in detail.columns and "precision" not in detail.columns  # fp32 everywhere
    assert len(detail.drop_duplicates(["model", "runtime", "batch size"])) == len(detail)
    # ls --compare's table: each runtime against PyTorch eager of the same model and batch size.
    ratios = table(out, "cnn-runtimes")
    onnx = ratios[ratios["runtime"] == "onnxruntime"]
    assert len(onnx) == len(models) * 2 and onnx["x pytorch eager"].round(2).eq(1.5).all()
    cnn = (out / "cnn.html").read_text()
    # Published accuracy is marked as such on the page, as `dlmark ls` marks it.
    assert "accuracy: published figures, not measured here" in cnn
    assert set(table(out, "cnn-accuracy")["measured or published"]) == {"published"}
    # Commands in notes are code, not raw backticks.
    assert "<code>dlmark peak --device cpu</code>" in cnn and "`dlmark" not in cnn


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


def _wait_for_tables(driver, timeout: float = 120) -> None:
    """Until every data table of the page has drawn its first page."""
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout, poll_frequency=0.2).until(lambda d: d.execute_script(
        "return [...document.querySelectorAll('div.datatable')].every(t => t.dataset.ready === 'true')"))


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
    _wait_for_tables(browser)
    rows = browser.find_elements(By.CSS_SELECTOR, "#index-models-table tbody tr")
    assert len(rows) == len(summary.models)
    # The hostile name is on the page as text.
    assert any(row.text.startswith(synthetic.XSS_MODEL) for row in rows)
    # Sorting by parameters puts the largest model (VGG-16) last.
    browser.find_element(By.XPATH, "//table[@id='index-models-table']//th[.='parameters (M)']").click()
    first_column = [r.find_elements(By.TAG_NAME, "td")[0].text
                    for r in browser.find_elements(By.CSS_SELECTOR, "#index-models-table tbody tr")]
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


# ---------------------------------------------------------------- at zoo scale

ZOO_RECORDS = 20_000
PAGE_LIMIT = 3_000_000  # bytes: the bound for any page of a 20,000-record site


@pytest.fixture(scope="module")
def zoo_site(tmp_path_factory):
    """A site of 20,000 synthetic records (about 2,200 models) made by scripts/scale_bench.py from the
    committed real records, and the seconds its build took."""
    import importlib.util
    import time

    root = Path(__file__).resolve().parents[2]
    spec = importlib.util.spec_from_file_location("scale_bench", root / "scripts" / "scale_bench.py")
    scale_bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(scale_bench)
    folder = tmp_path_factory.mktemp("zoo") / "records"
    scale_bench.make_folder(folder, ZOO_RECORDS, scale_bench.real_records(root / "results"))
    out = tmp_path_factory.mktemp("zoo-site")
    start = time.perf_counter()
    summary = build_site(folder, out)
    return folder, out, summary, time.perf_counter() - start


def test_zoo_site_pages_stay_small(zoo_site):
    folder, out, summary, seconds = zoo_site
    assert summary.records == ZOO_RECORDS
    assert 2000 <= len(summary.models) <= 2300
    # Far below the 2018 page's 200 ms a record even on a loaded machine (the target is 60 s quiet).
    assert seconds < 300, summary.timings
    sizes = {p.relative_to(out).as_posix(): p.stat().st_size for p in out.rglob("*")
             if p.is_file() and p.suffix in (".html", ".js") and p.parent.name != "static"}
    assert max(sizes.values()) <= PAGE_LIMIT, sorted(sizes.items(), key=lambda kv: -kv[1])[:3]
    # Every page's figures are a readable few, not a canvas per model.
    for page in out.glob("*.html"):
        assert page.read_text().count("data-root-id") <= 40, page.name
    assert (out / "family-resnet.html").is_file()


def test_zoo_index_has_every_configuration_of_a_model(zoo_site):
    folder, out, summary, _ = zoo_site
    model = summary.models[len(summary.models) // 2]
    rows = table(out, "index-configurations")
    mine = rows[rows["model"] == model]
    # Its configurations counted from its own JSON files, independently of the loader.
    import json

    configs = set()
    for path in folder.glob(f"*__{model}__*.json"):
        r = json.loads(path.read_text())
        if r.get("model") == model and r.get("task") != "peak":
            configs.add((r.get("device"), r.get("task"), r.get("backend"), r.get("compile_mode"),
                         r.get("precision"), r.get("layout"), r.get("threads"), r.get("scenario")))
    assert configs and len(mine) == len(configs)


def test_zoo_site_in_chromium_search_pages_and_no_errors(zoo_site, browser, tmp_path):
    from selenium.webdriver.common.by import By

    folder, out, summary, _ = zoo_site
    model = summary.models[len(summary.models) // 3]
    expected = table(out, "index-configurations")
    expected = expected[expected["model"].str.contains(model, regex=False)]

    browser.get_log("browser")  # drop what earlier pages logged
    browser.get((out / "index.html").as_uri())
    _wait_for_tables(browser)
    grid = "#index-configurations-table tbody tr"
    holder = browser.find_element(By.ID, "index-configurations")
    first_page = [r.text for r in browser.find_elements(By.CSS_SELECTOR, grid)]
    assert len(first_page) == 50
    assert "page 1 of" in holder.find_element(By.CSS_SELECTOR, ".datatable-page").text
    holder.find_element(By.CSS_SELECTOR, "button[data-page='next']").click()
    second_page = [r.text for r in browser.find_elements(By.CSS_SELECTOR, grid)]
    assert len(second_page) == 50 and set(second_page).isdisjoint(first_page)
    assert "rows 51\u2013100, page 2 of" in holder.find_element(By.CSS_SELECTOR, ".datatable-page").text

    search = holder.find_element(By.CSS_SELECTOR, "input[type=search]")
    search.send_keys(model)
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(browser, 30).until(lambda _: "match" in holder.find_element(By.CSS_SELECTOR, ".datatable-info").text)
    found = [r.find_elements(By.TAG_NAME, "td")[0].text for r in browser.find_elements(By.CSS_SELECTOR, grid)]
    assert found and all(model in name for name in found)
    assert len(found) == min(50, len(expected))
    # A family page opened by its link from the table draws its figures.
    browser.find_element(By.CSS_SELECTOR, "#index-configurations-table tbody tr td a").click()
    figures = browser.find_elements(By.CSS_SELECTOR, "figure div[data-root-id]")
    assert 0 < len(figures) <= 40
    _wait_for_plots(browser, len(figures))
    _wait_for_tables(browser)
    browser.save_screenshot(str(Path(os.environ.get("DLMARK_ARTIFACTS") or tmp_path) / "report-zoo-family.png"))
    # Its link back opens the index searching for the family.
    family = browser.title.removeprefix("dlmark report: ")
    browser.find_element(By.PARTIAL_LINK_TEXT, "Every configuration of them").click()
    _wait_for_tables(browser)
    holder = browser.find_element(By.ID, "index-configurations")
    assert holder.find_element(By.CSS_SELECTOR, "input[type=search]").get_attribute("value") == family
    families = [r.find_elements(By.TAG_NAME, "td")[1].text for r in browser.find_elements(By.CSS_SELECTOR, grid)]
    assert families and {f.lower() for f in families} == {family.lower()}
    errors = [entry for entry in browser.get_log("browser") if entry["level"] == "SEVERE"]
    assert errors == []
