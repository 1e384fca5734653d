"""The pipeline task: planned from --input, bad input stopped before any work, records from the CLI."""
import json
import os
import sys

import pytest

from dlmark.cli import main
from dlmark.errors import UserError
from dlmark.run import options as run_options
from dlmark.run.plan import plan
from dlmark.tasks import pipeline as task

TINY = "py:tests.fixtures.models:tiny"
#: The shortest timing the timer allows (three blocks): these tests check what is recorded, not figures.
SUITE = """name = "pipeline-test"
description = "the pipeline task's CLI test"
file_prefix = "test"
models = ["{tiny}"]
tasks = ["throughput"]
batch_sizes = [8]
precisions = ["fp32"]

[timing]
min_run_s = 0.1
min_blocks = 3
max_run_s = 2.0
warmup_max_s = 1.0
""".format(tiny=TINY)


def _build(**changes):
    return run_options.build("quick", models=[TINY], batch_sizes=[8, 16], device="cpu", **changes)


def test_input_plans_one_job_per_batch_size_and_worker_count():
    options = _build(input="images", pipeline_workers=[0, 2], pipeline_images=64)
    assert options.tasks == ["pipeline"]  # the suite's throughput is not run unless asked for
    (group,) = plan(options)
    assert [(j.batch_size, j.extra["data_workers"]) for j in group.jobs] == [(8, 0), (8, 2), (16, 0), (16, 2)]
    assert {j.extra["input"] for j in group.jobs} == {"images"}
    assert {(j.extra["decoder"], j.extra["images"]) for j in group.jobs} == {("pil", 64)}
    device = options.devices[0]
    assert len({j.key(device, "h") for j in group.jobs}) == 4
    # Beside another task when both are asked for; a folder enters the key as an absolute path.
    both = _build(input="images:~/val", tasks=["throughput"])
    assert both.tasks == ["throughput", "pipeline"]
    (_, pipe) = plan(both)
    assert pipe.jobs[0].extra["input"] == "images:" + os.path.expanduser("~/val")


@pytest.mark.parametrize("changes, message", [
    ({"decoder": "torchvision"}, "add --input images"),
    ({"pipeline_workers": [1]}, "add --input images"),
    ({"tasks": ["pipeline"]}, "the pipeline task reads JPEG files"),
    ({"input": "tensors"}, "unknown --input 'tensors'"),
    ({"input": "images", "decoder": "turbo"}, "unknown decoder 'turbo'"),
    ({"input": "images", "pipeline_workers": [-1]}, "--pipeline-workers"),
    ({"input": "images", "pipeline_images": 0}, "--images must be at least 1"),
    ({"input": "images", "decoder": "nvjpeg", "pipeline_workers": [0, 1]}, "use --pipeline-workers 0"),
])
def test_pipeline_options_are_checked(changes, message):
    with pytest.raises(UserError) as e:
        _build(**changes)
    assert message in str(e.value) and "\n" not in str(e.value)


def test_worker_counts_parse_like_a_list():
    assert task.parse_workers(None) == [0]
    assert task.parse_workers("0,1,2,1") == [0, 1, 2]
    for bad in ("", "one", "1,-2", "1,,2"):
        with pytest.raises(UserError):
            task.parse_workers(bad)


def test_timing_is_the_runs_with_warm_up_and_blocks_capped():
    timing = task.pipeline_timing({"min_run_s": 0.5, "min_blocks": 10, "warmup_max_s": 20.0})
    assert timing["min_run_s"] == 0.5  # --min-time holds
    assert timing["min_blocks"] == task.MIN_BLOCKS and timing["warmup_max_s"] == task.WARMUP_MAX_S
    short = task.pipeline_timing({"min_blocks": 3, "warmup_max_s": 0.5})
    assert short["min_blocks"] == 3 and short["warmup_max_s"] == 0.5


# ----------------------------------------------------------------- bad input: one line, exit 2, nothing written


def _jpeg(path, size=(64, 48)):
    from PIL import Image

    Image.new("RGB", size, (200, 30, 90)).save(path, "JPEG", quality=90)


def _run_fails(tmp_path, capsys, *args):
    out = tmp_path / "results"
    code = main(["run", "--models", TINY, "--batch-sizes", "8", "--device", "cpu", "--out", str(out), *args])
    err = capsys.readouterr().err
    assert code == 2
    assert err.count("\n") == 1 and err.startswith("dlmark: error: "), err
    assert not out.exists() or not list(out.iterdir())
    return err


def test_an_empty_or_missing_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no images here")
    assert "no JPEG files" in _run_fails(tmp_path, capsys, "--input", f"images:{tmp_path / 'empty'}")
    assert "does not exist" in _run_fails(tmp_path, capsys, "--input", f"images:{tmp_path / 'nowhere'}")


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_an_unreadable_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    _jpeg(locked / "a.jpg")
    locked.chmod(0)
    try:
        assert "permission denied" in _run_fails(tmp_path, capsys, "--input", f"images:{locked}")
    finally:
        locked.chmod(0o755)


def test_an_undecodable_file_is_named(tmp_path, capsys):
    import io

    from PIL import Image

    folder = tmp_path / "val"
    folder.mkdir()
    _jpeg(folder / "good.jpg")
    # A real photo-sized JPEG cut short: its header reads, its pixels do not decode.
    out = io.BytesIO()
    Image.effect_noise((300, 200), 60).convert("RGB").save(out, "JPEG", quality=90)
    (folder / "cut.jpg").write_bytes(out.getvalue()[: len(out.getvalue()) // 3])
    for decoder in ("pil", "torchvision"):
        err = _run_fails(tmp_path, capsys, "--input", f"images:{folder}", "--decoder", decoder)
        assert "cut.jpg" in err and "good.jpg" not in err
    (folder / "notes.jpg").write_text("a text file with a JPEG's name")
    assert "notes.jpg" in _run_fails(tmp_path, capsys, "--input", f"images:{folder}")


def test_a_decoder_that_is_not_installed_or_cannot_run_here(tmp_path, capsys, monkeypatch):
    assert "decodes on a CUDA GPU" in _run_fails(tmp_path, capsys, "--input", "images", "--decoder", "nvjpeg")
    assert "unknown decoder" in _run_fails(tmp_path, capsys, "--input", "images", "--decoder", "turbo")
    monkeypatch.setitem(sys.modules, "torchvision.io", None)  # an import of it now fails, as when absent
    assert "torchvision.io.decode_jpeg" in _run_fails(tmp_path, capsys, "--input", "images", "--decoder", "torchvision")


def test_another_runtime_is_refused(tmp_path, capsys):
    err = _run_fails(tmp_path, capsys, "--input", "images", "--backend", "onnxruntime")
    assert "--backend pytorch" in err


# ----------------------------------------------------------------- the whole path from the CLI


@pytest.mark.slow
def test_cli_writes_one_record_per_worker_count(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("DLMARK_CACHE", str(tmp_path / "cache"))  # the worker makes the generated set here
    suite = tmp_path / "suite.toml"
    suite.write_text(SUITE)
    out = tmp_path / "results"
    args = ["run", str(suite), "--models", TINY, "--input", "images", "--images", "64", "--batch-sizes", "8",
            "--pipeline-workers", "0,1", "--device", "cpu", "--out", str(out), "--quiet"]
    assert main(args) == 0
    records = [json.loads(p.read_text()) for p in sorted(out.glob("*.json"))]
    assert all("__benchmark_pipeline__" in p.name for p in out.glob("*.json"))
    assert sorted(r["data_workers"] for r in records) == [0, 1]
    for r in records:
        assert r["status"] == "ok" and r["task"] == "pipeline", r.get("error")
        assert r["bottleneck"] in ("decode", "transform", "copy", "model")
        assert r["loader"] == ("inprocess" if r["data_workers"] == 0 else "dataloader")
        assert r["input_source"] == "generated" and r["input_images"] == 64 and r["decoder"] == "pil"
        assert r["throughput"] == r["e2e_throughput"] and r["model_throughput"] == r["stage_model_per_s"]
        assert r["extra_config"]["data_workers"] == r["data_workers"]
        # End to end does the slowest stage's work and more: never above it beyond noise.
        stages = [s for s in ("decode", "transform", "loader", "copy", "model") if r[f"stage_{s}_per_s"] is not None]
        slowest = min(stages, key=lambda s: r[f"stage_{s}_per_s"])
        assert r["e2e_throughput_ci95_low"] <= r[f"stage_{slowest}_per_s_ci95_high"], (slowest, r)
        assert r["pipeline_timing"]["min_blocks"] == 3 and r["pipeline_rounds"] == task.ROUNDS
    capsys.readouterr()
    # Run again: both jobs are found done, nothing is measured or written.
    assert main(args) == 0
    assert "--force re-measures" in capsys.readouterr().out  # nothing new: the stored summary, and how to redo
    assert len(list(out.glob("*.json"))) == 2
