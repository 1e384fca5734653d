"""report.sections: where the int8 went and the input pipeline, as tables and figures on the report's page."""
from __future__ import annotations

import re
import shutil
from pathlib import Path

import pandas as pd
import pytest

from dlmark.records.load import load_results
from dlmark.report import site
from dlmark.report.sections import in_flight_column, report_sections

import synthetic_results as synthetic

COMMITTED_PIPELINE = Path(__file__).resolve().parents[2] / "results" / "h200-pipeline-1"


@pytest.fixture(scope="module")
def results(tmp_path_factory) -> Path:
    """The H200's pipeline records and the throughput task beside them, with CPU fp32 and int8 records
    (OpenVINO with one and two requests in flight, ONNX Runtime) of SqueezeNet-1.1."""
    folder = tmp_path_factory.mktemp("results")
    for path in COMMITTED_PIPELINE.glob("*.json"):
        shutil.copy(path, folder)
    for batch in (1, 32):
        synthetic.write_record(folder, synthetic.throughput_record("SqueezeNet-1.1", synthetic.CPU, batch),
                               "throughput")
        for n in (1, 2):
            synthetic.write_record(folder, synthetic.int8_record(
                "SqueezeNet-1.1", "openvino", batch, in_flight=n, int8_share=0.977,
                fallbacks=synthetic.OPENVINO_FALLBACKS), "throughput")
        synthetic.write_record(folder, synthetic.int8_record("SqueezeNet-1.1", "onnxruntime", batch,
                                                             fallbacks=["ReduceMean pool"]), "throughput")
    return folder


def sections(data: pd.DataFrame, site_dir: Path) -> list[dict]:
    """The sections with their tables written as the site writes them and read back as the page shows them."""
    from dlmark.report.datatable import Column, read_table, write_table

    def table(name: str, rows: pd.DataFrame, columns: list) -> pd.DataFrame:
        write_table(site_dir, name, rows, [Column(key, header, digits) for key, header, digits in columns])
        return read_table(site_dir / "data" / f"{name}.js")

    return report_sections(data, table, site._figure)


def cells(table: pd.DataFrame, header: str) -> list:
    return list(table[header])


def test_where_the_int8_went_is_one_row_per_model_runtime_and_graph(results, tmp_path):
    int8, _ = sections(load_results(results), tmp_path)
    assert int8["id"] == "int8" and not int8["figures"]
    table, = int8["tables"]
    assert sorted(cells(table, "runtime")) == ["onnxruntime", "openvino"]
    share = dict(zip(cells(table, "runtime"), cells(table, "int8 share of FLOPs")))
    assert share == {"openvino": pytest.approx(0.977), "onnxruntime": 1}
    fallbacks = dict(zip(cells(table, "runtime"), cells(table, "left in floating point (most FLOPs first)")))
    assert fallbacks["onnxruntime"] == "ReduceMean pool"
    assert fallbacks["openvino"] == ", ".join(synthetic.OPENVINO_FALLBACKS)
    assert dict(zip(cells(table, "runtime"), cells(table, "records"))) == {"openvino": 4, "onnxruntime": 2}


def test_the_pipeline_section_puts_model_alone_random_input_and_end_to_end_side_by_side(results, tmp_path):
    _, pipeline = sections(load_results(results), tmp_path)
    table, = pipeline["tables"]
    assert len(table) == 2
    row = table[table["decoder"] == "nvjpeg"].iloc[0]
    assert row["model alone (images/s)"] == pytest.approx(3807.9, abs=0.05)
    assert row["throughput task, random input (images/s)"] == pytest.approx(3814.6, abs=0.05)
    assert row["end to end (images/s)"] == pytest.approx(1425.8, abs=0.05) and row["bottleneck"] == "transform"
    assert row["bound (images/s)"] == pytest.approx(1491.8, abs=0.05) and row["stages"] == "in turn"
    figure, = pipeline["figures"]
    assert figure.model is not None and figure.title == "Pipeline stages on NVIDIA H200"


def test_sections_say_what_to_run_when_the_results_have_no_such_records(tmp_path):
    synthetic.write_record(tmp_path, synthetic.throughput_record("AlexNet", synthetic.CPU, 1), "throughput")
    int8, pipeline = sections(load_results(tmp_path), tmp_path / "site")
    assert "--precision int8" in int8["text"] and not int8["tables"]
    assert "--input images" in pipeline["text"] and not pipeline["tables"] and not pipeline["figures"]


def test_requests_in_flight_are_one_where_a_record_does_not_say():
    frame = pd.DataFrame({"in_flight": [None, 2.0, None]})
    assert list(in_flight_column(frame)) == [1, 2, 1]
    assert list(in_flight_column(pd.DataFrame({"model": ["a"]}))) == [1]


@pytest.mark.slow  # a site build: Bokeh's serialisation takes seconds
def test_the_page_carries_the_sections_and_the_throughput_table_says_requests_in_flight(results, tmp_path):
    site.build_site(results, tmp_path / "site")
    from dlmark.report.datatable import read_table

    page = (tmp_path / "site" / "cnn.html").read_text()
    for section in ("int8", "pipeline"):
        assert f'<section id="{section}">' in page
    data = tmp_path / "site" / "data"
    assert len(read_table(data / "cnn-int8-table.js")) == 2 and len(read_table(data / "cnn-pipeline-table.js")) == 2
    throughput = read_table(data / "cnn-throughput.js")
    assert set(throughput["requests in flight"]) == {"1", "2"}  # a configuration column: text, shown where it differs
