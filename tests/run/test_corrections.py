"""The corrections of the 'one house' rework, each reproduced the way it was found."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from dlmark.measure import devices, environment
from dlmark.records import schema
from dlmark.records.store import Store
from tests.runtime_helpers import workers_of

FIX = "py:tests.fixtures.models"
ROOT = Path(__file__).resolve().parents[2]


def dlmark(*args, **kw):
    return subprocess.run([sys.executable, "-m", "dlmark.cli", *args], capture_output=True, text=True, cwd=ROOT, **kw)


def record_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.json")) if folder.exists() else []


@pytest.mark.slow
def test_a_user_error_raised_inside_a_worker_stops_the_run_with_one_line_and_no_record(tmp_path):
    out = tmp_path / "r"
    done = dlmark("run", "--models", f"{FIX}:needs_absent_weights,{FIX}:tiny", "--batch-sizes", "1",
                  "--device", "cpu", "--min-time", "0.05", "--out", str(out), "--quiet")
    assert done.returncode == 2
    assert done.stderr.strip().splitlines() == [
        "dlmark: error: the pretrained weights of needs_absent_weights are not on disk; put them in ~/.cache/torch"]
    assert not any("needs_absent_weights" in p.name for p in record_files(out))


def test_an_output_folder_that_cannot_be_written_is_refused_before_any_work(tmp_path):
    # /proc refuses new entries even to root, for whom os.access says yes: found by trying.
    began = time.monotonic()
    done = dlmark("run", "--models", "ResNet-v1-18", "--batch-sizes", "1", "--device", "cpu", "--out", "/proc/dlmark-out")
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().startswith("dlmark: error: cannot write to output folder /proc/dlmark-out")
    assert len(done.stderr.strip().splitlines()) == 1 and "Traceback" not in done.stderr
    assert time.monotonic() - began < 30  # refused before building or measuring anything


def test_an_unwritable_folder_leaves_nothing_behind(tmp_path):
    from dlmark.run.options import check_writable

    check_writable(tmp_path / "new" / "deeper")
    assert not (tmp_path / "new").exists()  # the probe made it and took it away again
    blocked = tmp_path / "file"
    blocked.write_text("x")
    with pytest.raises(Exception, match="is a file"):
        check_writable(blocked)


def _peak_record(device_name: str, host: str) -> dict:
    return schema.new_record(job_key="peak-of-this-cpu", task="peak", model="peak", device=device_name,
                             device_spec="cpu", host=host, status="ok", timestamp="2026-01-01T00:00:00+00:00",
                             peak_tflops_fp32=0.5, peak_bandwidth_gbs=20.0)


def _assert_mfu_against_the_peak(out: Path):
    import dlmark as dm

    thr = dm.benchmark.load_results(str(out))
    thr = thr[thr.task == "throughput"]
    assert len(thr) and (thr.peak_source == "measured by dlmark peak").all()
    assert (thr.mfu - thr.achieved_tflops / 0.5).abs().max() < 1e-12


@pytest.mark.slow
def test_a_forced_run_into_a_folder_with_a_peak_record_derives_mfu_from_it(tmp_path):
    out = tmp_path / "r"
    Store(out, "peak.py").write(_peak_record(devices.cpu().name, environment.host()))
    args = ["run", "--models", f"{FIX}:tiny", "--batch-sizes", "1", "--device", "cpu", "--min-time", "0.05",
            "--out", str(out), "--quiet"]
    assert dlmark(*args).returncode == 0
    assert dlmark(*args, "--force").returncode == 0
    _assert_mfu_against_the_peak(out)


@pytest.mark.slow
def test_a_ray_run_into_a_folder_with_a_peak_record_derives_mfu_from_it(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    out = tmp_path / "r"
    Store(out, "peak.py").write(_peak_record(devices.cpu().name, environment.host()))
    done = dlmark("run", "--models", f"{FIX}:tiny", "--batch-sizes", "1", "--device", "cpu", "--min-time", "0.05",
                  "--executor", "ray", "--out", str(out), "--quiet", timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    _assert_mfu_against_the_peak(out)


@pytest.mark.slow
def test_ctrl_c_during_the_agreement_check_leaves_no_process_behind(tmp_path):
    out = tmp_path / "r"
    env = dict(os.environ, DLMARK_TEST_RUN=str(os.getpid()))
    proc = subprocess.Popen([sys.executable, "-m", "dlmark.cli", "run", "--models", f"{FIX}:slow_at_agreement_batch",
                             "--layout", "channels_last", "--batch-sizes", "1", "--device", "cpu", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)
    deadline = time.monotonic() + 120
    while not workers_of(str(os.getpid())) and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(8)  # the check's batch sleeps for a minute: the run is inside it now
    assert proc.poll() is None and workers_of(str(os.getpid()))
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    time.sleep(1)
    assert workers_of(str(os.getpid())) == []


def test_a_direct_library_run_is_validated_like_the_cli(tmp_path):
    from dlmark.errors import UserError
    from dlmark.run import options
    from dlmark.run.driver import run

    opts = options.build("quick", models=[f"{FIX}:tiny"], batch_sizes=[1], device="cpu", min_time_s=0.05)
    with pytest.raises(UserError, match="cannot write to output folder"):
        run(opts, "/proc/dlmark-out", quiet=True)
    with pytest.raises(UserError, match="several CPU lanes"):
        options.build("quick", models=[f"{FIX}:tiny"], devices=[devices.cpu(), devices.cpu()])
