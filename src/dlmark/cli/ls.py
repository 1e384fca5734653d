"""``dlmark ls RESULTS``: stored results as a table, filtered and sorted; ``--compare``: runtimes side by side.

The table is built over the loaded frame's columns, not a dict per record: filters, the
sort and ``--limit`` pick the rows first, and only the rows printed are formatted, each
distinct value once (at zoo scale a folder holds 150,000 records of a few thousand
models, six devices, a handful of tasks). The cells are ``report.tables``' own, so the
table reads as every other dlmark table.
"""
from __future__ import annotations

import argparse
import glob
import math
import re
from pathlib import Path
from typing import Any

from dlmark.cli.args import split_list
from dlmark.errors import UserError

_COLUMNS = [
    ("model", "model"), ("device", "device"), ("runtime", "runtime"), ("task", "task"), ("precision", "precision"),
    ("layout", "layout"), ("batch_size", "batch"), ("throughput_label", "img/s [95% CI]"),
    ("latency_ms_median", "latency ms"), ("device_mem", "mem MB"), ("status", "status"),
    ("agreement_label", "agrees"),  # output agreement with PyTorch fp32 eager: yes / NO / n/c (not comparable)
    ("int8_label", "int8 FLOPs"), ("in_flight_label", "in flight"), ("serving_label", "LoadGen"),
]
#: Columns shown only when a listed record says something there: the value that says nothing
#: (no int8 account; one request in flight, as every record before --in-flight).
_OPTIONAL = {"int8_label": None, "in_flight_label": 1, "in_flight": 1, "serving_label": None}
#: The table's label columns: the fields each is made of and the function of ``report.tables`` that writes it.
_LABELS = {"runtime": (("backend", "compile_mode"), "runtime_label"),
           "agreement_label": (("agreement_ok", "agreement_method"), "agreement_label"),
           "int8_label": (("int8_flops_share", "float_ops"), "int8_label"),
           "in_flight_label": (("task", "in_flight"), "in_flight_of"),
           "serving_label": (("task", "scenario", "server_qps_at_bound", "latency_bound_ms", "target_qps",
                              "batches_in_flight", "valid", "latency_ms_p99"), "serving_label")}
_FILTERS = ("model", "device", "task", "status", "precision", "backend", "scenario")
#: The order rows are listed in unless --sort says otherwise.
_DEFAULT_SORT = ("model", "device", "task", "precision", "batch_size")
#: The fields the default table reads: its columns and what its labels are made of.
_TABLE_INPUTS = list(dict.fromkeys([key for key, _ in _COLUMNS if key != "throughput_label" and key not in _LABELS] + [
    "throughput", "throughput_ci95_low", "throughput_ci95_high", "noisy",
    *(f for fields, _ in _LABELS.values() for f in fields)]))
_WHERE = re.compile(r"^\s*([^=!<>\s]+)\s*(=|!=|>=|<=|>|<)\s*(.*)$")


def register(commands) -> None:
    ls = commands.add_parser("ls", help="print stored results as a table")
    ls.add_argument("results", help="results folder, file or glob")
    for flag in _FILTERS:
        ls.add_argument(f"--{flag}", help=f"only these values of {flag} (comma-separated)")
    ls.add_argument("--where", action="append", default=[], metavar="COLUMN=VALUES",
                    help="only rows whose column (any stored or derived field, e.g. env.torch, mfu) is one of "
                         "the comma-separated values; also COLUMN!=VALUES, and >, >=, <, <= a number; repeatable")
    ls.add_argument("--sort", metavar="COLUMNS",
                    help="sort by these columns (comma-separated, any field; --sort=-COLUMN for descending); "
                         "default: model, device, task, precision, batch size")
    ls.add_argument("--limit", type=int, metavar="N", help="print the first N rows only")
    ls.add_argument("--compare", action="store_true",
                    help="runtimes side by side per model, device and batch, with the speed-up over PyTorch eager")
    ls.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    import numpy as np

    from dlmark.records.load import load_results

    if not glob.has_magic(args.results) and not Path(args.results).exists():
        raise UserError(f"no such results folder or file: {args.results}")
    if args.limit is not None and args.limit < 0:
        raise UserError(f"--limit must be 0 or more, not {args.limit}")
    frame, light = _load(args)
    filters = {"model": args.model, "device": args.device, "task": args.task and args.task.replace("-", "_"),
               "status": args.status, "precision": args.precision, "backend": args.backend, "scenario": args.scenario}
    keep = np.ones(len(frame), dtype=bool)
    for column, wanted in filters.items():
        if wanted:
            keep &= _is_one_of(frame, column, {w.lower() for w in split_list(wanted) or []})
    for expression in args.where:
        keep &= _where(frame, expression)
    rows = np.flatnonzero(keep)  # positions: the frame is copied only in the columns printed
    if not len(rows):
        print("no results match")
        return 0
    sort_columns = [c.lstrip("-") for c in split_list(args.sort) or []] if args.sort else list(_DEFAULT_SORT)
    rows = rows[_order(frame[[c for c in dict.fromkeys(sort_columns) if c in frame]].iloc[rows], args.sort, frame)]
    total = len(rows)
    serving = bool(args.scenario) or ("task" in frame and bool((frame["task"].iloc[rows] == "serving").all()))
    if args.limit is not None:
        rows = rows[:args.limit]
    pipeline = "task" in frame and bool((frame["task"].iloc[rows] == "pipeline").all())
    if (serving or pipeline) and light:  # these tables read whole records: every column (same row order)
        frame = load_results(args.results, with_samples=False)
    if serving or args.compare or pipeline:
        records = _records(frame.iloc[rows])
        if pipeline:
            from dlmark.analysis.pipeline import COLUMNS, pipeline_rows
            from dlmark.report.tables import format_table

            # The throughput task's figure of the same configuration, which --task pipeline filtered out.
            reference = _records(frame[frame["task"] == "throughput"])
            print(format_table(pipeline_rows(records, reference=reference), COLUMNS))
            print(f"\n{len(records)} pipeline record(s); random input: the throughput task's figure of the same "
                  f"configuration; bound: what the stages allow end to end (docs/pipeline.md)")
            return 0
        if serving:
            from dlmark.analysis import serving as served
            from dlmark.report.tables import format_table

            rows = served.serving_rows(records)
            print(format_table(rows, served.shown_columns(rows)))
            print(f"\n{len(records)} serving record(s); LoadGen's logs: the files named by log_summary / log_detail")
            return 0
        from dlmark.analysis.runtimes import COLUMNS, runtime_rows
        from dlmark.report.tables import format_table

        compared = runtime_rows(records)
        print(format_table(compared, shown_columns(compared, COLUMNS)))
        return 0
    pipelines = int((frame["task"].iloc[rows] == "pipeline").sum()) if "task" in frame else 0
    frame = frame[[c for c in _TABLE_INPUTS if c in frame]].iloc[rows]
    print(_table(frame))
    shown = f"{len(rows)} of {total}" if len(rows) < total else f"{total}"
    print(f"\n{shown} record(s)" + (f"; `--task pipeline` shows the {pipelines} pipeline record(s) stage by stage"
                                     if pipelines else ""))
    return 0


def _load(args: argparse.Namespace):
    """(the frame ls reads, whether it holds only the table's, filters' and named columns).

    The default table reads a score of fields: only those are loaded (the rest of a record's ~290
    columns would be half of the load at zoo scale). ``--compare``, a derived field named in
    ``--sort`` or ``--where``, or a named column these results lack (its error lists similar
    columns) load everything, derived figures included, as load_results gives it.
    """
    from dlmark.analysis.efficiency import DERIVED_FIELDS
    from dlmark.records.load import load_columns, load_results

    if args.compare:
        return load_results(args.results, with_samples=True), False  # block times for the significance
    named = [c.lstrip("-") for c in split_list(args.sort) or []] if args.sort else []
    for expression in args.where:
        match = _WHERE.match(expression)
        if not match:
            return load_results(args.results, with_samples=False), False  # its error, as ever
        named.append(match.group(1))
    from dlmark.records.index import SAMPLE_FIELDS

    if any(c in DERIVED_FIELDS or c in SAMPLE_FIELDS or c.startswith("peak_") for c in named):
        return load_results(args.results, with_samples=False), False
    frame = load_columns(args.results, [*_TABLE_INPUTS, *_FILTERS, *_DEFAULT_SORT, *named])
    if any(c not in frame for c in named):
        return load_results(args.results, with_samples=False), False
    return frame, True


def shown_columns(rows: list[dict], columns: list[tuple[str, str]] = _COLUMNS) -> list[tuple[str, str]]:
    """The table's columns: an optional one only where some row has more to say than its quiet value."""
    return [(key, header) for key, header in columns
            if key not in _OPTIONAL or any(r.get(key) not in (None, _OPTIONAL[key]) for r in rows)]


# ------------------------------------------------------------------ columns as the record dicts hold them

def _values(frame, column: str) -> tuple[Any, list]:
    """(code per row, -1 where the record has no value; each distinct value as a record holds it).

    A value as ``records.load.load_records`` gives it: a registered int field that
    pandas made float (a record lacked it) is an int again; NaN is no value.
    """
    import numpy as np
    import pandas as pd

    from dlmark.records.fields import BY_NAME

    if column not in frame:
        return np.full(len(frame), -1, dtype=np.int64), []
    series = frame[column]
    try:
        codes, uniques = pd.factorize(series)
    except TypeError:  # unhashable values (lists, dicts): each row its own
        values = series.tolist()
        codes = np.arange(len(values), dtype=np.int64)
        codes[[v is None or (isinstance(v, float) and v != v) for v in values]] = -1
        return codes, values
    values = np.asarray(uniques, dtype=object).tolist()
    field = BY_NAME.get(column)
    if field is not None and field.type == "int" and series.dtype.kind == "f":
        values = [int(v) for v in values]
    return codes, values


def _records(frame) -> list[dict[str, Any]]:
    """The rows as record dicts (for the serving and runtime tables), with ls's labels."""
    from dlmark.backends.registry import label as runtime_label
    from dlmark.records.load import _frame_records
    from dlmark.report.tables import agreement_label, in_flight_of, int8_label, throughput_label

    rows = _frame_records(frame)
    for r in rows:
        r["throughput_label"] = throughput_label(r)
        r["runtime"], r["agreement_label"] = runtime_label(r), agreement_label(r)
        r["int8_label"], r["in_flight_label"] = int8_label(r), in_flight_of(r)
    return rows


# ------------------------------------------------------------------ filtering and sorting

def _is_one_of(frame, column: str, choices: set[str]):
    """Rows whose value, as text in lower case, is one of ``choices`` (a value a record lacks reads as
    ``none`` in a field every record has, as empty in others)."""
    import numpy as np

    from dlmark.records.schema import COLUMNS

    codes, values = _values(frame, column)
    hit = np.array([str(v).lower() in choices for v in values] + [("none" if column in COLUMNS else "") in choices],
                   dtype=bool)
    return hit[np.where(codes < 0, len(values), codes)]


def _known(frame, column: str) -> None:
    from dlmark.analysis.efficiency import DERIVED_FIELDS
    from dlmark.records.fields import BY_NAME

    if column not in frame and column not in BY_NAME and column not in DERIVED_FIELDS:
        similar = [c for c in frame.columns if column.lower() in c.lower()][:5]
        hint = f"; columns like it: {', '.join(similar)}" if similar else "; see docs/records.md for the fields"
        raise UserError(f"no column {column!r} in these results{hint}")


def _where(frame, expression: str):
    """The rows one ``--where`` expression keeps."""
    import numpy as np

    match = _WHERE.match(expression)
    if not match:
        raise UserError(f"--where {expression!r}: write COLUMN=VALUES, COLUMN!=VALUES or COLUMN>NUMBER (>=, <, <=)")
    column, op, wanted = match.groups()
    _known(frame, column)
    codes, values = _values(frame, column)
    if op in ("=", "!="):
        choices = split_list(wanted) or []
        numbers = {n for n in map(_number, choices) if n is not None}
        texts = {w.lower() for w in choices}  # text as the named filters match it; numbers by value (8 = 8.0)
        hit = np.array([str(v).lower() in texts or (_is_number(v) and float(v) in numbers)
                        for v in values] + [False], dtype=bool)
        found = hit[np.where(codes < 0, len(values), codes)]
        return found if op == "=" else ~found
    bound = _number(wanted)
    if bound is None:
        raise UserError(f"--where {expression!r}: {op} compares with a number, not {wanted!r}")
    compare = {">": np.greater, ">=": np.greater_equal, "<": np.less, "<=": np.less_equal}[op]
    as_numbers = np.array([float(v) if _is_number(v) else np.nan for v in values] + [np.nan], dtype=float)
    with np.errstate(invalid="ignore"):
        return compare(as_numbers[np.where(codes < 0, len(values), codes)], bound)


def _is_number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def _order(frame, sort: str | None, whole=None):
    """Row positions in listing order: the default's, or ``--sort``'s columns (no value last).

    ``whole``: the loaded frame, which tells a field these results lack from a name that is none.
    """
    import numpy as np

    if not sort:
        # As ls always sorted: by the text of model, device, task and precision, then batch size (none: 0).
        keys = [_rank(frame, c, as_text=True) for c in _DEFAULT_SORT[:-1]]
        codes, values = _values(frame, "batch_size")
        batch = np.array([v if _is_number(v) else 0 for v in values] + [0], dtype=float)
        keys.append(batch[np.where(codes < 0, len(values), codes)])
        return np.lexsort(keys[::-1])
    keys = []
    for name in split_list(sort) or []:
        column = name.lstrip("-")
        _known(frame if whole is None else whole, column)
        keys.append(_rank(frame, column, as_text=False, descending=name.startswith("-")))
    return np.lexsort(keys[::-1]) if keys else np.arange(len(frame))


def _rank(frame, column: str, as_text: bool, descending: bool = False):
    """Each row's rank by the column's value, equal values alike. ``as_text``: by ``str(value)``,
    "None" where there is none (the default order's way); else numbers by value when every value
    is one, text otherwise, and rows without a value last, ascending or descending."""
    import numpy as np

    codes, values = _values(frame, column)
    if as_text:
        keys = [str(v) for v in values] + ["None"]
    elif values and all(_is_number(v) for v in values):
        keys = [float(v) for v in values]
    else:
        keys = [str(v) for v in values]
    position = {k: i for i, k in enumerate(sorted(set(keys)))}
    rank = [position[k] for k in keys]
    if descending:
        rank = [-r for r in rank]
    if not as_text:
        rank.append(len(position))  # no value: after every value
    return np.array(rank, dtype=np.int64)[np.where(codes < 0, len(values), codes)]


# ------------------------------------------------------------------ the table

def _table(frame) -> str:
    """``report.tables.format_table`` of the rows' record dicts, built column by column."""
    import numpy as np

    from dlmark.report.tables import _cell

    cells, numeric, columns = [], [], []
    for key, header in _COLUMNS:
        strings, is_number = _column_cells(frame, key, _cell)
        if key in _OPTIONAL and all(text in ("-", str(_OPTIONAL[key])) for text in set(strings.tolist())):
            continue  # nothing to say in any row: no int8 account, one request in flight
        cells.append(strings)
        numeric.append(is_number)
        columns.append((key, header))
    widths = [max([len(header)] + list(map(len, c))) for (_, header), c in zip(columns, cells)]
    pattern = "  ".join(f"{{:>{w}}}" if num else f"{{:<{w}}}" for w, num in zip(widths, numeric))
    headers = [header for _, header in columns]
    out = [pattern.format(*headers).rstrip(), pattern.format(*["-" * w for w in widths]).rstrip()]
    # Lists, not numpy arrays, to map over (numpy's element iteration is the slower half of it).
    out += [line.rstrip() for line in map(pattern.format, *(c.tolist() for c in cells))]
    return "\n".join(out)


def _column_cells(frame, key: str, cell) -> tuple[Any, bool]:
    """(the cell text of each row, whether the column is numbers: right-aligned) for one table column."""
    import numpy as np

    if key == "throughput_label" or key in _LABELS:
        # Text labels; a column of no label at all counts as numbers, as format_table counts None.
        if key == "throughput_label":
            texts, labelled = _throughput_cells(frame, cell)
            return texts, not labelled.any()
        texts, labelled, numbers = _label_cells(frame, key)
        return texts, numbers  # right-aligned as format_table aligns numbers (requests in flight)
    codes, values = _values(frame, key)
    texts = np.array(_cells(values, cell) + ["-"], dtype=object)
    is_number = all(isinstance(v, (int, float)) for v in values)
    return texts[np.where(codes < 0, len(values), codes)], is_number


def _cells(values: list, cell) -> list[str]:
    """``cell`` of each value; a list of floats (a measurement, distinct in every row) with
    ``report.tables._cell``'s three formats applied in bulk, not a call per value."""
    import numpy as np

    if cell.__module__ != "dlmark.report.tables" or len(values) < 1000 or \
            not all(v.__class__ is float for v in values):
        return [cell(v) for v in values]
    numbers = np.array(values, dtype=float)
    size = np.abs(numbers)
    out = np.full(len(values), "-", dtype=object)  # NaN
    with np.errstate(invalid="ignore"):
        for chosen, form in ((size >= 100, "{:,.0f}"), ((size >= 10) & (size < 100), "{:.1f}"), (size < 10, "{:.3g}")):
            out[chosen] = list(map(form.format, numbers[chosen].tolist()))
    return out.tolist()


def _throughput_cells(frame, cell):
    """(``report.tables.throughput_label`` per row: the median, its 95% interval, ``noisy``; where there is one)."""
    import numpy as np

    def texts(column):  # (the cell of float(value), whether there is a value): NaN is none
        codes, values = _values(frame, column)
        strings = np.array(_cells([float(v) for v in values], cell) + [""], dtype=object)
        return strings[np.where(codes < 0, len(values), codes)], codes >= 0

    median, has = texts("throughput")
    low, has_low = texts("throughput_ci95_low")
    high, has_high = texts("throughput_ci95_high")
    codes, values = _values(frame, "noisy")
    noisy = np.append(np.array([v is True for v in values], dtype=bool), False)[np.where(codes < 0, len(values), codes)]
    out = median.copy()
    interval = has & has_low & has_high
    out[interval] = out[interval] + " [" + low[interval] + "-" + high[interval] + "]"
    out[has & noisy] = out[has & noisy] + " noisy"
    out[~has] = "-"
    return out, has


def _label_cells(frame, key: str):
    """(A label column's text per row, once per distinct combination of its fields; where there is one;
    whether every label is a number)."""
    import numpy as np

    from dlmark.backends.registry import label as runtime_label
    from dlmark.report import tables

    fields, name = _LABELS[key]
    label = runtime_label if name == "runtime_label" else getattr(tables, name)
    columns = [_values(frame, f) for f in fields]
    # Each row's combination of value codes (a field's missing value is its count); one label per
    # distinct combination. Numbered in one int64 where the combinations fit, else as rows of codes.
    codes = [np.where(c < 0, len(values), c) for c, values in columns]
    if math.prod(len(values) + 1 for _, values in columns) < 2 ** 62:
        combined = np.zeros(len(frame), dtype=np.int64)
        for code, (_, values) in zip(codes, columns):
            combined = combined * (len(values) + 1) + code
        _, first, inverse = np.unique(combined, return_index=True, return_inverse=True)
    else:
        _, first, inverse = np.unique(np.stack(codes, axis=1), axis=0, return_index=True, return_inverse=True)
    texts = []
    for row in first.tolist():
        record = {f: values[code[row]] for f, code, (_, values) in zip(fields, codes, columns) if code[row] < len(values)}
        texts.append(label(record))
    cells = np.array([str(text) if text is not None else "-" for text in texts], dtype=object)
    labelled = np.array([text is not None for text in texts], dtype=bool)
    numbers = all(isinstance(text, (int, float)) for text in texts if text is not None)
    inverse = inverse.reshape(-1)
    return cells[inverse], labelled[inverse], numbers
