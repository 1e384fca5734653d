"""Model registry: display names, sources, families, input sizes, weights.

The seed's 19 CNNs keep the seed's display names. Any other network is named by
its source: ``torchvision:NAME``, ``timm:NAME``, or ``py:MODULE:FUNCTION`` for a
function of yours that returns an ``nn.Module``.

Looking names up (``get``, ``list_models``) needs no torch; building does.
"""
from __future__ import annotations

import difflib
import fnmatch
import importlib
import importlib.util
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlmark.errors import UserError
from dlmark.records.schema import family_of

SOURCES = ("torchvision", "timm", "py")
#: Seed of random initialisation when no pretrained weights are on disk.
RANDOM_WEIGHTS_SEED = 0


@dataclass(frozen=True)
class ModelSpec:
    """One entry of the zoo: what to build and what to call it."""

    name: str
    source: str  # one of SOURCES
    arch: str  # torchvision/timm model name, or "module:function" for py
    description: str = ""

    @property
    def family(self) -> str:
        return family_of(self.name)

    @property
    def source_ref(self) -> str:
        return f"{self.source}:{self.arch}"


def _tv(name: str, arch: str, description: str = "") -> ModelSpec:
    return ModelSpec(name, "torchvision", arch, description)


#: The seed's networks (the Gluon model zoo of 2018), under the seed's names,
#: plus a few that show what the registry handles (299-pixel input, mobile nets).
_ENTRIES = [
    _tv("AlexNet", "alexnet"),
    *[_tv(f"DenseNet-{d}", f"densenet{d}") for d in (121, 161, 169, 201)],
    *[_tv(f"ResNet-v1-{d}", f"resnet{d}") for d in (18, 34, 50, 101, 152)],
    *[ModelSpec(f"ResNet-v2-{d}", "timm", f"resnetv2_{d}", "pre-activation ResNet") for d in (18, 34, 50)],
    _tv("SqueezeNet-1.0", "squeezenet1_0"),
    _tv("SqueezeNet-1.1", "squeezenet1_1"),
    *[_tv(f"VGG-{d}", f"vgg{d}") for d in (11, 13, 16, 19)],
    _tv("Inception-v3", "inception_v3", "299x299 input"),
    _tv("MobileNet-v2", "mobilenet_v2"),
    _tv("MobileNet-v3-Small", "mobilenet_v3_small"),
]
REGISTRY: dict[str, ModelSpec] = {spec.name: spec for spec in _ENTRIES}

#: The 19 networks of the seed page, in the seed's order.
SEED_MODELS = [spec.name for spec in _ENTRIES[:19]]


def list_models(pattern: str = "*") -> list[str]:
    """Registered display names matching a shell-style pattern (case-insensitive)."""
    return [n for n in REGISTRY if fnmatch.fnmatch(n.lower(), pattern.lower())]


def _closest(name: str, candidates: list[str], n: int = 5) -> list[str]:
    lowered = {c.lower(): c for c in candidates}
    hits = difflib.get_close_matches(name.lower(), list(lowered), n=n, cutoff=0.5)
    return [lowered[h] for h in hits]


def _unknown(name: str, candidates: list[str], what: str) -> UserError:
    close = _closest(name, candidates)
    hint = f"; closest: {', '.join(close)}" if close else ""
    return UserError(f"unknown {what} {name!r}{hint} (see `dlmark models`)")


def get(name: str) -> ModelSpec:
    """The spec for a display name or a ``source:NAME`` reference.

    Raises UserError naming the closest valid names for an unknown one.
    """
    if name in REGISTRY:
        return REGISTRY[name]
    source, sep, arch = name.partition(":")
    if not sep:
        # A registry name in other case, or a bare torchvision/timm name, is still ours to resolve.
        by_lower = {n.lower(): n for n in REGISTRY}
        if name.lower() in by_lower:
            return REGISTRY[by_lower[name.lower()]]
        by_source = {s.source_ref.split(":", 1)[1]: s for s in _ENTRIES}
        if name in by_source:
            return by_source[name]
        raise _unknown(name, list(REGISTRY), "model")
    if source == "torchvision":
        from torchvision import models as tvm

        known = tvm.list_models(module=tvm)
        if arch not in known:
            raise _unknown(arch, known, "torchvision model")
    elif source == "timm":
        import timm

        if not timm.is_model(arch):
            raise _unknown(arch, timm.list_models(), "timm model")
    elif source == "py":
        if ":" not in arch:
            raise UserError(f"py source needs MODULE:FUNCTION, got {name!r} (e.g. py:mypkg.nets:build)")
    else:
        raise UserError(f"unknown model source {source!r} in {name!r}; use one of {', '.join(SOURCES)}")
    # A known architecture under its source name resolves to the registry entry, so that
    # `torchvision:resnet50` and `ResNet-v1-50` are one model in tables and plots.
    for spec in _ENTRIES:
        if spec.source == source and spec.arch == arch:
            return spec
    return ModelSpec(name, source, arch)


# --------------------------------------------------------------------- building


@dataclass
class BuiltModel:
    """A network ready to run, with the facts records need about it."""

    spec: ModelSpec
    module: Any  # torch.nn.Module, in eval mode, on CPU, fp32
    input_shape: tuple[int, int, int]
    weights: str  # "pretrained" or "random"
    weights_tag: str | None
    weights_file: str | None = None


def _torchvision_weights(arch: str):
    from torchvision.models import get_model_weights

    try:
        return get_model_weights(arch).DEFAULT
    except (ValueError, KeyError, AttributeError):
        return None


def torch_hub_checkpoint(url: str) -> Path:
    """Where torch hub keeps the file downloaded from ``url``."""
    import torch

    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(url)


def _timm_cached_weights(pretrained_cfg: dict[str, Any]) -> str | None:
    repo = pretrained_cfg.get("hf_hub_id")
    if not repo:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return None
    for filename in ("model.safetensors", "pytorch_model.bin"):
        path = try_to_load_from_cache(repo, filename)
        if isinstance(path, str) and os.path.exists(path):
            return path
    return None


def _input_shape_from_torchvision(weights) -> tuple[int, int, int]:
    if weights is None:
        return (3, 224, 224)
    crop = weights.transforms().crop_size
    size = crop[0] if isinstance(crop, (list, tuple)) else crop
    return (3, int(size), int(size))


def input_shape(spec: ModelSpec) -> tuple[int, int, int]:
    """One sample's (C, H, W), from the model's own pretrained config."""
    if spec.source == "torchvision":
        return _input_shape_from_torchvision(_torchvision_weights(spec.arch))
    if spec.source == "timm":
        import timm

        cfg = timm.get_pretrained_cfg(spec.arch)
        shape = cfg.input_size if cfg is not None else (3, 224, 224)
        return tuple(int(v) for v in shape)  # type: ignore[return-value]
    return tuple(getattr(_build_py(spec), "dlmark_input_shape", (3, 224, 224)))  # type: ignore[return-value]


def _build_py(spec: ModelSpec):
    module_name, _, function_name = spec.arch.rpartition(":")
    try:
        if module_name.endswith(".py"):
            loader_spec = importlib.util.spec_from_file_location(Path(module_name).stem, module_name)
            if loader_spec is None or loader_spec.loader is None:
                raise ImportError(module_name)
            module = importlib.util.module_from_spec(loader_spec)
            loader_spec.loader.exec_module(module)
        else:
            module = importlib.import_module(module_name)
        factory = getattr(module, function_name)
    except (ImportError, AttributeError) as exc:
        raise UserError(f"cannot load model function {spec.arch!r}: {exc}") from None
    return factory()


def build(spec: ModelSpec, pretrained: str = "auto") -> BuiltModel:
    """Build a model in eval mode on CPU.

    ``pretrained``: ``auto`` loads weights already on disk (torch hub or
    Hugging Face cache) and otherwise initialises randomly; ``never`` always
    initialises randomly; ``require`` raises UserError naming the missing file.
    Nothing is ever downloaded.
    """
    import torch

    # Random weights are seeded, so that every process (the PyTorch reference, an
    # ONNX export, the weights copied into MXNet) builds the same network and
    # runtimes' outputs can be compared.
    torch.manual_seed(RANDOM_WEIGHTS_SEED)
    if pretrained not in ("auto", "never", "require"):
        raise ValueError(f"pretrained must be auto, never or require, not {pretrained!r}")
    weights_tag = weights_file = None
    if spec.source == "torchvision":
        from torchvision.models import get_model

        weights = _torchvision_weights(spec.arch)
        shape = _input_shape_from_torchvision(weights)
        module = get_model(spec.arch, weights=None)
        if weights is not None:
            path = torch_hub_checkpoint(weights.url)
            if pretrained != "never" and path.exists():
                # Loaded by us, not by torchvision, so that nothing can trigger a download.
                module.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
                weights_tag, weights_file = str(weights), str(path)
            elif pretrained == "require":
                raise UserError(
                    f"pretrained weights for {spec.name} are not on disk: expected {path}; "
                    f"fetch {weights.url} into that folder (or run once with internet: "
                    f"python -c \"import torchvision; torchvision.models.get_model('{spec.arch}', weights='DEFAULT')\")")
        elif pretrained == "require":
            raise UserError(f"torchvision has no pretrained weights for {spec.name}")
    elif spec.source == "timm":
        import timm

        module = timm.create_model(spec.arch, pretrained=False)
        cfg = dict(module.pretrained_cfg)
        shape = tuple(int(v) for v in cfg.get("input_size", (3, 224, 224)))
        cached = _timm_cached_weights(cfg) if pretrained != "never" else None
        if cached:
            module = timm.create_model(spec.arch, pretrained=True, pretrained_cfg_overlay={"file": cached})
            weights_tag, weights_file = cfg.get("hf_hub_id") or spec.arch, cached
        elif pretrained == "require":
            repo = cfg.get("hf_hub_id") or spec.arch
            raise UserError(
                f"pretrained weights for {spec.name} are not in the Hugging Face cache (repo {repo}); "
                f"fetch them with: huggingface-cli download {repo}")
    else:
        module = _build_py(spec)
        shape = tuple(getattr(module, "dlmark_input_shape", (3, 224, 224)))
        if pretrained == "require":
            raise UserError(f"{spec.name}: a py: model brings its own weights; pretrained=require is not supported")
    module.eval()
    return BuiltModel(
        spec=spec, module=module, input_shape=shape,  # type: ignore[arg-type]
        weights="pretrained" if weights_tag else "random", weights_tag=weights_tag,
        weights_file=weights_file,
    )


def count_params(module) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def count_flops(module, input_shape: tuple[int, ...]) -> int | None:
    """FLOPs of one forward pass of one sample, by torch.utils.flop_counter.

    Counted on the meta device (no arithmetic is done); falls back to a real
    CPU pass for models with operators that have no meta kernel.
    """
    import copy

    import torch
    from torch.utils.flop_counter import FlopCounterMode

    def run(net, device: str) -> int:
        x = torch.zeros((1, *input_shape), device=device)
        counter = FlopCounterMode(display=False)
        with counter, torch.inference_mode():
            net(x)
        return int(counter.get_total_flops())

    try:
        return run(copy.deepcopy(module).to("meta"), "meta")
    except Exception:  # noqa: BLE001 -- any operator without a meta kernel
        try:
            return run(module, "cpu")
        except Exception:  # noqa: BLE001 -- FLOPs are informative; a record without them is still a result
            return None


def count_activation_elements(module, input_shape: tuple[int, ...]) -> float | None:
    """Elements of activation traffic of one sample's forward pass (written + read).

    Runs the network on the meta device (no arithmetic) under a dispatch mode
    that adds up the outputs of every ATen operator that materialises a new
    tensor (views alias their input and move nothing); each output is counted
    twice, written by its producer and read by its consumer, and the input
    image once. Call inside a worker: it imports torch.
    """
    import copy

    import torch
    from torch.utils._python_dispatch import TorchDispatchMode

    class _Traffic(TorchDispatchMode):
        def __init__(self) -> None:
            super().__init__()
            self.elements = 0

        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            returns = func._schema.returns
            if not any(r.alias_info is not None for r in returns):
                for t in (out if isinstance(out, (tuple, list)) else (out,)):
                    if isinstance(t, torch.Tensor):
                        self.elements += 2 * t.numel()
            return out

    try:
        net = copy.deepcopy(module).to("meta")
        x = torch.zeros((1, *input_shape), device="meta")
        mode = _Traffic()
        with torch.inference_mode(), mode:
            net(x)
        return float(mode.elements + x.numel())
    except Exception:  # noqa: BLE001 -- an operator without a meta kernel: the estimate is absent
        return None
