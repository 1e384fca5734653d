"""Published ImageNet-1k accuracy of a zoo model's weights, for runs without a data set.

torchvision carries the figures in its weights' metadata (offline); timm does
not ship its results tables, so the few timm weights of the zoo are listed in
``dlmark/models/data/published_accuracy.json`` with the source of every figure.
Figures are returned as fractions (the seed's ``accuracy`` column is 0..1).
"""
from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

from dlmark.models.zoo import ModelSpec


class NoPublishedFigure(LookupError):
    """No published figure is known for these weights; the message says what to do."""


@lru_cache(maxsize=1)
def _table() -> dict[str, Any]:
    return json.loads((resources.files("dlmark.models") / "data" / "published_accuracy.json").read_text())


def lookup(spec: ModelSpec) -> dict[str, Any]:
    """Record fields for the published accuracy of ``spec``'s default pretrained weights.

    Raises NoPublishedFigure when there is none (a py: model, a timm model not
    in the table, weights without ImageNet-1K metrics).
    """
    if spec.source == "torchvision":
        return _torchvision(spec)
    if spec.source == "timm":
        return _timm(spec)
    raise NoPublishedFigure(f"{spec.name} is a py: model and has no published accuracy; "
                            "measure it with --imagenet DIR")


def _torchvision(spec: ModelSpec) -> dict[str, Any]:
    from torchvision.models import get_model_weights

    try:
        weights = get_model_weights(spec.arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        raise NoPublishedFigure(f"torchvision has no pretrained weights for {spec.name}") from None
    metrics = weights.meta.get("_metrics", {}).get("ImageNet-1K")
    if not metrics or "acc@1" not in metrics:
        raise NoPublishedFigure(f"{weights} carries no ImageNet-1K accuracy in its metadata")
    recipe = weights.meta.get("recipe")
    import torchvision

    reference = (f"torchvision {torchvision.__version__} {weights}.meta['_metrics']['ImageNet-1K']"
                 + (f"; training recipe {recipe}" if recipe else ""))
    return _fields(metrics["acc@1"], metrics.get("acc@5"), str(weights), reference)


def _timm(spec: ModelSpec) -> dict[str, Any]:
    import timm

    entry = _table()["timm"].get(spec.arch)
    if entry is None:
        raise NoPublishedFigure(f"no published accuracy is shipped for timm:{spec.arch}; measure it with "
                                "--imagenet DIR, or add it to dlmark/models/data/published_accuracy.json with its source")
    cfg = timm.get_pretrained_cfg(spec.arch)
    default = f"{spec.arch}.{cfg.tag}" if cfg is not None and cfg.tag else spec.arch
    if default != entry["weights"]:
        # A newer timm may change the default weights; a figure for other weights would mislead.
        raise NoPublishedFigure(f"the shipped figure for timm:{spec.arch} is for {entry['weights']}, but this "
                                f"timm ({timm.__version__}) builds {default}; measure it with --imagenet DIR")
    if entry.get("top1") is None:
        raise NoPublishedFigure(f"no published accuracy for {entry['weights']} in dlmark's table yet "
                                f"({entry.get('missing', 'not transcribed')}); source: {entry['reference']}")
    return _fields(entry["top1"], entry.get("top5"), entry["weights"], entry["reference"])


def _fields(top1_percent: float, top5_percent: float | None, weights_tag: str, reference: str) -> dict[str, Any]:
    return {
        "accuracy": round(float(top1_percent) / 100.0, 6),
        "top5": round(float(top5_percent) / 100.0, 6) if top5_percent is not None else None,
        "accuracy_source": "published",
        "accuracy_reference": reference,
        "weights_tag": weights_tag,
        "num_images": 50000,  # published ImageNet-1k figures are over the whole validation set
        "accuracy_ci95_low": None,
        "accuracy_ci95_high": None,
    }
