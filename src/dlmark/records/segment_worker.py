"""One worker of a parallel index build: batches of a folder's files, each parsed into one segment.

    python -m dlmark.records.segment_worker FOLDER < batches.json    # [[name, ...], ...]

Prints one JSON line, a list with an answer per batch, in order: the segment it wrote
(not yet named by any manifest: the parent, which holds the index lock, names it or
leaves it as debris), its row count and size, each file's row count and problem, and
the warnings of the parse. A record of a newer dlmark is ``{"user_error": message}``
and exit code 2.
"""
from __future__ import annotations

import importlib.abc
import json
import sys
from pathlib import Path


class _NoPandas(importlib.abc.MetaPathFinder):
    """pyarrow imports pandas on its first ``pa.array`` of a list, only to ask whether the list is
    a pandas object: 0.3 s of every worker, which never makes a DataFrame. Refused, pyarrow goes on
    without it."""

    def find_spec(self, name, path, target=None):
        if name == "pandas" or name.startswith("pandas."):
            raise ImportError("an index build worker makes no DataFrame")
        return None


def main() -> int:
    sys.meta_path.insert(0, _NoPandas())
    from dlmark.errors import UserError
    from dlmark.records import index

    folder, batches = Path(sys.argv[1]), json.load(sys.stdin)
    answers = []
    try:
        for names in batches:
            segment, rows, size, info, caught = index.build_segment(folder, names)
            answers.append({"segment": segment, "rows": rows, "bytes": size, "info": info,
                            "warnings": [[w.category.__name__, str(w.message)] for w in caught]})
    except UserError as exc:
        print(json.dumps({"user_error": str(exc)}))
        return 2
    print(json.dumps(answers))
    return 0


if __name__ == "__main__":
    sys.exit(main())
