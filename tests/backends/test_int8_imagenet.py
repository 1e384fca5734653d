"""int8 calibration on ImageNet validation images: exactly the stated images, a cache key that follows
them, the record's fields; and the quantized model the throughput task times is the one accuracy measures."""
import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dlmark.backends import CalibrationSet, int8
from dlmark.models import zoo
from tests import imagenet_layouts as L
from tests.fixtures.colour_models import grey

SHAPE = (3, 32, 32)
LINEAR = "py:tests.fixtures.colour_models:linear_grey_classifier"


@pytest.fixture
def opened(monkeypatch):
    """Paths of the image files PIL opens from here on."""
    paths = []
    real = Image.open

    def spy(fp, *args, **kwargs):
        paths.append(str(fp))
        return real(fp, *args, **kwargs)

    monkeypatch.setattr(Image, "open", spy)
    return paths


def calibration(directory, samples=6, seed=1):
    built = zoo.build(zoo.get(L.MODEL))
    return int8.imagenet_calibration(CalibrationSet("imagenet", samples, seed, str(directory)), built.spec,
                                     built.module)


def shown_grey(path: str) -> int:
    number = int(Path(path).stem.rsplit("_", 1)[1])
    return grey(next(shown for n, _, shown in L.IMAGES if n == number))


def test_the_calibration_reads_exactly_the_stated_images(tmp_path, opened):
    directory = L.class_folders(tmp_path / "imagenet")
    cal = calibration(directory, samples=6)
    assert opened == []  # choosing and keying the set reads no image
    batches = list(cal.batches(SHAPE))
    assert [len(b) for b in batches] == [6]  # batch_size 8 > 6 samples
    # Six different files, each opened once, in the order the record states them.
    assert len(opened) == 6 == len(set(opened))
    assert [Path(p).name for p in opened] == [name for name, _ in cal.files]
    assert [os.path.getsize(p) for p in opened] == [size for _, size in cal.files]
    # Class-balanced: the folder has 10 classes, so 6 images are of 6 different classes.
    assert len({Path(p).parent.name for p in opened}) == 6
    # Decoded with the model's own transform (identity normalisation): each sample is its file's grey.
    for sample, path in zip(batches[0], opened):
        assert sample.mean() == pytest.approx(shown_grey(path) / 255, abs=0.01)
    fields = cal.fields()
    expected_digest = hashlib.sha256(json.dumps(
        [[Path(p).name, os.path.getsize(p)] for p in opened]).encode()).hexdigest()[:16]
    assert fields["calibration_source"] == "imagenet" and fields["calibration_samples"] == 6
    assert fields["calibration_seed"] == 1 and fields["calibration_imagenet_dir"] == str(directory)
    assert fields["calibration_first_file"] == Path(sorted(opened)[0]).name
    assert fields["calibration_files_sha256"] == expected_digest
    assert fields["calibration_transform"]["from"] == "dlmark_eval_transform"
    assert set(int8.IMAGENET_FIELDS) <= set(fields)
    list(cal.batches(SHAPE))
    assert len(opened) == 6  # decoded once


def test_the_key_follows_the_chosen_files_names_and_sizes(tmp_path, opened):
    directory = L.class_folders(tmp_path / "imagenet")
    first = calibration(directory)
    assert first.key() == calibration(directory).key()
    # The same files elsewhere, in another layout: the same set, the same key (and so the same artefact).
    assert calibration(L.kaggle(tmp_path / "kaggle")).key() == first.key()
    # Another count or seed picks other files: another key.
    assert calibration(directory, samples=5).key() != first.key()
    other_seed = calibration(directory, seed=2)
    assert other_seed.files != first.files and other_seed.key() != first.key()
    assert other_seed.fields()["calibration_seed"] == 2
    # A chosen file that changes size changes the key; a file outside the set does not.
    chosen = {name for name, _ in first.files}
    paths = sorted(directory.rglob("*.JPEG"))
    inside = next(p for p in paths if p.name in chosen)
    outside = next(p for p in paths if p.name not in chosen)
    size = os.path.getsize(inside)
    noisy = np.random.default_rng(0).integers(0, 256, (40, 40, 3), dtype=np.uint8)
    Image.fromarray(noisy).save(outside, "JPEG")
    assert calibration(directory).key() == first.key()
    Image.fromarray(noisy).save(inside, "JPEG")
    assert os.path.getsize(inside) != size and calibration(directory).key() != first.key()
    assert opened == []  # no key needed an image decoded


def test_more_calibration_images_than_the_folder_holds_is_one_line(tmp_path):
    directory = L.class_folders(tmp_path / "imagenet")
    with pytest.raises(int8.UserError, match="holds 12"):
        calibration(directory, samples=13)


def test_without_imagenet_the_calibration_is_generated_as_before():
    assert int8.calibration_for(None) == int8.Calibration()
    generated = int8.calibration_for(CalibrationSet(samples=9, seed=4))
    assert generated.fields() == {"calibration_source": "generated", "calibration_samples": 9, "calibration_seed": 4}
    assert generated.key() == {"source": "generated", "samples": 9, "seed": 4}


@pytest.mark.slow
def test_onnxruntime_quantizes_on_the_images_and_caches_by_the_set(tmp_path, monkeypatch, opened):
    pytest.importorskip("onnxruntime")
    monkeypatch.setenv("DLMARK_CACHE", str(tmp_path / "cache"))
    from dlmark.backends import RunConfig, onnxruntime as ort_backend

    directory = L.class_folders(tmp_path / "imagenet")
    config = RunConfig(precision="int8", threads=1, calibration=CalibrationSet("imagenet", 8, 1, str(directory)))
    runner = ort_backend.load(LINEAR, config)
    fields = runner.facts()["runtime_fields"]
    assert fields["calibration_source"] == "imagenet" and fields["calibration_samples"] == 8
    assert len(opened) == 8 and Path(fields["quant_file"]).exists()
    # Again: the cached artefact, and no image decoded.
    again = ort_backend.load(LINEAR, config).facts()["runtime_fields"]
    assert again["quant_file"] == fields["quant_file"] and len(opened) == 8
    # Another set, or the generated one, is another file.
    other = RunConfig(precision="int8", threads=1, calibration=CalibrationSet("imagenet", 7, 1, str(directory)))
    assert ort_backend.load(LINEAR, other).facts()["runtime_fields"]["quant_file"] != fields["quant_file"]
    generated = ort_backend.load(LINEAR, RunConfig(precision="int8", threads=1)).facts()["runtime_fields"]
    assert generated["calibration_source"] == "generated" and generated["quant_file"] != fields["quant_file"]
    shutil.rmtree(tmp_path / "cache")
