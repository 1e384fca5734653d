"""The PyTorch side of the other runtimes: the zoo's network, exported to ONNX or its weights dumped.

ONNX Runtime and OpenVINO run the very network PyTorch builds (same code, same
weights: random initialisation is seeded in ``zoo.build``), exported once and
cached on disk. MXNet runs in an interpreter without torch, so its worker asks
this module, run as ``python -m dlmark.backends.torch_source``, to dump the
weights to a ``.npz`` file it can copy into the Gluon network.
"""
from __future__ import annotations

import argparse
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dlmark.errors import UserError
from dlmark.models import zoo
from . import cache

#: ONNX opset of the exports: supported by onnxruntime >= 1.14 and OpenVINO >= 2023.
OPSET = 18


def build(model: str) -> zoo.BuiltModel:
    return zoo.build(zoo.get(model))


def model_facts(built: zoo.BuiltModel) -> dict[str, Any]:
    """The record's model facts, counted on the PyTorch module."""
    shape = tuple(built.input_shape)
    return {
        "input_shape": list(shape), "params": zoo.count_params(built.module),
        "flops_per_sample": zoo.count_flops(built.module, shape),
        "weights": built.weights, "weights_tag": built.weights_tag,
    }


@dataclass(frozen=True)
class EvalSource:
    """What the accuracy task needs of the PyTorch model behind a runtime that no longer holds it:
    the spec and weights (``tasks.accuracy`` refuses random zoo weights) and a py: model's own
    evaluation transform."""

    spec: Any
    weights: str | None
    custom_transform: dict[str, Any] | None = None

    @classmethod
    def of(cls, built: zoo.BuiltModel) -> "EvalSource":
        custom = getattr(built.module, "dlmark_eval_transform", None)
        return cls(built.spec, built.weights, dict(custom) if custom else None)


def model_behind(runner) -> tuple[Any, str | None, Any, dict[str, Any] | None]:
    """(spec, weights, torch module or None, a py: model's own transform) of the runner's model.

    PyTorch holds the module; ONNX Runtime and OpenVINO keep what the task needs of it
    (``torch_source.EvalSource``) and run their own exported, converted or quantized graph.
    """
    built = getattr(runner, "built", None)
    if built is not None:
        return built.spec, built.weights, built.module, None
    source = getattr(runner, "eval_source", None)
    if source is None:
        raise UserError(f"accuracy is measured on pytorch, onnxruntime or openvino; {runner.backend} "
                        f"has no model to feed images")
    return source.spec, source.weights, None, source.custom_transform


def cache_key(built: zoo.BuiltModel, **more: Any) -> dict[str, Any]:
    """What decides an exported file's content: network, weights, shape, exporter version."""
    import torch

    return {"model": built.spec.source_ref, "weights": built.weights_tag or f"random-seed{zoo.RANDOM_WEIGHTS_SEED}",
            "input_shape": list(built.input_shape), "torch": torch.__version__, **more}


def export_onnx(built: zoo.BuiltModel, precision: str = "fp32", opset: int = OPSET) -> tuple[Path, str]:
    """The model as ONNX with a dynamic batch axis, cached by model, opset, shape and precision.

    Returns (path, exporter): ``dynamo`` (torch.export based, the default since
    torch 2.9) or ``torchscript`` (the older tracer) for a model torch.export rejects.
    """
    import torch

    key = cache_key(built, opset=opset, precision=precision)
    path = cache.artifact("onnx", key, ".onnx")
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return path, json.loads(meta.read_text())["exporter"]
    module = built.module.half() if precision == "fp16" else built.module.float()
    dtype = torch.float16 if precision == "fp16" else torch.float32
    # Batch 2 as the example: with 1, tracing may specialise the batch axis to a constant.
    example = (torch.zeros((2, *built.input_shape), dtype=dtype),)
    used = {}

    def write(tmp: Path) -> None:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            try:
                torch.onnx.export(module, example, str(tmp), input_names=["input"], output_names=["logits"],
                                  opset_version=opset, dynamo=True, external_data=False, verbose=False,
                                  dynamic_shapes=({0: torch.export.Dim("batch")},))
                used["exporter"] = "dynamo"
            except Exception:  # noqa: BLE001 -- torch.export rejects some models; the tracer takes them
                torch.onnx.export(module, example, str(tmp), input_names=["input"], output_names=["logits"],
                                  opset_version=opset, dynamo=False,
                                  dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
                used["exporter"] = "torchscript"

    cache.build_atomically(path, write)
    meta.write_text(json.dumps({**key, "exporter": used.get("exporter", "dynamo")}))
    module.float()
    return path, used.get("exporter", "dynamo")


def dump_weights(model: str, out: Path) -> dict[str, Any]:
    """Write the state dict (parameters and running statistics, in module order) as .npz, plus facts."""
    import numpy as np

    built = build(model)
    tensors = [(name, t.detach().float().cpu().numpy()) for name, t in built.module.state_dict().items()
               if not name.endswith("num_batches_tracked")]
    facts = {**model_facts(built), "source": built.spec.source_ref, "names": [n for n, _ in tensors]}

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, *[t for _, t in tensors])

    out.parent.mkdir(parents=True, exist_ok=True)
    cache.build_atomically(out, write)
    out.with_suffix(".json").write_text(json.dumps(facts))
    return facts


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlmark.backends.torch_source")
    parser.add_argument("model")
    parser.add_argument("out", type=Path, help=".npz file to write")
    args = parser.parse_args(argv)
    dump_weights(args.model, args.out)


if __name__ == "__main__":
    main()
