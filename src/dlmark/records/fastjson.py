"""JSON through orjson where it is installed (``pip install dlmark[fast]``), with json's values kept.

orjson parses and writes several times faster than json, which is what a 150,000-file index
build spends its time on. It refuses NaN, Infinity (which the store may write) and integers
past 64 bits, and writes NaN as null: wherever it refuses or would change a value, json does
the work, so every value read or written is the one json would give.
"""
from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

try:
    import orjson as _orjson
except ImportError:
    _orjson = None


_json_files = 0  # files decoded by json, not orjson: only their values may hold NaN, Infinity or huge ints
_json_files_lock = threading.Lock()


def json_files_read() -> int:
    """How many files this process has decoded with json rather than orjson (a counter only
    ever raised): when it did not move over a parse, every value came from orjson, and
    ``dumps(value, from_orjson=True)`` needs no check that the text reads back equal."""
    return _json_files


def _count_json_file() -> None:
    global _json_files
    with _json_files_lock:
        _json_files += 1


def load_file(path: Path | str) -> Any:
    """The JSON value of a file; json's exceptions (OSError, ValueError) for one it cannot read."""
    if _orjson is None:
        _count_json_file()
        with open(path) as f:
            return json.load(f)
    with open(path, "rb") as f:
        data = f.read()
    try:
        return _orjson.loads(data)
    except ValueError:  # NaN, Infinity, a huge int, or a broken file: json's value or json's error
        _count_json_file()
        return json.loads(data.decode())


def dumps(value: Any, from_orjson: bool = False) -> str:
    """JSON text of a value that decodes to an equal value (``from_orjson``: a value orjson
    decoded, which holds no NaN, Infinity or huge int, so orjson writes it exactly)."""
    if _orjson is not None:
        try:
            text = _orjson.dumps(value)
            # A text with a null may hold a NaN orjson wrote as null: kept only if it reads back equal.
            if from_orjson or b"null" not in text or _orjson.loads(text) == value:
                return text.decode()
        except (TypeError, ValueError, OverflowError):
            pass
    return json.dumps(value)


def loads(text: str) -> Any:
    if _orjson is not None:
        try:
            return _orjson.loads(text)
        except ValueError:  # NaN or Infinity in json's text
            pass
    return json.loads(text)
