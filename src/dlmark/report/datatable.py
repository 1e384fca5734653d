"""Tables of any length for the static site: the rows in a data file, the page renders a page of them.

A table's data is written once, as ``data/<name>.js``: a script that defines the
table's columns (text columns as a dictionary of their distinct values and a code
per row, numbers rounded to what the page shows). A script, not JSON fetched at
run time, because browsers refuse ``fetch`` on ``file://`` pages, and the site must
open from disk. ``static/datatable.js`` turns it into a searchable, sortable,
paginated table; the page holds only a placeholder. Values reach the page as
text (``textContent``), so a model named ``<script>`` is shown, never run.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import pandas as pd


@dataclass(frozen=True)
class Column:
    """One column: its key in the frame, its header, digits for a number (None: text)."""
    key: str
    header: str
    digits: int | None = None
    link: str | None = None  # a column of the frame holding each row's link target


@dataclass
class DataTable:
    """What a page needs to place a table: its name, its data file, its size."""
    name: str
    src: str  # the data file, relative to the site's root
    rows: int
    headers: list[str]
    page_size: int = 50


def _number(values: pd.Series, digits: int) -> list[Any]:
    numbers = pd.to_numeric(values, errors="coerce")
    out = []
    for value in numbers.astype(float).round(digits).tolist():
        if value is None or not math.isfinite(value):
            out.append(None)
        elif value.is_integer() and abs(value) < 2 ** 53:
            out.append(int(value))
        else:
            out.append(value)
    return out


def _missing(value: Any) -> bool:
    try:
        return value is None or bool(pd.isna(value))
    except (TypeError, ValueError):
        return False


def _text(values: pd.Series) -> tuple[list[Any], list[str]]:
    """Codes into a dictionary of distinct texts; None where a row has no value (or an empty one)."""
    # A whole number pandas made float (an int column beside a missing value: threads, cudnn) reads as an int.
    texts = [None if _missing(v) or v == "" else str(int(v)) if isinstance(v, float) and v.is_integer() else str(v)
             for v in values.tolist()]
    codes, uniques = pd.factorize(pd.Series(texts, dtype=object), sort=False)  # None -> -1
    return [None if c < 0 else int(c) for c in codes.tolist()], [str(u) for u in uniques]


def write_table(site_dir: Path, name: str, frame: pd.DataFrame, columns: Sequence[Column],
                page_size: int = 50) -> DataTable:
    """Write ``frame``'s ``columns`` as ``data/<name>.js``; the placeholder's description."""
    specs, data = [], []
    for column in columns:
        values = frame[column.key] if column.key in frame.columns else pd.Series([None] * len(frame), dtype=object)
        spec: dict[str, Any] = {"key": column.key, "label": column.header}
        if column.digits is None:
            codes, dictionary = _text(values)
            spec["values"] = dictionary
            if column.link and column.link in frame.columns:
                # One link per distinct value: a family name links to its page.
                first = dict(zip((str(v) for v in values.tolist()), frame[column.link].tolist()))
                spec["links"] = [None if _missing(first.get(v)) else str(first.get(v)) for v in dictionary]
            data.append(codes)
        else:
            spec["digits"] = column.digits
            data.append(_number(values, column.digits))
        specs.append(spec)
    payload = json.dumps({"columns": specs, "rows": len(frame), "data": data}, separators=(",", ":"),
                         allow_nan=False, ensure_ascii=False)
    target = site_dir / "data" / f"{name}.js"
    target.parent.mkdir(parents=True, exist_ok=True)
    # JSON is a JavaScript expression; the page reads it without fetch, so file:// works.
    target.write_text("(window.DLMARK_TABLES = window.DLMARK_TABLES || {})[" + json.dumps(name) + "] = "
                      + payload + ";\n", encoding="utf-8")
    return DataTable(name=name, src=f"data/{name}.js", rows=len(frame), headers=[c.header for c in columns],
                     page_size=page_size)


def read_table(path: Path) -> pd.DataFrame:
    """A data file back as a frame of the values the page shows (for tests and scripts)."""
    text = Path(path).read_text(encoding="utf-8")
    payload = json.loads(text[text.index("] = ") + 4:].rstrip().rstrip(";"))
    frame = {}
    for spec, values in zip(payload["columns"], payload["data"]):
        if "values" in spec:
            frame[spec["label"]] = pd.Series([None if c is None else spec["values"][c] for c in values], dtype=object)
        else:
            frame[spec["label"]] = values
    return pd.DataFrame(frame, index=range(payload["rows"]))
