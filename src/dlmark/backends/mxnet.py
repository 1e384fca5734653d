"""MXNet Gluon: the seed's own framework and model zoo (``mxnet.gluon.model_zoo.vision``), hybridized, on CPU.

MXNet 1.9.1, the last release, needs numpy < 1.24, so this backend runs in its
own environment (``dlmark env create mxnet``) under a worker that imports no
torch. For output agreement the PyTorch network's weights are copied into the
Gluon network: a helper process under dlmark's main interpreter (named by
``DLMARK_TORCH_PYTHON``) dumps the state dict to ``.npz``, and the tensors are
assigned to Gluon's parameters in registration order after checking that
count and every shape match. Where they do not, or where the two zoos define
different functions with the same shapes, the record says the outputs are not
comparable instead of claiming agreement.
"""
from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import mxnet as mx
import numpy as np
from mxnet.gluon.model_zoo import vision

from dlmark.measure import timing
from dlmark.models import zoo
from dlmark.measure.environment import cpu_model
from ..errors import UserError
from . import RunConfig, runtime_util, seeded_input
from .gluon_names import GLUON_NAMES

#: Networks whose parameters map one to one onto torchvision's but compute a different
#: function, so equal weights do not give equal outputs.
KNOWN_DIFFERENCES = {
    **{f"resnet{d}_v1": "Gluon's ResNet-v1 bottleneck strides in its first 1x1 convolution (which has a bias), "
                        "torchvision's (ResNet v1.5) in the 3x3 one" for d in (50, 101, 152)},
}


#: torchvision tensors that inference never uses (Inception-v3's auxiliary classifier); Gluon has none.
TRAINING_ONLY = ("AuxLogits.",)


def _spec(model: str) -> zoo.ModelSpec:
    """The registry entry for a display name or source reference, without importing torch."""
    for spec in zoo.REGISTRY.values():
        if model in (spec.name, spec.source_ref):
            return spec
    raise UserError(f"mxnet runs the Gluon model zoo's networks: {', '.join(GLUON_NAMES)}; not {model!r}")


def _torch_weights(spec: zoo.ModelSpec, folder: Path) -> tuple[list[np.ndarray], dict[str, Any]] | str:
    """The PyTorch network's tensors and facts, or why they could not be had."""
    python = os.environ.get("DLMARK_TORCH_PYTHON")
    if not python:
        return "no PyTorch interpreter to take the weights from (DLMARK_TORCH_PYTHON is unset)"
    out = folder / "weights.npz"
    done = subprocess.run([python, "-m", "dlmark.backends.torch_source", spec.source_ref, str(out)],
                          capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        return f"dumping the PyTorch weights failed: {done.stderr.strip().splitlines()[-1:] or done.returncode}"
    facts = json.loads(out.with_suffix(".json").read_text())
    with np.load(out) as archive:
        arrays = [archive[f"arr_{i}"] for i, name in enumerate(facts["names"]) if not name.startswith(TRAINING_ONLY)]
    return arrays, facts


def copy_weights(net: Any, arrays: list[np.ndarray], gluon_name: str, source: str) -> tuple[bool, str]:
    """Assign ``arrays`` to the net's parameters in order; (comparable, how)."""
    params = list(net.collect_params().values())
    known = f"; besides, {KNOWN_DIFFERENCES[gluon_name]}" if gluon_name in KNOWN_DIFFERENCES else ""
    if len(params) != len(arrays):
        return False, (f"not comparable: Gluon {gluon_name} has {len(params)} parameter tensors, "
                       f"{source} has {len(arrays)}; no one-to-one mapping, Gluon keeps its own random weights{known}")
    for index, (param, array) in enumerate(zip(params, arrays)):
        if tuple(param.shape) != tuple(array.shape):
            return False, (f"not comparable: parameter #{index} of Gluon {gluon_name} ({param.name}) has shape "
                           f"{tuple(param.shape)}, {source}'s has {tuple(array.shape)}; Gluon keeps its own random weights")
    for param, array in zip(params, arrays):
        param.set_data(mx.nd.array(array, dtype=param.dtype))
    how = f"weights copied from {source} into Gluon {gluon_name} by parameter order ({len(arrays)} tensors, shapes checked)"
    if gluon_name in KNOWN_DIFFERENCES:
        return False, f"not comparable: {how}, but {KNOWN_DIFFERENCES[gluon_name]}"
    return True, how


class _WaitAllTimer(timing.PerfCounterTimer):
    """Wall clock around a block, ended by ``waitall``: MXNet's engine runs operators asynchronously,
    so a block is timed like a CUDA stream, from the first call to the last result."""

    def time_block(self, fn, iters: int) -> float:
        start = time.perf_counter()
        for _ in range(iters):
            fn()
        mx.nd.waitall()
        return time.perf_counter() - start


class MXNetRunner:
    backend = "mxnet"

    def __init__(self, model: str, config: RunConfig):
        if config.device != "cpu":
            raise UserError("mxnet runs on CPU only: MXNet 1.9.1's CUDA builds predate current GPUs "
                            "(see docs/runtimes.md); use --device cpu")
        if config.precision != "fp32" or config.layout != "nchw" or config.compile_mode:
            raise UserError("mxnet runs fp32 NCHW, hybridized; it takes no --precision, --layout or --compile")
        self.spec = _spec(model)
        self.gluon_name = GLUON_NAMES.get(self.spec.name)
        if self.gluon_name is None:
            raise UserError(f"{self.spec.name} is not in the Gluon model zoo; mxnet runs: {', '.join(GLUON_NAMES)}")
        self.threads = runtime_util.threads_for(config.threads)
        mx.base._LIB.MXSetNumOMPThreads(ctypes.c_int(self.threads))
        mx.random.seed(0)
        self.ctx = mx.cpu()
        with tempfile.TemporaryDirectory(prefix="dlmark-mx-") as folder:
            got = _torch_weights(self.spec, Path(folder))
        torch_facts: dict[str, Any] = {} if isinstance(got, str) else got[1]
        shape = tuple(torch_facts.get("input_shape") or ((3, 299, 299) if "inception" in self.gluon_name else (3, 224, 224)))
        self.input_shape = shape
        net = vision.get_model(self.gluon_name, pretrained=False)
        net.initialize(mx.init.Xavier(), ctx=self.ctx)
        net(mx.nd.zeros((1, *shape), ctx=self.ctx)).wait_to_read()  # resolves deferred parameter shapes
        if isinstance(got, str):
            self.comparable, self.weights_how = False, f"not comparable: {got}"
        else:
            self.comparable, self.weights_how = copy_weights(net, got[0], self.gluon_name, self.spec.source_ref)
        net.hybridize(static_alloc=True, static_shape=True)
        self.net = net
        self.params = int(sum(np.prod(p.shape) for p in net.collect_params().values()
                              if not p.name.endswith(("running_mean", "running_var"))))
        self.torch_facts = torch_facts

    # -- running
    def make_inputs(self, batch_size: int, seed: int | None = None) -> Any:
        x = seeded_input((batch_size, *self.input_shape), 0 if seed is None else seed)
        return mx.nd.array(x, ctx=self.ctx, dtype="float32")

    def run(self, inputs: Any) -> Any:
        return self.net(inputs)

    def gather(self, pool: Any, rows: list[int]) -> Any:
        """A new batch of these rows of ``pool`` (the serving task's sample library)."""
        return pool.take(mx.nd.array(rows, ctx=pool.context, dtype="int64"), axis=0)

    def to_numpy(self, out: Any) -> np.ndarray:
        return out.asnumpy()

    def synchronize(self) -> None:
        mx.nd.waitall()

    def timer(self) -> timing.PerfCounterTimer:
        return _WaitAllTimer()

    # -- memory and failure
    def memory(self, inputs: Any) -> dict[str, float | None]:
        def once() -> None:
            self.run(inputs)
            mx.nd.waitall()

        return runtime_util.cpu_pass_memory(once)

    def is_oom(self, exc: BaseException) -> bool:
        return runtime_util.is_oom(exc)

    def recover(self) -> None:
        mx.nd.waitall()
        runtime_util.recover()

    def facts(self) -> dict[str, Any]:
        facts: dict[str, Any] = {
            "input_shape": list(self.input_shape),
            # FLOPs counted by PyTorch hold for Gluon's network only when it is the same function.
            "params": self.params,
            "flops_per_sample": self.torch_facts.get("flops_per_sample") if self.comparable else None,
            "weights": self.torch_facts.get("weights", "random") if self.comparable else "random",
            "weights_tag": self.torch_facts.get("weights_tag") if self.comparable else None,
            "threads": self.threads,
            "backend_version": mx.__version__,
            "device_name": cpu_model(),
            "versions": {"mxnet": mx.__version__, "numpy": np.__version__},
            "runtime_fields": {
                "mx_gluon_model": self.gluon_name, "mx_hybridized": True,
                "mx_mkldnn": bool(mx.runtime.Features().is_enabled("MKLDNN")),
                "mx_omp_threads": self.threads, "mx_weights": self.weights_how,
                "mx_python": sys.executable,
            },
            "agreement_via": self.weights_how,
        }
        if not self.comparable:
            facts["agreement_comparable"] = False
        return facts

    def close(self) -> None:
        del self.net
        self.recover()


def load(model: str, config: RunConfig) -> MXNetRunner:
    return MXNetRunner(model, config)
