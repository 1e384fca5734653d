import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Workers import py: test models relative to the directory dlmark runs in.
os.chdir(ROOT)
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
# A shell starts a background job (`make test &`, `nohup ... &`) with SIGINT ignored, and an ignored
# signal stays ignored in every process it starts: the tests that press Ctrl-C in a `dlmark run`
# would then wait out their timeouts and fail. The runs these tests start get the usual handler.
if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
    signal.signal(signal.SIGINT, signal.default_int_handler)


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


#: Set in the child process of an `own_process` test to that test's node id.
_OWN_PROCESS = "DLMARK_TEST_OWN_PROCESS"


@pytest.hookimpl(tryfirst=True)
def pytest_pyfunc_call(pyfuncitem):
    # A test marked `own_process` runs in a pytest process of its own: some runtimes' quantizers
    # leave state behind that crashed the suite's process (SIGSEGV) several tests later.
    if not pyfuncitem.get_closest_marker("own_process") or os.environ.get(_OWN_PROCESS) == pyfuncitem.nodeid:
        return None
    done = subprocess.run([sys.executable, "-m", "pytest", pyfuncitem.nodeid, "-q", "-rs", "-p", "no:cacheprovider",
                           "-o", "addopts="], cwd=ROOT, env={**os.environ, _OWN_PROCESS: pyfuncitem.nodeid},
                          capture_output=True, text=True, timeout=1200)
    if done.returncode == 0 and re.search(r"\b1 passed\b", done.stdout):
        return True
    skipped = re.search(r"^SKIPPED \[\d+\] [^:]+:\d+: (.*)$", done.stdout, re.MULTILINE)
    if done.returncode == 0 and skipped:
        pytest.skip(skipped.group(1))
    pytest.fail(f"in its own process, exit {done.returncode}:\n{(done.stdout + done.stderr)[-4000:]}", pytrace=False)
