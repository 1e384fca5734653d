"""PyTorch: eager or ``torch.compile``, fp32/tf32/fp16/bf16 or autocast, NCHW or channels-last."""
from __future__ import annotations

import contextlib
import gc
from typing import Any

import torch

from dlmark.measure import timing
from dlmark.models import zoo
from dlmark.measure.environment import torch_versions
from ..errors import UserError
from . import RunConfig, StopForward, in_flight, int8, seeded_input
from . import precision_check
from .gpu_modes import GRAPH_MODE, CudaGraphed, compile_module

_DTYPES = {
    "fp32": torch.float32, "tf32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16,
    "amp-fp16": torch.float32, "amp-bf16": torch.float32,
    "int8": torch.float32,  # inputs and weights stay fp32 until PT2E quantizes the module (backends.int8)
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
        if config.precision == "int8" and (not config.device.startswith("cpu") or config.layout != "nchw"
                                           or config.compile_mode == GRAPH_MODE):
            raise UserError("--precision int8 on pytorch is CPU-only here (PT2E with the x86 Inductor quantizer), "
                            "NCHW, eager or torch.compile; use --device cpu")
        if config.threads:
            torch.set_num_threads(config.threads)
        self.device = torch.device(config.device)
        if self.device.type == "cuda":
            torch.cuda.set_device(self.device)
            _set_tf32(config.precision == "tf32")
            # Let cuDNN pick the fastest convolution per shape, as deployed inference does;
            # warm-up absorbs the search.
            torch.backends.cudnn.benchmark = True
        # Largest-batch trials report the allocator's peak and budget (max_batch_size.probe).
        self.probe_memory = AllocatorWatch(self.device) if self.device.type == "cuda" else None
        self.dtype = _DTYPES[config.precision]
        self.memory_format = torch.channels_last if config.layout == "channels_last" else torch.contiguous_format
        # Counted on the CPU fp32 module before .to() changes it in place.
        self.flops_per_sample = zoo.count_flops(built.module, self.input_shape)
        self.activation_elements = zoo.count_activation_elements(built.module, self.input_shape)
        reference = self._fp32_reference(built.module) if config.precision != "fp32" else None
        module = built.module.to(self.device, dtype=self.dtype, memory_format=self.memory_format)
        self.params = zoo.count_params(module)
        autocast_dtype = _AUTOCAST.get(config.precision)
        # Autocast's weight cache would hand a captured CUDA graph casts freed after capture.
        cache = config.compile_mode != GRAPH_MODE
        self._autocast = (
            (lambda: torch.autocast(self.device.type, dtype=autocast_dtype, cache_enabled=cache))
            if autocast_dtype else contextlib.nullcontext)
        self.int8_fields: dict[str, Any] = {}
        if config.precision == "int8":
            # Quantized before the agreement check, which then compares the int8 arithmetic
            # (the converted graph, run eagerly) with fp32; compiled after it, as every precision.
            calibration = int8.calibration_for(config.calibration, built.spec, built.module)
            module, self.int8_fields = int8.quantize_pytorch(module, self.input_shape, calibration,
                                                             compile_model=False)
        self.module = module
        self.agreement = self._agreement(reference) if reference is not None else {}
        # What stays allocated between passes (weights); more after a failed pass means leftovers.
        self._resident_bytes = torch.cuda.memory_allocated(self.device) if self.device.type == "cuda" else 0
        if config.compile_mode == GRAPH_MODE:
            if self.device.type != "cuda":
                raise ValueError("compile mode 'cudagraphs' needs a CUDA device")
            module = CudaGraphed(module, self.device)
        elif config.compile_mode:
            module = compile_module(module, config.compile_mode)
            if self.int8_fields:
                # Inductor lowers the converted graph's quantize/dequantize patterns to int8 kernels.
                self.int8_fields["quantizer"] = self.int8_fields["quantizer"].replace(
                    "eager (not compiled)", f"torch.compile ({config.compile_mode}, inductor)")
        self.module = module

    def _fp32_reference(self, module) -> tuple[torch.Tensor, torch.Tensor]:
        """(input, logits) of the fp32 eager model on the device, before any cast."""
        x = torch.randn((precision_check.AGREEMENT_BATCH, *self.input_shape),
                        generator=torch.Generator().manual_seed(precision_check.AGREEMENT_SEED))
        module.to(self.device)
        if self.device.type == "cuda":
            _set_tf32(False)
        try:
            with torch.inference_mode():
                return x, module(x.to(self.device)).float()
        finally:
            if self.device.type == "cuda":
                _set_tf32(self.config.precision == "tf32")

    def _agreement(self, reference: tuple[torch.Tensor, torch.Tensor]) -> dict[str, Any]:
        x, ref = reference
        inputs = x.to(self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)
        out = self.run(inputs)
        method = (f"{self.config.precision} {self.config.layout} eager vs fp32 eager on {self.device.type}, "
                  f"seeded N(0,1) input, batch {precision_check.AGREEMENT_BATCH}")
        return precision_check.agreement_fields(ref, out, self.config.precision, method)

    # -- running
    def make_inputs(self, batch_size: int, seed: int | None = None) -> torch.Tensor:
        if seed is not None:  # the input every runtime generates alike (output agreement)
            x = torch.from_numpy(seeded_input((batch_size, *self.input_shape), seed))
        else:
            # Generated on the device: a CPU randn of a 10 GB batch takes longer than the trial.
            x = torch.randn((batch_size, *self.input_shape), device=self.device, dtype=self.dtype)
        return x.to(self.device, dtype=self.dtype).contiguous(memory_format=self.memory_format)

    @contextlib.contextmanager
    def probing(self):
        """Largest-batch trials: no cuDNN autotuning, which would benchmark every
        algorithm at every new (huge) shape and try workspace-hungry ones."""
        saved = torch.backends.cudnn.benchmark
        torch.backends.cudnn.benchmark = False
        try:
            yield
        finally:
            torch.backends.cudnn.benchmark = saved

    def run(self, inputs: torch.Tensor) -> torch.Tensor:
        with torch.inference_mode(), self._autocast():
            return self.module(inputs)

    # -- largest-batch trials that stop past the memory peak (tasks.max_batch_size)
    def memory_slopes(self, small: int, large: int) -> list[float] | None:
        """Bytes per image by which each leaf module call's allocated peak grows with the batch.

        None where it cannot be measured: off CUDA, or compiled (no module hooks
        fire inside a compiled graph), or when the calls differ between batches.
        """
        if self.probe_memory is None or self.config.compile_mode:
            return None
        peaks = [self._call_peaks(batch) for batch in (small, large)]
        if not peaks[0] or len(peaks[0]) != len(peaks[1]):
            return None
        return [(p2 - p1) / (large - small) for p1, p2 in zip(*peaks)]

    def _call_peaks(self, batch: int) -> list[int]:
        """Allocated peak between consecutive leaf-module calls of one forward pass."""
        watch = self.probe_memory
        watch.start()
        inputs = self.make_inputs(batch)
        peaks: list[int] = []
        with self.watch_calls(lambda _call: peaks.append(watch.note_call())):
            out = self.run(inputs)
        del out, inputs
        return peaks

    def stop_after_call(self, call: int):
        """A context in which a forward pass stops (StopForward) once leaf call ``call`` returns."""
        def stop(index: int) -> None:
            if index == call:
                raise StopForward(call)

        return leaf_calls(self.module, stop)

    def watch_calls(self, after_call):
        """A context in which ``after_call(index)`` runs after every leaf call of a forward pass."""
        return leaf_calls(self.module, after_call)

    def synchronize(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @property
    def queues_work(self) -> bool:
        """``run`` returns once its work is queued on a CUDA stream, before it is done."""
        return self.device.type == "cuda"

    def use_own_stream(self) -> None:
        """From now on the calling thread queues its work on a CUDA stream of its own."""
        torch.cuda.set_stream(torch.cuda.Stream(self.device))

    def launched(self, outputs: Any) -> Any:
        """A handle on the work this thread has queued so far (the batch just launched), for
        ``wait_for``: on CUDA an event recorded now, on this thread's stream; else the outputs."""
        if self.device.type != "cuda":
            return outputs
        event = torch.cuda.Event()
        event.record(torch.cuda.current_stream(self.device))
        return event

    def wait_for(self, outputs: Any) -> None:
        """Block until the work behind ``outputs`` is done (not the whole device): an event from
        ``launched``, or else everything queued so far on this thread's stream."""
        if self.device.type == "cuda":
            if not isinstance(outputs, torch.cuda.Event):
                outputs = self.launched(outputs)
            outputs.synchronize()

    def timer(self):
        if self.device.type == "cuda":
            return timing.CudaEventTimer(self.device)
        return timing.PerfCounterTimer()

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
                "nvml_mem_used_mb": timing.nvml_memory_used_mb(uuid=_device_uuid(self.device)),
            }
            del out
            result["device_mem"] = result["nvml_mem_used_mb"] or result["peak_mem_reserved_mb"]
            return result
        timing.reset_peak_rss()
        out = self.run(inputs)
        del out
        rss = timing.peak_rss_mb()
        return {"peak_rss_mb": rss, "device_mem": rss}

    def is_oom(self, exc: BaseException) -> bool:
        return is_oom(exc)

    def recover(self) -> None:
        """Free what a failed pass left behind so the next trial starts clean."""
        if self.device.type != "cuda":
            gc.collect()
            return
        torch.cuda.synchronize(self.device)
        # A full collection costs a few tenths of a second in a process that imported torch;
        # a largest-batch search fails a dozen trials. Collect only if tensors outlived the pass.
        if torch.cuda.memory_allocated(self.device) > self._resident_bytes:
            gc.collect()
        torch.cuda.empty_cache()

    def facts(self) -> dict[str, Any]:
        return {
            "input_shape": list(self.input_shape),
            "params": self.params,
            "flops_per_sample": self.flops_per_sample,
            "activation_elements_per_sample": self.activation_elements,
            **self.agreement,
            "weights": self.built.weights,
            "weights_tag": self.built.weights_tag,
            "threads": torch.get_num_threads(),
            "backend_version": torch.__version__,
            "device_name": device_name(self.device),
            **({"tf32": torch.backends.cudnn.allow_tf32, "cudnn_benchmark": torch.backends.cudnn.benchmark}
               if self.device.type == "cuda" else {}),
            "versions": torch_versions(),
            "runtime_fields": dict(self.int8_fields),
        }

    def measure_in_flight(self, batch_size: int, config: in_flight.WindowConfig) -> dict[str, Any]:
        """``config.in_flight`` Python threads calling the module, the intra-op threads split between them."""
        if self.device.type != "cpu":
            raise UserError("--in-flight on pytorch runs on CPU here; use --device cpu")
        return in_flight.pytorch_in_flight(self.module, self.config.in_flight, batch_size, self.input_shape,
                                           torch.get_num_threads(), config=config)

    def close(self) -> None:
        del self.module
        gc.collect()
        self.recover()


@contextlib.contextmanager
def leaf_calls(module: torch.nn.Module, after_call):
    """Call ``after_call(index)`` after every forward call of a leaf module, counting calls
    in the order they happen (a ReLU module called three times counts three times)."""
    counter = iter(range(1 << 62))
    leaves = [m for m in module.modules() if next(m.children(), None) is None]
    handles = [m.register_forward_hook(lambda *_: after_call(next(counter))) for m in leaves]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


class AllocatorWatch:
    """The CUDA caching allocator's view of one largest-batch trial."""

    def __init__(self, device: torch.device):
        self.device = device
        self._earlier = (0, 0)  # peaks folded in before ``note_call`` reset the allocator's

    def start(self) -> int:
        """Empty the cache, reset the peak; bytes the allocator could hold (reserved + free)."""
        torch.cuda.synchronize(self.device)
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats(self.device)
        self._earlier = (0, 0)
        free, _total = torch.cuda.mem_get_info(self.device)
        return torch.cuda.memory_reserved(self.device) + free

    def note_call(self) -> int:
        """The allocated peak since the previous call (or ``start``); the trial's peaks are kept."""
        reserved, allocated = self._current()
        self._earlier = (max(self._earlier[0], reserved), max(self._earlier[1], allocated))
        torch.cuda.reset_peak_memory_stats(self.device)
        return allocated

    def peaks(self) -> tuple[int, int]:
        """(reserved, allocated) peaks since ``start``."""
        reserved, allocated = self._current()
        return max(self._earlier[0], reserved), max(self._earlier[1], allocated)

    def _current(self) -> tuple[int, int]:
        return torch.cuda.max_memory_reserved(self.device), torch.cuda.max_memory_allocated(self.device)


def _device_uuid(device: torch.device) -> str | None:
    try:
        uuid = torch.cuda.get_device_properties(device).uuid
        return f"GPU-{uuid}"
    except Exception:  # noqa: BLE001 -- older torch: fall back to the index
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    from dlmark.measure.environment import cpu_model

    return cpu_model()


def load(model: str, config: RunConfig) -> PyTorchRunner:
    return PyTorchRunner(zoo.build(zoo.get(model)), config)
