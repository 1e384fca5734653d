"""The image sets: generated sets are deterministic and realistic; folders are read as the user laid them out."""
import io
import os
import statistics

import pytest

from dlmark.errors import UserError
from dlmark.inputs import jpegs


def test_generated_set_is_deterministic_for_its_parameters(tmp_path):
    a = jpegs.generate(5, seed=3, cache_dir=tmp_path / "a")
    b = jpegs.generate(5, seed=3, cache_dir=tmp_path / "b")
    other = jpegs.generate(5, seed=4, cache_dir=tmp_path / "a")
    assert [p.read_bytes() for p in a.paths] == [p.read_bytes() for p in b.paths]
    assert a.key == b.key != other.key
    assert [p.read_bytes() for p in a.paths] != [p.read_bytes() for p in other.paths]
    # A larger set of the same seed starts with the same images: each depends on (seed, index) only.
    more = jpegs.generate(7, seed=3, cache_dir=tmp_path / "c")
    assert [p.read_bytes() for p in more.paths[:5]] == [p.read_bytes() for p in a.paths]


def test_generated_set_is_cached_and_reused(tmp_path):
    first = jpegs.generate(3, seed=0, cache_dir=tmp_path)
    stamps = [os.stat(p).st_mtime_ns for p in first.paths]
    again = jpegs.generate(3, seed=0, cache_dir=tmp_path)
    assert again.root == first.root
    assert [os.stat(p).st_mtime_ns for p in again.paths] == stamps
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no half-built folder left


def test_generated_images_have_realistic_sizes_and_structure(tmp_path):
    import numpy as np
    from PIL import Image

    images = jpegs.generate(12, seed=0, cache_dir=tmp_path)
    sizes = {s for s, _ in jpegs.SIZES}
    kb_per_megapixel = []
    for path, w, h, q, n in zip(images.paths, images.widths, images.heights, images.qualities, images.file_bytes):
        with Image.open(path) as im:
            assert (im.width, im.height) == (w, h) and im.format == "JPEG" and im.mode == "RGB"
            pixels = np.asarray(im.convert("L"), dtype=float)
        assert (w, h) in sizes and q in {q for q, _ in jpegs.QUALITIES}
        assert n == path.stat().st_size
        # ImageNet's validation JPEGs hold roughly 300-1000 KB per megapixel; flat colour would be ~20.
        kb_per_megapixel.append(n / 1024 / (w * h / 1e6))
        # Structure, not flat colour: a wide spread of grey levels, and neighbouring rows that differ.
        assert pixels.std() > 15
        assert np.abs(pixels[1:, :] - pixels[:-1, :]).mean() > 1.0
    assert 150 < statistics.median(kb_per_megapixel) < 1500
    fields = images.describe()
    assert fields["input_source"] == "generated" and fields["input_images"] == 12
    assert 30 < fields["input_file_kb_median"] < 400
    assert fields["input_total_mb"] == pytest.approx(sum(images.file_bytes) / 2**20)
    assert set(fields["input_qualities"]) <= {q for q, _ in jpegs.QUALITIES}


def test_folder_is_read_recursively_any_case_and_limited_evenly(tmp_path):
    from PIL import Image

    (tmp_path / "n01" / "deep").mkdir(parents=True)
    (tmp_path / "n02").mkdir()
    names = ["n01/a.jpg", "n01/deep/b.JPEG", "n02/c.jpeg", "n02/d.JPG", "n02/e.jpg", "n02/f.jpg"]
    for i, name in enumerate(names):
        Image.new("RGB", (40 + i, 30), (i * 40, 80, 120)).save(tmp_path / name, "JPEG", quality=70 + 5 * i)
    (tmp_path / "n02" / "notes.txt").write_text("not an image")
    (tmp_path / "n02" / "g.png").write_bytes(b"\x89PNG")  # another suffix: never opened

    found = jpegs.open_folder(tmp_path, limit=None)
    assert sorted(p.relative_to(tmp_path).as_posix() for p in found.paths) == sorted(names)
    # The quality is read back from the quantisation tables of what Pillow wrote.
    by_name = {p.name: q for p, q in zip(found.paths, found.qualities)}
    assert by_name["a.jpg"] == 70 and by_name["f.jpg"] == 95
    limited = jpegs.open_folder(tmp_path, limit=3)
    assert len(limited) == 3 and limited.available == 6
    assert [p.name for p in limited.paths] == [found.paths[i].name for i in (0, 2, 4)]
    fields = limited.describe()
    assert fields["input_source"] == "folder" and fields["input_images_available"] == 6


def test_quality_estimate_matches_pillow_for_every_quality():
    from PIL import Image

    image = Image.new("RGB", (16, 16), (10, 200, 30))
    for quality in (10, 35, 50, 75, 90, 100):
        out = io.BytesIO()
        image.save(out, "JPEG", quality=quality)
        out.seek(0)
        assert jpegs.estimate_quality(Image.open(out).quantization[0]) == quality


def one_line(exc_info) -> str:
    text = str(exc_info.value)
    assert "\n" not in text and text
    return text


def test_bad_folders_are_one_line_user_errors(tmp_path):
    with pytest.raises(UserError) as e:
        jpegs.open_folder(tmp_path)
    assert "no JPEG files" in one_line(e) and str(tmp_path) in one_line(e)
    with pytest.raises(UserError) as e:
        jpegs.open_folder(tmp_path / "missing")
    assert "does not exist" in one_line(e)
    (tmp_path / "file.jpg").write_bytes(b"this is text, not a JPEG")
    with pytest.raises(UserError) as e:
        jpegs.open_folder(tmp_path / "file.jpg")
    assert "not a folder" in one_line(e)
    with pytest.raises(UserError) as e:
        jpegs.open_folder(tmp_path)
    assert "file.jpg" in one_line(e)


@pytest.mark.skipif(os.geteuid() == 0, reason="root reads any folder")
def test_unreadable_folder_is_a_user_error(tmp_path):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0)
    try:
        with pytest.raises(UserError) as e:
            jpegs.open_folder(locked)
        assert "permission denied" in one_line(e)
    finally:
        locked.chmod(0o755)


def test_input_flag_values():
    assert jpegs.parse_input("images") == ("images", None)
    assert jpegs.parse_input("images:/data/val") == ("images", "/data/val")
    for bad in ("image", "images:", "tensors"):
        with pytest.raises(UserError):
            jpegs.parse_input(bad)
