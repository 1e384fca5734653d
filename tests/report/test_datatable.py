"""Data files of the report's tables: compact, exact where shown, readable back, safe as a script."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd

from dlmark.report.datatable import Column, read_table, write_table


def test_a_table_round_trips_with_text_as_codes_and_numbers_rounded(tmp_path):
    frame = pd.DataFrame({"model": ["AlexNet", "VGG-16", "AlexNet", None],
                          "throughput": [1234.5678, np.nan, 10.04, 3.0], "page": ["a.html", "b.html", "a.html", None]})
    table = write_table(tmp_path, "t", frame, [Column("model", "model", link="page"),
                                                Column("throughput", "images/s", 1)])
    assert table.src == "data/t.js" and table.rows == 4
    back = read_table(tmp_path / "data" / "t.js")
    assert back["model"].tolist() == ["AlexNet", "VGG-16", "AlexNet", None]
    assert back["images/s"].tolist()[0] == 1234.6 and back["images/s"].tolist()[2] == 10.0
    assert pd.isna(back["images/s"].tolist()[1]) and back["images/s"].tolist()[3] == 3
    text = (tmp_path / "data" / "t.js").read_text()
    payload = json.loads(text[text.index("] = ") + 4:].rstrip().rstrip(";"))
    model = payload["columns"][0]
    assert model["values"] == ["AlexNet", "VGG-16"]  # each distinct text once
    assert model["links"] == ["a.html", "b.html"]
    assert payload["data"][0] == [0, 1, 0, None]


def test_a_hostile_name_stays_a_json_string(tmp_path):
    name = "</script><script>alert(1)</script>"
    write_table(tmp_path, "x", pd.DataFrame({"model": [name]}), [Column("model", "model")])
    assert read_table(tmp_path / "data" / "x.js")["model"].tolist() == [name]
    # The file is a script of its own (never inlined in a page): one statement, JSON on its right.
    text = (tmp_path / "data" / "x.js").read_text()
    assert text.startswith('(window.DLMARK_TABLES = window.DLMARK_TABLES || {})["x"] = {')
    assert text.count("\n") == 1


def test_a_whole_number_pandas_made_float_shows_as_an_int(tmp_path):
    # An int column beside a missing value is float64: the environment table showed `cudnn 92400.0`.
    frame = pd.DataFrame({"cudnn": [92400, None], "threads": [2.0, 2.5]})
    write_table(tmp_path, "env", frame, [Column("cudnn", "cudnn"), Column("threads", "threads")])
    back = read_table(tmp_path / "data" / "env.js")
    assert list(back["cudnn"]) == ["92400", None] and list(back["threads"]) == ["2", "2.5"]
