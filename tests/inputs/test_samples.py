"""Decoded images as the serving library's samples: equal to an independent decode + transform of the
same files, in the runner's own input form, repeated or spread over the slots, and refused when the
eval transform does not make the model's input shape."""
import io
from pathlib import Path

import numpy as np
import pytest

from dlmark.errors import UserError
from tests.fixtures.jpeg_files import write_jpegs

torch = pytest.importorskip("torch")
pytestmark = pytest.mark.slow  # imports torch and torchvision

TINY = "py:tests.fixtures.models:tiny_images"
RECIPE = {"resize": 36, "crop": 32}  # tests.fixtures.models.TinyImageCNN's
MEAN, STD = [0.485, 0.456, 0.406], [0.229, 0.224, 0.225]


def pil_reference(path: Path):
    from PIL import Image
    from torchvision import transforms as T

    transform = T.Compose([T.Resize(36, interpolation=T.InterpolationMode.BILINEAR, antialias=True),
                           T.CenterCrop(32), T.ToTensor(), T.Normalize(MEAN, STD)])
    return transform(Image.open(io.BytesIO(path.read_bytes())).convert("RGB"))


def torchvision_reference(path: Path):
    from torchvision.io import decode_jpeg
    from torchvision.transforms import v2

    transform = v2.Compose([v2.Resize(36, antialias=True), v2.CenterCrop(32), v2.ToDtype(torch.float32, scale=True),
                            v2.Normalize(MEAN, STD)])
    return transform(decode_jpeg(torch.frombuffer(bytearray(path.read_bytes()), dtype=torch.uint8)))


@pytest.fixture(scope="module")
def tiny_runner():
    from dlmark.backends import RunConfig, load

    return load("pytorch", TINY, RunConfig(threads=1))


@pytest.fixture
def folder(tmp_path):
    write_jpegs(tmp_path / "jpegs")
    return tmp_path / "jpegs"


def library(runner, folder, count, decoder="pil"):
    from dlmark.inputs import jpegs
    from dlmark.inputs.samples import ImageSamples
    from dlmark.measure.loadgen import SampleLibrary

    samples = ImageSamples.for_runner(runner, jpegs.open_folder(folder), decoder)
    lib = SampleLibrary(runner, count, images=samples)
    lib.load(list(range(count)))
    return lib


@pytest.mark.parametrize("decoder, reference", [("pil", pil_reference), ("torchvision", torchvision_reference)])
def test_library_samples_are_the_files_decoded_and_transformed(tiny_runner, folder, decoder, reference):
    lib = library(tiny_runner, folder, 8, decoder)
    paths = sorted(folder.glob("*.jpg"))
    batch = lib.assemble(list(range(8)))
    # 8 slots over 5 images: slot i holds image i % 5.
    expected = torch.stack([reference(paths[i % 5]) for i in range(8)])
    assert batch.dtype == torch.float32 and tuple(batch.shape) == (8, 3, 32, 32)
    assert torch.allclose(batch, expected, atol=1e-6), (batch - expected).abs().max()
    fields = lib.describe()
    assert fields["samples_source"] == "images" and fields["samples_distinct"] == 5 and fields["samples_repeat"]
    assert fields["input_source"] == "folder" and fields["input_dir"] == str(folder) and fields["input_images"] == 5
    assert fields["decoder"] == decoder and fields["eval_transform"]["crop"] == 32
    assert fields["eval_transform"]["from"] == "dlmark_eval_transform"


def test_more_images_than_slots_are_spread_over_the_set(tiny_runner, tmp_path):
    write_jpegs(tmp_path / "many", count=6)
    lib = library(tiny_runner, tmp_path / "many", 3)
    paths = sorted((tmp_path / "many").glob("*.jpg"))
    expected = torch.stack([pil_reference(paths[i]) for i in (0, 2, 4)])
    assert torch.allclose(lib.assemble([0, 1, 2]), expected, atol=1e-6)
    assert lib.describe()["samples_distinct"] == 3 and not lib.describe()["samples_repeat"]


class TemplateRunner:
    """A runner known only by its inputs (``make_inputs``) and the eval source an exported runtime keeps."""

    backend = "fake"

    def __init__(self, template):
        from dlmark.backends.torch_source import EvalSource
        from dlmark.models import zoo

        self.template = template
        self.eval_source = EvalSource(zoo.get(TINY), None, RECIPE)

    def make_inputs(self, batch_size, seed=None):
        return self.template

    def synchronize(self):
        pass


def test_samples_take_the_runner_s_dtype_and_channels_last_layout(folder):
    template = torch.zeros((1, 3, 32, 32), dtype=torch.float64).contiguous(memory_format=torch.channels_last)
    lib = library(TemplateRunner(template), folder, 4)
    batch = lib.assemble([2, 0])
    assert batch.dtype == torch.float64
    assert batch.is_contiguous(memory_format=torch.channels_last) and not batch.is_contiguous()
    paths = sorted(folder.glob("*.jpg"))
    assert torch.allclose(batch.float(), torch.stack([pil_reference(paths[2]), pil_reference(paths[0])]), atol=1e-6)


def test_numpy_runtimes_get_float32_arrays_in_the_model_s_shape(folder):
    lib = library(TemplateRunner(np.zeros((1, 3, 32, 32), dtype=np.float32)), folder, 5)
    batch = lib.assemble([4, 1])
    assert isinstance(batch, np.ndarray) and batch.dtype == np.float32 and batch.shape == (2, 3, 32, 32)
    paths = sorted(folder.glob("*.jpg"))
    np.testing.assert_allclose(batch[0], pil_reference(paths[4]).numpy(), atol=1e-6)


def test_a_transform_that_does_not_make_the_model_s_input_is_refused(folder):
    with pytest.raises(UserError, match="makes 3x32x32 images and the model takes 3x64x64"):
        library(TemplateRunner(np.zeros((1, 3, 64, 64), dtype=np.float32)), folder, 4)


def test_an_undecodable_file_is_named_when_the_library_loads(tiny_runner, folder):
    whole = (folder / "img_2.jpg").read_bytes()
    (folder / "img_2.jpg").write_bytes(whole[:len(whole) // 2])  # its header reads; its pixels do not decode
    with pytest.raises(UserError, match="cannot decode .*img_2.jpg with decoder pil"):
        library(tiny_runner, folder, 5)
