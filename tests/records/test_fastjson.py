"""records.fastjson: orjson where it is installed, json's values always."""
import json
import math

import pytest

from dlmark.records import fastjson


def test_only_files_orjson_refuses_count_as_read_by_json(tmp_path):
    if fastjson._orjson is None:
        pytest.skip("orjson is not installed (pip install dlmark[fast])")
    plain, odd = tmp_path / "plain.json", tmp_path / "odd.json"
    plain.write_text(json.dumps({"a": None, "b": [1, None]}))
    odd.write_text(json.dumps({"a": float("nan")}))
    before = fastjson.json_files_read()
    assert fastjson.load_file(plain) == {"a": None, "b": [1, None]}
    assert fastjson.json_files_read() == before
    assert math.isnan(fastjson.load_file(odd)["a"])
    assert fastjson.json_files_read() == before + 1


def test_dumps_keeps_a_nan_unless_told_the_value_came_from_orjson():
    value = {"a": float("nan"), "b": None}
    assert math.isnan(json.loads(fastjson.dumps(value))["a"])  # the check catches orjson's null
    if fastjson._orjson is not None:
        # The caller's promise skips the check: a NaN it wrongly promised away becomes null.
        assert json.loads(fastjson.dumps(value, from_orjson=True)) == {"a": None, "b": None}
    assert json.loads(fastjson.dumps({"b": [None, 1]}, from_orjson=True)) == {"b": [None, 1]}
