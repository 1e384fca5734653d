"""int8 through each runtime's own post-training quantizer, and an account of where the int8 went.

ONNX Runtime: ``onnxruntime.quantization.quantize_static`` (QDQ). OpenVINO:
``nncf.quantize`` on the ``ov.Model``. PyTorch on CPU: PT2E (``torch.export``,
the X86 Inductor quantizer, ``torch.compile``). Each runtime's own quantizer is
the one its kernels are written for: a model quantized elsewhere often runs its
Q/DQ pairs in float. Quantized files are cached beside the ONNX exports
(``backends.cache``), keyed by the source file's content, the calibration set,
the scheme and the quantizer's version.

The account (``ort_int8_account``, ``openvino_int8_account``) reads the graph the
runtime really executes -- ORT's optimised graph with the kernels of one profiled
pass, OpenVINO's runtime model -- and counts operators computing on 8-bit data,
operators computing in float (the fallbacks), and the share of Conv/Gemm/MatMul
FLOPs each covers. Q/DQ conversions and pure data movement (transposes,
reshapes, layout reorders) are counted apart, in neither.
"""
from __future__ import annotations

import contextlib
import hashlib
import importlib
import json
import math
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import UserError
from . import cache, seeded_input

#: What to install when a quantizer is missing (the pip extras of pyproject.toml).
#: dlmark is installed from its checkout (it is not on PyPI), hence the ``-e '.[extra]'`` form.
INSTALL = {"onnxruntime": "pip install -e '.[onnx]'", "onnx": "pip install -e '.[onnx]'",
           "nncf": "pip install -e '.[openvino]'", "openvino": "pip install -e '.[openvino]'",
           "torchao": "pip install -e '.[pytorch-int8]'"}

#: Largest relative logit error (max |out - ref| / max |ref|, as ``precision_check.compare_logits``) accepted
#: for int8 against fp32. 8-bit activations keep about 2 significant digits per layer and the error
#: adds up with depth, so the bound is loose; a broken calibration (constant inputs, a scale of
#: zero) is off by order 1 and still fails it.
INT8_TOLERANCE = 0.25

#: Record fields an int8 runner adds (docs/int8.md).
FIELDS = ("quantizer", "quant_scheme", "calibration_source", "calibration_samples", "calibration_seed",
          "int8_ops", "float_ops", "quantize_ops", "int8_flops_share", "fallback_ops", "int8_account_method")
#: What an ImageNet calibration adds: which images (folder, first file, a digest of names and sizes), how chosen.
IMAGENET_FIELDS = ("calibration_imagenet_dir", "calibration_first_file", "calibration_files_sha256",
                   "calibration_selection", "calibration_transform")


def require(module: str) -> Any:
    """Import ``module`` or raise the one-line UserError naming what installs it."""
    try:
        return importlib.import_module(module)
    except ImportError:
        top = module.split(".")[0]
        raise UserError(f"--precision int8 needs {top}, which is not installed; install it with: "
                        f"{INSTALL.get(top, 'pip install ' + top)}") from None


# ------------------------------------------------------------------ calibration and scheme


@dataclass(frozen=True)
class Calibration:
    """The inputs the quantizer observes: ``samples`` samples in batches of ``batch_size``.

    ``source`` names them in the record and the cache key: ``generated`` (seeded
    N(0, 1), as every dlmark input), ``zeros`` (constant: a broken calibration the
    agreement check must catch), or any name given with ``arrays`` (float32
    N x C x H x W, preprocessed; or a function returning them, called once, when the
    quantizer first needs them). ``imagenet_calibration`` makes the ImageNet set:
    its ``files`` (name, bytes) key the cache, so a cached artefact decodes no image.
    """

    samples: int = 32
    seed: int = 1
    batch_size: int = 8
    source: str = "generated"
    arrays: Any = field(default=None, compare=False, repr=False)
    #: (file name, size in bytes) of each image, in order: what the key holds instead of the pixels.
    files: tuple[tuple[str, int], ...] = ()
    #: Record fields saying which images and how they were read (``imagenet_calibration``).
    details: Any = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.samples < 1 or self.batch_size < 1:
            raise UserError(f"calibration needs at least one sample and a batch of one, not {self.samples}/{self.batch_size}")
        if self.source not in ("generated", "zeros") and self.arrays is None:
            raise UserError(f"calibration source {self.source!r} needs its arrays (or use 'generated')")

    def data(self) -> Any:
        """The given arrays (decoded on first use when ``arrays`` is a function)."""
        if callable(self.arrays):
            object.__setattr__(self, "arrays", self.arrays())
        return self.arrays

    def batches(self, input_shape: tuple[int, ...]) -> Iterator[np.ndarray]:
        """The calibration batches, the same on every call and every runtime."""
        arrays = self.data() if self.arrays is not None else None
        if arrays is not None and (len(arrays) < self.samples or tuple(np.shape(arrays)[1:]) != tuple(input_shape)):
            raise UserError(f"calibration ({self.source}) has {len(arrays)} samples of shape "
                            f"{tuple(np.shape(arrays)[1:])}; the quantizer needs {self.samples} of {tuple(input_shape)}")
        done = 0
        while done < self.samples:
            n = min(self.batch_size, self.samples - done)
            if arrays is not None:
                yield np.ascontiguousarray(np.asarray(arrays[done:done + n], dtype=np.float32))
            elif self.source == "zeros":
                yield np.zeros((n, *input_shape), np.float32)
            else:
                # One seed per batch: the same sample set whatever the batch size.
                yield seeded_input((n, *input_shape), self.seed * 1_000_003 + done)
            done += n

    def key(self) -> dict[str, Any]:
        key: dict[str, Any] = {"source": self.source, "samples": self.samples}
        if self.files:
            # Names and sizes of the chosen images, and how they are turned into tensors: another
            # subset, a changed file or another transform is another artefact.
            key["files_sha256"] = files_digest(self.files)
            key["transform"] = (self.details or {}).get("calibration_transform")
        elif self.arrays is not None:
            data = np.ascontiguousarray(np.asarray(self.data()[:self.samples], dtype=np.float32))
            key["data_sha256"] = hashlib.sha256(data.tobytes()).hexdigest()[:16]
        elif self.source == "generated":
            key["seed"] = self.seed
        return key

    def fields(self) -> dict[str, Any]:
        seeded = self.source == "generated" and self.arrays is None or bool(self.files)
        return {"calibration_source": self.source, "calibration_samples": self.samples,
                "calibration_seed": self.seed if seeded else None, **(self.details or {})}


def files_digest(files: tuple[tuple[str, int], ...] | list) -> str:
    """SHA-256 (16 hex digits) of the (name, bytes) list, as the record's ``calibration_files_sha256``."""
    return hashlib.sha256(json.dumps([[str(n), int(b)] for n, b in files]).encode()).hexdigest()[:16]


def calibration_salt(seed: int) -> str:
    """The ``balanced_subset`` salt of calibration seed ``seed``: not the accuracy task's order,
    so a calibration subset is not the first images an ``--limit`` evaluation reads."""
    return f"int8-calibration-{seed}:"


def imagenet_calibration(chosen: Any, spec: Any, module: Any = None, batch_size: int = 8) -> Calibration:
    """``chosen.samples`` ImageNet validation images from ``chosen.imagenet``: a class-balanced subset
    (``datasets.balanced_subset`` salted by ``chosen.seed``), decoded and transformed with the model's
    own evaluation transform (``models.datasets.transforms.eval_transform``), as the accuracy task reads them."""
    import os

    from dlmark.models.datasets import balanced_subset, open_imagenet
    from dlmark.models.datasets.transforms import eval_transform

    dataset = open_imagenet(chosen.imagenet)
    if chosen.samples > len(dataset):
        raise UserError(f"int8 calibration on {chosen.samples} images, but {dataset.root} holds {len(dataset)}; "
                        f"give a smaller --calibration-samples")
    # In file-name order: the same images in another layout (class folders, flat) are the same set.
    samples = sorted(balanced_subset(dataset.samples, chosen.samples, salt=calibration_salt(chosen.seed)),
                     key=lambda s: Path(s.path).name)
    files = tuple((Path(s.path).name, os.path.getsize(s.path)) for s in samples)
    transform, described = eval_transform(spec, module)

    def decode() -> np.ndarray:
        from dlmark.models.datasets.images import ImageFiles

        images = ImageFiles(samples, transform)
        tensors = []
        for i in range(len(images)):
            tensor, _label, error = images[i]
            if error:
                raise UserError(error)  # a file that cannot be read stops the quantization, named
            tensors.append(tensor.numpy())
        return np.stack(tensors).astype(np.float32)

    details = {
        "calibration_imagenet_dir": str(dataset.root), "calibration_first_file": files[0][0],
        "calibration_files_sha256": files_digest(files),
        "calibration_selection": f"class-balanced subset (datasets.balanced_subset, salt "
                                 f"{calibration_salt(chosen.seed)!r}) of the {len(dataset)} images, "
                                 f"{len({s.label for s in samples})} classes, in file-name order",
        "calibration_transform": described,
    }
    return Calibration(samples=chosen.samples, seed=chosen.seed, batch_size=batch_size, source="imagenet",
                       arrays=decode, files=files, details=details)


def calibration_for(chosen: Any, spec: Any = None, module: Any = None) -> Calibration:
    """The Calibration a runner quantizes with: ``chosen`` is the run's ``backends.CalibrationSet``
    (None: the default generated set)."""
    if chosen is None:
        return Calibration()
    if chosen.source == "imagenet":
        return imagenet_calibration(chosen, spec, module)
    if chosen.source != "generated":
        raise UserError(f"unknown calibration source {chosen.source!r}; use generated or imagenet")
    return Calibration(samples=chosen.samples, seed=chosen.seed)


@dataclass(frozen=True)
class Scheme:
    """How weights and activations are mapped to 8 bits (what the record's ``quant_scheme`` says)."""

    per_channel: bool = True
    symmetric_weights: bool = True
    symmetric_activations: bool = False
    #: ORT only: names of nodes kept in float (e.g. the first and last layer).
    exclude: tuple[str, ...] = ()

    def describe(self) -> str:
        weights = f"{'per-channel' if self.per_channel else 'per-tensor'} " \
                  f"{'symmetric' if self.symmetric_weights else 'asymmetric'} int8 weights"
        acts = f"per-tensor {'symmetric int8' if self.symmetric_activations else 'asymmetric uint8'} activations"
        kept = f", {len(self.exclude)} nodes kept in float" if self.exclude else ""
        return f"{weights}, {acts}{kept}"


@dataclass
class Quantized:
    """A quantized artefact and the record fields describing how it was made."""

    path: Path
    fields: dict[str, Any]
    cached: bool


def record_fields(quantized: Quantized, account: dict[str, Any]) -> dict[str, Any]:
    """The record's int8 fields: how it was quantized and where the int8 went (per-operator rows left out)."""
    return {**quantized.fields, **{k: v for k, v in account.items() if not k.startswith("_")}}


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:16]


# ------------------------------------------------------------------ ONNX Runtime


def quantize_onnx(fp32_path: str | Path, input_shape: tuple[int, ...], calibration: Calibration = Calibration(),
                  scheme: Scheme = Scheme(), model: str | None = None, pre_process: bool = True) -> Quantized:
    """QDQ static quantization of an fp32 ONNX file, cached by everything that changes the result.

    ``input_shape`` is one sample's shape; the model's single input takes a batch of them.
    """
    ort = require("onnxruntime")
    quantization = require("onnxruntime.quantization")
    q = quantization
    key = {"model": model or Path(fp32_path).stem, "source_sha256": file_digest(fp32_path),
           "input_shape": list(input_shape), "calibration": calibration.key(), "scheme": asdict(scheme),
           "pre_process": pre_process, "onnxruntime": ort.__version__, "format": "QDQ", "method": "MinMax"}
    path = cache.artifact("onnx-int8", key, ".onnx")
    quantizer = f"onnxruntime.quantization {ort.__version__} QDQ static (MinMax calibration)"
    fields = {"quantizer": quantizer, "quant_scheme": scheme.describe(), **calibration.fields(),
              "quant_file": str(path), "quant_pre_process": pre_process}
    meta = path.with_suffix(".json")
    if path.exists() and meta.exists():
        return Quantized(path, {**fields, **json.loads(meta.read_text()).get("fields", {})}, True)

    import onnx

    input_name = onnx.load(str(fp32_path), load_external_data=False).graph.input[0].name

    class Reader(q.CalibrationDataReader):
        def __init__(self) -> None:
            self._batches = calibration.batches(tuple(input_shape))

        def get_next(self) -> dict[str, np.ndarray] | None:
            batch = next(self._batches, None)
            return None if batch is None else {input_name: batch}

    extra = {"ActivationSymmetric": scheme.symmetric_activations, "WeightSymmetric": scheme.symmetric_weights}
    pre_note = {}

    def write(tmp: Path) -> None:
        source = str(fp32_path)
        with tempfile.TemporaryDirectory(prefix="dlmark-quant-") as work:
            if pre_process:
                # Shape inference and ORT's basic fusions (Conv+BatchNorm ...) before the quantizer
                # looks at the graph: more of it is then quantizable, and the scales are those of
                # the fused operators.
                try:
                    from onnxruntime.quantization.shape_inference import quant_pre_process

                    prepared = str(Path(work) / "prepared.onnx")
                    quant_pre_process(source, prepared, skip_symbolic_shape=False)
                    source = prepared
                    pre_note["quant_pre_process"] = True
                except Exception as exc:  # noqa: BLE001 -- pre-processing is an aid; its failure is recorded
                    pre_note["quant_pre_process"] = f"skipped: {type(exc).__name__}: {str(exc)[:200]}"
            q.quantize_static(
                source, str(tmp), Reader(), quant_format=q.QuantFormat.QDQ, per_channel=scheme.per_channel,
                activation_type=q.QuantType.QInt8 if scheme.symmetric_activations else q.QuantType.QUInt8,
                weight_type=q.QuantType.QInt8, calibrate_method=q.CalibrationMethod.MinMax,
                nodes_to_exclude=list(scheme.exclude), extra_options=extra)

    with _root_logger_quiet():
        cache.build_atomically(path, write)
    meta.write_text(json.dumps({**key, "fields": pre_note}, default=str))
    return Quantized(path, {**fields, **pre_note}, False)


@contextlib.contextmanager
def _root_logger_quiet() -> Iterator[None]:
    # The ORT quantizer logs "please consider pre-processing" on the root logger at every call.
    import logging

    root = logging.getLogger()
    before = root.level
    root.setLevel(max(before, logging.ERROR))
    try:
        yield
    finally:
        root.setLevel(before)


#: ORT kernels computing on 8-bit data (contrib kernels included).
ORT_INT8_KERNELS = {
    "QLinearConv", "QLinearMatMul", "ConvInteger", "MatMulInteger", "MatMulIntegerToFloat", "DynamicQuantizeMatMul",
    "QGemm", "QLinearAdd", "QLinearMul", "QLinearGlobalAveragePool", "QLinearAveragePool", "QLinearConcat",
    "QLinearLeakyRelu", "QLinearSigmoid", "QLinearSoftmax", "QLinearReduceMean", "QLinearWhere", "QAttention",
    "QEmbedLayerNormalization", "DynamicQuantizeLSTM", "QLinearConvTranspose"}
ORT_CONVERSIONS = {"QuantizeLinear", "DequantizeLinear", "DynamicQuantizeLinear"}
#: Operators that move or reinterpret data and compute nothing.
DATA_MOVEMENT = {"Transpose", "Reshape", "Flatten", "Squeeze", "Unsqueeze", "Identity", "Shape", "ReorderInput",
                 "ReorderOutput", "Expand", "Slice", "Gather", "Concat", "Split", "Constant", "Cast", "Size"}
EIGHT_BIT = {"uint8", "int8"}
#: The operators whose FLOPs make up the model's: convolutions and matrix products.
CONV_OPS = {"Conv", "QLinearConv", "ConvInteger", "FusedConv", "NhwcFusedConv", "ConvTranspose", "QLinearConvTranspose"}
MATMUL_OPS = {"Gemm", "QGemm", "MatMul", "QLinearMatMul", "MatMulInteger", "MatMulIntegerToFloat", "FusedGemm",
              "FusedMatMul", "DynamicQuantizeMatMul"}
#: Input index of the weight tensor of conv-like kernels.
_WEIGHT_INPUT = {"QLinearConv": 3, "QLinearConvTranspose": 3}


def _prod(values: Any) -> int:
    return int(math.prod(int(v) for v in values))


def _conv_flops(out_shape: list[int], weight_shape: list[int]) -> int:
    """2 x output elements x (input channels per group x kernel area)."""
    return 2 * _prod(out_shape) * _prod(weight_shape[1:])


def _matmul_flops(a_shape: list[int], out_shape: list[int], trans_a: bool) -> int:
    k = a_shape[-2] if trans_a else a_shape[-1]
    return 2 * _prod(out_shape) * int(k)


def summarize_account(ops: list[dict[str, Any]], method: str) -> dict[str, Any]:
    """Record fields from per-operator rows {name, type, kind: int8|float|conversion|movement, flops}."""
    int8 = [o for o in ops if o["kind"] == "int8"]
    flt = [o for o in ops if o["kind"] == "float"]
    total = sum(o["flops"] for o in int8 + flt)
    int8_flops = sum(o["flops"] for o in int8)
    return {
        "int8_ops": len(int8), "float_ops": len(flt),
        "quantize_ops": sum(o["kind"] == "conversion" for o in ops),
        "int8_flops_share": int8_flops / total if total else None,
        "int8_flops_per_sample": int8_flops, "float_flops_per_sample": total - int8_flops,
        # Fallbacks that carry FLOPs first: those are why an int8 model is not faster.
        "fallback_ops": [f"{o['type']} {o['name']}" for o in sorted(flt, key=lambda o: -o["flops"])],
        "int8_account_method": method,
    }


def ort_int8_account(model_path: str | Path, input_shape: tuple[int, ...],
                     level: str = "ORT_ENABLE_EXTENDED") -> dict[str, Any]:
    """Where the int8 went in ONNX Runtime: the optimised graph at ``level`` and one profiled pass at batch 1.

    The saved optimised graph gives the operators and their weights; ORT's profiler
    gives the kernels that really ran with their input and output types and shapes.
    ORT decides what runs in int8 at the extended level (the QDQ fusions into
    QLinearConv, QGemm ...); ``ORT_ENABLE_ALL``, which the runner uses, only changes
    layouts on top (NHWC for int8 convolutions, blocked NCHWc for float ones), with the
    same operators in int8 and in float, but the NCHWc blocks pad channels to the
    vector width, which would count as FLOPs: so the account reads the extended graph.
    """
    ort = require("onnxruntime")
    import onnx
    from onnx import numpy_helper

    with tempfile.TemporaryDirectory(prefix="dlmark-ort-account-") as work:
        options = ort.SessionOptions()
        options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
        options.optimized_model_filepath = str(Path(work) / "optimized.onnx")
        options.intra_op_num_threads = 1
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(work) / "profile")
        options.log_severity_level = 3  # the "hardware specific optimizations" warning of saving at ENABLE_ALL
        session = ort.InferenceSession(str(model_path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        session.run(None, {name: np.zeros((1, *input_shape), np.float32)})
        profile = json.loads(Path(session.end_profiling()).read_text())
        optimized = onnx.load(options.optimized_model_filepath)
    weights = {t.name: list(t.dims) for t in optimized.graph.initializer}
    weights.update({n.output[0]: list(numpy_helper.to_array(a.t).shape) for n in optimized.graph.node
                    if n.op_type == "Constant" for a in n.attribute if a.name == "value"})
    nodes = {n.name: n for n in optimized.graph.node}
    ran = {}
    for event in profile:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            ran[event["name"][: -len("_kernel_time")]] = event["args"]

    ops = []
    for node in optimized.graph.node:
        args = ran.get(node.name)
        inputs = [next(iter(t.items())) for t in (args or {}).get("input_type_shape", [])]
        outputs = [next(iter(t.items())) for t in (args or {}).get("output_type_shape", [])]
        data_type = inputs[0][0] if inputs else None
        if node.op_type in ORT_CONVERSIONS:
            kind = "conversion"
        elif node.op_type in DATA_MOVEMENT:
            kind = "movement"
        elif node.op_type in ORT_INT8_KERNELS or data_type in EIGHT_BIT:
            kind = "int8"
        else:
            kind = "float"
        flops = 0
        out_shape = outputs[0][1] if outputs else None
        if out_shape is not None and node.op_type in CONV_OPS:
            w = weights.get(node.input[_WEIGHT_INPUT.get(node.op_type, 1)])
            if w and "Transpose" in node.op_type and inputs:
                # Weights [in, out/groups, kh, kw]: every input element feeds out/groups x kernel area.
                flops = 2 * _prod(inputs[0][1]) * _prod(w[1:])
            elif w:
                flops = _conv_flops(out_shape, w)
        elif out_shape is not None and node.op_type in MATMUL_OPS and inputs:
            trans_a = any(a.name == "transA" and a.i for a in node.attribute)
            flops = _matmul_flops(inputs[0][1], out_shape, trans_a)
        ops.append({"name": node.name, "type": node.op_type, "kind": kind, "flops": flops,
                    "ran": args is not None, "dtype": data_type})
    unknown = [n for n in nodes if n not in ran]
    method = (f"onnxruntime {ort.__version__} graph at {level} (optimized_model_filepath) and the kernels of one "
              f"profiled pass at batch 1; FLOPs of Conv/Gemm/MatMul from their shapes"
              + (f"; {len(unknown)} operators had no profile event" if unknown else ""))
    return {**summarize_account(ops, method), "_ops": ops}


# ------------------------------------------------------------------ OpenVINO through NNCF


def quantize_openvino(xml_path: str | Path, input_shape: tuple[int, ...], calibration: Calibration = Calibration(),
                      model: str | None = None, preset: str = "performance") -> Quantized:
    """NNCF post-training quantization of an OpenVINO IR, saved as IR and cached.

    ``preset``: NNCF's ``performance`` (symmetric weights and activations) or
    ``mixed`` (asymmetric activations); weights are per-channel either way.
    """
    ov = require("openvino")
    nncf = require("nncf")
    xml_path = Path(xml_path)
    key = {"model": model or xml_path.stem, "source_sha256": file_digest(xml_path.with_suffix(".bin")),
           "source_xml_sha256": file_digest(xml_path), "input_shape": list(input_shape),
           "calibration": calibration.key(), "preset": preset, "nncf": nncf.__version__, "openvino": ov.__version__}
    out = cache.artifact("openvino-int8", key, ".xml")
    acts = "symmetric int8" if preset == "performance" else "asymmetric uint8"
    fields = {"quantizer": f"nncf {nncf.__version__} post-training quantization (preset {preset}, "
                           f"openvino {ov.__version__.split('-')[0]})",
              "quant_scheme": f"per-channel symmetric int8 weights, per-tensor {acts} activations",
              **calibration.fields(), "quant_file": str(out)}
    if out.exists() and out.with_suffix(".bin").exists():
        return Quantized(out, fields, True)
    core = ov.Core()
    source = core.read_model(str(xml_path))
    batches = list(calibration.batches(tuple(input_shape)))
    batch_axis = source.inputs[0].get_partial_shape()[0]
    if batch_axis.is_static:
        # A static-batch IR takes calibration samples in its own batch size.
        size = batch_axis.get_length()
        stacked = np.concatenate(batches)
        batches = [stacked[i:i + size] for i in range(0, len(stacked) - size + 1, size)]
    _quiet_nncf()
    quantized = nncf.quantize(
        source, nncf.Dataset(batches), subset_size=len(batches),  # NNCF counts dataset items, i.e. batches
        preset=nncf.QuantizationPreset.PERFORMANCE if preset == "performance" else nncf.QuantizationPreset.MIXED)
    # The .bin first and the .xml last (as backends.openvino): an .xml on disk means a complete pair.
    tmp = out.with_name(f".{out.stem}.tmp.xml")
    ov.save_model(quantized, str(tmp), compress_to_fp16=False)
    tmp.with_suffix(".bin").replace(out.with_suffix(".bin"))
    tmp.replace(out)
    return Quantized(out, fields, False)


def _quiet_nncf() -> None:
    import logging

    logging.getLogger("nncf").setLevel(logging.ERROR)


OV_NOT_OPERATORS = {"Input", "Parameter", "Output", "Result", "Const", "Constant"}
OV_DATA_MOVEMENT = {"Reorder", "Reshape", "Transpose", "Squeeze", "Unsqueeze", "Concatenation", "Split", "Gather",
                    "StridedSlice", "ShapeOf", "Broadcast"}


def _per_sample_shape(shape: Any, batch_axis: bool = True) -> list[int] | None:
    """A runtime-model shape with the batch axis (dynamic or not) dropped; None if another axis is dynamic."""
    dims = list(shape)[1:] if batch_axis else list(shape)
    if not all(d.is_static for d in dims):
        return None
    return [d.get_length() for d in dims]


def _ov_is_conversion(op: Any, layer: str, precision: str, info: Any) -> bool:
    """A fused subgraph that quantizes (float in, 8-bit out) or prepares weights (only constants in)."""
    if layer != "Subgraph":
        return False
    out = info["outputPrecisions"].astype(str).lower() if "outputPrecisions" in info else ""
    if out in ("u8", "i8") and precision not in ("u8", "i8"):
        return True
    sources = [op.input(i).get_source_output().get_node().get_rt_info() for i in range(op.get_input_size())]
    return bool(sources) and all("layerType" in s and s["layerType"].astype(str) in ("Const", "Convert")
                                 for s in sources)


def openvino_int8_account(compiled: Any) -> dict[str, Any]:
    """Where the int8 went in OpenVINO: the compiled model's runtime model, operator by operator.

    Each executed operator's rt_info carries its ``layerType`` and ``runtimePrecision``
    (the precision its kernel computes in); FLOPs of Convolution, FullyConnected and
    MatMul come from the runtime model's shapes (per sample: the batch axis is divided out).
    """
    import openvino as ov

    ops = []
    for op in compiled.get_runtime_model().get_ordered_ops():
        info = op.get_rt_info()
        layer = info["layerType"].astype(str) if "layerType" in info else op.get_type_name()
        precision = info["runtimePrecision"].astype(str).lower() if "runtimePrecision" in info else ""
        if layer in OV_NOT_OPERATORS:
            continue
        if layer in OV_DATA_MOVEMENT:
            kind = "movement"
        elif layer in ("FakeQuantize", "Convert") or _ov_is_conversion(op, layer, precision, info):
            kind = "conversion"
        elif precision in ("u8", "i8"):
            kind = "int8"
        else:
            kind = "float"
        flops = 0
        if layer in ("Convolution", "FullyConnected", "MatMul") and op.get_input_size() > 1:
            out = _per_sample_shape(op.get_output_partial_shape(0))
            if layer == "Convolution":
                w = _per_sample_shape(op.get_input_partial_shape(1), batch_axis=False)
                # Grouped weights are [groups, out/groups, in/groups, kh, kw]: the work per output
                # element is in/groups x kernel area either way.
                per_output = (_prod(w[2:]) if out is not None and len(w) == len(out) + 2 else _prod(w[1:])) if w else 0
            else:
                a = _per_sample_shape(op.get_input_partial_shape(0))
                per_output = a[-1] if a else 0
            flops = 2 * _prod(out) * per_output if out is not None else 0
        ops.append({"name": op.get_friendly_name(), "type": layer, "kind": kind, "flops": flops,
                    "precision": precision})
    method = (f"openvino {ov.__version__.split('-')[0]} runtime model of the compiled model: runtimePrecision "
              f"per operator; FLOPs of Convolution/FullyConnected/MatMul from its shapes")
    return {**summarize_account(ops, method), "_ops": ops}


# ------------------------------------------------------------------ PyTorch PT2E


def pt2e_api() -> tuple[Callable, Callable, Any, str]:
    """(prepare_pt2e, convert_pt2e, X86InductorQuantizer class, where they came from).

    torch 2.14 no longer ships ``torch.ao.quantization.quantize_pt2e``; the flow lives in torchao.
    """
    for prefix in ("torchao.quantization.pt2e", "torch.ao.quantization"):
        try:
            flow = importlib.import_module(f"{prefix}.quantize_pt2e")
            x86 = importlib.import_module(f"{prefix}.quantizer.x86_inductor_quantizer")
            return flow.prepare_pt2e, flow.convert_pt2e, x86, prefix
        except ImportError:
            continue
    raise UserError("--precision int8 on pytorch needs the PT2E quantizer, which this torch no longer ships; "
                    f"install it with: {INSTALL['torchao']}")


def _one_partition_per_call(graph_module: Any) -> None:
    """Give each call of a reused single-op module (a ReLU) its own name in the nodes' module stacks.

    torchvision's ResNets call one ReLU module two or three times per block. The quantizer groups
    nodes into partitions by the module they came from, so those calls form one partition with
    several outputs, which its conv-add-ReLU fusion refuses ("Input partition has more than one
    output node"; torchao issue 4478). A module whose every node is the same op made one node per
    call: each node is renamed apart. Only the partitioning reads these names.
    """
    by_module: dict[str, list[Any]] = {}
    for node in graph_module.graph.nodes:
        stack = node.meta.get("nn_module_stack") if node.op == "call_function" else None
        if stack:
            by_module.setdefault(list(stack.values())[-1][0], []).append(node)
    for nodes in by_module.values():
        if len(nodes) < 2 or len({node.target for node in nodes}) > 1:
            continue
        for call, node in enumerate(nodes):
            stack = dict(node.meta["nn_module_stack"])
            key, (fqn, kind) = list(stack.items())[-1]
            stack[key] = (f"{fqn}@call{call}", kind)
            node.meta["nn_module_stack"] = stack
            source = node.meta.get("source_fn_stack")
            if source:
                node.meta["source_fn_stack"] = [*source[:-1], (f"{source[-1][0]}@call{call}", source[-1][1])]


def quantize_pytorch(module: Any, input_shape: tuple[int, ...], calibration: Calibration = Calibration(),
                     compile_model: bool = True) -> tuple[Any, dict[str, Any]]:
    """PT2E static quantization for x86 CPUs: export, prepare, calibrate, convert, then ``torch.compile``.

    Not cached: an exported program is rebuilt cheaply next to the compile it feeds.
    """
    import torch

    prepare_pt2e, convert_pt2e, x86, where = pt2e_api()
    module = module.eval()
    example = (torch.zeros((2, *input_shape)),)
    batch = torch.export.Dim("batch", min=1)
    exported = torch.export.export(module, example, dynamic_shapes=({0: batch},)).module()
    _one_partition_per_call(exported)
    quantizer = x86.X86InductorQuantizer()
    quantizer.set_global(x86.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    with torch.no_grad():
        for b in calibration.batches(tuple(input_shape)):
            prepared(torch.from_numpy(b))
    converted = convert_pt2e(prepared)
    version = importlib.import_module(where.split(".")[0]).__version__
    fields = {"quantizer": f"PT2E {where} {version}, X86InductorQuantizer (default static config)"
                           + (", torch.compile (inductor)" if compile_model else ", eager (not compiled)"),
              "quant_scheme": "per-channel symmetric int8 weights, per-tensor asymmetric uint8 activations",
              **calibration.fields()}
    if compile_model:
        converted = torch.compile(converted)
    return converted, fields
