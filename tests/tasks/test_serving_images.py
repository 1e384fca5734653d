"""The serving scenarios on decoded images (``--scenario ... --input images[:DIR]``): bad input refused
before any work, and a run whose records and ``dlmark ls`` rows say where the samples came from."""
import dataclasses
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from dlmark.errors import UserError

pytest.importorskip("mlperf_loadgen", reason="LoadGen is in the test extra (mlcommons-loadgen)")

MODEL = "py:tests.fixtures.models:tiny_images"
ROOT = Path(__file__).resolve().parents[2]


def dlmark(*args, env=None, timeout=600):
    return subprocess.run([sys.executable, "-m", "dlmark.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=timeout, env={**os.environ, **(env or {})})


def write_folder(folder: Path, bad: str | None = None) -> Path:
    from tests.fixtures.jpeg_files import write_jpegs

    paths = write_jpegs(folder, count=3)
    if bad == "truncated":  # its header reads, its pixels do not decode
        whole = paths[1].read_bytes()
        paths[1].write_bytes(whole[:len(whole) // 2])
    return folder


@pytest.mark.parametrize("case, args, message", [
    ("missing", ["--input", "images:{tmp}/nowhere"], "does not exist"),
    ("empty", ["--input", "images:{tmp}/empty"], "no JPEG files"),
    ("truncated", ["--input", "images:{tmp}/jpegs"], "cannot decode {tmp}/jpegs/img_1.jpg with decoder pil"),
    ("decoder", ["--input", "images", "--decoder", "jpegxl"], "unknown decoder 'jpegxl'"),
    ("nvjpeg", ["--input", "images", "--decoder", "nvjpeg"], "decode their samples once on the CPU"),
    ("workers", ["--input", "images", "--pipeline-workers", "2"], "--pipeline-workers is for the pipeline task"),
    ("pillow", ["--input", "images:{tmp}/jpegs"], "decoder pil needs Pillow, which is not installed"),
])
def test_bad_image_input_is_one_line_and_exit_2_with_nothing_written(tmp_path, case, args, message):
    (tmp_path / "empty").mkdir()
    write_folder(tmp_path / "jpegs", bad=case)
    env = None
    if case == "pillow":  # Pillow absent: a PIL package on the path that cannot be imported
        (tmp_path / "nopil" / "PIL").mkdir(parents=True)
        (tmp_path / "nopil" / "PIL" / "__init__.py").write_text("raise ImportError('no Pillow here')\n")
        env = {"PYTHONPATH": os.pathsep.join([str(tmp_path / "nopil"), os.environ.get("PYTHONPATH", "")])}
    out = tmp_path / "r"
    done = dlmark("run", "--models", MODEL, "--device", "cpu", "--out", str(out), "--scenario", "offline",
                  *[a.format(tmp=tmp_path) for a in args], env=env)
    assert done.returncode == 2, done.stderr[-2000:]
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and message.format(tmp=tmp_path) in lines[0], lines
    assert not out.exists()


def test_input_without_a_task_that_reads_images_is_refused():
    from dlmark.run import options

    built = options.build(models=[MODEL], tasks=["throughput"], device="cpu", input="images")
    assert built.tasks == ["throughput", "pipeline"]  # without a scenario, --input asks for the pipeline
    with pytest.raises(UserError, match="--input is for the pipeline task and the serving scenarios"):
        dataclasses.replace(built, tasks=["throughput"])


def test_a_scenario_with_input_serves_the_images_and_adds_no_pipeline():
    from dlmark.run import options

    built = options.build(models=[MODEL], device="cpu", scenarios=["offline"], input="images")
    assert built.tasks == ["serving"]
    both = options.build(models=[MODEL], tasks=["pipeline"], device="cpu", scenarios=["offline"], input="images")
    assert set(both.tasks) == {"pipeline", "serving"}


@pytest.mark.slow
def test_image_and_generated_samples_are_records_and_rows_of_their_own(tmp_path):
    folder = write_folder(tmp_path / "jpegs")
    out = tmp_path / "r"
    common = ["run", "--models", MODEL, "--device", "cpu", "--out", str(out), "--quiet", "--scenario",
              "single-stream", "--serving-min-time", "1"]
    for extra in (["--input", f"images:{folder}"], []):
        done = dlmark(*common, *extra)
        assert done.returncode == 0, done.stderr[-2000:]
    records = [json.loads(p.read_text()) for p in out.glob("*.json")]
    by_source = {r["samples_source"]: r for r in records}
    assert len(records) == 2 and set(by_source) == {"images", "generated"}
    images = by_source["images"]
    assert images["status"] == "ok" and images["valid"] and images["samples_distinct"] == 3
    assert images["input_dir"] == str(folder) and images["decoder"] == "pil"
    assert images["extra_config"]["input"] == f"images:{folder}"
    assert images["job_key"] != by_source["generated"]["job_key"]
    listed = dlmark("ls", str(out), "--scenario", "single-stream")
    assert listed.returncode == 0, listed.stderr
    rows = [line for line in listed.stdout.splitlines() if line.startswith(MODEL)]
    assert len(rows) == 2 and any("images:jpegs (pil)" in r for r in rows) and any("generated" in r for r in rows)


@pytest.mark.slow  # imports torch
def test_a_worker_decodes_the_images_once_for_every_step_of_a_search(tmp_path):
    # A Server search sends one request per load it tries; the same images for the same model are
    # the same decoded samples, another set or another model are not.
    from dlmark.backends import RunConfig, load
    from dlmark.tasks import serving

    folder = write_folder(tmp_path / "jpegs")
    runner = load("pytorch", MODEL, RunConfig(threads=1))
    request = {"samples": {"images": 3, "folder": str(folder), "decoder": "pil"}}
    first = serving._images(runner, request)
    first.stack([0, 1, 2], 3)  # decodes the three
    assert serving._images(runner, json.loads(json.dumps(request))) is first
    assert len(first._transformed) == 3
    assert serving._images(runner, {"samples": {**request["samples"], "images": 2}}) is not first
    other = load("pytorch", MODEL, RunConfig(threads=1))
    assert serving._images(other, request) is not first
