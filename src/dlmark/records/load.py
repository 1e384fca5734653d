"""Loading results: the name and call the seed notebook uses.

    import dlmark as dm
    thr = dm.benchmark.load_results('cnn.py__benchmark_throughput*json')

Every read goes through the columnar index beside the files
(``records/index.py``); the JSON files stay the truth and the index is checked
against them on every load.
"""
from __future__ import annotations

import glob
import os
import warnings
from pathlib import Path
from typing import Any, Iterable

from dlmark.errors import UserError
from dlmark.records.store import read_file

#: Folders a results folder's walk never enters: the index's own files, LoadGen's logs
#: (``<results>/loadgen/``), and hidden folders.
SKIPPED_DIRS = (".dlmark-index", "loadgen")


def _walk_folders(folder: Path) -> list[tuple[Path, list[str]]]:
    """(folder, its JSON file names, sorted) for ``folder`` and each subfolder a walk enters that has any.

    The names carry the sizes and mtimes the same ``scandir`` pass read, which the
    index checks its entries against (one pass over the folder, not a walk and a stat).
    """
    from dlmark.records.index import walk

    return walk(folder, SKIPPED_DIRS)


def _walk(folder: Path) -> list[Path]:
    """Every JSON file under ``folder``, subfolders too (``runs/rt`` under ``runs/``), sorted by path."""
    return sorted(root / name for root, names in _walk_folders(folder) for name in names)


def result_files(pattern: str | os.PathLike) -> list[Path]:
    """Files a pattern names: a glob, a folder (its JSON files, subfolders included), or a file.

    A file name is also read as its shards, ``{stem}__*.json``: that is how the
    seed's single ``cnn.py__benchmark_largest_batch_size.json`` finds the
    per-machine files that replaced it, whether or not a 2018 file of that
    exact name is there too (then both are read).
    """
    text = os.fspath(pattern)
    path = Path(text)
    if path.is_dir():
        return _walk(path)
    if glob.has_magic(text):
        return sorted(Path(p) for p in glob.glob(text))
    found = [path] if path.exists() else []
    if path.suffix == ".json":
        shards = sorted(Path(p) for p in glob.glob(glob.escape(str(path.with_suffix(""))) + "__*.json"))
        found.extend(p for p in shards if p != path)
    return found


def has_result_files(pattern: str | os.PathLike) -> bool:
    """Whether ``result_files(pattern)`` names any file, found without listing them all."""
    text = os.fspath(pattern)
    if os.path.isdir(text):
        return _any_json(text)
    if glob.has_magic(text):
        return next(glob.iglob(text), None) is not None
    return bool(result_files(text))


def _any_json(folder: str) -> bool:
    """Whether the walk of ``folder`` would find a JSON file: the first one ends the search."""
    subfolders = []
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if name.startswith("."):
                    continue
                if entry.is_dir():
                    if name not in SKIPPED_DIRS and not entry.is_symlink():  # os.walk does not follow links
                        subfolders.append(entry.path)
                elif name.endswith(".json"):
                    return True
    except OSError:
        return False
    return any(_any_json(sub) for sub in subfolders)


def _files(pattern: str | os.PathLike | Iterable[str | os.PathLike], stacklevel: int) -> list[Path]:
    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    files: list[Path] = []
    for one in patterns:
        matched = result_files(one)
        if not matched:
            warnings.warn(f"no result files match {os.fspath(one)!r}", stacklevel=stacklevel)
        files.extend(matched)
    return files


#: One folder's part of a load, as ``index.load_files_grouped`` takes it: (folder, file names,
#: the paths as the caller named them or None for ``folder / name``, whether it is the whole folder).
Group = tuple[Path, list[str], "list[Path] | None", bool]


def _selection(pattern: str | os.PathLike | Iterable[str | os.PathLike], stacklevel: int):
    """The files a pattern names, grouped by folder, and the order of their rows.

    The same files and order as ``_files``, without a Path per file (at zoo scale the
    Path objects and their sorting cost more than the index load): a folder is its
    walk's folders, a glob within one folder its names. Returns the groups and an
    (n, 2) array of (group, position in its names) per row, or None for one group.
    """
    import numpy as np

    patterns = [pattern] if isinstance(pattern, (str, os.PathLike)) else list(pattern)
    groups: list[Group] = []
    order: list = []  # chunks of (group, position) pairs

    def in_turn(g: int, count: int):
        return np.stack([np.full(count, g, dtype=np.int64), np.arange(count, dtype=np.int64)], axis=1)

    for one in patterns:
        text = os.fspath(one)
        start = len(groups)
        if os.path.isdir(text):
            folders = _walk_folders(Path(text))
            groups.extend((folder, names, None, True) for folder, names in folders)
            if len(folders) == 1:
                order.append(in_turn(start, len(folders[0][1])))
            elif folders:  # sorted by path, as _walk sorts: subfolders' files among the folder's
                keyed = sorted((folder.parts + (name,), start + g, i)
                               for g, (folder, names) in enumerate(folders) for i, name in enumerate(names))
                order.append(np.array([(g, i) for _, g, i in keyed], dtype=np.int64).reshape(-1, 2))
        elif glob.has_magic(text) and not glob.has_magic(os.path.dirname(text)):
            names = sorted(os.path.basename(p) for p in glob.glob(text))
            if names:  # one folder: its names sorted are the paths sorted
                groups.append((Path(os.path.dirname(text)), names, None, False))
                order.append(in_turn(start, len(names)))
        else:
            by_folder: dict[str, int] = {}
            pairs = []
            for path in result_files(one):
                key = os.fspath(path.parent)
                g = by_folder.get(key)
                if g is None:
                    g = by_folder[key] = len(groups)
                    groups.append((path.parent, [], [], False))
                pairs.append((g, len(groups[g][1])))
                groups[g][1].append(path.name)
                groups[g][2].append(path)
            if pairs:
                order.append(np.array(pairs, dtype=np.int64))
        if len(groups) == start:
            warnings.warn(f"no result files match {text!r}", stacklevel=stacklevel)
    return groups, (np.concatenate(order) if len(groups) > 1 else None)


def _load_frame(pattern, with_samples: bool, stacklevel: int, columns=None):
    """The index's frame of what a pattern names (not derived), or None when it names no file."""
    from dlmark.records import index

    groups, order = _selection(pattern, stacklevel + 1)
    if not groups:
        return None
    return index.load_files_grouped(groups, None if columns is None else list(dict.fromkeys(columns)),
                                    with_samples, order=order)


def load_columns(pattern: str | os.PathLike | Iterable[str | os.PathLike], columns: Iterable[str]):
    """load_results' rows in only the named columns the records hold, not derived: for a reader that
    needs a few fields (``dlmark ls``'s table), which then skips turning the other ~280 into pandas
    columns (at 150,000 records about half of a warm load). Each column is what load_results gives."""
    frame = _load_frame(pattern, True, stacklevel=3, columns=list(columns))
    if frame is None:
        import pandas as pd

        from dlmark.records import index

        return pd.DataFrame(columns=index.EMPTY_COLUMNS)
    return frame


def _frame_records(frame) -> list[dict[str, Any]]:
    """The index's rows as record dicts: ``env.<key>`` nested back into ``env``, absent fields absent.

    A frame holds NaN where a record lacks a field; such keys are dropped, and a
    registered int field that pandas made float is an int again. pandas
    cannot tell a stored None or NaN from an absent field in every column, so such
    a field may read as absent: ``r.get`` gives None either way.
    """
    from dlmark.records.fields import BY_NAME
    from dlmark.records.schema import COLUMNS

    standard = [c for c in COLUMNS if c != "env"]
    names = list(frame.columns)
    env_key = {c: c[4:] for c in names if c.startswith("env.")}
    # Column by column to Python lists, then rows: far faster than DataFrame.to_dict on Arrow-backed columns.
    columns = []
    for name in names:
        values = frame[name].tolist()
        field = BY_NAME.get(name)
        if frame[name].dtype.kind == "f" and (field is not None and field.type == "int" or name in env_key and all(
                v != v or v.is_integer() for v in values)):
            # An int column with a missing value became float64; the records held ints. (The env
            # holds versions and counts, never a measurement: a whole number there was an int.)
            values = [v if v != v else int(v) for v in values]
        columns.append(values)
    records = []
    for values in zip(*columns):
        record: dict[str, Any] = {}
        env: dict[str, Any] = {}
        for name, value in zip(names, values):
            if value.__class__ is float and value != value:
                continue
            if name in env_key:
                env[env_key[name]] = value
            else:
                record[name] = value
        if env:
            record["env"] = env
        for column in standard:  # every v1 record has these columns, None where not measured
            record.setdefault(column, None)
        records.append(record)
    return records


def load_records(pattern: str | os.PathLike | Iterable[str | os.PathLike], derive: bool = True,
                 with_samples: bool = True) -> list[dict[str, Any]]:
    """Records (dicts, upgraded to the current schema) from the files a pattern names, with the
    figures derived from them (MFU, roofline, energy per sample: ``analysis.efficiency``).

    Read through the index; ``with_samples=False`` leaves out the heavy per-sample
    fields (``index.SAMPLE_FIELDS``: block times, trials), which listing does not need.
    """
    frame = _load_frame(pattern, with_samples, stacklevel=3)
    if frame is None:
        return []
    return _frame_records(derive_frame(frame) if derive else frame)


def load_json_records(pattern: str | os.PathLike | Iterable[str | os.PathLike]) -> list[dict[str, Any]]:
    """Records read straight from the JSON files, no index, not derived: what the index must reproduce."""
    records: list[dict[str, Any]] = []
    for path in _files(pattern, stacklevel=3):
        records.extend(read_file(path))
    return records


#: The fields ``analysis.efficiency`` derives from (besides the derived ones, which an old record may
#: have stored, and ``peak_*`` of peak records). Deriving over these columns only, not the whole frame,
#: keeps a load from turning every column of every row into Python objects.
DERIVE_INPUTS = ("task", "status", "device", "device_spec", "timestamp", "precision", "batch_size", "throughput",
                 "flops_per_sample", "params", "activation_elements_per_sample", "energy_j", "num_blocks",
                 "iters_per_block")


def derive_frame(frame):
    """``analysis.efficiency.derive`` of a frame, computed over the columns it reads."""
    from dlmark.analysis.efficiency import DERIVED_FIELDS, derive

    inputs = [c for c in frame.columns if c in DERIVE_INPUTS or c in DERIVED_FIELDS or c.startswith("peak_")]
    if "task" not in inputs:
        return frame
    derived = derive(frame[inputs])
    added = [c for c in DERIVED_FIELDS if c in derived.columns]
    if not added:
        return frame
    import pandas as pd

    # One concatenation, not a column at a time (pandas warns of a fragmented frame past 100 inserts);
    # a derived field the records also hold takes the derived value, in its place.
    stored = [c for c in added if c in frame.columns]
    joined = pd.concat([frame.drop(columns=stored) if stored else frame, derived[added]], axis=1)
    if not stored:
        return joined
    return joined[list(frame.columns) + [c for c in added if c not in frame.columns]]


def load_results(pattern: str | os.PathLike | Iterable[str | os.PathLike], with_samples: bool = True):
    """A pandas DataFrame of the records in the files a glob (or folder) names.

    Reads dlmark files and the 2018 format (a JSON list with ``null`` holes);
    a file that cannot be parsed is named in a warning and skipped. The nested
    environment becomes ``env.<key>`` columns; the derived figures (MFU, roofline,
    energy per sample) are computed as the results are read. ``with_samples=False``
    leaves out the heavy per-sample fields (block times, trials) for a faster load.
    """
    frame = _load_frame(pattern, with_samples, stacklevel=3)
    if frame is None:
        import pandas as pd

        from dlmark.records import index

        return pd.DataFrame(columns=index.EMPTY_COLUMNS)
    return derive_frame(frame)


def require_results(pattern, with_samples: bool = True) -> "Any":
    """load_results, but a UserError when nothing readable is there (for commands)."""
    df = load_results(pattern, with_samples=with_samples)
    if df.empty:
        raise UserError(f"no readable results in {os.fspath(pattern)}; run `dlmark run` first or point at a results folder")
    return df
