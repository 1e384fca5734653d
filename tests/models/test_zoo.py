import pytest
import torch

from dlmark.models import zoo
from dlmark.errors import UserError

SEED_NAMES = ["AlexNet", "DenseNet-121", "DenseNet-161", "DenseNet-169", "DenseNet-201", "ResNet-v1-18",
              "ResNet-v1-34", "ResNet-v1-50", "ResNet-v1-101", "ResNet-v1-152", "ResNet-v2-18", "ResNet-v2-34",
              "ResNet-v2-50", "SqueezeNet-1.0", "SqueezeNet-1.1", "VGG-11", "VGG-13", "VGG-16", "VGG-19"]


def test_the_seeds_19_models_under_the_seeds_names():
    assert zoo.SEED_MODELS == SEED_NAMES
    assert zoo.get("ResNet-v2-50").source_ref == "timm:resnetv2_50"
    assert zoo.get("DenseNet-121").source_ref == "torchvision:densenet121"
    assert zoo.get("ResNet-v1-50").family == "ResNet-v1"
    assert zoo.get("AlexNet").family == "AlexNet"
    assert zoo.get("SqueezeNet-1.1").family == "SqueezeNet"


def test_unknown_names_suggest_the_closest():
    with pytest.raises(UserError, match="closest: .*ResNet-v1-50"):
        zoo.get("ResNet-50")
    with pytest.raises(UserError, match="resnet50"):
        zoo.get("timm:resnet5")
    with pytest.raises(UserError, match="source"):
        zoo.get("keras:resnet50")


def test_sources_resolve_to_registry_entries_when_they_are_the_same_network():
    assert zoo.get("torchvision:resnet50").name == "ResNet-v1-50"
    assert zoo.get("timm:convnext_atto").name == "timm:convnext_atto"


def test_input_size_comes_from_the_models_own_config():
    assert zoo.input_shape(zoo.get("Inception-v3")) == (3, 299, 299)
    assert zoo.input_shape(zoo.get("ResNet-v1-50")) == (3, 224, 224)
    assert zoo.input_shape(zoo.get("timm:resnet50")) == (3, 224, 224)


def test_flops_are_counted_not_tabled():
    built = zoo.build(zoo.get("ResNet-v1-50"), pretrained="never")
    # ResNet-50: 4.09 G multiply-adds per 224x224 image, counted as 2 FLOPs each.
    assert zoo.count_flops(built.module, built.input_shape) == pytest.approx(8.18e9, rel=0.01)
    assert zoo.count_params(built.module) == 25_557_032


def test_weights_are_pretrained_only_when_on_disk(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    spec = zoo.get("SqueezeNet-1.1")
    random_build = zoo.build(spec)
    assert random_build.weights == "random" and random_build.weights_tag is None
    with pytest.raises(UserError, match="not on disk"):
        zoo.build(spec, pretrained="require")
    # Put "downloaded" weights where torch hub keeps them; dlmark must load exactly those.
    weights = zoo._torchvision_weights("squeezenet1_1")
    path = zoo.torch_hub_checkpoint(weights.url)
    path.parent.mkdir(parents=True)
    state = {k: torch.full_like(v, 0.5) if v.is_floating_point() else v
             for k, v in random_build.module.state_dict().items()}
    torch.save(state, path)
    loaded = zoo.build(spec)
    assert loaded.weights == "pretrained"
    assert loaded.weights_tag == "SqueezeNet1_1_Weights.IMAGENET1K_V1"
    assert torch.equal(next(loaded.module.parameters()), torch.full_like(next(loaded.module.parameters()), 0.5))


def test_py_models_bring_their_input_shape():
    built = zoo.build(zoo.get("py:tests.fixtures.models:tiny"))
    assert built.input_shape == (3, 32, 32)
    with pytest.raises(UserError, match="cannot load"):
        zoo.build(zoo.get("py:tests.fixtures.models:nope"))


def test_list_models_matches_patterns():
    assert zoo.list_models("resnet-v2*") == ["ResNet-v2-18", "ResNet-v2-34", "ResNet-v2-50"]
