"""OpenVINO on CPU: the zoo's PyTorch network converted with ``openvino.convert_model`` (IR cached on disk).

The compiled model's performance hint is ``compile_mode``: ``latency`` (the
default, one request uses every thread) or ``throughput`` (several streams
sharing the cores, which pays off only with concurrent requests; dlmark times
one request at a time, see docs/runtimes.md). The inference precision is set
explicitly: OpenVINO's CPU plugin would otherwise compute fp32 models in bf16
on CPUs that support it, and call that fp32.
"""
from __future__ import annotations

from typing import Any

import numpy as np
import openvino as ov

from dlmark.measure import timing
from dlmark.measure.environment import cpu_model, package_version
from ..errors import UserError
from . import RunConfig, cache, in_flight, int8, runtime_util, seeded_input, torch_source

HINTS = {None: "LATENCY", "latency": "LATENCY", "throughput": "THROUGHPUT"}
#: dlmark precision -> OpenVINO's INFERENCE_PRECISION_HINT
#: (int8: the IR quantized by NNCF; what stays in float computes in f32.)
PRECISIONS = {"fp32": "f32", "bf16": "bf16", "fp16": "f16", "int8": "f32"}


def convert(built) -> tuple[str, str]:
    """(IR .xml path, how it was made), converted once per model, weights and shape."""
    import torch

    key = torch_source.cache_key(built, openvino=ov.__version__)
    xml = cache.artifact("openvino", key, ".xml")
    if not xml.exists() or not xml.with_suffix(".bin").exists():
        model = ov.convert_model(built.module.float(), example_input=torch.zeros((2, *built.input_shape)),
                                 input=[ov.PartialShape([-1, *built.input_shape])])
        # save_model compresses weights to fp16 by default; fp32 must stay fp32. The .bin is
        # written first and the .xml last, so an .xml on disk means a complete pair.
        tmp = xml.with_name(f".{xml.stem}.tmp.xml")
        ov.save_model(model, str(tmp), compress_to_fp16=False)
        tmp.with_suffix(".bin").replace(xml.with_suffix(".bin"))
        tmp.replace(xml)
    return str(xml), "openvino.convert_model from the PyTorch module"


class OpenVinoRunner:
    backend = "openvino"

    def __init__(self, model: str, config: RunConfig):
        if config.device != "cpu":
            raise UserError("openvino runs on CPU here (its GPU plugin drives Intel GPUs); use --device cpu")
        if config.precision not in PRECISIONS:
            raise UserError(f"openvino runs {', '.join(PRECISIONS)}, not {config.precision}")
        if config.compile_mode not in HINTS:
            raise UserError(f"openvino performance hints are latency or throughput, not {config.compile_mode!r}")
        if config.layout != "nchw":
            raise UserError("openvino takes no --layout (it picks its own blocked layouts)")
        self.config = config
        built = torch_source.build(model)
        self.model_facts = torch_source.model_facts(built)
        self.input_shape = tuple(built.input_shape)
        self.xml, self.converted_by = convert(built)
        self.eval_source = torch_source.EvalSource.of(built)  # what the accuracy task needs of the torch model
        calibration = int8.calibration_for(config.calibration, built.spec, built.module) \
            if config.precision == "int8" else None
        del built
        self.quantized = None
        if config.precision == "int8":
            self.quantized = int8.quantize_openvino(self.xml, self.input_shape, calibration, model=model)
            self.xml = str(self.quantized.path)
        runtime_util.recover()
        self.threads = runtime_util.threads_for(config.threads)
        self.hint = HINTS[config.compile_mode]
        core = ov.Core()
        capabilities = core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
        wanted = PRECISIONS[config.precision]
        if wanted != "f32" and {"bf16": "BF16", "f16": "FP16"}[wanted] not in capabilities:
            raise UserError(f"this CPU has no {config.precision} support in OpenVINO (capabilities: {', '.join(capabilities)})")
        self.compiled = core.compile_model(self.xml, "CPU", {
            "PERFORMANCE_HINT": self.hint, "INFERENCE_PRECISION_HINT": wanted,
            "INFERENCE_NUM_THREADS": self.threads})
        self.request = self.compiled.create_infer_request()
        self.int8_fields = (int8.record_fields(self.quantized, int8.openvino_int8_account(self.compiled))
                            if self.quantized else {})

    # -- running
    def make_inputs(self, batch_size: int, seed: int | None = None) -> np.ndarray:
        return seeded_input((batch_size, *self.input_shape), 0 if seed is None else seed)

    def run(self, inputs: np.ndarray) -> np.ndarray:
        # share_inputs: no copy of the batch into OpenVINO's buffer; the output is a view
        # of the request's tensor, overwritten by the next call.
        self.request.infer({0: inputs}, share_inputs=True)
        return self.request.get_output_tensor(0).data

    def to_numpy(self, out: np.ndarray) -> np.ndarray:
        return np.array(out, copy=True)

    def synchronize(self) -> None:
        """Nothing to wait for: ``infer`` is synchronous."""

    def timer(self) -> timing.PerfCounterTimer:
        return timing.PerfCounterTimer()

    # -- memory and failure
    def memory(self, inputs: np.ndarray) -> dict[str, float | None]:
        return runtime_util.cpu_pass_memory(lambda: self.run(inputs))

    def is_oom(self, exc: BaseException) -> bool:
        return runtime_util.is_oom(exc)

    def recover(self) -> None:
        runtime_util.recover()

    def _property(self, name: str) -> Any:
        try:
            value = self.compiled.get_property(name)
            return value.to_string() if hasattr(value, "to_string") else str(value)  # ov.Type -> "f32"
        except Exception:  # noqa: BLE001 -- a property this version lacks is simply not recorded
            return None

    def facts(self) -> dict[str, Any]:
        return {
            **self.model_facts,
            "threads": self.threads,
            "backend_version": ov.__version__,
            "device_name": cpu_model(),
            "versions": {"openvino": ov.__version__, "torch": package_version("torch")},
            "runtime_fields": {
                "ov_performance_hint": self.hint,
                "ov_inference_precision": self._property("INFERENCE_PRECISION_HINT"),
                "ov_num_streams": self._property("NUM_STREAMS"),
                "ov_inference_threads": self._property("INFERENCE_NUM_THREADS"),
                "ov_converted_by": self.converted_by, "ov_ir_file": self.xml,
                **self.int8_fields,
            },
            "agreement_via": f"the same weights converted by {self.converted_by}"
                             + (f", quantized by {self.int8_fields['quantizer']}" if self.int8_fields else ""),
        }

    def measure_in_flight(self, batch_size: int, config: in_flight.WindowConfig) -> dict[str, Any]:
        """``config.in_flight`` requests (or OpenVINO's optimal number) through an AsyncInferQueue,
        on a model compiled for this batch under the runner's hint and precision."""
        out = in_flight.openvino_in_flight(self.xml, self.config.in_flight, batch_size, self.input_shape,
                                           hint=self.hint, threads=self.threads,
                                           precision=PRECISIONS[self.config.precision], config=config)
        return out

    def close(self) -> None:
        del self.request, self.compiled
        runtime_util.recover()


def load(model: str, config: RunConfig) -> OpenVinoRunner:
    return OpenVinoRunner(model, config)
