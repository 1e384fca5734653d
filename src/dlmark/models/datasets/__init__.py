"""Evaluation data sets. Indexing is pure Python; loading images (``images``) needs torch."""
from dlmark.models.datasets.imagenet import NUM_CLASSES, Sample, ValidationSet, balanced_subset, open_imagenet, read_meta_mat, wnid_index, wnids

__all__ = ["NUM_CLASSES", "Sample", "ValidationSet", "balanced_subset", "open_imagenet", "read_meta_mat",
           "wnid_index", "wnids"]
