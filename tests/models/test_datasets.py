"""ImageNet validation layouts: recognition, class-order mapping, subsets, and the errors users see."""
from __future__ import annotations

from collections import Counter
from pathlib import Path

import pytest

from dlmark.models.datasets import balanced_subset, open_imagenet, read_meta_mat, wnids
from dlmark.errors import UserError
from tests import imagenet_layouts as L
from tests.fixtures.colour_models import PALETTE

# What every layout must yield: file number -> ImageNet class index in sorted-WordNet-id order.
EXPECTED = {f"ILSVRC2012_val_{n:08d}.JPEG": PALETTE[label] for n, label, _ in L.IMAGES}


def labels_by_file(dataset) -> dict[str, int]:
    return {Path(s.path).name: s.label for s in dataset.samples}


def test_wnids_are_the_models_output_order():
    ids = wnids()
    assert len(ids) == 1000 and list(ids) == sorted(ids) and len(set(ids)) == 1000
    from timm.data import ImageNetInfo

    assert list(ids) == list(ImageNetInfo().label_names())
    # torchvision's category names are in output order: spot-check the ends and the middle.
    from torchvision.models import ResNet18_Weights

    categories = ResNet18_Weights.IMAGENET1K_V1.meta["categories"]
    assert (ids[0], categories[0]) == ("n01440764", "tench")
    assert (ids[1], categories[1]) == ("n01443537", "goldfish")
    assert (ids[999], categories[999]) == ("n15075141", "toilet tissue")


@pytest.mark.parametrize("layout", ["class_folders", "devkit", "kaggle"])
def test_each_layout_maps_files_to_sorted_wnid_indices(tmp_path, layout):
    directory = getattr(L, layout)(tmp_path / "imagenet")
    dataset = open_imagenet(directory)
    assert dataset.layout == layout.replace("_", "-")
    assert len(dataset) == len(L.IMAGES)
    assert labels_by_file(dataset) == EXPECTED


def test_devkit_ids_are_mapped_through_meta_mat_not_taken_as_indices(tmp_path):
    directory = L.devkit(tmp_path / "imagenet")
    truth = (tmp_path / "imagenet" / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt")
    first_id = int(truth.read_text().split()[0])
    assert first_id - 1 != PALETTE[5]  # the shuffle really differs from sorted order for image 1
    assert labels_by_file(open_imagenet(directory))[L.file_name(1)] == PALETTE[5]
    mapping = read_meta_mat(tmp_path / "imagenet" / "ILSVRC2012_devkit_t12" / "data" / "meta.mat")
    assert len(mapping) == 1000 and 1001 not in mapping  # inner WordNet nodes are not classes


def test_root_or_val_folder_both_work(tmp_path):
    root = L.kaggle(tmp_path / "kaggle")
    by_root = open_imagenet(root)
    by_val = open_imagenet(root / "ILSVRC" / "Data" / "CLS-LOC" / "val")
    assert labels_by_file(by_root) == labels_by_file(by_val) == EXPECTED
    devkit_root = tmp_path / "dk"
    L.devkit(devkit_root)
    assert labels_by_file(open_imagenet(devkit_root)) == EXPECTED  # finds val/ below the root


def test_unrecognised_layout_names_the_folder(tmp_path):
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "cat.jpg").write_bytes(b"x")
    with pytest.raises(UserError, match="cannot recognise the ImageNet validation layout of .*photos"):
        open_imagenet(tmp_path / "photos")
    with pytest.raises(UserError, match="no such folder"):
        open_imagenet(tmp_path / "missing")


def test_flat_folder_without_labels_says_which_files_are_needed(tmp_path):
    L.flat(tmp_path / "val")
    with pytest.raises(UserError) as err:
        open_imagenet(tmp_path / "val")
    message = str(err.value)
    assert str(tmp_path / "val") in message
    assert "ILSVRC2012_validation_ground_truth.txt" in message and "LOC_val_solution.csv" in message


def test_ground_truth_without_meta_mat_names_the_file(tmp_path):
    directory = L.devkit(tmp_path / "imagenet", meta=False)
    with pytest.raises(UserError, match=r"ILSVRC2012_validation_ground_truth\.txt but no meta\.mat"):
        open_imagenet(directory)


def test_malformed_ground_truth_names_file_and_line(tmp_path):
    directory = L.devkit(tmp_path / "imagenet")
    truth = tmp_path / "imagenet" / "ILSVRC2012_devkit_t12" / "data" / "ILSVRC2012_validation_ground_truth.txt"
    lines = truth.read_text().split()
    lines[2] = "tench"
    truth.write_text("\n".join(lines))
    with pytest.raises(UserError, match=r"ILSVRC2012_validation_ground_truth\.txt line 3: .*'tench'"):
        open_imagenet(directory)


def test_image_without_a_label_is_named(tmp_path):
    root = L.kaggle(tmp_path / "kaggle")
    extra = root / "ILSVRC" / "Data" / "CLS-LOC" / "val" / L.file_name(99)
    L.write_jpeg(extra, 10)
    with pytest.raises(UserError, match=rf"no label for image .*{L.file_name(99)} in .*LOC_val_solution\.csv"):
        open_imagenet(root)
    directory = L.devkit(tmp_path / "dk")
    L.write_jpeg(directory / L.file_name(40), 10)
    with pytest.raises(UserError, match=rf"no label for image .*{L.file_name(40)}.*has 12 lines"):
        open_imagenet(directory)


def test_class_folder_outside_imagenet_1k_is_named(tmp_path):
    root = L.class_folders(tmp_path / "imagenet")
    L.write_jpeg(root / "n99999999" / L.file_name(50), 10)
    with pytest.raises(UserError, match=r"class folder .*n99999999 is not one of the 1000"):
        open_imagenet(root)


def test_balanced_subset_is_deterministic_and_balanced(tmp_path):
    # 4 classes with 5 images each, one class with only 1.
    images = [(n, label, label) for n, label in enumerate([0] * 5 + [3] * 5 + [6] * 5 + [9] * 5 + [11], 1)]
    dataset = open_imagenet(L.class_folders(tmp_path / "imagenet", images))
    subset = balanced_subset(dataset.samples, 11)
    assert subset == balanced_subset(dataset.samples, 11)  # same folder and limit, same images
    counts = Counter(s.label for s in subset)
    assert len(subset) == 11 and len(set(s.path for s in subset)) == 11
    assert counts[PALETTE[11]] == 1  # the small class gives what it has
    assert sorted(counts[PALETTE[p]] for p in (0, 3, 6, 9)) == [2, 2, 3, 3]
    # Fewer images than classes: one image from each of `limit` classes.
    assert len({s.label for s in balanced_subset(dataset.samples, 3)}) == 3
    assert len(balanced_subset(dataset.samples, 1000)) == len(dataset)
    with pytest.raises(UserError):
        balanced_subset(dataset.samples, 0)
