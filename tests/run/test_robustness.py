"""kill -9 and Ctrl-C in the middle of a real sweep: every file stays valid, a re-run resumes."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from dlmark.benchmark import load_records

#: Real worker processes and real runs: minutes on a loaded 2-core machine (`-m "not slow"` skips them).
import pytest

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
BATCHES = [1, 2, 4, 8, 16, 32, 64]


def start_sweep(out: Path) -> subprocess.Popen:
    args = [sys.executable, "-m", "dlmark.cli", "run", "quick", "--device", "cpu", "--models",
            "py:tests.fixtures.models:tiny", "--batch-sizes", ",".join(map(str, BATCHES)),
            "--min-time", "0.3", "--out", str(out)]
    return subprocess.Popen(args, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True)


def wait_for_records(out: Path, count: int, proc: subprocess.Popen, limit_s: float = 240) -> None:
    deadline = time.monotonic() + limit_s
    while len(list(out.glob("*.json"))) < count:
        assert proc.poll() is None, f"sweep ended early: {proc.communicate()}"
        assert time.monotonic() < deadline, "no records appeared"
        time.sleep(0.05)


def all_files_valid(out: Path) -> list[dict]:
    records = []
    for path in out.glob("*.json"):
        records.append(json.loads(path.read_text()))  # raises on a half-written file
    return records


def test_kill_9_midway_loses_nothing_and_resume_skips_finished_jobs(tmp_path):
    out = tmp_path / "runs"
    proc = start_sweep(out)
    wait_for_records(out, 2, proc)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    survivors = all_files_valid(out)
    assert 2 <= len(survivors) < len(BATCHES)
    before = {p.name: p.read_text() for p in out.glob("*.json")}

    rerun = subprocess.run([sys.executable, "-m", "dlmark.cli", "run", "quick", "--device", "cpu", "--models",
                            "py:tests.fixtures.models:tiny", "--batch-sizes", ",".join(map(str, BATCHES)),
                            "--min-time", "0.3", "--out", str(out), "--quiet"],
                           cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    records = load_records(str(out))
    assert sorted(r["batch_size"] for r in records) == BATCHES  # complete, no duplicates
    # What was finished before the kill was not measured again: same files, same bytes.
    for name, text in before.items():
        assert (out / name).read_text() == text
    assert len({r["run_id"] for r in records}) == 2
    assert f"{len(BATCHES) - len(before)} record(s) written" in rerun.stdout


def test_ctrl_c_stops_cleanly_and_keeps_finished_records(tmp_path):
    out = tmp_path / "runs"
    proc = start_sweep(out)
    wait_for_records(out, 1, proc)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert "run the same command again to resume" in stderr
    kept = all_files_valid(out)
    assert kept and all(r["status"] == "ok" for r in kept)  # the interrupted job is not recorded as a failure
