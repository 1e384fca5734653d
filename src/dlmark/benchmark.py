"""The seed notebook's entry point: ``dm.benchmark.load_results(glob)``."""
from __future__ import annotations

from .records.load import load_records, load_results, require_results, result_files

__all__ = ["load_records", "load_results", "require_results", "result_files"]
