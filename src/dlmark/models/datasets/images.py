"""Decoding and batching validation images for a torch DataLoader (worker side).

A file that cannot be decoded must stop the evaluation with its name, never be
skipped (that would silently change the accuracy). DataLoader worker processes
wrap exceptions in long tracebacks, so a failure travels as data instead: the
sample carries the message, ``collate`` turns it into a batch-level error, and
the evaluation loop raises one UserError naming the file.
"""
from __future__ import annotations

from typing import Any, Callable, Sequence

from dlmark.models.datasets.imagenet import Sample


class ImageFiles:
    """A map-style dataset: index -> (image tensor | None, label, error message | "")."""

    def __init__(self, samples: Sequence[Sample], transform: Callable[[Any], Any]):
        self.samples = list(samples)
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int):
        from PIL import Image

        sample = self.samples[i]
        try:
            with Image.open(sample.path) as image:
                image = image.convert("RGB")  # grey-scale and CMYK files exist in the validation set
            return self.transform(image), sample.label, ""
        except Exception as exc:  # noqa: BLE001 -- any failure here is this file's, reported with its name
            return None, sample.label, f"cannot decode image {sample.path}: {type(exc).__name__}: {exc}"


def collate(items):
    """Stack a batch, or return ``{"error": message}`` if any image failed."""
    import torch

    errors = [error for _, _, error in items if error]
    if errors:
        return {"error": errors[0]}
    images = torch.stack([image for image, _, _ in items])
    labels = torch.tensor([label for _, label, _ in items], dtype=torch.long)
    return {"images": images, "labels": labels}
