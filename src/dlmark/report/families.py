"""Model families for the report's pages: a family is the architecture a name starts with.

``ResNet-v1-50`` and ``ResNet-v2-18`` are ResNet; timm's ``resnet50.a1_in1k`` and
``timm:resnetv2_50`` are resnet too, and the report groups the two spellings
case-insensitively, so one page holds both. (The records' own ``family`` field is
the seed's grouping, the name up to its last ``-``: ``ResNet-v1``; the report
needs coarser pages than that.)
"""
from __future__ import annotations

import re

#: timm's prefixes for ported weights: ``tf_efficientnet_b0`` is an EfficientNet.
_PORT_PREFIXES = ("tf", "tv", "gluon", "legacy", "hf", "dm")


def family_name(model: str) -> str:
    """The architecture a model name starts with: ResNet-v1-50 -> ResNet, vit_base_patch16_224 -> vit."""
    name = str(model).strip()
    source, sep, rest = name.partition(":")
    if sep and source in ("timm", "torchvision", "py"):
        name = rest.rsplit(":", 1)[-1] if source == "py" else rest
    if "-" in name and "_" not in name:  # a seed-style display name: Family-variant-size
        head = name.split("-", 1)[0]
        return head or name
    name = name.split(".", 1)[0]  # timm's pretrained tag: resnet50.a1_in1k
    parts = [p for p in name.split("_") if p]
    while len(parts) > 1 and parts[0].lower() in _PORT_PREFIXES:
        parts = parts[1:]
    head = parts[0] if parts else name
    # resnet50 -> resnet, mobilenetv3 -> mobilenet, convnextv2 -> convnext, eva02 -> eva
    stem = re.sub(r"(?<=[a-z])v?\d+[a-z]?$", "", head, flags=re.I) if re.search(r"[a-z]", head, re.I) else head
    stem = re.sub(r"(?<=[a-z]{3})v$", "", stem, flags=re.I)
    return stem or head or name


def family_key(family: str) -> str:
    """Families that differ only in case share a page (ResNet and timm's resnet)."""
    return family.lower()


def slug(family: str) -> str:
    """A file-name-safe form of a family: letters, digits and dashes."""
    text = re.sub(r"[^a-z0-9]+", "-", family.lower()).strip("-")
    return text or "other"
