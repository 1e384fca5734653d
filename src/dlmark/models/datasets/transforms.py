"""Each model's own evaluation transform (PIL image -> normalised tensor): what the accuracy task
and int8 calibration on ImageNet images apply. torchvision and timm are imported inside functions."""
from __future__ import annotations

import math
from typing import Any

from dlmark.errors import UserError


def eval_transform(spec, module=None, custom: dict[str, Any] | None = None) -> tuple[Any, dict[str, Any]]:
    """The model's own evaluation transform (PIL image -> normalised tensor) and its description.

    torchvision: the default weights' ``transforms()``; timm: the pretrained
    config through ``timm.data.resolve_data_config`` + ``create_transform``;
    a py: model may set ``dlmark_eval_transform`` (a dict with resize, crop,
    mean, std, interpolation; ``custom`` when the module is not at hand) and
    otherwise gets the common ImageNet recipe.
    """
    if spec.source == "torchvision":
        from torchvision.models import get_model_weights

        try:
            weights = get_model_weights(spec.arch).DEFAULT
        except (ValueError, KeyError, AttributeError):
            raise UserError(f"torchvision has no pretrained weights (and so no evaluation transform) for {spec.name}") from None
        transform = weights.transforms()
        return transform, {
            "resize": int(transform.resize_size[0]), "crop": int(transform.crop_size[0]),
            "interpolation": transform.interpolation.value, "mean": list(transform.mean), "std": list(transform.std),
            "from": f"{weights}.transforms()",
        }
    if spec.source == "timm":
        import timm
        from timm.data import create_transform, resolve_data_config

        if module is not None:
            config = resolve_data_config({}, model=module)
        else:
            config = resolve_data_config({}, pretrained_cfg=timm.get_pretrained_cfg(spec.arch).to_dict())
        transform = create_transform(**config, is_training=False)
        size = int(config["input_size"][-1])
        return transform, {
            "resize": int(math.floor(size / config["crop_pct"])) if config.get("crop_mode", "center") == "center" else None,
            "crop": size, "crop_pct": config["crop_pct"], "crop_mode": config.get("crop_mode"),
            "interpolation": config["interpolation"], "mean": list(config["mean"]), "std": list(config["std"]),
            "from": "timm.data.resolve_data_config + create_transform",
        }
    custom = dict(getattr(module, "dlmark_eval_transform", None) or custom or {})
    crop = int(custom.get("crop", 224))
    described = {
        "resize": int(custom.get("resize", round(crop / 0.875))), "crop": crop,
        "interpolation": custom.get("interpolation", "bilinear"),
        "mean": list(custom.get("mean", (0.485, 0.456, 0.406))), "std": list(custom.get("std", (0.229, 0.224, 0.225))),
        "from": "dlmark_eval_transform" if custom else "default ImageNet recipe (resize 256, crop 224)",
    }
    return pil_transform(described), described


def pil_transform(described: dict[str, Any]):
    """PIL image -> normalised float tensor, from a transform description (the accuracy task's recipe)."""
    from torchvision import transforms as T

    return T.Compose([
        T.Resize(described["resize"], interpolation=T.InterpolationMode(described["interpolation"]), antialias=True),
        T.CenterCrop(described["crop"]),
        T.ToTensor(),
        T.Normalize(described["mean"], described["std"]),
    ])
