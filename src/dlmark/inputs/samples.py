"""Decoded JPEGs as the serving scenarios' samples: what LoadGen's sample library holds with ``--input``.

The images are those the pipeline task reads (``jpegs.open_images``: a folder, or the stated
generated set), decoded by its decoders (``decode``) and put through the model's own eval
transform (``pipeline.transform_for``), once, when LoadGen loads the samples: as MLPerf's
QSL does, loading is not timed. Slot ``i`` of the library holds one image; with more slots
than images they repeat, with more images than slots the slots take them spread evenly over
the set (a folder sorted by class keeps its mix).

Torch is imported inside functions: the driver reads ``SERVING_DECODERS`` when it checks the options.
"""
from __future__ import annotations

from typing import Any

from ..errors import UserError
from .jpegs import ImageSet

#: The decoders whose output a serving library can hold: a CPU decode, once, before the test.
SERVING_DECODERS = ("pil", "torchvision")


class ImageSamples:
    """The eval-transformed images of ``images`` as float32 CPU tensors (3, H, W), decoded on first use."""

    def __init__(self, images: ImageSet, decoder: str, transform, transform_path: str, described: dict[str, Any]):
        from .decode import get_decoder

        if decoder not in SERVING_DECODERS:
            raise UserError(f"the serving scenarios decode their samples once on the CPU; decoder {decoder!r} "
                            f"cannot: use --decoder {' or '.join(SERVING_DECODERS)}")
        self.images = images
        self.decoder = get_decoder(decoder)
        self.transform = transform
        self.transform_path = transform_path
        self.described = described
        self._transformed: dict[int, Any] = {}  # image index -> tensor, so a second load decodes nothing

    @classmethod
    def for_runner(cls, runner, images: ImageSet, decoder: str = "pil") -> "ImageSamples":
        """The samples ``runner``'s model gets: its own eval transform (a torch model's, or the one an
        ONNX Runtime or OpenVINO runner keeps of the model it was exported from)."""
        from ..models.datasets.transforms import eval_transform
        from ..backends.torch_source import model_behind
        from .decode import get_decoder
        from .pipeline import transform_for

        spec, _, module, custom = model_behind(runner)
        own_transform, described = eval_transform(spec, module, custom)
        transform, path = transform_for(get_decoder(decoder), described, own_transform)
        return cls(images, decoder, transform, path, described)

    def image_of(self, slot: int, slots: int) -> int:
        """The image in library slot ``slot`` of ``slots``: repeated when there are fewer images."""
        n = len(self.images)
        return slot * n // slots if n > slots else slot % n

    def stack(self, slots: list[int], count: int) -> Any:
        """A float32 CPU batch (len(slots), 3, H, W) of the images in these slots of a ``count``-slot library."""
        import torch

        from .decode import decode_all

        wanted = sorted({self.image_of(slot, count) for slot in slots} - set(self._transformed))
        if wanted:
            paths = [self.images.paths[i] for i in wanted]
            encoded = [self.decoder.prepare(data) for data in ImageSet(paths, self.images.source, self.images.root).read()]
            # decode_all names a file that does not decode; the transform then runs on every image.
            for index, image in zip(wanted, decode_all(self.decoder, encoded, paths)):
                self._transformed[index] = self.transform(image).to(torch.float32)
        return torch.stack([self._transformed[self.image_of(slot, count)] for slot in slots])

    def describe(self, count: int) -> dict[str, Any]:
        """Record fields: where the samples came from, how they were made, how many are distinct."""
        distinct = len({self.image_of(slot, count) for slot in range(count)})
        return {"samples_source": "images", "samples_distinct": distinct, "samples_repeat": distinct < count,
                **self.images.describe(), **self.decoder.facts(), "eval_transform": self.described,
                "transform_path": self.transform_path}


def like(batch, template) -> Any:
    """``batch`` (a float32 CPU tensor) as the runner's own inputs are: ``template`` is one of them
    (``runner.make_inputs``), so the samples get its type, device, dtype and memory format."""
    import numpy as np

    if tuple(batch.shape[1:]) != tuple(template.shape[1:]):
        made = "x".join(map(str, batch.shape[1:]))
        takes = "x".join(map(str, template.shape[1:]))
        raise UserError(f"the model's eval transform makes {made} images and the model takes {takes}; give a py: "
                        f"model a dlmark_eval_transform whose crop is its input size, or serve generated samples "
                        f"(no --input)")
    if isinstance(template, np.ndarray):
        return np.ascontiguousarray(batch.numpy(), dtype=template.dtype)
    import torch

    moved = batch.to(device=template.device, dtype=template.dtype)
    return moved.contiguous(memory_format=torch.channels_last) if is_channels_last(template) else moved.contiguous()


def is_channels_last(tensor) -> bool:
    """A 4-d torch tensor laid out channels-last (and not also plain contiguous: a 1x1 image is both)."""
    import torch

    return tensor.dim() == 4 and not tensor.is_contiguous() and tensor.is_contiguous(memory_format=torch.channels_last)
