"""Shared by the runtime tests: one export cache per test session, a sweep through the CLI, and a
count of the worker processes a test started."""
from __future__ import annotations

from pathlib import Path

import pytest

from dlmark.benchmark import load_records
from dlmark.cli import main

TINY = "py:tests.fixtures.runtime_models:tiny"
WRONG = "py:tests.fixtures.runtime_models:wrong_when_exported"
FAST = ["--min-time", "0.05", "--threads", "1", "--task", "throughput"]


@pytest.fixture
def runtime_cache(tmp_path_factory, monkeypatch):
    """Exports and converted models shared by every runtime test of the session (exporting is slow)."""
    folder = tmp_path_factory.getbasetemp() / "dlmark-runtime-cache"
    monkeypatch.setenv("DLMARK_CACHE", str(folder))
    return folder


def sweep(out, *args):
    code = main(["run", "quick", "--device", "cpu", "--out", str(out), "--quiet", *FAST, *args])
    return code, load_records(str(out))


def of(rows, backend, model=None):
    return sorted((r for r in rows if r["backend"] == backend and (model is None or r["model"] == model)),
                  key=lambda r: r["batch_size"] or 0)


def workers_of(marker: str) -> list[int]:
    """Live dlmark worker processes whose environment has DLMARK_TEST_RUN=marker.

    Workers live in sessions of their own and outlive a killed driver, so neither a process group
    nor the parent finds them: /proc does. Set the marker in the driver's environment; workers inherit it.
    """
    tag = f"DLMARK_TEST_RUN={marker}".encode()
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                cmdline = (entry / "cmdline").read_bytes().split(b"\0")  # a zombie's is empty
                environ = (entry / "environ").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"dlmark.run.worker" in b" ".join(cmdline) and tag in environ:
                found.append(int(entry.name))
    return found
