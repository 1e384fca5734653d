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
