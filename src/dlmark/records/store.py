"""The result store: one JSON file per record, written atomically.

A record is written to a hidden temporary file in the same folder, flushed
to disk, then renamed over its final name, so that a ``kill -9`` at any
instant leaves either the old file, the new file, or no file -- never half of
one. File names carry host, device, model, the job key, a fingerprint of the
machine that wrote the file and the run id, so result folders from different
machines merge by copying without collisions (host names repeat across clouds
and containers: every VM here is ``vm``), a configuration measured again (a
resumed failure, ``--force``) is a new file beside the old one rather than an
overwrite, and the seed notebook's globs (``cnn.py__benchmark_throughput*json``)
still find them. Readers that show one record per configuration pick the
newest by ``timestamp``.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
import socket
import uuid
import re
import tempfile
import warnings
from pathlib import Path
from typing import Any, Iterator

from dlmark.errors import UserError
from dlmark.records import fastjson
from dlmark.records.schema import FINAL_STATUSES, JOB_KEY_SCHEME, iter_file_records, job_key, upgrade



def slug(text: Any, limit: int = 48) -> str:
    """A file-name-safe rendering of a name."""
    cleaned = re.sub(r"[^A-Za-z0-9.+-]+", "-", str(text)).strip("-.")
    return (cleaned or "x")[:limit]


#: Where the machine's identity is read from, first found wins (systemd's and D-Bus's machine id).
MACHINE_ID_FILES = ("/etc/machine-id", "/var/lib/dbus/machine-id")


@functools.lru_cache(maxsize=1)
def machine_fingerprint() -> str:
    """Eight hex digits naming this machine: a hash of /etc/machine-id (systemd's, unique per
    installation and per container image instance), else of the host name and a MAC address."""
    for path in MACHINE_ID_FILES:
        try:
            text = Path(path).read_text().strip()
        except OSError:
            continue
        if text:
            break
    else:
        text = f"{socket.gethostname()}-{uuid.getnode():012x}"
    return hashlib.sha256(text.encode()).hexdigest()[:8]


def file_name(record: dict[str, Any], prefix: str) -> str:
    """``{prefix}__{stem}__{host}__{device}__{model}__{job_key}__{machine}-{run_id}{suffix}``: one name per
    measurement (the job key names the configuration, the machine and run id the measuring of it)."""
    from dlmark import tasks  # the registry only: file names never load a task's code

    known = tasks.REGISTRY.get(record["task"])
    stem, suffix = (known.file_stem, known.file_suffix) if known else (f"benchmark_{record['task']}", ".json")
    run = slug(record.get("run_id") or "norun", limit=24)
    parts = [slug(record.get("host")), slug(record.get("device")), slug(record.get("model")), record["job_key"],
             f"{machine_fingerprint()}-{run}"]
    return f"{prefix}__{stem}__{'__'.join(parts)}{suffix}"


def atomic_write_json(path: Path, payload: Any) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(payload, f, indent=1, default=str, allow_nan=True)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


class Store:
    """A folder of result files; the driver is its only writer."""

    def __init__(self, root: Path | str, prefix: str):
        self.root = Path(root)
        self.prefix = prefix

    def write(self, record: dict[str, Any]) -> Path:
        self.root.mkdir(parents=True, exist_ok=True)
        path = self.root / file_name(record, self.prefix)
        atomic_write_json(path, record)
        return path

    def records(self) -> Iterator[dict[str, Any]]:
        """Every readable record in the folder (any prefix); unreadable files warn."""
        if not self.root.is_dir():
            return
        for path in sorted(self.root.glob("*.json")):
            yield from read_file(path)

    def finished_keys(self) -> dict[str, dict[str, Any]]:
        """job_key -> the newest record (by timestamp) of each job whose outcome is final (ok or oom).

        Keyed by the record's job key, never by file name: a job measured twice has two files."""
        done: dict[str, tuple[tuple[str, int], dict[str, Any]]] = {}
        for record in self.records():
            key = record.get("job_key")
            if key and record.get("job_key_scheme", 1) != JOB_KEY_SCHEME:
                key = job_key(record)  # written under another scheme: its key, computed as now
            if key and record.get("status") in FINAL_STATUSES:
                # Timestamps are whole seconds: two measurements within one are told apart by the file's mtime.
                try:
                    mtime = os.stat(record["_file"]).st_mtime_ns
                except (KeyError, OSError):
                    mtime = 0
                rank = (str(record.get("timestamp") or ""), mtime)
                if key not in done or rank >= done[key][0]:
                    done[key] = (rank, record)
        return {key: record for key, (_, record) in done.items()}


def read_file(path: Path | str) -> list[dict[str, Any]]:
    """Records of one result file, upgraded; a file that cannot be read warns and yields none."""
    try:
        payload = fastjson.load_file(path)
        records = [upgrade(dict(r)) for r in iter_file_records(payload)]
    except UserError:
        raise
    except (OSError, ValueError, TypeError, KeyError) as exc:
        warnings.warn(f"skipping unreadable result file {path}: {exc}", stacklevel=2)
        return []
    for record in records:
        record.setdefault("_file", str(path))
    return records
