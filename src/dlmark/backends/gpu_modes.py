"""Execution modes of the PyTorch backend beyond eager: torch.compile and CUDA graphs.

``compile_mode`` values (``RunConfig.compile_mode``):

* ``None`` -- eager.
* ``"cudagraphs"`` -- the eager forward captured once per batch size in a
  ``torch.cuda.CUDAGraph`` with a static input, replayed by ``run``: no
  Python and no per-kernel launch cost, the same kernels as eager. (This is
  what torch.compile's ``"reduce-overhead"`` adds on top of Inductor's fused
  kernels.)
* ``"default"``, ``"reduce-overhead"``, ``"max-autotune"``,
  ``"max-autotune-no-cudagraphs"`` -- ``torch.compile`` modes. A ``+freezing``
  suffix (``"default+freezing"``) turns on Inductor's freezing, which treats
  the weights as constants, folds batch norm into the preceding convolution
  and pre-packs weights: the inference-only optimisation a deployment would use.

Every compiled mode is compiled with ``dynamic=False``: one static graph per
batch size, as a deployment with a fixed batch would run. torch.compile's
default would switch to a dynamic-shape graph at the second batch size and
measure a different program from then on; and its recompile limit (8) would
silently fall back to eager in a sweep of more batch sizes, so it is raised.
"""
from __future__ import annotations

from typing import Any, Callable

#: torch.compile's modes; ``GRAPH_MODE`` and a ``+freezing`` suffix are dlmark's (``split_mode``).
COMPILE_MODES = ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")
GRAPH_MODE = "cudagraphs"
_RECOMPILE_LIMIT = 64


def split_mode(compile_mode: str) -> tuple[str, bool]:
    """``"default+freezing"`` -> (``"default"``, True)."""
    mode, _, modifier = compile_mode.partition("+")
    if modifier not in ("", "freezing"):
        raise ValueError(f"unknown compile modifier {modifier!r} in {compile_mode!r}; only '+freezing' exists")
    return mode, modifier == "freezing"


def compile_module(module: Any, compile_mode: str) -> Any:
    """``torch.compile`` with one static graph per batch size (see the module docstring)."""
    import torch

    mode, freezing = split_mode(compile_mode)
    dynamo = torch._dynamo.config
    for name in ("recompile_limit", "cache_size_limit"):  # renamed across torch versions
        if hasattr(dynamo, name):
            setattr(dynamo, name, max(getattr(dynamo, name), _RECOMPILE_LIMIT))
    # Global Inductor setting, read when the first call compiles; a worker holds one model at a time.
    torch._inductor.config.freezing = freezing
    return torch.compile(module, mode=None if mode == "default" else mode, dynamic=False)


class CudaGraphed:
    """A module's forward, captured in one CUDA graph per input shape and replayed.

    The first call with a new shape warms up on a side stream (cuDNN and
    cuBLAS pick their algorithms there, outside the capture), then captures.
    The caller's input tensor becomes the graph's static input: calling again
    with that same tensor replays directly; any other tensor is copied into
    it first. Only the latest shape's graph is kept, so a sweep over growing
    batch sizes holds one graph's memory at a time. The output is the
    graph's static output, overwritten by the next replay.
    """

    def __init__(self, module: Callable[[Any], Any], device: Any, warmup_iters: int = 3):
        self.module = module
        self.device = device
        self.warmup_iters = warmup_iters
        self._key: tuple | None = None
        self._graph: Any = None
        self._static_in: Any = None
        self._static_out: Any = None

    def __call__(self, inputs: Any) -> Any:
        key = (tuple(inputs.shape), inputs.dtype, inputs.stride())
        if key != self._key:
            self._capture(inputs, key)
        elif inputs.data_ptr() != self._static_in.data_ptr():
            self._static_in.copy_(inputs)
        self._graph.replay()
        return self._static_out

    def _capture(self, inputs: Any, key: tuple) -> None:
        import torch

        self._graph = self._static_in = self._static_out = self._key = None
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()  # give the previous shape's graph pool back first
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(self.warmup_iters):
                self.module(inputs)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = self.module(inputs)
        self._graph, self._static_in, self._static_out, self._key = graph, inputs, out, key

    def __getattr__(self, name: str) -> Any:  # parameters(), eval() ... reach the wrapped module
        if name == "module":
            raise AttributeError(name)
        return getattr(self.module, name)
