"""The ImageNet-1k (ILSVRC-2012) validation set in the layouts people actually have.

Three layouts are recognised:

* ``class-folders``: one folder per class named by WordNet id
  (``n01440764/ILSVRC2012_val_00000293.JPEG``), as torchvision's ImageFolder
  and timm read it;
* ``devkit``: the flat folder of ``ILSVRC2012_val_*.JPEG`` files plus the
  devkit's ``ILSVRC2012_validation_ground_truth.txt`` (one ILSVRC2012 id per
  image, in file-number order) and ``meta.mat`` (which maps those ids, whose
  order is *not* the sorted-WordNet-id order, to WordNet ids);
* ``kaggle``: the flat folder plus Kaggle's ``LOC_val_solution.csv``
  (``ImageId,PredictionString``, the first token of which is the WordNet id).

Every label ends up as an index into the sorted list of the 1000 WordNet ids
(``dlmark/data/imagenet_wnids.txt``), which is the output order of torchvision
and timm ImageNet-1k classifiers. Indexing is pure Python (no torch), so the
driver can check a folder before any worker starts.
"""
from __future__ import annotations

import csv
import hashlib
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

from dlmark.errors import UserError

NUM_CLASSES = 1000
GROUND_TRUTH = "ILSVRC2012_validation_ground_truth.txt"
META_MAT = "meta.mat"
KAGGLE_CSV = "LOC_val_solution.csv"
KAGGLE_VAL_DIR = Path("ILSVRC", "Data", "CLS-LOC", "val")

IMAGE_SUFFIXES = (".jpeg", ".jpg", ".png")
_WNID = re.compile(r"n\d{8}")
_VAL_FILE = re.compile(r"ILSVRC2012_val_(\d{8})\.(jpe?g|png)", re.IGNORECASE)


@lru_cache(maxsize=1)
def wnids() -> tuple[str, ...]:
    """The 1000 ImageNet-1k WordNet ids in sorted order: index i is output i of the models."""
    text = (resources.files("dlmark.models") / "data" / "imagenet_wnids.txt").read_text()
    ids = tuple(line.strip() for line in text.splitlines() if line.strip())
    if len(ids) != NUM_CLASSES or list(ids) != sorted(ids):  # a packaging error, not a user's
        raise RuntimeError("dlmark/data/imagenet_wnids.txt must hold the 1000 sorted ImageNet-1k WordNet ids")
    return ids


@lru_cache(maxsize=1)
def wnid_index() -> dict[str, int]:
    return {wnid: i for i, wnid in enumerate(wnids())}


@dataclass(frozen=True)
class Sample:
    path: str
    label: int  # index into wnids()


@dataclass(frozen=True)
class ValidationSet:
    """An indexed validation folder: which layout, where the labels came from, the samples."""

    root: Path
    layout: str  # class-folders, devkit, kaggle
    label_source: str  # the folder or file(s) the labels came from
    samples: tuple[Sample, ...]

    def __len__(self) -> int:
        return len(self.samples)

    @property
    def classes(self) -> int:
        return len({s.label for s in self.samples})


def open_imagenet(directory: str | Path) -> ValidationSet:
    """Index an ImageNet-1k validation folder in any recognised layout.

    Raises UserError naming the folder or file for an unrecognised layout, a
    missing or malformed label file, or an image that has no label.
    """
    root = Path(directory).expanduser()
    if not root.is_dir():
        raise UserError(f"--imagenet {directory}: no such folder")
    for candidate in (root, root / "val", root / KAGGLE_VAL_DIR):
        if not candidate.is_dir():
            continue
        found = _index(candidate)
        if found is not None:
            return found
    raise UserError(
        f"cannot recognise the ImageNet validation layout of {root}: expected class folders named by "
        f"WordNet id (n01440764/ILSVRC2012_val_00000293.JPEG), or the flat ILSVRC2012_val_*.JPEG files "
        f"with the devkit's {GROUND_TRUTH} and {META_MAT}, or with Kaggle's {KAGGLE_CSV}")


def _index(folder: Path) -> ValidationSet | None:
    entries = sorted(folder.iterdir(), key=lambda p: p.name)
    class_dirs = [p for p in entries if p.is_dir() and _WNID.fullmatch(p.name)]
    if class_dirs:
        return _class_folders(folder, class_dirs)
    flat = [p for p in entries if p.is_file() and _VAL_FILE.fullmatch(p.name)]
    if flat:
        return _flat(folder, flat)
    return None


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _class_folders(root: Path, class_dirs: list[Path]) -> ValidationSet:
    index = wnid_index()
    samples = []
    for folder in class_dirs:
        if folder.name not in index:
            raise UserError(f"class folder {folder} is not one of the 1000 ImageNet-1k classes "
                            f"(its name must be an ImageNet-1k WordNet id)")
        label = index[folder.name]
        samples.extend(Sample(str(p), label) for p in sorted(folder.iterdir()) if _is_image(p))
    if not samples:
        raise UserError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in the class folders of {root}")
    return ValidationSet(root, "class-folders", str(root), tuple(samples))


def _search_dirs(folder: Path) -> list[Path]:
    """Where label files may sit relative to the image folder (unpacked next to it, or in a devkit)."""
    dirs = []
    for base in (folder, *list(folder.parents)[:4]):
        dirs += [base, base / "ILSVRC2012_devkit_t12" / "data", base / "data"]
    return dirs


def _first(name: str, dirs: list[Path]) -> Path | None:
    return next((d / name for d in dirs if (d / name).is_file()), None)


def _flat(folder: Path, files: list[Path]) -> ValidationSet:
    dirs = _search_dirs(folder)
    kaggle = _first(KAGGLE_CSV, dirs)
    truth = _first(GROUND_TRUTH, dirs)
    if truth is not None:
        meta = _first(META_MAT, [truth.parent, *dirs])
        if meta is None:
            raise UserError(
                f"found {truth} but no {META_MAT}: the devkit's ids are not in sorted-WordNet-id order, so "
                f"{META_MAT} (ILSVRC2012_devkit_t12/data/{META_MAT}) is needed to map them; put it beside {truth.name}")
        return _devkit(folder, files, truth, meta)
    if kaggle is not None:
        return _kaggle(folder, files, kaggle)
    looked = ", ".join(str(d) for d in dirs[:3])
    raise UserError(
        f"{folder} holds {len(files)} ILSVRC2012_val_*.JPEG images but no label file: put the devkit's "
        f"{GROUND_TRUTH} and {META_MAT} (from ILSVRC2012_devkit_t12/data/) or Kaggle's {KAGGLE_CSV} beside "
        f"them (looked in {looked}, ...), or arrange the images in class folders")


def _number(path: Path) -> int:
    match = _VAL_FILE.fullmatch(path.name)
    assert match is not None
    return int(match.group(1))


def _devkit(folder: Path, files: list[Path], truth: Path, meta: Path) -> ValidationSet:
    id_to_wnid = read_meta_mat(meta)
    ids: list[int] = []
    for line_no, line in enumerate(truth.read_text().splitlines(), 1):
        text = line.strip()
        if not text:
            continue
        try:
            value = int(text)
        except ValueError:
            raise UserError(f"{truth} line {line_no}: expected an ILSVRC2012 class id (1..1000), got {text!r}") from None
        if value not in id_to_wnid:
            raise UserError(f"{truth} line {line_no}: class id {value} is not a leaf class in {meta}")
        ids.append(value)
    index = wnid_index()
    samples = []
    for path in files:
        number = _number(path)
        if not 1 <= number <= len(ids):
            raise UserError(f"no label for image {path}: {truth} has {len(ids)} lines, the image is number {number}")
        wnid = id_to_wnid[ids[number - 1]]
        if wnid not in index:
            raise UserError(f"{meta} maps class id {ids[number - 1]} to {wnid}, which is not an ImageNet-1k class")
        samples.append(Sample(str(path), index[wnid]))
    return ValidationSet(folder, "devkit", f"{truth} + {meta}", tuple(samples))


def read_meta_mat(path: Path) -> dict[int, str]:
    """ILSVRC2012 class id -> WordNet id for the 1000 leaf classes of the devkit's meta.mat."""
    try:
        from scipy.io import loadmat
    except ImportError:
        raise UserError(f"reading {path} needs scipy: pip install -e '.[imagenet]' (or pip install scipy)") from None
    try:
        synsets = loadmat(str(path), squeeze_me=True)["synsets"]
        ids = [int(v) for v in synsets["ILSVRC2012_ID"]]
        names = [str(v) for v in synsets["WNID"]]
        children = [int(v) for v in synsets["num_children"]] if "num_children" in synsets.dtype.names else None
    except Exception as exc:  # noqa: BLE001 -- any parse failure is a bad file, named as such
        raise UserError(f"cannot read {path} as the ILSVRC2012 devkit's meta.mat (a 'synsets' struct with "
                        f"ILSVRC2012_ID and WNID fields): {exc}") from None
    # Ids 1..1000 are the leaves (the classes); higher ids are inner WordNet nodes.
    return {i: w for k, (i, w) in enumerate(zip(ids, names))
            if 1 <= i <= NUM_CLASSES and (children is None or children[k] == 0)}


def _kaggle(folder: Path, files: list[Path], solution: Path) -> ValidationSet:
    labels: dict[str, str] = {}
    index = wnid_index()
    with open(solution, newline="") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if not header or [h.strip() for h in header[:2]] != ["ImageId", "PredictionString"]:
            raise UserError(f"{solution}: expected the header 'ImageId,PredictionString', got {header!r}")
        for line_no, row in enumerate(reader, 2):
            if not row:
                continue
            tokens = row[1].split() if len(row) > 1 else []
            if not tokens or tokens[0] not in index:
                raise UserError(f"{solution} line {line_no}: expected an ImageNet-1k WordNet id first in "
                                f"PredictionString, got {row[1] if len(row) > 1 else ''!r}")
            labels[row[0].strip()] = tokens[0]
    samples = []
    for path in files:
        wnid = labels.get(path.stem)
        if wnid is None:
            raise UserError(f"no label for image {path} in {solution}")
        samples.append(Sample(str(path), index[wnid]))
    return ValidationSet(folder, "kaggle", str(solution), tuple(samples))


def _order_key(text: str) -> str:
    # A fixed pseudo-random order: independent of how files happen to be numbered or listed.
    return hashlib.sha1(text.encode()).hexdigest()


def balanced_subset(samples: tuple[Sample, ...] | list[Sample], limit: int, salt: str = "") -> list[Sample]:
    """A deterministic class-balanced subset of ``limit`` samples.

    Classes take turns, one image each, in a fixed hash order of their labels;
    within a class images come in a fixed hash order of their file names. So
    class counts differ by at most one (unless a class runs out of images),
    and the same folder and limit always give the same images. A ``salt``
    (e.g. int8 calibration's seed) hashes into both orders: another subset,
    as reproducible.
    """
    if limit < 1:
        raise UserError("--limit must be a positive number of images")
    by_class: dict[int, list[Sample]] = {}
    for sample in samples:
        by_class.setdefault(sample.label, []).append(sample)
    queues = [sorted(group, key=lambda s: _order_key(salt + Path(s.path).name))
              for _, group in sorted(by_class.items(), key=lambda kv: _order_key(salt + str(kv[0])))]
    chosen: list[Sample] = []
    depth = 0
    while len(chosen) < limit and any(depth < len(q) for q in queues):
        for queue in queues:
            if depth < len(queue):
                chosen.append(queue[depth])
                if len(chosen) == limit:
                    break
        depth += 1
    return sorted(chosen, key=lambda s: s.path)
