"""Loading results: the name and call the seed notebook uses.

    import dlmark as dm
    thr = dm.benchmark.load_results('cnn.py__benchmark_throughput*json')
"""
from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

from dlmark.errors import UserError
from dlmark.records.store import read_file


def result_files(pattern: str | os.PathLike) -> list[Path]:
    """Files a pattern names: a glob, a folder (all its JSON files), or a file.

    A file name that does not exist is read as its shards, ``{stem}__*.json``:
    that is how the seed's single ``cnn.py__benchmark_largest_batch_size.json``
    finds the per-machine files that replaced it.
    """
    text = os.fspath(pattern)
    path = Path(text)
    if path.is_dir():
        return sorted(path.glob("*.json"))
    if glob.has_magic(text):
        return sorted(Path(p) for p in glob.glob(text))
    if path.exists():
        return [path]
    if path.suffix == ".json":
        return sorted(Path(p) for p in glob.glob(glob.escape(str(path.with_suffix(""))) + "__*.json"))
    return []


def load_records(pattern: str | os.PathLike | Iterable[str | os.PathLike], derive: bool = True) -> list[dict[str, Any]]:
    """Records (dicts, upgraded to the current schema) from the files a pattern names, with the
    figures derived from them (MFU, roofline, energy per sample: ``analysis.efficiency``)."""
    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    records: list[dict[str, Any]] = []
    for one in patterns:
        files = result_files(one)
        if not files:
            warnings.warn(f"no result files match {os.fspath(one)!r}", stacklevel=3)
        for path in files:
            records.extend(read_file(path))
    if derive:
        from dlmark.analysis.efficiency import derive_records

        records = derive_records(records)
    return records


def load_results(pattern: str | os.PathLike | Iterable[str | os.PathLike]):
    """A pandas DataFrame of the records in the files a glob (or folder) names.

    Reads dlmark files and the 2018 format (a JSON list with ``null`` holes);
    a file that cannot be parsed is named in a warning and skipped. The nested
    environment becomes ``env.<key>`` columns.
    """
    import pandas as pd

    records = load_records(pattern)
    if not records:
        return pd.DataFrame(columns=["model", "device", "batch_size", "throughput", "device_mem", "workload", "status"])
    flat = []
    for record in records:
        row = {k: v for k, v in record.items() if k != "env"}
        for key, value in (record.get("env") or {}).items():
            row[f"env.{key}"] = value
        flat.append(row)
    return pd.DataFrame(flat)


def require_results(pattern) -> "Any":
    """load_results, but a UserError when nothing readable is there (for commands)."""
    df = load_results(pattern)
    if df.empty:
        raise UserError(f"no readable results in {os.fspath(pattern)}; run `dlmark run` first or point at a results folder")
    return df
