"""Families for the report's pages: seed names, timm and torchvision names, slugs."""
from __future__ import annotations

import pytest

from dlmark.report.families import family_key, family_name, slug


@pytest.mark.parametrize("model, family", [
    ("ResNet-v1-50", "ResNet"), ("ResNet-v2-18", "ResNet"), ("DenseNet-121", "DenseNet"),
    ("SqueezeNet-1.1", "SqueezeNet"), ("VGG-16", "VGG"), ("AlexNet", "AlexNet"),
    ("MobileNet-v3-Small", "MobileNet"), ("Inception-v3", "Inception"),
    # timm's names: the architecture prefix, without size, version or pretrained tag
    ("timm:resnet50.a1_in1k", "resnet"), ("resnetv2_50", "resnet"), ("vit_base_patch16_224.augreg_in21k", "vit"),
    ("convnextv2_tiny", "convnext"), ("tf_efficientnet_b0", "efficientnet"), ("mobilenetv3_large_100", "mobilenet"),
    ("deit3_small_patch16_224", "deit"), ("eva02_base_patch14_224", "eva"), ("seresnext50_32x4d", "seresnext"),
    ("torchvision:resnet18", "resnet"), ("densenet121", "densenet"), ("regnety_040", "regnety"),
])
def test_family_of_a_model_name(model, family):
    assert family_name(model) == family


def test_spellings_of_one_family_share_a_key_and_slugs_are_file_names():
    assert family_key(family_name("ResNet-v1-50")) == family_key(family_name("timm:resnet50"))
    assert slug("<script>document") == "script-document"
    assert slug("???") == "other"
