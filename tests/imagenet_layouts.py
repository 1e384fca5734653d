"""Small ImageNet validation folders in each real layout, with real JPEG files, for tests.

Every image is a solid grey whose level the fixed classifier in
``tests/fixtures/colour_models.py`` maps to a known class, so the exact top-1
and top-5 of a set are written down by hand below, not computed by the code
under test.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
from PIL import Image

from dlmark.models.datasets import wnids
from tests.fixtures.colour_models import PALETTE, grey

MODEL = "py:tests.fixtures.colour_models:mean_grey_classifier"

#: (file number, palette position of the true class, palette position the image's grey shows).
#: Top-5 of position q are the five positions nearest to q on the line 0..11.
IMAGES = [
    (1, 5, 5),     # right
    (2, 0, 0),     # right
    (3, 11, 11),   # right
    (4, 3, 3),     # right
    (5, 5, 7),     # top-5 of 7 = {7, 6, 8, 5, 9}: a top-5 hit only
    (6, 5, 10),    # top-5 of 10 = {10, 9, 11, 8, 7}: wrong
    (7, 1, 2),     # top-5 of 2 = {2, 1, 3, 0, 4}: a top-5 hit only
    (8, 9, 9),     # right
    (9, 6, 0),     # top-5 of 0 = {0, 1, 2, 3, 4}: wrong
    (10, 8, 8),    # right
    (11, 2, 2),    # right
    (12, 10, 11),  # top-5 of 11 = {11, 10, 9, 8, 7}: a top-5 hit only
]
TOP1 = 7  # images whose top-1 is right
TOP5 = 10  # images whose top-5 holds the true class


def file_name(number: int) -> str:
    return f"ILSVRC2012_val_{number:08d}.JPEG"


def wnid_of(position: int) -> str:
    return wnids()[PALETTE[position]]


def write_jpeg(path: Path, grey_value: int, size: int = 40) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", (size, size), (grey_value, grey_value, grey_value)).save(path, "JPEG", quality=95)


def devkit_id(class_index: int) -> int:
    """The devkit's ILSVRC2012 id of a class: a fixed shuffle, so sorted-id order would be wrong."""
    return (class_index * 7) % 1000 + 1


def class_folders(root: Path, images=IMAGES) -> Path:
    for number, label, shown in images:
        write_jpeg(root / wnid_of(label) / file_name(number), grey(shown))
    return root


def flat(root: Path, images=IMAGES) -> Path:
    for number, _, shown in images:
        write_jpeg(root / file_name(number), grey(shown))
    return root


def write_meta_mat(path: Path) -> None:
    from scipy.io import savemat

    ids = wnids()
    dtype = [("ILSVRC2012_ID", "O"), ("WNID", "O"), ("words", "O"), ("num_children", "O")]
    # The 1000 leaves in devkit-id order, then two inner WordNet nodes (ids > 1000, with children).
    rows = sorted(((devkit_id(i), ids[i], f"class {i}", 0) for i in range(1000)))
    rows += [(1001, "n00001740", "entity", 7), (1002, "n00002137", "abstraction", 3)]
    synsets = np.empty((len(rows), 1), dtype=dtype)
    for k, row in enumerate(rows):
        synsets[k, 0] = row
    path.parent.mkdir(parents=True, exist_ok=True)
    savemat(str(path), {"synsets": synsets})


def devkit(root: Path, images=IMAGES, meta: bool = True) -> Path:
    flat(root / "val", images)
    data = root / "ILSVRC2012_devkit_t12" / "data"
    data.mkdir(parents=True, exist_ok=True)
    labels = {number: label for number, label, _ in images}
    lines = [str(devkit_id(PALETTE[labels[n]])) for n in range(1, max(labels) + 1)]
    (data / "ILSVRC2012_validation_ground_truth.txt").write_text("\n".join(lines) + "\n")
    if meta:
        write_meta_mat(data / "meta.mat")
    return root / "val"


def kaggle(root: Path, images=IMAGES) -> Path:
    flat(root / "ILSVRC" / "Data" / "CLS-LOC" / "val", images)
    with open(root / "LOC_val_solution.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["ImageId", "PredictionString"])
        for number, label, _ in reversed(images):  # row order must not matter
            wnid = wnid_of(label)
            writer.writerow([file_name(number)[:-5], f"{wnid} 10 20 30 40 {wnid} 1 2 3 4"])
    return root
