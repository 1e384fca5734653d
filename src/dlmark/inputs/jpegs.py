"""The JPEG files a pipeline run reads: a folder the user gives, or a stated set dlmark generates.

A generated set imitates ImageNet's validation images: mostly 500x375 and
375x500 (some 500x333, square and 1024x768), qualities 75-95, and content with
a natural image's 1/f amplitude spectrum plus hard-edged shapes, so that files
encode to realistic sizes (flat colour would compress to a few kilobytes and
decode unrealistically fast). Each image depends only on (seed, its index),
and the set is cached on disk under a key of its parameters.

Files are read into memory before anything is timed: the pipeline measures
decoding, not the disk.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import statistics
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from ..errors import UserError

SUFFIXES = (".jpg", ".jpeg")
#: Bump when the generator's output changes, so that a cached set is never stale.
GENERATOR_VERSION = 1
DEFAULT_COUNT = 256
DEFAULT_SEED = 0
#: Images read from a user's folder when no limit is given: all of ImageNet's
#: 50,000 (6.4 GB) would not fit in memory, and a few hundred give a stable rate.
DEFAULT_FOLDER_LIMIT = 512

#: (width, height) -> weight: ImageNet validation's common shapes.
SIZES: tuple[tuple[tuple[int, int], float], ...] = (
    ((500, 375), 0.50), ((375, 500), 0.18), ((500, 333), 0.12), ((333, 500), 0.05),
    ((500, 500), 0.06), ((1024, 768), 0.06), ((768, 1024), 0.03),
)
#: JPEG quality -> weight (photo-sharing sites store mostly 85-95).
QUALITIES: tuple[tuple[int, float], ...] = ((75, 0.15), (85, 0.25), (90, 0.30), (92, 0.15), (95, 0.15))


@dataclass
class ImageSet:
    """JPEG files, and what is known about them from their headers."""

    paths: list[Path]
    source: str  # "generated" or "folder"
    root: Path
    widths: list[int] = field(default_factory=list)
    heights: list[int] = field(default_factory=list)
    file_bytes: list[int] = field(default_factory=list)
    qualities: list[int | None] = field(default_factory=list)
    quality_source: str = "encoded"  # or "estimated from quantisation tables"
    available: int | None = None  # files in the folder before a limit picked some
    key: str | None = None  # the generated set's cache key

    def __len__(self) -> int:
        return len(self.paths)

    def read(self) -> list[bytes]:
        """Every file's bytes, in order."""
        out = []
        for path in self.paths:
            try:
                out.append(path.read_bytes())
            except OSError as exc:
                raise UserError(f"cannot read image {path}: {exc.strerror or exc}") from None
        return out

    def describe(self) -> dict[str, Any]:
        """Record fields: where the images come from and their size distribution."""
        known = [q for q in self.qualities if q is not None]
        return {
            "input_source": self.source,
            "input_dir": str(self.root),
            "input_images": len(self.paths),
            "input_images_available": self.available if self.available is not None else len(self.paths),
            "input_set_key": self.key,
            "input_width_median": statistics.median(self.widths) if self.widths else None,
            "input_height_median": statistics.median(self.heights) if self.heights else None,
            "input_megapixels_median": (statistics.median(w * h for w, h in zip(self.widths, self.heights)) / 1e6
                                        if self.widths else None),
            "input_file_kb_median": statistics.median(self.file_bytes) / 1024 if self.file_bytes else None,
            "input_total_mb": sum(self.file_bytes) / 2**20,
            "input_qualities": sorted(set(known)),
            "input_quality_median": statistics.median(known) if known else None,
            "input_quality_source": self.quality_source,
        }


# ------------------------------------------------------------------ a user's folder


def open_folder(path: str | os.PathLike, limit: int | None = DEFAULT_FOLDER_LIMIT) -> ImageSet:
    """The JPEG files under ``path`` (recursively), at most ``limit`` of them spread evenly over the sorted list.

    Every chosen file's header is read here, so that a file that is not an
    image is named before anything runs.
    """
    root = Path(os.path.expanduser(str(path)))
    if not root.exists():
        raise UserError(f"image folder {root} does not exist")
    if not root.is_dir():
        raise UserError(f"{root} is not a folder; --input images:DIR needs a folder of JPEG files")
    if not os.access(root, os.R_OK | os.X_OK):
        raise UserError(f"cannot read image folder {root}: permission denied")
    found: list[Path] = []
    unreadable: list[str] = []
    for folder, dirs, files in os.walk(root, onerror=lambda exc: unreadable.append(str(exc.filename))):
        dirs.sort()
        found.extend(Path(folder) / name for name in files if name.lower().endswith(SUFFIXES))
    if unreadable:
        raise UserError(f"cannot read image folder {unreadable[0]}: permission denied")
    if not found:
        raise UserError(f"no JPEG files ({', '.join(SUFFIXES)}, any case) in {root}")
    found.sort()
    available = len(found)
    if limit is not None and limit < 1:
        raise UserError(f"the image limit must be at least 1, not {limit}")
    if limit is not None and available > limit:
        # Evenly spread: ImageNet's folders are sorted by class, and classes differ in size and quality.
        found = [found[i * available // limit] for i in range(limit)]
    images = ImageSet(paths=found, source="folder", root=root, available=available,
                      quality_source="estimated from quantisation tables")
    for p in found:
        width, height, quality = _header(p)
        images.widths.append(width)
        images.heights.append(height)
        images.qualities.append(quality)
        images.file_bytes.append(p.stat().st_size)
    return images


def _header(path: Path) -> tuple[int, int, int | None]:
    """(width, height, estimated quality) from the file's header, without decoding the pixels."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            tables = getattr(image, "quantization", None)
            return image.width, image.height, estimate_quality(tables[0]) if tables else None
    except UnidentifiedImageError:
        raise UserError(f"{path} is not an image that can be decoded; remove it from the folder") from None
    except OSError as exc:
        raise UserError(f"cannot read image {path}: {exc.strerror or exc}") from None


#: The IJG (libjpeg) luminance table at quality 50, in natural (row-major) order.
_IJG_LUMA = (
    16, 11, 10, 16, 24, 40, 51, 61, 12, 12, 14, 19, 26, 58, 60, 55, 14, 13, 16, 24, 40, 57, 69, 56,
    14, 17, 22, 29, 51, 87, 80, 62, 18, 22, 37, 56, 68, 109, 103, 77, 24, 35, 55, 64, 81, 104, 113, 92,
    49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98, 112, 100, 103, 99,
)


def estimate_quality(table: Sequence[int]) -> int | None:
    """The IJG quality whose scaled luminance table is closest to ``table``.

    Exact for files written by libjpeg-based encoders (Pillow, most photo
    sites); an approximation for cameras with their own tables. Compared as
    sorted values, so the table's zig-zag or natural order does not matter.
    """
    values = sorted(int(v) for v in table)
    if len(values) != 64:
        return None
    reference = sorted(_IJG_LUMA)

    def scaled(q: int) -> list[int]:
        s = 5000 // q if q < 50 else 200 - 2 * q
        return [min(255, max(1, (v * s + 50) // 100)) for v in reference]

    return min(range(1, 101), key=lambda q: sum(abs(a - b) for a, b in zip(scaled(q), values)))


# ------------------------------------------------------------------ a generated set


def set_key(count: int, seed: int) -> dict[str, Any]:
    return {"count": int(count), "seed": int(seed), "generator": GENERATOR_VERSION,
            "sizes": [list(s) + [w] for s, w in SIZES], "qualities": [list(q) for q in QUALITIES]}


def generate(count: int = DEFAULT_COUNT, seed: int = DEFAULT_SEED, cache_dir: str | os.PathLike | None = None) -> ImageSet:
    """``count`` JPEGs made from ``seed``, written once under the cache and reused."""
    if count < 1:
        raise UserError(f"a generated image set needs at least 1 image, not {count}")
    key = set_key(count, seed)
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    if cache_dir is None:
        from ..backends.cache import folder

        parent = folder("jpegs")
    else:
        parent = Path(cache_dir)
        parent.mkdir(parents=True, exist_ok=True)
    root = parent / f"generated-{count}-seed{seed}__{digest}"
    manifest = root / "manifest.json"
    if not manifest.exists():
        _write_set(root, count, seed, key)
    entries = json.loads(manifest.read_text())["images"]
    return ImageSet(
        paths=[root / e["file"] for e in entries], source="generated", root=root,
        widths=[e["width"] for e in entries], heights=[e["height"] for e in entries],
        file_bytes=[e["bytes"] for e in entries], qualities=[e["quality"] for e in entries],
        key=digest,
    )


def _write_set(root: Path, count: int, seed: int, key: dict[str, Any]) -> None:
    # Built in a sibling folder and renamed, so that a killed run never leaves half a set behind.
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.", dir=root.parent))
    try:
        entries = []
        for i in range(count):
            data, (width, height), quality = generated_image(seed, i)
            name = f"img_{i:05d}.jpg"
            (tmp / name).write_bytes(data)
            entries.append({"file": name, "width": width, "height": height, "quality": quality, "bytes": len(data)})
        (tmp / "manifest.json").write_text(json.dumps({"key": key, "images": entries}, indent=1))
        try:
            os.rename(tmp, root)
        except OSError:
            if not (root / "manifest.json").exists():  # not another process's finished set: a real failure
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def generated_image(seed: int, index: int) -> tuple[bytes, tuple[int, int], int]:
    """(JPEG bytes, (width, height), quality) of image ``index`` of the set made from ``seed``."""
    import numpy as np
    from PIL import Image, ImageDraw

    rng = np.random.default_rng([seed, index])
    (width, height) = SIZES[rng.choice(len(SIZES), p=[w for _, w in SIZES])][0]
    quality = QUALITIES[rng.choice(len(QUALITIES), p=[w for _, w in QUALITIES])][0]
    # Natural images have amplitude spectra close to 1/f^beta with beta near 1; beta
    # varies between scenes (smooth skies to foliage), and with it the encoded size.
    beta = rng.uniform(0.9, 1.3)
    fy = np.fft.fftfreq(height)[:, None]
    fx = np.fft.rfftfreq(width)[None, :]
    radius = np.hypot(fx, fy)
    radius[0, 0] = 1.0
    amplitude = radius ** -beta
    amplitude[0, 0] = 0.0
    planes = []
    for _ in range(3):
        phase = rng.standard_normal(amplitude.shape) + 1j * rng.standard_normal(amplitude.shape)
        plane = np.fft.irfft2(phase * amplitude, s=(height, width))
        planes.append(plane / plane.std())
    # One luminance plane and two weaker colour-difference planes: colours correlate as in photos.
    lum, a, b = planes[0], 0.35 * planes[1], 0.35 * planes[2]
    rgb = np.stack([lum + a, lum - 0.5 * a + 0.3 * b, lum - 0.8 * b], axis=-1)
    rgb = 128 + 45 * rgb + rng.uniform(-30, 30, 3)
    image = Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(image)
    for _ in range(int(rng.integers(3, 12))):  # objects: hard edges that JPEG must spend bits on
        x0, y0 = int(rng.integers(0, width)), int(rng.integers(0, height))
        size = int(rng.integers(10, max(width, height) // 3))
        colour = tuple(int(v) for v in rng.integers(0, 256, 3))
        if rng.random() < 0.5:
            draw.ellipse([x0, y0, x0 + size, y0 + int(size * rng.uniform(0.5, 1.5))], fill=colour)
        else:
            corners = 3 + int(rng.integers(0, 4))
            draw.polygon([(x0 + int(rng.integers(-size, size)), y0 + int(rng.integers(-size, size)))
                          for _ in range(corners)], fill=colour)
    out = io.BytesIO()
    image.save(out, "JPEG", quality=int(quality))
    return out.getvalue(), (width, height), int(quality)


# ------------------------------------------------------------------ the CLI's --input value


def parse_input(value: str) -> tuple[str, str | None]:
    """``images`` -> ("images", None); ``images:DIR`` -> ("images", DIR); anything else is a UserError."""
    kind, sep, rest = value.partition(":")
    if kind != "images":
        raise UserError(f"unknown --input {value!r}; use images (a generated JPEG set) or images:DIR (your folder)")
    if sep and not rest:
        raise UserError("--input images: needs a folder after the colon, e.g. --input images:/data/imagenet/val")
    return kind, rest or None


def open_images(folder: str | None, limit: int | None = None, count: int = DEFAULT_COUNT,
                seed: int = DEFAULT_SEED) -> ImageSet:
    """The set ``--input`` names: the folder if given (up to ``limit`` files), else the generated set."""
    if folder:
        return open_folder(folder, limit if limit is not None else DEFAULT_FOLDER_LIMIT)
    return generate(count, seed)
