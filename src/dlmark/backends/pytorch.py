"""PyTorch: eager or ``torch.compile``, fp32/tf32/fp16/bf16 or autocast, NCHW or channels-last."""
from __future__ import annotations

import contextlib
import gc
from typing import Any

import torch

from .. import measure, zoo
from ..environment import torch_versions
from . import RunConfig

_DTYPES = {
    "fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
    "amp-fp16": torch.float32, "amp-bf16": torch.float32,
}
_AUTOCAST = {"amp-fp16": torch.float16, "amp-bf16": torch.bfloat16}


def _set_tf32(enabled: bool) -> None:
    # fp32 means fp32: cuDNN would otherwise use TF32 for convolutions by default.
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled


def is_oom(exc: BaseException) -> bool:
    """True for a failed allocation on GPU or CPU (including a memory rlimit)."""
    if isinstance(exc, (torch.cuda.OutOfMemoryError, MemoryError)):
        return True
    text = str(exc)
    return isinstance(exc, RuntimeError) and (
        "out of memory" in text.lower() or "can't allocate memory" in text or "not enough memory" in text)


class PyTorchRunner:
    backend = "pytorch"

    def __init__(self, built: zoo.BuiltModel, config: RunConfig):
        self.config = config
        self.built = built
        self.input_shape = tuple(built.input_shape)
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            _set_tf32(config.precision == "tf32")
        self.dtype = _DTYPES[config.precision]
        self.memory_format = torch.channels_last if config.layout == "channels_last" else torch.contiguous_format
        # Counted on the CPU fp32 module before .to() changes it in place.
        self.flops_per_sample = zoo.count_flops(built.module, self.input_shape)
        module = built.module.to(self.device, dtype=self.dtype, memory_format=self.memory_format)
        self.params = zoo.count_params(module)
        if config.compile_mode:
            mode = None if config.compile_mode == "default" else config.compile_mode
            module = torch.compile(module, mode=mode)
        self.module = module
        autocast_dtype = _AUTOCAST.get(config.precision)
        self._autocast = (
            (lambda: torch.autocast(self.device.type, dtype=autocast_dtype))
            if autocast_dtype else contextlib.nullcontext)

    # -- running
    def make_inputs(self, batch_size: int, seed: int | None = None) -> torch.Tensor:
        generator = torch.Generator().manual_seed(seed) if seed is not None else None
        x = torch.randn((batch_size, *self.input_shape), generator=generator)
        return x.to(self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)

    def run(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self._autocast():
            return self.module(inputs)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def timer(self):
        if self.device.type == "cuda":
            return measure.CudaEventTimer(self.device)
        return measure.PerfCounterTimer()

    # -- memory and failure
    def memory(self, inputs: torch.Tensor) -> dict[str, float | None]:
        """Memory of one forward pass: allocator peaks and NVML on GPU, peak RSS on CPU."""
        if self.device.type == "cuda":
            self.synchronize()
            torch.cuda.reset_peak_memory_stats(self.device)
            out = self.run(inputs)
            self.synchronize()
            result = {
                "peak_mem_allocated_mb": torch.cuda.max_memory_allocated(self.device) / 2**20,
                "peak_mem_reserved_mb": torch.cuda.max_memory_reserved(self.device) / 2**20,
                "nvml_mem_used_mb": measure.nvml_memory_used_mb(uuid=_device_uuid(self.device)),
            }
            del out
            result["device_mem"] = result["nvml_mem_used_mb"] or result["peak_mem_reserved_mb"]
            return result
        measure.reset_peak_rss()
        out = self.run(inputs)
        del out
        rss = measure.peak_rss_mb()
        return {"peak_rss_mb": rss, "device_mem": rss}

    def is_oom(self, exc: BaseException) -> bool:
        return is_oom(exc)

    def recover(self) -> None:
        """Free what a failed pass left behind so the next trial starts clean."""
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.empty_cache()

    def facts(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "params": self.params,
            "flops_per_sample": self.flops_per_sample,
            "weights": self.built.weights,
            "weights_tag": self.built.weights_tag,
            "threads": torch.get_num_threads(),
            "backend_version": torch.__version__,
            "device_name": device_name(self.device),
            **({"tf32": torch.backends.cudnn.allow_tf32} if self.device.type == "cuda" else {}),
            "versions": torch_versions(),
        }

    def close(self) -> None:
        del self.module
        self.recover()


def _device_uuid(device: torch.device) -> str | None:
    try:
        uuid = torch.cuda.get_device_properties(device).uuid
        return f"GPU-{uuid}"
    except Exception:  # noqa: BLE001 -- older torch: fall back to the index
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from ..environment import cpu_model

    return cpu_model()


def load(model: str, config: RunConfig) -> PyTorchRunner:
    return PyTorchRunner(zoo.build(zoo.get(model)), config)
