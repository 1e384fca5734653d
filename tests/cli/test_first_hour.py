"""The first hour of a new user, driven through the CLI as a subprocess (issue 18).

Every case asserts the exit code, the one line the user reads, that nothing is
written where nothing should be, and, for the signal cases, that no dlmark
worker is left behind.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.runtime_helpers import workers_of

ROOT = Path(__file__).resolve().parents[2]
FIX = "py:tests.fixtures.models"
RESULTS = ROOT / "results" / "h200-cnn-sweep-2"  # a committed results folder


def dlmark(*args: str, env: dict[str, str] | None = None, timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "dlmark.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=timeout, **kw)


def one_line(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    return lines[0]


def _wait_for(condition, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def _start_slow_run(out: Path, marker: str, *models: str) -> subprocess.Popen:
    """A CPU run whose last model sleeps a minute in its agreement check (batch 8): a window to signal it in."""
    env = dict(os.environ, DLMARK_TEST_RUN=marker)
    names = ",".join(f"{FIX}:{m}" for m in (*models, "slow_at_agreement_batch"))
    return subprocess.Popen([sys.executable, "-m", "dlmark.cli", "run", "--models", names, "--layout", "channels_last",
                             "--batch-sizes", "1", "--min-time", "0.05", "--device", "cpu", "--out", str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=env)


# -- process lifetime

@pytest.mark.slow
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGHUP], ids=["SIGTERM", "SIGHUP"])
def test_sigterm_and_sighup_stop_like_ctrl_c(tmp_path, signum):
    out, marker = tmp_path / "r", f"{os.getpid()}-{signum}"
    proc = _start_slow_run(out, marker, "tiny")
    try:
        # tiny's record is on disk; the same worker then loads the slow model and sits in its minute-long batch.
        _wait_for(lambda: any(out.glob("*.json")), 180, "the first record")
        time.sleep(3)
        assert proc.poll() is None and workers_of(marker)
        proc.send_signal(signum)
        _, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert "run the same command again to resume" in err
    assert "Traceback" not in err
    assert [p.name for p in out.glob("*.json") if "tiny" in p.name], "the finished record was lost"
    assert not [p for p in out.glob("*.json") if "slow" in p.name]
    time.sleep(1)
    assert workers_of(marker) == []


@pytest.mark.slow
def test_a_worker_dies_with_its_driver_even_by_sigkill(tmp_path):
    out, marker = tmp_path / "r", f"{os.getpid()}-kill"
    proc = _start_slow_run(out, marker)
    try:
        _wait_for(lambda: workers_of(marker), 180, "a worker")
        time.sleep(3)
        assert proc.poll() is None
        proc.send_signal(signal.SIGKILL)  # no handler runs: the worker must notice by itself
        proc.communicate(timeout=60)
    finally:
        proc.kill()
    _wait_for(lambda: workers_of(marker) == [], 10, "the orphaned worker to die")


def test_a_worker_whose_parent_is_not_the_driver_it_was_told_of_kills_itself():
    # The fallback watch (no prctl needed): a worker re-parented to init or a subreaper is an orphan.
    worker = subprocess.Popen([sys.executable, "-m", "dlmark.run.worker", "--parent-pid", "1"],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=ROOT,
                              env=dict(os.environ, PYTHONPATH=str(ROOT / "src")))
    try:
        assert worker.wait(timeout=60) == -signal.SIGKILL
    finally:
        worker.kill()


def test_a_closed_pipe_ends_output_quietly():
    read_end, write_end = os.pipe()
    os.close(read_end)  # the reader is gone before the first write, as after `| head -1` has its line
    try:
        done = subprocess.run([sys.executable, "-m", "dlmark.cli", "ls", str(RESULTS)], stdout=write_end,
                              stderr=subprocess.PIPE, text=True, cwd=ROOT, timeout=120)
    finally:
        os.close(write_end)
    assert done.returncode == 0, done.stderr
    assert done.stderr == ""


def test_ls_into_head_gives_its_line_and_exit_0():
    done = subprocess.run(["bash", "-o", "pipefail", "-c", f"{sys.executable} -m dlmark.cli ls {RESULTS} | head -1"],
                          capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("model ") and done.stderr == ""


# -- reader commands: an empty or missing folder is one line, exit 2; a warning is one line

READERS = {
    "ls": lambda where, tmp: ["ls", where],
    "pareto": lambda where, tmp: ["pareto", where],
    "plot": lambda where, tmp: ["plot", "max-batch-size", where, "-o", str(tmp / "out" / "figure.html")],
    "report": lambda where, tmp: ["report", where, "-o", str(tmp / "out" / "site")],
}


@pytest.mark.parametrize("command", list(READERS))
@pytest.mark.parametrize("folder", ["empty", "missing"])
def test_a_reader_of_an_empty_or_missing_folder_says_so_in_one_line(tmp_path, command, folder):
    where = tmp_path / folder
    if folder == "empty":
        where.mkdir()
    done = dlmark(*READERS[command](str(where), tmp_path))
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith("dlmark: error: ")
    assert ("no result files in" if folder == "empty" else "no such results folder") in line
    assert done.stdout == ""
    assert not (tmp_path / "out").exists()


def test_a_python_warning_reaches_the_user_as_one_dlmark_line(tmp_path):
    good = sorted(RESULTS.glob("*.json"))[0]
    shutil.copy(good, tmp_path / good.name)
    (tmp_path / "cnn.py__benchmark_throughput__broken.json").write_text('{"model": "trunc')
    done = dlmark("ls", str(tmp_path))
    assert done.returncode == 0, done.stderr
    line = one_line(done.stderr)
    assert line.startswith("dlmark: warning: skipping unreadable result file") and "broken.json" in line
    assert "1 record(s)" in done.stdout


# -- a re-run with nothing left to do

@pytest.mark.slow
def test_a_resume_and_a_rerun_show_the_whole_commands_results(tmp_path):
    out = str(tmp_path / "r")
    common = ["--layout", "nchw", "--batch-sizes", "1", "--min-time", "0.05", "--device", "cpu", "--out", out]
    first = dlmark("run", "--models", f"{FIX}:tiny", *common)
    assert first.returncode == 0, first.stderr
    # A second model added: the summary covers tiny's stored record as well as the new one.
    both = ["--models", f"{FIX}:tiny,{FIX}:alloc_fails_above_limit", *common]
    resumed = dlmark("run", *both)
    assert resumed.returncode == 0, resumed.stderr
    assert f"{FIX}:tiny " in resumed.stdout and f"{FIX}:alloc_fails_above_limit " in resumed.stdout
    assert "1 record(s) written" in resumed.stdout
    files = sorted(p.name for p in Path(out).glob("*.json"))
    again = dlmark("run", *both)
    assert again.returncode == 0, again.stderr
    assert f"{FIX}:tiny " in again.stdout and f"{FIX}:alloc_fails_above_limit " in again.stdout
    assert "0 record(s) written" in again.stdout
    assert f"`dlmark ls {out}` lists them, --force re-measures" in again.stdout
    assert "no new measurements" not in again.stdout
    assert sorted(p.name for p in Path(out).glob("*.json")) == files
    # A CPU record does not carry the CUDA and cuDNN versions torch was built with.
    import json

    env = json.loads(next(Path(out).glob("*.json")).read_text())["env"]
    assert "torch" in env and "cuda" not in env and "cudnn" not in env


# -- dlmark tune on a CPU

def test_a_cpu_tune_searches_cpu_sized_batches():
    from dlmark.run.tune import SearchSpace, default_space

    cpu, gpu = default_space("cpu"), default_space("cuda")
    assert gpu == SearchSpace()
    assert cpu.screen_batch < gpu.screen_batch and cpu.max_batch < gpu.max_batch
    assert "cudagraphs" not in (*cpu.modes, *cpu.latency_modes) and "tf32" not in cpu.precisions


@pytest.mark.slow
def test_a_tune_that_measures_nothing_useful_says_so_and_exits_1(tmp_path):
    done = dlmark("tune", f"{FIX}:errors_above_limit", "--device", "cpu", "--out", str(tmp_path), "--budget-s", "60")
    assert done.returncode == 1, done.stderr
    assert "fp32/nchw/eager/b16 " in done.stderr  # the CPU's screening batch, not the GPU's 256
    assert "no recommendation: no configuration was measured successfully" in done.stdout
    assert "this model rejects large batches" in done.stderr  # the error's whole first line


# -- error messages name our own settings

def test_a_wrong_mxnet_python_names_the_variable(tmp_path):
    env = dict(os.environ, DLMARK_MXNET_PYTHON=str(tmp_path / "no" / "python"))
    out = tmp_path / "r"
    done = dlmark("run", "--backend", "mxnet", "--models", "AlexNet", "--device", "cpu", "--out", str(out), env=env)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith(f"dlmark: error: DLMARK_MXNET_PYTHON={tmp_path}/no/python does not exist")
    assert not out.exists()


def test_a_model_outside_mxnets_zoo_is_refused_before_the_other_runtimes_run(tmp_path):
    # Before, the pytorch jobs ran and wrote their records, and only then the mxnet job failed.
    # The network outside the zoo is a py: fixture: the check reads names only, whatever the source, and a
    # timm name costs the driver timm's import (torch, torchvision: 8 s idle, 30 s on a busy 2-core machine).
    out, outside = tmp_path / "r", f"{FIX}:tiny"
    done = dlmark("run", "--backend", "pytorch,mxnet", "--models", f"ResNet-v1-18,{outside}", "--device", "cpu",
                  "--batch-sizes", "1", "--out", str(out))
    assert done.returncode == 2
    assert one_line(done.stderr).startswith("dlmark: error: mxnet runs the Gluon model zoo's networks, "
                                            f"not {outside};")
    assert not out.exists()


def test_a_memory_limit_too_small_to_load_the_model_is_one_line(tmp_path):
    # Before, the run wrote an `error` record holding torch's allocator message and exited 0.
    out = tmp_path / "r"
    done = dlmark("run", "cnn", "--task", "max-batch-size", "--device", "cpu", "--memory-limit", "1GiB",
                  "--models", "AlexNet", "--out", str(out), "--quiet")
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert line.startswith("dlmark: error: --memory-limit 1.00 GiB is too small to load AlexNet (") and "raise it" in line
    assert not out.exists()


@pytest.mark.slow
def test_an_unreachable_ray_cluster_names_our_flag(tmp_path):
    pytest.importorskip("ray", reason="Ray is not installed (pip install -e '.[ray]')")
    out = tmp_path / "r"
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = dlmark("run", "--executor", "ray", "--ray-address", "auto", "--device", "cpu", "--models", "AlexNet",
                  "--out", str(out), env=env)
    assert done.returncode == 2
    line = one_line(done.stderr)
    assert "--ray-address" in line and " --address" not in line and "`--address`" not in line
    assert not out.exists()


# -- integers stay integers where a record beside them lacks the field

def test_export_writes_integers_loaded_next_to_missing_values_as_integers(tmp_path):
    import csv
    import json

    source = sorted((ROOT / "results" / "cpu-runtimes-2t").glob("*.json"))[:2]
    folder = tmp_path / "r"
    folder.mkdir()
    for i, path in enumerate(source):
        record = json.loads(path.read_text())
        record["env"]["threads"], record["env"]["cudnn"] = 2, 92400
        if i == 0:  # a record without them makes pandas hold the column as float
            del record["env"]["threads"], record["env"]["cudnn"]
            record["num_blocks"] = None
        (folder / path.name).write_text(json.dumps(record))
    done = dlmark("export", str(folder), "-o", str(tmp_path / "t.csv"))
    assert done.returncode == 0, done.stderr
    rows = list(csv.DictReader((tmp_path / "t.csv").open()))
    assert sorted(r["env.threads"] for r in rows) == ["", "2"]
    assert sorted(r["env.cudnn"] for r in rows) == ["", "92400"]
    blocks = sorted(r["num_blocks"] for r in rows)  # a registered int field
    assert blocks[0] == "" and blocks[1].isdigit()
    assert all("." in r["throughput"] for r in rows)  # a float field stays float
