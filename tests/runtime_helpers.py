"""Shared by the runtime tests: one export cache per test session, and a sweep through the CLI."""
from __future__ import annotations

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
