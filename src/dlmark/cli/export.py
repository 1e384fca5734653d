"""``dlmark export RESULTS -o FILE.parquet|FILE.csv``: the results as one table, with a column dictionary.

One row per record, one column per field (``env.<key>`` for the environment),
the way timm publishes its benchmark CSVs; beside it ``FILE.columns.csv`` says
each column's unit, type and meaning, from the field registry.
"""
from __future__ import annotations

import argparse
from pathlib import Path

from dlmark.errors import UserError

SUFFIXES = (".parquet", ".csv")
#: Columns first in the table, in this order, when present: what a reader scans for.
LEADING = ("model", "family", "task", "device", "backend", "precision", "batch_size", "status",
           "throughput", "latency_ms", "device_mem", "accuracy", "mfu", "host", "timestamp", "run_id")


def register(commands) -> None:
    parser = commands.add_parser("export", help="write the results as one Parquet or CSV table, with a column dictionary")
    parser.add_argument("results", help="results folder, file or glob")
    parser.add_argument("-o", "--output", required=True, help="FILE.parquet or FILE.csv; FILE.columns.csv is written beside it")
    parser.add_argument("--with-samples", action="store_true",
                        help="include the per-sample fields (block times, largest-batch trials), as JSON text")
    parser.set_defaults(handler=main)


def column_dictionary(columns) -> list[dict[str, str]]:
    """name, unit, type, doc of each column, from the registry (``env.<key>``: the env field's key)."""
    from dlmark.records.fields import BY_NAME

    rows = []
    for name in columns:
        field = BY_NAME.get(name)
        if field is not None:
            rows.append({"name": name, "unit": field.unit, "type": field.type, "doc": field.doc})
        elif name.startswith("env."):
            rows.append({"name": name, "unit": "", "type": "", "doc": f"environment: `{name[4:]}` (see env)"})
        elif name == "_file":
            rows.append({"name": name, "unit": "", "type": "str", "doc": "the result file the record was read from"})
        else:
            rows.append({"name": name, "unit": "", "type": "", "doc": "(not in the field registry)"})
    return rows


def _tabular(frame):
    """The frame with every column one type a table file can hold: nested or mixed values as JSON text."""
    import json
    import math

    import pandas as pd

    from dlmark.records.fields import BY_NAME

    frame = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if column.dtype.kind == "f" and _holds_integers(name, column, BY_NAME.get(name)):
            # pandas made an int column float where a record lacks it: the file says 2, not 2.0.
            frame[name] = column.astype("Int64")
            continue
        if column.dtype != object:
            continue
        values = column.tolist()
        kinds = {type(v) for v in values if v is not None and not (isinstance(v, float) and math.isnan(v))}
        if kinds <= {str} or kinds <= {bool}:
            continue
        if kinds <= {int, float} or kinds <= {int}:
            frame[name] = pd.to_numeric(column, errors="coerce")
            continue
        frame[name] = [None if v is None or (isinstance(v, float) and math.isnan(v))
                       else json.dumps(v, default=str) for v in values]
    return frame


def _holds_integers(name: str, column, field) -> bool:
    """An int field of the registry, or an ``env.<key>`` column (versions and counts, never a measurement)
    whose every value is a whole number."""
    if field is not None:
        return field.type == "int" and bool(column.dropna().map(float.is_integer).all())
    if not name.startswith("env."):
        return False
    present = column.dropna()
    return len(present) > 0 and bool(present.map(float.is_integer).all())


def main(args: argparse.Namespace) -> int:
    import csv

    from dlmark.records.load import require_results

    out = Path(args.output)
    if out.suffix.lower() not in SUFFIXES:
        raise UserError(f"cannot export to {out.name}: name the file FILE.parquet or FILE.csv")
    frame = require_results(args.results, with_samples=args.with_samples)
    order = [c for c in LEADING if c in frame.columns]
    frame = _tabular(frame[order + [c for c in frame.columns if c not in order]])
    out.parent.mkdir(parents=True, exist_ok=True)
    if out.suffix.lower() == ".csv":
        frame.to_csv(out, index=False)
    else:
        import pyarrow as pa
        import pyarrow.parquet as pq

        pq.write_table(pa.Table.from_pandas(frame, preserve_index=False), out)
    columns_path = out.with_suffix(".columns.csv")
    with open(columns_path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["name", "unit", "type", "doc"])
        writer.writeheader()
        writer.writerows(column_dictionary(frame.columns))
    print(f"{len(frame)} record(s), {len(frame.columns)} column(s) -> {out}; columns: {columns_path}")
    return 0
