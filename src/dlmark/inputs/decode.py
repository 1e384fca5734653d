"""JPEG decoders: PIL (Pillow or Pillow-SIMD), torchvision.io.decode_jpeg on the CPU, and nvJPEG on a CUDA GPU.

Each decoder turns a file's bytes into what the model's eval transform takes:
``pil`` gives an RGB PIL image (for the model's own PIL transform); the other
two give a uint8 (3, H, W) tensor, on the CPU or on the GPU. ``prepare``
converts a file's bytes once, before timing, into the decoder's input type.
Grey-scale and CMYK files are converted to RGB, as the accuracy task does.
"""
from __future__ import annotations

import base64
import io
import warnings
from importlib import metadata
from typing import Any, Sequence

from ..errors import UserError

DECODERS = ("pil", "torchvision", "nvjpeg")

#: A valid 16x16 baseline JPEG: each decoder must decode it before it is used, so a
#: broken install is reported as the decoder's fault, not as the user's file's.
_PROBE_JPEG = base64.b64decode(
    "/9j/4AAQSkZJRgABAQAAAQABAAD/2wBDABALDA4MChAODQ4SERATGCgaGBYWGDEjJR0oOjM9PDkzODdASFxOQERXRTc4UG1RV19iZ2hn"
    "Pk1xeXBkeFxlZ2P/2wBDARESEhgVGC8aGi9jQjhCY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2NjY2Nj"
    "Y2P/wAARCAAQABADASIAAhEBAxEB/8QAHwAAAQUBAQEBAQEAAAAAAAAAAAECAwQFBgcICQoL/8QAtRAAAgEDAwIEAwUFBAQAAAF9AQID"
    "AAQRBRIhMUEGE1FhByJxFDKBkaEII0KxwRVS0fAkM2JyggkKFhcYGRolJicoKSo0NTY3ODk6Q0RFRkdISUpTVFVWV1hZWmNkZWZnaGlq"
    "c3R1dnd4eXqDhIWGh4iJipKTlJWWl5iZmqKjpKWmp6ipqrKztLW2t7i5usLDxMXGx8jJytLT1NXW19jZ2uHi4+Tl5ufo6erx8vP09fb3"
    "+Pn6/8QAHwEAAwEBAQEBAQEBAQAAAAAAAAECAwQFBgcICQoL/8QAtREAAgECBAQDBAcFBAQAAQJ3AAECAxEEBSExBhJBUQdhcRMiMoEI"
    "FEKRobHBCSMzUvAVYnLRChYkNOEl8RcYGRomJygpKjU2Nzg5OkNERUZHSElKU1RVVldYWVpjZGVmZ2hpanN0dXZ3eHl6goOEhYaHiImK"
    "kpOUlZaXmJmaoqOkpaanqKmqsrO0tba3uLm6wsPExcbHyMnK0tPU1dbX2Nna4uPk5ebn6Onq8vP09fb3+Pn6/9oADAMBAAIRAxEAPwDJ"
    "ooorA+nP/9k="
)


def pillow_flavour() -> tuple[str, str | None]:
    """("Pillow-SIMD" or "Pillow", version) of the installed PIL, by its distribution's name."""
    for dist in ("Pillow-SIMD", "pillow-simd"):
        try:
            return "Pillow-SIMD", metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    try:
        return "Pillow", metadata.version("pillow")
    except metadata.PackageNotFoundError:
        return "Pillow", None


class PilDecoder:
    """Pillow's libjpeg(-turbo) decoder; the output is an RGB ``PIL.Image``."""

    name = "pil"
    output = "pil"
    device = "cpu"

    def __init__(self):
        try:
            from PIL import Image  # noqa: F401
        except ImportError:
            raise UserError("decoder pil needs Pillow, which is not installed: pip install pillow "
                            "(or pillow-simd), or use --decoder torchvision") from None
        try:
            self.decode(_PROBE_JPEG)
        except Exception as exc:  # noqa: BLE001 -- any failure on a valid file is the install's
            raise UserError(f"decoder pil cannot decode a valid JPEG in this install ({type(exc).__name__}: "
                            f"{exc}); reinstall Pillow or use --decoder torchvision") from None

    def prepare(self, data: bytes) -> bytes:
        return data

    def decode(self, data: bytes):
        from PIL import Image

        image = Image.open(io.BytesIO(data))
        image.load()
        # Grey-scale and CMYK files exist in ImageNet; convert only then (convert copies).
        return image if image.mode == "RGB" else image.convert("RGB")

    def decode_batch(self, items: Sequence[bytes]) -> list:
        return [self.decode(item) for item in items]

    def facts(self) -> dict[str, Any]:
        from PIL import features

        flavour, version = pillow_flavour()
        return {"decoder": self.name, "decoder_library": f"{flavour} {version}", "decoder_simd": flavour == "Pillow-SIMD",
                "decoder_libjpeg_turbo": bool(features.check_feature("libjpeg_turbo")),
                "decoder_libjpeg_version": features.version("jpg")}


class TorchvisionDecoder:
    """``torchvision.io.decode_jpeg`` (libjpeg-turbo in torchvision's extension) on the CPU, or nvJPEG on CUDA."""

    output = "tensor"

    def __init__(self, device: str = "cpu"):
        import torch

        self.device = str(device)
        self.name = "nvjpeg" if self.device.startswith("cuda") else "torchvision"
        try:
            from torchvision.io import ImageReadMode, decode_jpeg
        except ImportError as exc:
            raise UserError(f"decoder {self.name} needs torchvision.io.decode_jpeg, which this install lacks "
                            f"({exc}); pip install torchvision, or use --decoder pil") from None
        # Only picklable attributes: the decoder travels to DataLoader workers under spawn.
        self._decode_jpeg, self._mode = decode_jpeg, ImageReadMode.RGB
        try:
            out = self.decode(self.prepare(_PROBE_JPEG))
            if self.name == "nvjpeg":
                torch.cuda.synchronize(out.device)
        except Exception as exc:  # noqa: BLE001 -- any failure on a valid file is the install's
            raise UserError(f"decoder {self.name} cannot decode a valid JPEG in this install "
                            f"({type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}); "
                            f"use --decoder pil") from None

    def prepare(self, data: bytes):
        import torch

        # A bytearray is writable, so frombuffer shares it without a copy or a warning.
        return torch.frombuffer(bytearray(data), dtype=torch.uint8)

    def decode(self, data):
        with warnings.catch_warnings():
            # torchvision 0.29 deprecates its decoders in favour of TorchCodec, once per call.
            warnings.simplefilter("ignore", DeprecationWarning)
            return self._decode_jpeg(data, mode=self._mode, device=self.device)

    def decode_batch(self, items: Sequence[Any]) -> list:
        # A list is one batched nvJPEG call on the GPU; on the CPU it is the same loop.
        if not items:
            return []
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)
            return list(self._decode_jpeg(list(items), mode=self._mode, device=self.device))

    def facts(self) -> dict[str, Any]:
        import torchvision

        return {"decoder": self.name, "decoder_library": f"torchvision {torchvision.__version__}"
                + (" (nvJPEG)" if self.name == "nvjpeg" else " (libjpeg-turbo)"),
                "decoder_simd": None, "decoder_device": self.device}


def get_decoder(name: str, device: str = "cpu"):
    """The decoder called ``name`` for a model on ``device``; a UserError if it cannot run here."""
    if name not in DECODERS:
        raise UserError(f"unknown decoder {name!r}; use one of {', '.join(DECODERS)}")
    if name == "pil":
        return PilDecoder()
    if name == "torchvision":
        return TorchvisionDecoder("cpu")
    import torch

    if not str(device).startswith("cuda"):
        raise UserError(f"decoder nvjpeg decodes on a CUDA GPU, and this model runs on {device}; "
                        f"use --decoder torchvision or --decoder pil")
    if not torch.cuda.is_available():
        raise UserError("decoder nvjpeg needs a CUDA GPU, and torch sees none; use --decoder torchvision or pil")
    return TorchvisionDecoder(str(device))


def decode_all(decoder, encoded: Sequence[Any], paths: Sequence[Any], keep: int | None = None) -> list:
    """Decode every file once (so an undecodable one is named before timing); returns ``keep`` of the
    images (all when None), spread evenly over the set so that they keep its mix of sizes."""
    n = len(encoded)
    chosen = set(range(n)) if keep is None or keep >= n else {i * n // keep for i in range(keep)}
    kept = []
    for i, (item, path) in enumerate(zip(encoded, paths)):
        try:
            image = decoder.decode(item)
        except Exception as exc:  # noqa: BLE001 -- this file's failure, reported with its name
            text = str(exc).splitlines()[0] if str(exc) else ""
            raise UserError(f"cannot decode {path} with decoder {decoder.name} ({type(exc).__name__}: {text}); "
                            f"remove the file or choose another --decoder") from None
        if i in chosen:
            kept.append(image)
    if decoder.output == "tensor" and decoder.device != "cpu":
        import torch

        torch.cuda.synchronize(decoder.device)
    return kept
