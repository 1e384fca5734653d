"""Bad input: one clear line, exit code 2, nothing written."""
import subprocess
import sys

import pytest

from dlmark.cli import main
from dlmark.cli.args import parse_batch_sizes, parse_size
from dlmark.errors import UserError


@pytest.mark.parametrize("args, message", [
    (["run", "nosuchsuite"], "unknown suite 'nosuchsuite'"),
    (["run", "--models", "ResNet-50"], "closest: ResNet-v2-50, ResNet-v1-50"),
    (["run", "--batch-sizes", "0"], "batch sizes must be positive"),
    (["run", "--batch-sizes", "four"], "bad batch size 'four'"),
    (["run", "--device", "tpu"], "unknown device 'tpu'"),
    (["run", "--precision", "fp8x"], "unknown precision 'fp8x'"),
    (["run", "--task", "speed"], "unknown task 'speed'"),
    (["run", "--memory-limit", "lots"], "bad memory size 'lots'"),
    (["run", "--threads", "0"], "--threads must be a positive integer"),
    (["run", "--frobnicate"], "unrecognized arguments: --frobnicate"),
])
def test_bad_input_is_one_line_and_exit_2(args, message, tmp_path, capsys):
    out = tmp_path / "results"
    assert main(args + ["--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert err.count("\n") == 1 and err.startswith("dlmark: error: ")
    assert not out.exists()


def test_a_gpu_that_is_not_there(tmp_path, capsys):
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has a GPU; cuda:64 is the check below")
    assert main(["run", "--device", "cuda:0", "--out", str(tmp_path / "r")]) == 2
    assert "no CUDA GPU is visible" in capsys.readouterr().err


def test_an_output_folder_that_cannot_be_written(tmp_path, capsys):
    blocker = tmp_path / "file"
    blocker.write_text("")
    assert main(["run", "--device", "cpu", "--out", str(blocker)]) == 2
    assert "is a file" in capsys.readouterr().err
    readonly = tmp_path / "ro"
    readonly.mkdir()
    readonly.chmod(0o500)
    try:
        if not __import__("os").access(readonly, __import__("os").W_OK):  # root can write anyway
            assert main(["run", "--device", "cpu", "--out", str(readonly / "x")]) == 2
            assert "not writable" in capsys.readouterr().err
    finally:
        readonly.chmod(0o700)


def test_console_script_exit_code():
    proc = subprocess.run([sys.executable, "-m", "dlmark.cli", "run", "--models", "Nope"], capture_output=True, text=True)
    assert proc.returncode == 2
    assert proc.stderr.startswith("dlmark: error: unknown model 'Nope'")


def test_parsers():
    assert parse_batch_sizes("1:16") == [1, 2, 4, 8, 16]
    assert parse_batch_sizes("8,1,2") == [1, 2, 8]
    assert parse_size("8GiB") == 8 * 2**30
    assert parse_size("512MiB") == 512 * 2**20
    assert parse_size("2GB") == 2 * 10**9
    with pytest.raises(UserError):
        parse_size("-1GiB")


def test_models_and_suites_list(capsys):
    assert main(["models", "VGG*"]) == 0
    assert "VGG-16" in capsys.readouterr().out
    assert main(["suites"]) == 0
    out = capsys.readouterr().out
    assert "cnn" in out and "quick" in out


def _options_of(monkeypatch, tmp_path, *args):
    """The RunOptions `dlmark run` builds, captured instead of running."""
    import dlmark.run.driver

    seen = {}

    def fake_run(options, *a, **kw):
        seen["options"] = options
        raise SystemExit(0)

    monkeypatch.setattr(dlmark.run.driver, "run", fake_run)
    with pytest.raises(SystemExit):
        main(["run", *args, "--device", "cpu", "--out", str(tmp_path / "r")])
    return seen["options"]


def test_suite_timing_per_device_kind_and_min_time_over_it(monkeypatch, tmp_path):
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\nmodels = ["AlexNet"]\nbatch_sizes = [1]\n'
                     '[timing]\nmin_run_s = 1.0\nmin_blocks = 7\n[timing.cuda]\nmin_run_s = 0.5\n')
    options = _options_of(monkeypatch, tmp_path, str(suite))
    assert options.timing_for("cpu") == {"min_run_s": 1.0, "min_blocks": 7}
    assert options.timing_for("cuda") == {"min_run_s": 0.5, "min_blocks": 7}
    # --min-time is the user's figure: it holds on every kind of device.
    options = _options_of(monkeypatch, tmp_path, str(suite), "--min-time", "0.2")
    assert options.timing_for("cpu")["min_run_s"] == options.timing_for("cuda")["min_run_s"] == 0.2
    # The shipped cnn suite times GPUs shorter than CPUs.
    options = _options_of(monkeypatch, tmp_path, "cnn")
    assert options.timing_for("cuda")["min_run_s"] < options.timing_for("cpu")["min_run_s"]


@pytest.mark.parametrize("timing, message", [
    ("[timing]\nmin_run_sec = 1\n", "unknown timing option(s) ['min_run_sec']"),
    ("[timing.tpu]\nmin_run_s = 1\n", "unknown timing option(s) ['tpu']"),
    ("[timing.cuda]\nmin_run_sec = 1\n", "unknown timing option(s) for cuda ['min_run_sec']"),
])
def test_bad_suite_timing_is_one_line(timing, message, tmp_path, capsys):
    suite = tmp_path / "s.toml"
    suite.write_text('name = "s"\nmodels = ["AlexNet"]\nbatch_sizes = [1]\n' + timing)
    assert main(["run", str(suite), "--device", "cpu", "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
