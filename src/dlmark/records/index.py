"""A columnar index beside a folder of JSON records, so that loading stays fast at zoo scale.

The JSON files stay the truth; the index is a cache of their rows that is
checked against the files' names, sizes and modification times on every load,
updated incrementally, and rebuilt whenever it cannot be trusted.
"""
# Why Parquet through pyarrow and not DuckDB (figures: docs/results-at-scale.md).
# Measured on the same rows, Parquet was faster to write, to load into pandas
# and to update, but what decides is concurrency: a DuckDB database file open
# for writing cannot be opened by another process, not even read-only, so a
# `dlmark ls` during a sweep would fail or wait. Immutable Parquet segments
# named by an atomically replaced manifest give readers a consistent snapshot
# without a lock, survive kill -9 at any instant (a half-written temporary file
# is never named), and leave merge-by-copy to the JSON files. pyarrow also backs
# pandas' own string columns (pandas >= 3), so strings reach pandas without a
# copy into Python objects. DuckDB is the smaller install, which does not
# outweigh the reader lock.
from __future__ import annotations

import builtins
import contextlib
import errno
import fcntl
import gc
import itertools
import json
import os
import stat as stat_module
import time
import uuid
import warnings
from pathlib import Path
from typing import Any, Iterable, Sequence

import numpy as np

from dlmark.records.fastjson import dumps, json_files_read, loads
from dlmark.records.store import read_file

#: Bump when the layout or the way rows are derived from records changes: an
#: index of another format is rebuilt, never read.
INDEX_FORMAT = 1
INDEX_DIR = ".dlmark-index"
MANIFEST = "manifest.parquet"
LOCK = "lock"

#: Heavy nested fields, loaded only on request (``with_samples=True`` or ``columns=``).
SAMPLE_FIELDS = ("block_times_s", "trials", "peak_details")

#: What an empty load returns (today's load_results: the seed's columns).
EMPTY_COLUMNS = ["model", "device", "batch_size", "throughput", "device_mem", "workload", "status"]

#: Files parsed into one segment at most, so a first build of a huge folder
#: keeps a bounded number of Python dicts alive.
SEGMENT_FILES = 25_000
#: More segments than this and the small ones are merged into one.
MAX_SEGMENTS = 12
#: A file modified this close to the moment it was indexed may change again
#: without its size or coarse mtime changing (the "racy git" problem): such an
#: entry is parsed again on the next load until it is older.
RACY_NS = 2_000_000_000
#: A build of this many changed files or more parses them in up to BUILD_WORKERS processes.
PARALLEL_FROM = 20_000
BUILD_WORKERS = 4
#: How long a loader waits for another process's index update before it reads
#: the changed files itself without writing the index.
LOCK_WAIT_S = 5.0

_PATH, _POS, _SIG = "__dlmark_path", "__dlmark_pos", "__dlmark_sig"
_INTERNAL = (_PATH, _POS, _SIG)
_KIND_KEY = b"dlmark_kind"


class IndexCorrupt(Exception):
    """The index on disk cannot be trusted; it is rebuilt."""


class _Manifest:
    """The manifest as arrays: per file its size, mtime, row count, segment, racy flag, problem."""

    def __init__(self, table, segments: dict):
        self.table = table
        self.segments = segments
        self.size = table["size"].to_numpy()
        self.mtime = table["mtime_ns"].to_numpy()
        self.rows = table["rows"].to_numpy().astype(np.int64)
        self.racy = table["racy"].to_numpy(zero_copy_only=False).astype(bool)
        seg = table["segment"].combine_chunks().dictionary_encode()
        self.segment_names = seg.dictionary.to_pylist()
        self.seg = seg.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        problem = table["problem"].combine_chunks()
        bad = np.flatnonzero(problem.is_valid().to_numpy(zero_copy_only=False))
        self.problems = {int(i): problem[int(i)].as_py() for i in bad}
        for name in self.segment_names:
            if name not in segments:
                raise IndexCorrupt(f"manifest names a segment it does not list: {name}")
        self._arrow = table["path"].combine_chunks()

    def __len__(self) -> int:
        return len(self.size)

    @property
    def names(self) -> list[str]:
        return self._arrow.to_pylist()

    def lookup(self, names) -> np.ndarray:
        """Manifest row of each name (a list or an Arrow string array), -1 where absent."""
        import pyarrow as pa
        import pyarrow.compute as pc

        if not len(names):
            return np.empty(0, dtype=np.int64)
        values = names if isinstance(names, pa.Array) else pa.array(names, type=pa.string())
        if len(values) == len(self._arrow) and values.equals(self._arrow):  # the folder as indexed
            return np.arange(len(values), dtype=np.int64)
        found = pc.index_in(values, value_set=self._arrow)
        return found.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)

    def stale(self, stats: _Stats, full: bool) -> tuple[np.ndarray, np.ndarray, bool]:
        """(manifest row of each name or -1, mask of names to parse again, whether files vanished)."""
        idx = self.lookup(stats.arrow)
        known = idx >= 0
        j = np.where(known, idx, 0)
        changed = ~known | (stats.size < 0)
        if len(self):
            changed |= (self.size[j] != stats.size) | (self.mtime[j] != stats.mtime) | self.racy[j]
        vanished = full and len(self) > int(np.count_nonzero(np.bincount(idx[known], minlength=1)))
        return idx, changed, vanished


# ------------------------------------------------------------------ public API

def load_index(folder: str | os.PathLike, files: Sequence[str | os.PathLike] | None = None,
               columns: Sequence[str] | None = None, with_samples: bool = False):
    """A DataFrame of the records in ``folder``'s JSON files (or exactly ``files``, all in ``folder``).

    The rows and columns are those ``load_results`` builds from the JSON files
    (``env`` flattened to ``env.<key>``, ``_file`` naming each row's file),
    except the fields of SAMPLE_FIELDS, which are read only with
    ``with_samples=True`` or when named in ``columns``. The index is brought up
    to date first; unreadable files are named in a warning and skipped.
    """
    folder = Path(folder)
    if files is None:
        names = _scan(folder)
        paths = None
    else:
        paths = [Path(f) for f in files]
        names = []
        checked: set[Path] = set()
        for path in paths:
            if path.parent not in checked:
                if not _same_dir(path.parent, folder):
                    raise ValueError(f"{path} is not in {folder}; use load_files for files of several folders")
                checked.add(path.parent)
            names.append(path.name)
    return load_files_grouped([(folder, names, paths, files is None)], columns, with_samples)


def load_files(files: Iterable[str | os.PathLike], columns: Sequence[str] | None = None,
               with_samples: bool = False):
    """load_index over files of any folders, rows in the order given (what a glob selected)."""
    groups: dict[str, tuple[Path, list[str], list[Path]]] = {}
    order: list[tuple[str, int]] = []
    for f in files:
        path = Path(f)
        key = os.path.normpath(os.path.abspath(path.parent))
        group = groups.setdefault(key, (path.parent, [], []))
        order.append((key, len(group[1])))
        group[1].append(path.name)
        group[2].append(path)
    position = {k: g for g, k in enumerate(groups)}
    return load_files_grouped([(g[0], g[1], g[2], False) for g in groups.values()], columns, with_samples,
                              order=[(position[k], i) for k, i in order] if len(groups) > 1 else None)


def refresh(folder: str | os.PathLike, wait_s: float = 60.0) -> dict[str, Any]:
    """Bring the index of ``folder`` up to date without loading it (e.g. after a run); its index_stats."""
    folder = Path(folder)
    index = _Index(folder)
    stats = _stat_all(folder, _scan(folder))
    with index.locked(wait_s=wait_s) as got:
        if not got:
            raise TimeoutError(f"another process holds the index lock of {folder}")
        caught: list = []
        try:
            manifest = index.update(stats, full=True, caught=caught)
        except IndexCorrupt:
            index.discard()
            manifest = index.update(stats, full=True, caught=caught)
    _rewarn(caught)
    return _stats_of(index, manifest)  # the manifest just written, not read again


def rebuild(folder: str | os.PathLike) -> dict[str, Any]:
    """Throw the index away and build it again from every JSON file; its index_stats."""
    folder = Path(folder)
    index = _Index(folder)
    with index.locked(wait_s=60.0) as got:
        if not got:
            raise TimeoutError(f"another process holds the index lock of {folder}")
        index.discard()
        caught: list = []
        manifest = index.update(_stat_all(folder, _scan(folder)), full=True, caught=caught)
    _rewarn(caught)
    return _stats_of(index, manifest)


def index_stats(folder: str | os.PathLike) -> dict[str, Any]:
    """What the index of ``folder`` holds now (it is not updated): files, rows, segments, bytes."""
    index = _Index(Path(folder))
    try:
        manifest = index.read_manifest()
    except IndexCorrupt as exc:
        return {"present": index.manifest_path.exists(), "valid": False, "reason": str(exc)}
    if manifest is None:
        return {"present": False, "valid": False}
    return _stats_of(index, manifest)


def _stats_of(index: "_Index", manifest: "_Manifest") -> dict[str, Any]:
    return {
        "present": True, "valid": True, "format": INDEX_FORMAT,
        "files": len(manifest), "rows": int(manifest.rows.sum()),
        "unreadable_files": len(manifest.problems),
        "racy_files": int(manifest.racy.sum()),
        "segments": len(manifest.segments),
        "segment_rows": {s: m["rows"] for s, m in manifest.segments.items()},
        "bytes": sum(p.stat().st_size for p in index.dir.glob("*.parquet")),
    }


# ------------------------------------------------------------------ scanning

def _same_dir(a: Path, b: Path) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return os.path.normpath(os.path.abspath(a)) == os.path.normpath(os.path.abspath(b))


def _scan(folder: Path) -> list[str]:
    """Names of the folder's JSON files, sorted as result_files sorts them (a folder named x.json too: it warns),
    carrying their sizes and mtimes from the same pass (``_Names.stats``)."""
    found = _scan_stat(folder, hidden=True)
    return found[0] if found is not None else []


def walk(folder: Path, skipped: Sequence[str] = ()) -> list[tuple[Path, "_Names"]]:
    """(folder, its JSON file names sorted, with their stats) for ``folder`` and each subfolder with any.

    As ``os.walk`` reads it: hidden entries and the ``skipped`` folders are left out,
    links to folders are not followed. One ``scandir`` pass per folder gives the
    names and each file's size and mtime, so a load stats nothing again.
    """
    out = []
    pending = [os.fspath(folder)]
    while pending:
        here = pending.pop()
        found = _scan_stat(here, hidden=False, skipped=skipped, subfolders=pending)
        if found is not None and found[0]:
            out.append((Path(here) if here != os.fspath(folder) else Path(folder), found[0]))
    return out


def _scan_stat(folder, hidden: bool, skipped: Sequence[str] = (), subfolders: list | None = None):
    """(sorted names with stats) of one folder's ``*.json`` entries, or None if it is no folder.

    ``hidden``: also names starting with "." and folders named ``*.json`` (the index's own
    listing, as ``os.listdir`` gives it); else files only, as ``os.walk`` lists them, and the
    subfolders to enter go to ``subfolders``.
    """
    names, sizes, mtimes = [], [], []
    try:
        entries = os.scandir(folder)
    except OSError:
        return None
    add_name, add_size, add_mtime, is_dir = names.append, sizes.append, mtimes.append, stat_module.S_ISDIR
    with entries:
        for entry in entries:
            name = entry.name
            if not name.endswith(".json"):
                if subfolders is not None and name[0] != "." and name not in skipped:
                    try:
                        if entry.is_dir() and not entry.is_symlink():
                            subfolders.append(entry.path)
                    except OSError:
                        pass
                continue
            if not hidden and name[0] == ".":
                continue
            try:
                st = entry.stat()  # follows a link, as is_dir() and open() do
            except OSError:  # vanished or a dangling link: read_file says why
                add_name(name)
                add_size(-1)
                add_mtime(-1)
                continue
            if not hidden and is_dir(st.st_mode):  # a folder named x.json: os.walk enters it
                if subfolders is not None and name not in skipped and not entry.is_symlink():
                    subfolders.append(entry.path)
                continue
            add_name(name)
            add_size(st.st_size)
            add_mtime(st.st_mtime_ns)
    order = _sorted_order(names)
    stats = _Stats.of(names, np.array(sizes, dtype=np.int64), np.array(mtimes, dtype=np.int64), order)
    return _Names(stats.names, stats), stats


def _sorted_order(names: list[str]) -> np.ndarray | None:
    """Positions of ``names`` in sorted order, or None if they are sorted already.

    Python's sort with a key: pyarrow's sort_indices is as fast warm but pays about 0.5 s on its
    first call in a process (a fresh `dlmark ls`).
    """
    if len(names) < 2:
        return None
    return np.array(sorted(range(len(names)), key=names.__getitem__), dtype=np.int64)


class _Names(list):
    """A folder's JSON file names as a walk found them, with their stats taken in the same pass."""

    def __init__(self, names, stats: "_Stats"):
        super().__init__(names)
        self.stats = stats


class _Stats:
    """Sizes and mtimes of named files, aligned with the names (-1: cannot be stat'ed; read_file says why)."""

    def __init__(self, folder: Path | None, names: Sequence[str]):
        self.names = list(names)
        self.size = np.full(len(self.names), -1, dtype=np.int64)
        self.mtime = np.full(len(self.names), -1, dtype=np.int64)
        if folder is None:
            return
        try:
            fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY)
        except OSError:
            return
        try:
            size, mtime, stat = self.size, self.mtime, os.stat
            for i, name in enumerate(self.names):
                try:
                    st = stat(name, dir_fd=fd)
                except OSError:
                    continue
                size[i] = st.st_size
                mtime[i] = st.st_mtime_ns
        finally:
            os.close(fd)

    @classmethod
    def of(cls, names: list[str], size: np.ndarray, mtime: np.ndarray, order: np.ndarray | None) -> "_Stats":
        stats = cls(None, ())
        if order is None:
            stats.names, stats.size, stats.mtime = names, size, mtime
        else:
            stats.names = [names[i] for i in order.tolist()]
            stats.size, stats.mtime = size[order], mtime[order]
        return stats

    @property
    def arrow(self):
        """The names as an Arrow array, made once (the manifest is checked against it twice)."""
        if getattr(self, "_arrow", None) is None:
            import pyarrow as pa

            self._arrow = pa.array(self.names, type=pa.string())
        return self._arrow



def _stat_all(folder: Path, names: Sequence[str]) -> _Stats:
    """The stats of ``names``: those a scan took with them, else a stat of each."""
    stats = getattr(names, "stats", None)
    if stats is not None and len(stats.names) == len(names):
        return stats
    return _Stats(folder, names)


# ------------------------------------------------------------------ parsing files into a segment

def _flatten(record: dict[str, Any]) -> dict[str, Any]:
    """load_results' row, in place: every key but env, then env's keys as ``env.<key>``."""
    env = record.pop("env", None)
    if isinstance(env, dict):
        for key, value in env.items():
            record[f"env.{key}"] = value
    elif env:
        record["env"] = env
    return record


def _parse(folder: Path, names: Sequence[str], caught: list,
           keep_file_warnings: bool = False) -> tuple[list[dict], dict[str, tuple[int, str | None]]]:
    """Rows of the named files and name -> (row count, warning text or None).

    read_file's warnings go to ``caught``, except those about a file itself when the
    index keeps them (it repeats them on every load instead).
    """
    rows: list[dict] = []
    info: dict[str, tuple[int, str | None]] = {}
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        prefix = str(folder / "x")[:-1]  # str(folder / name), without a Path per file
        for name in names:
            path_text = prefix + name
            before = len(seen)
            records = read_file(path_text)
            problem = None
            for w in seen[before:]:
                text = str(w.message)
                if path_text in text:
                    problem = text.split(f"{path_text}: ", 1)[-1]
                    if keep_file_warnings:
                        caught.append(w)
                else:
                    caught.append(w)
            for pos, record in enumerate(records):
                row = _flatten(record)
                if row.get("_file") == path_text:
                    row["_file"] = _DERIVED
                row[_PATH] = name
                row[_POS] = pos
                rows.append(row)
            info[name] = (len(records), problem)
    return rows, info


class _Derived:
    """Marks `_file` set by read_file (the path), rebuilt on load from the folder as named then."""

    def __repr__(self):
        return "<derived _file>"


_DERIVED = _Derived()


def _column_array(values: list, from_orjson: bool = False):
    """(arrow array, kind): a scalar column keeps its type; nested or mixed values become JSON text
    (``from_orjson``: values orjson decoded, written without checking that they read back equal)."""
    import pyarrow as pa

    first = next((v for v in values if v is not None), None)
    if isinstance(first, dict) or (isinstance(first, list) and any(isinstance(x, (dict, list)) for x in first)):
        # Dicts and lists of containers end as JSON text anyway: skip pyarrow's struct inference,
        # which costs more than the JSON (a search's trials).
        return pa.array([None if v is None else dumps(v, from_orjson) for v in values], type=pa.string()), "json"
    try:
        arr = pa.array(values)
        t = arr.type
        if pa.types.is_null(t):
            return arr, "null"
        if pa.types.is_boolean(t):
            return arr, "bool"
        if pa.types.is_int64(t):
            return arr, "int"
        if pa.types.is_float64(t):
            return arr, "float"
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            return arr.cast(pa.string()), "str"
        if pa.types.is_list(t):
            # Lists of one scalar type stay Arrow lists (cheap to write and to read back),
            # unless inference turned JSON integers into floats.
            item = t.value_type
            if pa.types.is_null(item) or pa.types.is_string(item) or pa.types.is_boolean(item) \
                    or pa.types.is_int64(item):
                return arr, "list"
            if pa.types.is_float64(item) and set(map(type, itertools.chain.from_iterable(
                    v for v in values if v is not None))) <= {float}:  # the element types, counted in C
                return arr, "list"
    except (pa.ArrowException, OverflowError, ValueError, TypeError, UnicodeError):
        pass
    return pa.array([None if v is None else dumps(v, from_orjson) for v in values], type=pa.string()), "json"


def _rows_to_table(rows: list[dict], from_orjson: bool = False):
    """One segment table: the rows' columns, with their key lists (the signatures) in the metadata.

    Rows are grouped by signature (their keys in order), so each group's columns
    come from one transposition; the row order in a segment does not matter (a
    load sorts by file and position).
    """
    import pyarrow as pa

    groups: dict[tuple, list[dict]] = {}
    where: dict[tuple, list[int]] = {}
    for i, row in enumerate(rows):
        keys = tuple(row)
        if keys not in groups:
            groups[keys], where[keys] = [], []
        groups[keys].append(row)
        where[keys].append(i)
    ordered: dict[str, None] = {}
    for keys in groups:
        ordered.update(dict.fromkeys(keys))
    columns: dict[str, list] = {key: [] for key in ordered}
    for keys, members in groups.items():
        transposed = dict(zip(keys, zip(*(r.values() for r in members))))
        blank = (None,) * len(members)
        for key, out in columns.items():
            out.extend(transposed.get(key, blank))
    fields, arrays = [], []
    for key, values in columns.items():
        if key in _INTERNAL:
            continue
        if key == "_file":
            values = [None if v is _DERIVED else v for v in values]
            if all(v is None for v in values):
                continue
        arr, kind = _column_array(values, from_orjson)
        fields.append(pa.field(key, arr.type, metadata={_KIND_KEY: kind.encode()}))
        arrays.append(arr)
    sigs = np.repeat(np.arange(len(groups), dtype=np.int32), [len(m) for m in groups.values()])
    fields += [pa.field(_PATH, pa.string()), pa.field(_POS, pa.int32()), pa.field(_SIG, pa.int32())]
    arrays += [pa.array(columns[_PATH], type=pa.string()), pa.array(columns[_POS], type=pa.int32()),
               pa.array(sigs)]
    signatures = [[k for k in keys if k not in _INTERNAL] for keys in groups]
    schema = pa.schema(fields, metadata={b"dlmark_signatures": json.dumps(signatures).encode()})
    table = pa.Table.from_arrays(arrays, schema=schema)
    if len(groups) > 1:
        # Back in the order the rows came (the files' order): a load of a folder indexed in
        # one go then needs no reordering of every column.
        grouped = np.concatenate([np.asarray(w, dtype=np.int64) for w in where.values()])
        table = table.take(pa.array(np.argsort(grouped, kind="stable")))
    return table


# ------------------------------------------------------------------ the index on disk

class _Index:
    def __init__(self, folder: Path):
        self.folder = folder
        self.dir = folder / INDEX_DIR
        self.manifest_path = self.dir / MANIFEST

    # -- locking
    class _Lock:
        def __init__(self, index: "_Index", wait_s: float):
            self.index, self.wait_s, self.fd = index, wait_s, None

        def __enter__(self) -> bool:
            try:
                self.index.dir.mkdir(exist_ok=True)
                self.fd = os.open(self.index.dir / LOCK, os.O_RDWR | os.O_CREAT, 0o644)
            except OSError:
                return False  # a read-only folder: read the files, write nothing
            deadline = time.monotonic() + self.wait_s
            while True:
                try:
                    fcntl.flock(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return True
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                        raise
                if time.monotonic() >= deadline:
                    os.close(self.fd)
                    self.fd = None
                    return False
                time.sleep(0.02)

        def __exit__(self, *exc):
            if self.fd is not None:
                fcntl.flock(self.fd, fcntl.LOCK_UN)
                os.close(self.fd)

    def locked(self, wait_s: float | None = None) -> "_Index._Lock":
        return _Index._Lock(self, LOCK_WAIT_S if wait_s is None else wait_s)

    # -- reading
    def read_manifest(self) -> dict | None:
        """{'files': name -> (size, mtime_ns, rows, segment, racy, problem), 'segments': {...}}; None if absent."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        try:
            table = pq.read_table(self.manifest_path, page_checksum_verification=True)
        except FileNotFoundError:
            return None
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise IndexCorrupt(f"unreadable manifest: {exc}") from exc
        try:
            meta = json.loads(table.schema.metadata[b"dlmark_index"])
            if meta.get("format") != INDEX_FORMAT or meta.get("schema_version") != _schema_version():
                raise IndexCorrupt("index of another format or schema version")
            return _Manifest(table, meta["segments"])
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise IndexCorrupt(f"malformed manifest: {exc}") from exc

    def read_segment(self, segment: str, snap: "_Snapshot | None"):
        """A segment's table: every column, or those a snapshot wants (and the row keys)."""
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = self.dir / segment
        try:
            if snap is None or (snap.columns is None and snap.with_samples):
                return pq.read_table(path, page_checksum_verification=True)
            names = pq.read_schema(path).names
            wanted = snap.wanted(names)
            wanted = [c for c in names if c in wanted or c in _INTERNAL]
            return pq.read_table(path, columns=wanted, page_checksum_verification=True)
        except FileNotFoundError:
            raise  # compacted away under us: the caller takes a fresh snapshot
        except (pa.ArrowException, OSError, ValueError) as exc:
            raise IndexCorrupt(f"unreadable segment {segment}: {exc}") from exc

    # -- writing (the lock held)
    def discard(self) -> None:
        for path in self.dir.glob("*"):
            if path.name != LOCK:
                _unlink(path)

    def _write_parquet(self, table, name: str) -> int:
        import pyarrow.parquet as pq

        tmp = self.dir / f".{name}.{uuid.uuid4().hex}.tmp"
        try:
            pq.write_table(table, tmp, compression="lz4", write_page_checksum=True)
            os.replace(tmp, self.dir / name)
        except BaseException:
            _unlink(tmp)
            raise
        return (self.dir / name).stat().st_size

    def write_manifest(self, table, segments: dict) -> _Manifest:
        meta = {"format": INDEX_FORMAT, "schema_version": _schema_version(), "segments": segments}
        table = table.replace_schema_metadata({b"dlmark_index": json.dumps(meta).encode()})
        self._write_parquet(table, MANIFEST)
        return _Manifest(table, segments)

    def update(self, stats: _Stats, full: bool, caught: list) -> _Manifest:
        """Bring the entries of the stat'ed files up to date (and drop vanished ones when ``full``).

        The lock must be held. Returns the manifest written.
        """
        import pyarrow as pa
        import pyarrow.compute as pc

        try:
            manifest = self.read_manifest()
        except IndexCorrupt:
            manifest = None
        if manifest is None:
            self.discard()
            table, segments = _manifest_table([]), {}
            where = np.arange(len(stats.names))
            changed = list(stats.names)
        else:
            _, mask, _ = manifest.stale(stats, full)
            where = np.flatnonzero(mask)
            changed = [stats.names[i] for i in where.tolist()]
            table, segments = manifest.table, dict(manifest.segments)
            keep = pc.invert(pc.is_in(table["path"], value_set=pa.array(changed, type=pa.string())))
            if full:
                keep = pc.and_(keep, pc.is_in(table["path"], value_set=stats.arrow))
            table = table.filter(keep)
        now = time.time_ns()
        entries = []
        # The changed files' stats by name (a dict of these only, not of the whole folder).
        stat_of = {name: (size, mtime) if size >= 0 else None for name, size, mtime in
                   zip(changed, stats.size[where].tolist(), stats.mtime[where].tolist())}
        for batch, (segment, count, size, info) in self._segments_of(changed, caught):
            if segment is not None:
                segments[segment] = {"rows": count, "bytes": size}
            for name in batch:
                stat = stat_of[name]
                count, problem = info[name]
                if stat is None:  # vanished or unreadable: kept so that it warns, checked every time
                    entries.append((name, -1, -1, 0, None, True, problem or "cannot stat the file"))
                else:
                    racy = stat[1] > now - RACY_NS
                    entries.append((name, stat[0], stat[1], count, segment if count else None, racy, problem))
        if entries:
            table = pa.concat_tables([table.replace_schema_metadata(None), _manifest_table(entries)])
        table, segments = self._compact(table, segments)
        manifest = self.write_manifest(table, segments)
        self._collect_garbage(segments)
        return manifest

    def _segments_of(self, changed: list[str], caught: list):
        """(batch of names, (segment, rows, bytes, info)) for the changed files, a segment per batch.

        A big build (a folder indexed for the first time, a rebuild) parses its batches in
        worker processes, a few at once: parsing is most of a build, and the plain
        ``json.load`` loop it is held against uses one core. Any other update parses here.
        """
        workers = min(BUILD_WORKERS, os.cpu_count() or 1)
        if len(changed) < PARALLEL_FROM or workers < 2:
            for start in range(0, len(changed), SEGMENT_FILES):
                batch = changed[start:start + SEGMENT_FILES]
                segment, count, size, info, warned = build_segment(self.folder, batch)
                caught.extend(warned)
                yield batch, (segment, count, size, info)
            return
        # One process per worker, each taking an equal run of the files in order, in batches of at
        # most SEGMENT_FILES: a process start (a Python and pyarrow) costs about what parsing a
        # few thousand files does, and the build lasts as long as its longest run.
        share = -(-len(changed) // workers)
        runs = []
        for first in range(0, len(changed), share):
            run = changed[first:first + share]
            runs.append([run[start:start + SEGMENT_FILES] for start in range(0, len(run), SEGMENT_FILES)])
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(workers) as pool:  # threads that each wait on one worker process
            for run, answers in zip(runs, pool.map(self._parse_elsewhere, runs)):
                for batch, done in zip(run, answers or [None] * len(run)):
                    if done is None:  # the worker failed (killed, out of memory): parse the batch here
                        segment, count, size, info, warned = build_segment(self.folder, batch)
                        caught.extend(warned)
                        yield batch, (segment, count, size, info)
                        continue
                    for category, message in done["warnings"]:
                        kind = getattr(builtins, category, UserWarning)
                        kind = kind if isinstance(kind, type) and issubclass(kind, Warning) else UserWarning
                        caught.append(warnings.WarningMessage(kind(message), kind, __file__, 0))
                    info = {name: (count, problem) for name, (count, problem) in done["info"].items()}
                    yield batch, (done["segment"], done["rows"], done["bytes"], info)

    def _parse_elsewhere(self, batches: list[list[str]]) -> list[dict] | None:
        """``build_segment`` of each batch in one worker process (``records.segment_worker``): its
        answers in order, or None if it failed (the segments it wrote are then debris)."""
        import subprocess
        import sys

        import dlmark
        from dlmark.errors import UserError

        src = str(Path(dlmark.__file__).resolve().parents[1])  # the dlmark this process runs
        env = dict(os.environ, PYTHONPATH=src + os.pathsep + os.environ.get("PYTHONPATH", ""))
        try:
            done = subprocess.run([sys.executable, "-m", "dlmark.records.segment_worker", str(self.folder)],
                                  input=json.dumps(batches), capture_output=True, text=True, env=env)
            answer = json.loads(done.stdout.strip().splitlines()[-1])
        except (OSError, ValueError, IndexError):
            return None
        if done.returncode == 2 and isinstance(answer, dict) and "user_error" in answer:
            raise UserError(answer["user_error"])
        if done.returncode != 0 or not isinstance(answer, list) or len(answer) != len(batches):
            return None
        return answer

    def _compact(self, table, segments: dict) -> tuple:
        import pyarrow as pa
        import pyarrow.compute as pc

        seg = table["segment"].combine_chunks().dictionary_encode()
        codes = seg.indices.fill_null(-1).to_numpy(zero_copy_only=False).astype(np.int64)
        names = seg.dictionary.to_pylist()
        rows = table["rows"].to_numpy().astype(np.int64)
        totals = np.bincount(codes[codes >= 0], weights=rows[codes >= 0], minlength=len(names))
        live = {s: 0 for s in segments}
        live.update({name: int(n) for name, n in zip(names, totals)})
        for s in [s for s, n in live.items() if n == 0]:
            segments.pop(s, None)
            del live[s]
        half_dead = [s for s in segments if live[s] * 2 < segments[s]["rows"]]
        merge = set(half_dead)
        if len(segments) > MAX_SEGMENTS:
            by_size = sorted(segments, key=lambda s: live[s])
            merge.update(by_size[:len(segments) - MAX_SEGMENTS // 2 + 1])
        if len(merge) < 2 and not half_dead:
            return table, segments
        tables = []
        paths = table["path"].combine_chunks()
        column = table["segment"].combine_chunks()
        for s in merge:
            rows_table = self.read_segment(s, None)
            mine = paths.filter(pc.fill_null(pc.equal(column, s), False))
            tables.append(rows_table.filter(pc.is_in(rows_table[_PATH], value_set=mine)))
        merged = _merge_segments(tables)
        name = f"seg-{uuid.uuid4().hex}.parquet"
        size = self._write_parquet(merged, name)
        for s in merge:
            del segments[s]
        segments[name] = {"rows": merged.num_rows, "bytes": size}
        hit = pc.fill_null(pc.is_in(column, value_set=pa.array(sorted(merge), type=pa.string())), False)
        renamed = pc.if_else(hit, pa.scalar(name, pa.string()), column)
        table = table.set_column(table.schema.get_field_index("segment"), "segment", renamed)
        return table, segments

    def _collect_garbage(self, segments: dict) -> None:
        # Under the lock no other writer exists: anything not named is debris of a killed update.
        keep = set(segments) | {MANIFEST, LOCK}
        for path in self.dir.iterdir():
            if path.name not in keep:
                _unlink(path)


def build_segment(folder: Path, names: Sequence[str]) -> tuple[str | None, int, int, dict, list]:
    """Parse the named files of ``folder`` into one new segment file (named by no manifest yet).

    Returns (segment or None when they have no rows, rows, bytes, name -> (row count,
    problem), the parse's warnings other than a file's own problem).
    """
    caught: list = []
    index = _Index(Path(folder))
    with _no_gc():
        json_files = json_files_read()
        rows, info = _parse(index.folder, names, caught)
        table = _rows_to_table(rows, from_orjson=json_files_read() == json_files) if rows else None
        del rows
    if table is None:
        return None, 0, 0, info, caught
    segment = f"seg-{uuid.uuid4().hex}.parquet"
    return segment, table.num_rows, index._write_parquet(table, segment), info, caught


@contextlib.contextmanager
def _no_gc():
    """The cyclic collector off while millions of acyclic dicts and lists are made (it would rescan them)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _manifest_table(entries: list[tuple]):
    import pyarrow as pa

    columns = list(zip(*entries)) if entries else [()] * 7
    return pa.table({
        "path": pa.array(columns[0], type=pa.string()),
        "size": pa.array(columns[1], type=pa.int64()),
        "mtime_ns": pa.array(columns[2], type=pa.int64()),
        "rows": pa.array(columns[3], type=pa.int32()),
        "segment": pa.array(columns[4], type=pa.string()),
        "racy": pa.array(columns[5], type=pa.bool_()),
        "problem": pa.array(columns[6], type=pa.string()),
    })


def _unlink(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _schema_version() -> int:
    from dlmark.records.schema import SCHEMA_VERSION

    return SCHEMA_VERSION


# ------------------------------------------------------------------ assembling a DataFrame

def _kind(field) -> str:
    return (field.metadata or {}).get(_KIND_KEY, b"").decode() or "json"


def _unified_kind(kinds: set[str]) -> str:
    kinds = kinds - {"null"}
    if not kinds:
        return "null"
    if len(kinds) == 1:
        return next(iter(kinds))
    if kinds <= {"int", "float"}:
        return "float"
    return "mixed"


def _python_values(arr, kind: str) -> list:
    if kind == "null":
        return [None] * len(arr)
    import pyarrow as pa

    if kind == "list" and len(arr) and len(arr.flatten()) == 0:  # only empty lists (no throttle reasons)
        out = [None] * len(arr)
        for i in np.flatnonzero(arr.is_valid().to_numpy(zero_copy_only=False)).tolist():
            out[i] = []
        return out
    if kind != "json":
        return arr.to_pylist()

    # Decode each distinct text once (Arrow finds them, without a Python string per row); each row
    # still gets its own list or dict, as json.load gives. Only the rows with a value are visited:
    # most such fields belong to one task's records.
    out: list = [None] * len(arr)
    if arr.null_count == len(arr):
        return out
    encoded = arr.dictionary_encode()
    codes = encoded.indices.fill_null(-1).to_numpy(zero_copy_only=False)
    makers = [_maker(text) for text in encoded.dictionary.to_pylist()]
    rows = np.flatnonzero(codes >= 0) if arr.null_count else range(len(arr))
    for i, code in zip(rows.tolist() if arr.null_count else rows, codes[codes >= 0].tolist()):
        out[i] = makers[code]()
    return out


def _maker(text: str):
    """A function that gives a fresh copy of what ``text`` decodes to, each call (the cheapest copy that is one)."""
    decoded = loads(text)
    if isinstance(decoded, list):
        if _flat(decoded):
            return decoded.copy
        if _records_list(decoded):
            return lambda: [dict(x) for x in decoded]
        return lambda: loads(text)
    if isinstance(decoded, dict):
        return decoded.copy if _flat(decoded.values()) else lambda: loads(text)
    return lambda: decoded  # a number, a text, a bool: immutable, shared


def _flat(values) -> bool:
    return all(not isinstance(x, (list, dict)) for x in values)


def _records_list(values: list) -> bool:
    """A list of flat dicts (a max-batch search's trials): copied dict by dict, far faster than parsing again."""
    return all(isinstance(x, dict) and _flat(x.values()) for x in values)


def _merge_segments(tables: list):
    """One table of several segments' rows (compaction), types unified as on load, nested kept as JSON."""
    import pyarrow as pa

    rows_sig: list[np.ndarray] = []
    sig_index: dict[tuple, int] = {}
    for table in tables:
        local = [tuple(s) for s in json.loads(table.schema.metadata[b"dlmark_signatures"])]
        mapping = np.array([sig_index.setdefault(s, len(sig_index)) for s in local] or [0], dtype=np.int32)
        rows_sig.append(mapping[table[_SIG].to_numpy()] if table.num_rows else np.empty(0, np.int32))
    names: dict[str, None] = {}
    for table in tables:
        names.update(dict.fromkeys(c for c in table.schema.names if c not in _INTERNAL))
    fields, arrays = [], []
    for name in names:
        chunks, kinds = [], set()
        for table in tables:
            if name in table.schema.names:
                kinds.add(_kind(table.schema.field(name)))
        kind = _unified_kind(kinds)
        for table in tables:
            if name in table.schema.names:
                chunks.append((table[name].combine_chunks(), _kind(table.schema.field(name))))
            else:
                chunks.append((pa.nulls(table.num_rows), "null"))
        arr, kind = _concat(chunks, kind)
        if kind == "mixed":
            values = [v for chunk, k in chunks for v in _python_values(chunk, k)]
            arr = pa.array([None if v is None else dumps(v) for v in values], type=pa.string())
            kind = "json"
        fields.append(pa.field(name, arr.type, metadata={_KIND_KEY: kind.encode()}))
        arrays.append(arr)
    for name, typ in ((_PATH, pa.string()), (_POS, pa.int32())):
        fields.append(pa.field(name, typ))
        arrays.append(pa.concat_arrays([t[name].combine_chunks().cast(typ) for t in tables]))
    fields.append(pa.field(_SIG, pa.int32()))
    arrays.append(pa.array(np.concatenate(rows_sig) if rows_sig else np.empty(0, np.int32)))
    signatures = [list(s) for s in sig_index]
    schema = pa.schema(fields, metadata={b"dlmark_signatures": json.dumps(signatures).encode()})
    return pa.Table.from_arrays(arrays, schema=schema)


def _chunked(chunks: list, kind: str):
    """Chunks of a scalar column as one chunked array of the unified kind's type."""
    import pyarrow as pa

    target = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string()}[kind]
    return pa.chunked_array([_as_type(c, target) for c, _ in chunks], type=target)


def _as_type(chunk, target):
    """``chunk`` cast to ``target``; a chunk of nulls (a segment without the field) made anew,
    which is several times cheaper than Arrow's cast from the null type (BENCHMARKS.md)."""
    import pyarrow as pa

    if chunk.type == target:
        return chunk
    if pa.types.is_null(chunk.type):
        return pa.nulls(len(chunk), type=target)
    return chunk.cast(target)


def _concat(chunks: list, kind: str):
    """Chunks of one column, cast to the unified kind; ('mixed' is left to the caller)."""
    import pyarrow as pa

    target = {"int": pa.int64(), "float": pa.float64(), "bool": pa.bool_(), "str": pa.string(),
              "json": pa.string(), "null": pa.null()}.get(kind)
    if kind == "list":
        types = {c.type for c, k in chunks if k != "null"}
        target = types.pop() if len(types) == 1 else None
    if target is None:
        return None, "mixed"
    return pa.concat_arrays([_as_type(c, target) for c, _ in chunks]), kind


def _object_series(values: list, absent: np.ndarray | None, infer: bool = True):
    """An object column built the way pandas builds it from a list of dicts (absent keys are NaN).

    ``infer=False``: the values are lists, dicts and None, which pandas keeps as objects.
    """
    import pandas as pd

    if isinstance(values, np.ndarray) and values.dtype == object:
        arr = values
    else:  # fromiter: each value one element, never a list read as a row of a 2-D array
        arr = np.fromiter(values, dtype=object, count=len(values))
    if absent is not None and absent.any():
        arr[absent] = np.nan
    if not infer:
        return arr
    try:
        from pandas.core.internals.construction import convert_object_array

        return convert_object_array([arr], dtype=None, dtype_backend="numpy", coerce_float=False)[0]
    except (ImportError, TypeError):  # pandas moved its internals: its public inference
        return pd.Series(arr).infer_objects().to_numpy()


class _Snapshot:
    """The segments' rows a load needs, collected folder by folder, then assembled once."""

    def __init__(self, columns: Sequence[str] | None, with_samples: bool):
        self.columns = None if columns is None else list(columns)
        self.with_samples = with_samples
        self.parts: list = []  # (table, rank per row) per segment piece
        self.sources: list = []  # (ranks, folder, names, paths as given or None) of each group
        self.total = 0
        self._file_paths: list[str] | None = None
        self.problems: list[tuple[str, str]] = []
        self.dups: list[tuple[int, int]] = []  # (rank of a file's first mention, rank of a repeat)

    @property
    def file_paths(self) -> list[str]:
        """``_file`` of each requested file, by global rank (built when a load needs it)."""
        if self._file_paths is None:
            out: list = [None] * self.total
            for ranks, folder, names, paths in self.sources:
                if paths is None:
                    prefix = str(folder / "x")[:-1]  # str(folder / name), without a Path per file
                    texts = [prefix + n for n in names]
                else:
                    texts = [str(p) for p in paths]
                for rank, text in zip(ranks.tolist(), texts):
                    out[rank] = text
            self._file_paths = out
        return self._file_paths

    def wanted(self, schema_names: list[str]) -> list[str] | None:
        if self.columns is not None:
            return self.columns
        if self.with_samples:
            return None
        return [c for c in schema_names if c not in SAMPLE_FIELDS]

    def add(self, table, ranks: np.ndarray) -> None:
        keep = ranks >= 0
        if not keep.all():
            table = table.filter(keep)
            ranks = ranks[keep]
        if table.num_rows:
            self.parts.append((table, ranks))

    def frame(self):
        import pandas as pd
        import pyarrow as pa

        for path, problem in self.problems:
            warnings.warn(f"skipping unreadable result file {path}: {problem}", stacklevel=4)
        for first, again in self.dups:
            for table, ranks in list(self.parts):
                hit = ranks == first
                if hit.any():
                    self.parts.append((table.filter(hit), np.full(int(hit.sum()), again, dtype=np.int64)))
        if not self.parts:
            return pd.DataFrame(columns=EMPTY_COLUMNS)
        ranks = np.concatenate([r for _, r in self.parts])
        pos = np.concatenate([t[_POS].to_numpy() for t, _ in self.parts])
        order = np.lexsort((pos, ranks))
        # Signatures: which keys each row had, in which order (pandas' column order and NaN vs None).
        sig_index: dict[tuple, int] = {}
        sig_rows = []
        for table, _ in self.parts:
            local = [tuple(s) for s in json.loads(table.schema.metadata[b"dlmark_signatures"])]
            mapping = np.array([sig_index.setdefault(s, len(sig_index)) for s in local], dtype=np.int32)
            sig_rows.append(mapping[table[_SIG].to_numpy()])
        sigs = np.concatenate(sig_rows)[order]
        by_sig = np.argsort(sigs, kind="stable")  # first row of each signature (np.unique hashes: slower)
        starts = np.flatnonzero(np.r_[True, np.diff(sigs[by_sig]) != 0]) if len(sigs) else np.empty(0, np.int64)
        uniq, first = sigs[by_sig[starts]], by_sig[starts]
        all_sigs = list(sig_index)
        names: dict[str, None] = {}
        for g in uniq[np.argsort(first)]:
            names.update(dict.fromkeys(all_sigs[g]))
        if self.columns is not None:
            names = {c: None for c in self.columns if c in names}
        elif not self.with_samples:
            names = {c: None for c in names if c not in SAMPLE_FIELDS}
        sig_sets = [set(s) for s in all_sigs]
        row_ranks = ranks[order]
        # A folder indexed in one build holds its rows in file order already: no reordering copy.
        in_order = bool(len(order) == 0 or (order[0] == 0 and (np.diff(order) == 1).all()))
        take = pa.array(order)

        def ordered(arr):
            return arr if in_order else arr.take(take)
        data = {}
        native_names, native_arrays = [], []
        part_fields = [{f.name: f for f in table.schema} for table, _ in self.parts]
        for name in names:
            if name == "_file":
                data[name] = self._file_column(row_ranks, order)
                continue
            chunks, kinds = [], set()
            for (table, _), fields in zip(self.parts, part_fields):
                field = fields.get(name)
                if field is not None:
                    k = _kind(field)
                    chunks.append((table[name].combine_chunks(), k))
                    kinds.add(k)
                else:
                    chunks.append((pa.nulls(table.num_rows), "null"))
            kind = _unified_kind(kinds)
            if kind in ("int", "float", "str", "bool"):
                arr = _chunked(chunks, kind)  # no concatenation: to_pandas copies once anyway
                if kind != "bool" or arr.null_count == 0:
                    data[name] = None  # converted below, all such columns at once
                    native_names.append(name)
                    native_arrays.append(arr)
                    continue
            else:
                arr, kind = _concat(chunks, kind)
            has = np.fromiter((name in s for s in sig_sets), dtype=bool, count=len(sig_sets))
            absent = ~has[sigs]
            if kind == "null":  # all None: pandas' inference depends on which are missing keys
                data[name] = _object_series(np.full(len(order), None, dtype=object), absent)
            elif kind == "mixed":
                values = [v for chunk, k in chunks for v in _python_values(chunk, k)]
                data[name] = _object_series(values if in_order else [values[i] for i in order], absent)
            elif kind == "bool":  # with a None or a missing value pandas keeps bools as objects
                data[name] = _object_series(ordered(arr.combine_chunks()).to_numpy(zero_copy_only=False), absent,
                                            infer=False)
            else:
                values = _python_values(ordered(arr), kind)
                # Lists and dicts (with None and NaN) are what pandas leaves as objects: no inference pass.
                containers = kind == "list" or all(v.__class__ in (list, dict) for v in values if v is not None)
                data[name] = _object_series(values, absent, infer=not containers)
        if native_arrays:
            native = pa.Table.from_arrays(native_arrays, names=[f"c{i}" for i in range(len(native_names))])
            converted = ordered(native).to_pandas()
            for i, name in enumerate(native_names):
                data[name] = converted[f"c{i}"]
        return pd.DataFrame(data, copy=False)

    def _file_column(self, row_ranks: np.ndarray, order: np.ndarray):
        import pyarrow as pa
        import pyarrow.compute as pc

        derived = pa.array(self.file_paths, type=pa.string()).take(pa.array(row_ranks))
        own_chunks = []
        for table, _ in self.parts:
            if "_file" in table.schema.names:
                own_chunks.append(table["_file"].combine_chunks().cast(pa.string()))
            else:
                own_chunks.append(pa.nulls(table.num_rows, type=pa.string()))
        own = pa.concat_arrays(own_chunks).take(pa.array(order))
        if own.null_count < len(own):
            derived = pc.if_else(pc.is_valid(own), own, derived)
        return derived.to_pandas()


def load_files_grouped(groups: list[tuple[Path, list[str], list[Path] | None, bool]],
                       columns: Sequence[str] | None, with_samples: bool, order=None):
    """The rows of each (folder, names, paths as given, whole folder?) group, in the given order:
    ``order`` holds a (group, position in its names) pair per row, as a list or an (n, 2) array."""
    snap = _Snapshot(columns, with_samples)
    offsets, total = [], 0
    for folder, names, paths, full in groups:
        offsets.append(total)
        total += len(names)
    snap.total = total
    if order is not None:  # (group, file of the group) per row position: each group's files' ranks
        pairs = np.asarray(order, dtype=np.int64).reshape(-1, 2)
        ranks_of = []
        for g in range(len(groups)):
            mine = np.flatnonzero(pairs[:, 0] == g)
            ranks = np.empty(len(groups[g][1]), dtype=np.int64)
            ranks[pairs[mine, 1]] = mine
            ranks_of.append(ranks)
    else:
        ranks_of = [np.arange(offsets[g], offsets[g] + len(groups[g][1]), dtype=np.int64)
                    for g in range(len(groups))]
    # The collector off: a load makes a few hundred thousand acyclic lists and dicts (block
    # times, trials), and each of its full passes would also walk every object the caller
    # holds (a notebook's earlier frames).
    with _no_gc():
        for g, (folder, names, paths, full) in enumerate(groups):
            snap.sources.append((ranks_of[g], folder, names, paths))
            _collect(snap, folder, names, ranks_of[g], full)
        return snap.frame()


def _collect(snap: _Snapshot, folder: Path, names: list[str], ranks: np.ndarray, full: bool) -> None:
    """Add one folder's rows to the snapshot: from the index where it is current, else from the JSON."""
    unique = names if isinstance(names, _Names) else list(dict.fromkeys(names))
    if len(unique) == len(names):
        unique = names  # keeps the stats a walk took with them
    else:  # a file named twice: its rows twice, as load_records gives them
        first: dict[str, int] = {}
        for name, rank in zip(names, ranks.tolist()):
            if name in first:
                snap.dups.append((first[name], rank))
            else:
                first[name] = rank
        ranks = np.array([first[n] for n in unique], dtype=np.int64)
    names = unique
    index = _Index(folder)
    stats = _stat_all(folder, names)
    caught: list = []
    try:
        for attempt in range(3):
            try:
                manifest = index.read_manifest()
            except IndexCorrupt:
                manifest = None
            if manifest is None or _needs_update(manifest, stats, full):
                manifest = None
                with index.locked() as got:
                    if got:
                        try:
                            manifest = index.update(stats, full, caught)
                        except IndexCorrupt:
                            index.discard()
                            continue
                        except OSError as exc:
                            if exc.errno not in (errno.EROFS, errno.EACCES, errno.EPERM, errno.ENOSPC):
                                raise
                if manifest is None:
                    break  # no lock (another process is updating) or a read-only folder
            try:
                _collect_from(snap, index, manifest, stats, ranks)
                return
            except FileNotFoundError:
                continue  # a segment was compacted away after we read the manifest: a fresh snapshot
            except IndexCorrupt:
                with index.locked() as got:
                    if got:
                        index.discard()
        _collect_in_memory(snap, folder, index, stats, ranks, caught)
    finally:
        _rewarn(caught)


def _needs_update(manifest: _Manifest, stats: _Stats, full: bool) -> bool:
    _, changed, vanished = manifest.stale(stats, full)
    return bool(changed.any()) or vanished


def _rewarn(caught: list) -> None:
    for w in caught:
        warnings.warn_explicit(w.message, w.category, w.filename, w.lineno)
    caught.clear()


def _collect_from(snap: _Snapshot, index: _Index, manifest: _Manifest, stats: _Stats, ranks: np.ndarray,
                  only: np.ndarray | None = None) -> None:
    """Rows of the stat'ed files (or the ``only`` mask of them) from the index's segments."""
    idx = manifest.lookup(stats.arrow)
    if only is not None:
        idx = np.where(only, idx, -1)
    if (idx < 0).any() and only is None:
        raise IndexCorrupt("a file is missing from the manifest just written")
    if manifest.problems:
        bad = np.fromiter(manifest.problems, dtype=np.int64, count=len(manifest.problems))
        for i in np.flatnonzero(np.isin(idx, bad)):
            snap.problems.append((snap.file_paths[int(ranks[i])], manifest.problems[int(idx[i])]))
    rank_of = np.full(len(manifest), -1, dtype=np.int64)
    keep = idx >= 0
    rank_of[idx[keep]] = ranks[keep]
    seg_of_request = np.where(keep, manifest.seg[np.where(keep, idx, 0)], -1)
    pieces = []
    for code in np.flatnonzero(np.bincount(seg_of_request[seg_of_request >= 0], minlength=1)).tolist():
        segment = manifest.segment_names[code]
        table = index.read_segment(segment, snap)
        expected = int(manifest.rows[idx[seg_of_request == code]].sum())
        pieces.append((table, code, expected))
    import pyarrow as pa
    import pyarrow.compute as pc

    for table, code, expected in pieces:
        paths = table[_PATH].combine_chunks().dictionary_encode()
        # The segment's live files are the manifest's entries naming it; a build lists them in the
        # segment's own order, so an equality check usually replaces a lookup.
        mine = np.flatnonzero(manifest.seg == code)
        entries = manifest._arrow.take(pa.array(mine))
        if paths.dictionary.equals(entries):
            local = np.arange(len(mine), dtype=np.int64)
        else:
            local = pc.index_in(paths.dictionary, value_set=entries).fill_null(-1).to_numpy(
                zero_copy_only=False).astype(np.int64)
        file_of = np.where(local >= 0, mine[np.where(local >= 0, local, 0)], -1) if len(mine) else \
            np.full(len(local), -1, dtype=np.int64)
        row_file = file_of[paths.indices.to_numpy(zero_copy_only=False)] if len(file_of) else \
            np.empty(0, dtype=np.int64)
        live = row_file >= 0
        row_rank = np.where(live, rank_of[np.where(live, row_file, 0)], -1)
        if int((row_rank >= 0).sum()) != expected:
            raise IndexCorrupt("a segment's rows do not match the manifest")
        snap.add(table, row_rank)


def _collect_in_memory(snap: _Snapshot, folder: Path, index: _Index, stats: _Stats, ranks: np.ndarray,
                       caught: list) -> None:
    """Without the index lock (or a writable folder): current entries from the index, the rest from JSON."""
    try:
        manifest = index.read_manifest()
    except IndexCorrupt:
        manifest = None
    stale = np.ones(len(stats.names), dtype=bool)
    if manifest is not None:
        _, stale, _ = manifest.stale(stats, False)
        if not stale.all():
            parts, problems = len(snap.parts), len(snap.problems)
            try:
                _collect_from(snap, index, manifest, stats, ranks, only=~stale)
            except (FileNotFoundError, IndexCorrupt):
                del snap.parts[parts:], snap.problems[problems:]
                stale[:] = True
    todo = [stats.names[i] for i in np.flatnonzero(stale)]
    if not todo:
        return
    with _no_gc():
        json_files = json_files_read()
        rows, _ = _parse(folder, todo, caught, keep_file_warnings=True)
        if not rows:
            return
        table = _rows_to_table(rows, from_orjson=json_files_read() == json_files)
        del rows
    rank_by_name = {stats.names[i]: int(ranks[i]) for i in np.flatnonzero(stale)}
    paths = table[_PATH].to_pylist()
    snap.add(table, np.fromiter((rank_by_name[p] for p in paths), dtype=np.int64, count=len(paths)))
