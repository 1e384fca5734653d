import os
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Workers import py: test models relative to the directory dlmark runs in.
os.chdir(ROOT)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


@pytest.fixture
def fast_timing():
    """Short timing for tests that check behaviour, not figures."""
    return {"min_run_s": 0.05, "min_blocks": 3, "max_run_s": 2.0, "warmup_min_s": 0.0, "warmup_max_s": 1.0}


def _cuda_available() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


def pytest_collection_modifyitems(config, items):
    # One rule for every GPU test: marked `gpu` (so `pytest -m gpu` selects them all on a GPU
    # machine) and skipped, with the reason, where no CUDA device is visible.
    gpu_items = [item for item in items if item.get_closest_marker("gpu")]
    if gpu_items and not _cuda_available():
        skip = pytest.mark.skip(reason="needs a CUDA GPU; this machine has none")
        for item in gpu_items:
            item.add_marker(skip)
