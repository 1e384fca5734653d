"""ONNX Runtime: the zoo's PyTorch network exported with ``torch.onnx`` (cached), run by an InferenceSession.

Providers: CPU always; on a CUDA device the TensorRT and CUDA providers when
this onnxruntime build has them (``onnxruntime-gpu``), inputs and outputs
bound on the device with IO binding so that no host copy is timed.
Session options (threads, graph optimisation level, execution mode) and the
providers actually in use go into the record.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import onnxruntime as ort

from dlmark.measure import timing
from dlmark.measure.environment import cpu_model, package_version
from ..errors import UserError
from . import RunConfig, cache, in_flight, int8, runtime_util, seeded_input, torch_source

#: int8: the fp32 export quantized statically by onnxruntime.quantization (QDQ; backends.int8), CPU only.
PRECISIONS = {"cpu": ("fp32", "int8"), "cuda": ("fp32", "fp16")}
GRAPH_OPTIMIZATION = "ORT_ENABLE_ALL"


def _providers(device: str) -> list[Any]:
    available = ort.get_available_providers()
    if not device.startswith("cuda"):
        return ["CPUExecutionProvider"]
    index = int(device.partition(":")[2] or 0)
    if "CUDAExecutionProvider" not in available:
        raise UserError("this onnxruntime has no CUDA provider; for GPUs install onnxruntime-gpu "
                        "(pip uninstall onnxruntime && pip install onnxruntime-gpu)")
    chosen: list[Any] = []
    if "TensorrtExecutionProvider" in available:
        chosen.append(("TensorrtExecutionProvider", {
            "device_id": index, "trt_engine_cache_enable": True,
            "trt_engine_cache_path": str(cache.folder("tensorrt"))}))
    chosen += [("CUDAExecutionProvider", {"device_id": index}), "CPUExecutionProvider"]
    return chosen


class OnnxRuntimeRunner:
    backend = "onnxruntime"

    def __init__(self, model: str, config: RunConfig):
        kind = "cuda" if config.device.startswith("cuda") else "cpu"
        if config.precision not in PRECISIONS[kind]:
            raise UserError(f"onnxruntime on {kind} runs {', '.join(PRECISIONS[kind])}, not {config.precision}")
        if config.layout != "nchw" or config.compile_mode:
            raise UserError("onnxruntime takes no --layout or --compile (it picks its own layouts and fusions)")
        self.config = config
        self.device = config.device
        built = torch_source.build(model)
        self.model_facts = torch_source.model_facts(built)
        self.input_shape = tuple(built.input_shape)
        self.path, self.exporter = torch_source.export_onnx(built, "fp32" if config.precision == "int8" else config.precision)
        self.eval_source = torch_source.EvalSource.of(built)  # what the accuracy task needs of the torch model
        calibration = int8.calibration_for(config.calibration, built.spec, built.module) \
            if config.precision == "int8" else None
        del built  # the torch module is not needed once exported; free it before measuring memory
        runtime_util.recover()
        self.int8_fields: dict[str, Any] = {}
        if config.precision == "int8":
            quantized = int8.quantize_onnx(self.path, self.input_shape, calibration, model=model)
            self.path = quantized.path
            self.int8_fields = int8.record_fields(quantized, int8.ort_int8_account(quantized.path, self.input_shape))

        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, GRAPH_OPTIMIZATION)
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        self.threads = runtime_util.threads_for(config.threads)
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1  # sequential execution runs one operator at a time
        self.session = ort.InferenceSession(str(self.path), options, providers=_providers(config.device))
        self.input_name = self.session.get_inputs()[0].name
        self.output_name = self.session.get_outputs()[0].name
        self.dtype = np.float16 if config.precision == "fp16" else np.float32
        self.on_gpu = kind == "cuda"
        self.device_index = int(config.device.partition(":")[2] or 0) if self.on_gpu else 0

    # -- running
    def make_inputs(self, batch_size: int, seed: int | None = None) -> Any:
        x = seeded_input((batch_size, *self.input_shape), 0 if seed is None else seed).astype(self.dtype)
        if not self.on_gpu:
            return x
        binding = self.session.io_binding()
        value = ort.OrtValue.ortvalue_from_numpy(x, "cuda", self.device_index)
        binding.bind_ortvalue_input(self.input_name, value)
        binding.bind_output(self.output_name, "cuda", self.device_index)
        binding._dlmark_input = value  # keep the device buffer alive as long as the binding
        return binding

    def run(self, inputs: Any) -> Any:
        if self.on_gpu:
            # Synchronous: ORT waits for the CUDA stream before returning.
            self.session.run_with_iobinding(inputs)
            return inputs.get_outputs()[0]
        return self.session.run([self.output_name], {self.input_name: inputs})[0]

    def to_numpy(self, out: Any) -> np.ndarray:
        return out.numpy() if hasattr(out, "numpy") else np.asarray(out)

    def synchronize(self) -> None:
        """Nothing to wait for: ``run`` returns when the outputs exist."""

    def timer(self) -> timing.PerfCounterTimer:
        return timing.PerfCounterTimer()

    # -- memory and failure
    def memory(self, inputs: Any) -> dict[str, float | None]:
        if self.on_gpu:
            self.run(inputs)
            # A worker is pinned by CUDA_VISIBLE_DEVICES=<GPU uuid>; NVML numbers GPUs its own way.
            visible = os.environ.get("CUDA_VISIBLE_DEVICES", "")
            used = timing.nvml_memory_used_mb(uuid=visible if visible.startswith("GPU-") else None,
                                               index=self.device_index)
            return {"nvml_mem_used_mb": used, "device_mem": used}
        return runtime_util.cpu_pass_memory(lambda: self.run(inputs))

    def is_oom(self, exc: BaseException) -> bool:
        return runtime_util.is_oom(exc)

    def recover(self) -> None:
        runtime_util.recover()

    def facts(self) -> dict[str, Any]:
        return {
            **self.model_facts,
            "threads": self.threads,
            "backend_version": ort.__version__,
            "device_name": cpu_model() if not self.on_gpu else None,
            "versions": {"onnxruntime": ort.__version__, "onnx": package_version("onnx"),
                         "onnxscript": package_version("onnxscript"), "torch": package_version("torch")},
            "runtime_fields": {
                "onnx_opset": torch_source.OPSET, "onnx_exporter": self.exporter, "onnx_file": str(self.path),
                "ort_providers": self.session.get_providers(),
                "ort_graph_optimization_level": GRAPH_OPTIMIZATION,
                "ort_execution_mode": "sequential",
                "ort_intra_op_threads": self.threads, "ort_inter_op_threads": 1,
                **self.int8_fields,
            },
            "agreement_via": f"the same weights exported to ONNX (torch.onnx, {self.exporter} exporter, "
                             f"opset {torch_source.OPSET})"
                             + (f", quantized by {self.int8_fields['quantizer']}" if self.int8_fields else ""),
        }

    def measure_in_flight(self, batch_size: int, config: in_flight.WindowConfig) -> dict[str, Any]:
        """``config.in_flight`` requests at once, each on its own session with its share of the threads."""
        if self.on_gpu:
            raise UserError("--in-flight on onnxruntime runs on CPU here; use --device cpu")
        out = in_flight.onnxruntime_in_flight(str(self.path), self.config.in_flight, batch_size, self.input_shape,
                                              self.threads, config=config, level=GRAPH_OPTIMIZATION)
        return out

    def close(self) -> None:
        del self.session
        runtime_util.recover()


def load(model: str, config: RunConfig) -> OnnxRuntimeRunner:
    return OnnxRuntimeRunner(model, config)
