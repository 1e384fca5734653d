"""`dlmark export`: one table of the results, Parquet or CSV, with a column dictionary beside it."""
import csv
import json

import pandas as pd
import pytest

from dlmark.cli import main
from dlmark.records import schema
from dlmark.records.fields import BY_NAME
from dlmark.records.store import Store


def write(folder):
    store = Store(folder, "cnn.py")
    for b in (1, 4):
        config = {"task": "throughput", "batch_size": b}
        store.write(schema.new_record(job_key=schema.job_key(config), task="throughput", model="ResNet-v1-18",
                                      device="NVIDIA H200", host="vm", batch_size=b, throughput=10.0 * b,
                                      status="ok", env={"torch": "2.x"}, input_shape=[3, 224, 224],
                                      block_times_s=[0.1, 0.2]))
    config = {"task": "max_batch_size"}
    store.write(schema.new_record(job_key=schema.job_key(config), task="max_batch_size", model="ResNet-v1-18",
                                  device="NVIDIA H200", host="vm", batch_size=512, max_batch_size=512,
                                  status="ok", trials=[{"batch_size": 512, "status": "ok"}]))


def dictionary(path):
    with open(path) as f:
        return {row["name"]: row for row in csv.DictReader(f)}


@pytest.mark.parametrize("suffix", [".parquet", ".csv"])
def test_export_writes_every_record_and_a_column_dictionary(tmp_path, capsys, suffix):
    results = tmp_path / "results"
    write(results)
    out = tmp_path / f"table{suffix}"
    assert main(["export", str(results), "-o", str(out)]) == 0
    table = pd.read_parquet(out) if suffix == ".parquet" else pd.read_csv(out)
    assert len(table) == 3 and list(table.columns[:4]) == ["model", "family", "task", "device"]
    assert sorted(table.batch_size) == [1, 4, 512]
    assert "block_times_s" not in table.columns and "trials" not in table.columns
    assert set(table["env.torch"].dropna()) == {"2.x"}
    shapes = [json.loads(s) for s in table.input_shape.dropna()]
    assert shapes == [[3, 224, 224]] * 2  # a nested value as JSON text
    columns = dictionary(tmp_path / "table.columns.csv")
    assert list(columns) == list(table.columns)
    assert columns["throughput"]["unit"] == BY_NAME["throughput"].unit and columns["throughput"]["doc"]
    assert "torch" in columns["env.torch"]["doc"]
    assert "3 record(s)" in capsys.readouterr().out


def test_export_with_samples_keeps_the_block_times(tmp_path):
    results = tmp_path / "results"
    write(results)
    out = tmp_path / "t.parquet"
    assert main(["export", str(results), "-o", str(out), "--with-samples"]) == 0
    table = pd.read_parquet(out)
    assert [json.loads(s) for s in table.block_times_s.dropna()] == [[0.1, 0.2]] * 2
    assert "block_times_s" in dictionary(tmp_path / "t.columns.csv")


def test_export_refuses_an_empty_folder_and_an_unknown_suffix(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    assert main(["export", str(tmp_path / "empty"), "-o", str(tmp_path / "t.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err and err[-1].startswith("dlmark: error:") and "results" in err[-1]
    write(tmp_path / "results")
    assert main(["export", str(tmp_path / "results"), "-o", str(tmp_path / "t.xlsx")]) == 2
    assert "FILE.parquet or FILE.csv" in capsys.readouterr().err
    assert not (tmp_path / "t.csv").exists() and not (tmp_path / "t.xlsx").exists()
