"""How close a measurement is to the hardware's limit: peak table, MFU, roofline.

Peaks are the vendors' datasheet figures, **dense, without sparsity** (the
datasheets print the 2:4-sparsity figure, twice the dense one, first and mark
it with an asterisk; we halve it). Tensor-core figures are with FP32
accumulation where a datasheet distinguishes (GeForce parts), since that is
what PyTorch's fp16/bf16 matmuls and convolutions use. ``dlmark peak``
measures what a device actually reaches; a measured peak for the same device
name, found in the results folder, is preferred over this table.

FLOP convention: ``flops_per_sample`` comes from ``torch.utils.flop_counter``,
which counts a multiply-add as 2 FLOPs (a ``[m,k] @ [k,n]`` matmul is
``2*m*k*n``), the same convention as the datasheets' TFLOP/s. So

    achieved TFLOP/s = flops_per_sample * throughput / 1e12
    MFU              = achieved TFLOP/s / peak TFLOP/s (of the precision used)

This module imports no torch at load (``count_activation_elements`` imports it
when called, inside a worker).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Iterable


@dataclass(frozen=True)
class DevicePeak:
    """One device's dense peaks (TFLOP/s per precision) and memory bandwidth (GB/s)."""

    name: str
    tflops: dict[str, float]  # keys: fp32 (non-tensor-core), tf32, fp16, bf16, fp8
    bandwidth_gbs: float
    source: str  # the datasheet the figures come from


# Figures: NVIDIA datasheets (dense = the printed sparse tensor-core figure / 2).
PEAK_TABLE: tuple[DevicePeak, ...] = (
    DevicePeak("H200 NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5, "fp8": 1670.5}, 4800.0,
               "NVIDIA H200 datasheet (H200 NVL column)"),
    DevicePeak("H200 SXM", {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5, "fp8": 1979.0}, 4800.0,
               "NVIDIA H200 datasheet (H200 SXM column)"),
    DevicePeak("H100 NVL", {"fp32": 60.0, "tf32": 417.5, "fp16": 835.5, "bf16": 835.5, "fp8": 1670.5}, 3900.0,
               "NVIDIA H100 datasheet (H100 NVL column)"),
    DevicePeak("H100 PCIe", {"fp32": 51.0, "tf32": 378.0, "fp16": 756.0, "bf16": 756.0, "fp8": 1513.0}, 2000.0,
               "NVIDIA H100 datasheet (H100 PCIe column)"),
    DevicePeak("H100 SXM", {"fp32": 67.0, "tf32": 494.5, "fp16": 989.5, "bf16": 989.5, "fp8": 1979.0}, 3350.0,
               "NVIDIA H100 datasheet (H100 SXM column)"),
    DevicePeak("A100 80GB PCIe", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, 1935.0,
               "NVIDIA A100 datasheet (80GB PCIe column)"),
    DevicePeak("A100 80GB SXM", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, 2039.0,
               "NVIDIA A100 datasheet (80GB SXM column)"),
    DevicePeak("A100 40GB", {"fp32": 19.5, "tf32": 156.0, "fp16": 312.0, "bf16": 312.0}, 1555.0,
               "NVIDIA A100 datasheet (40GB PCIe and SXM columns)"),
    DevicePeak("L40S", {"fp32": 91.6, "tf32": 183.0, "fp16": 362.05, "bf16": 362.05, "fp8": 733.0}, 864.0,
               "NVIDIA L40S datasheet"),
    DevicePeak("L40", {"fp32": 90.5, "tf32": 90.5, "fp16": 181.05, "bf16": 181.05, "fp8": 362.0}, 864.0,
               "NVIDIA L40 datasheet"),
    DevicePeak("L4", {"fp32": 30.3, "tf32": 60.0, "fp16": 121.0, "bf16": 121.0, "fp8": 242.5}, 300.0,
               "NVIDIA L4 datasheet"),
    DevicePeak("A10", {"fp32": 31.2, "tf32": 62.5, "fp16": 125.0, "bf16": 125.0}, 600.0,
               "NVIDIA A10 datasheet"),
    # Turing and Volta have no TF32 or BF16 units: those precisions run at the fp32 rate.
    DevicePeak("T4", {"fp32": 8.1, "tf32": 8.1, "fp16": 65.0}, 320.0, "NVIDIA T4 datasheet"),
    DevicePeak("V100 PCIe", {"fp32": 14.0, "tf32": 14.0, "fp16": 112.0}, 900.0,
               "NVIDIA V100 datasheet (PCIe column)"),
    DevicePeak("V100 SXM2", {"fp32": 15.7, "tf32": 15.7, "fp16": 125.0}, 900.0,
               "NVIDIA V100 datasheet (SXM2 column)"),
    DevicePeak("RTX 4090", {"fp32": 82.6, "tf32": 82.6, "fp16": 165.2, "bf16": 165.2, "fp8": 330.3}, 1008.0,
               "NVIDIA Ada Lovelace architecture whitepaper, RTX 4090 (FP32 accumulate)"),
    DevicePeak("RTX 3090", {"fp32": 35.6, "tf32": 35.6, "fp16": 71.0, "bf16": 71.0}, 936.0,
               "NVIDIA Ampere GA102 whitepaper, RTX 3090 (FP32 accumulate)"),
)

# Name tokens -> table entry. First match wins, so the more specific rules
# come first ("H200 NVL" before "H200", "L40S" before "L40"). Device names as
# NVML and torch print them: "NVIDIA H200", "NVIDIA H100 80GB HBM3",
# "NVIDIA A100-SXM4-80GB", "NVIDIA A100 80GB PCIe", "Tesla T4",
# "Tesla V100-SXM2-16GB", "NVIDIA GeForce RTX 4090".
_RULES: tuple[tuple[frozenset[str], str], ...] = tuple((frozenset(tokens.split()), name) for tokens, name in (
    ("h200 nvl", "H200 NVL"), ("h200", "H200 SXM"),
    ("h100 nvl", "H100 NVL"), ("h100 pcie", "H100 PCIe"), ("h100", "H100 SXM"),
    ("a100 80gb pcie", "A100 80GB PCIe"), ("a100 80gb", "A100 80GB SXM"), ("a100", "A100 40GB"),
    ("l40s", "L40S"), ("l40", "L40"), ("l4", "L4"), ("a10", "A10"), ("t4", "T4"),
    ("v100 pcie", "V100 PCIe"), ("v100", "V100 SXM2"), ("4090", "RTX 4090"), ("3090", "RTX 3090"),
))
_BY_NAME = {p.name: p for p in PEAK_TABLE}


def _tokens(device_name: str) -> set[str]:
    tokens = set(re.split(r"[^a-z0-9]+", device_name.lower()))
    # "A100-SXM4-80GB" and "A100 80GB" both say 80gb; "H100 80GB HBM3" is the SXM part.
    return {t for t in tokens if t}


def lookup(device_name: str | None) -> DevicePeak | None:
    """The table entry for a device name as NVML or torch prints it, or None."""
    if not device_name:
        return None
    tokens = _tokens(device_name)
    for required, name in _RULES:
        if required <= tokens:
            return _BY_NAME[name]
    return None


#: Which peak a precision is held against: autocast runs its matmuls and
#: convolutions in the lower precision, pure fp32 on the non-tensor-core units.
PEAK_PRECISION = {"fp32": "fp32", "tf32": "tf32", "fp16": "fp16", "bf16": "bf16",
                  "amp-fp16": "fp16", "amp-bf16": "bf16", "fp8": "fp8"}

#: Bytes per element of weights and of activations, per precision. Autocast
#: keeps fp32 weights (and re-casts them every pass) but writes its
#: convolution and matmul outputs in the low precision.
_WEIGHT_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "amp-fp16": 4, "amp-bf16": 4, "fp8": 1}
_ACTIVATION_BYTES = {"fp32": 4, "tf32": 4, "fp16": 2, "bf16": 2, "amp-fp16": 2, "amp-bf16": 2, "fp8": 1}

MEASURED = "measured by dlmark peak"
TABLE = "table"


def achieved_tflops(flops_per_sample: float | None, throughput: float | None) -> float | None:
    """FLOPs of one sample times samples per second, in TFLOP/s."""
    if not flops_per_sample or not throughput:
        return None
    return flops_per_sample * throughput / 1e12


def mfu(achieved: float | None, peak: float | None) -> float | None:
    """Model FLOPs utilisation: achieved / peak (both TFLOP/s), or None."""
    if achieved is None or not peak:
        return None
    return achieved / peak


def newest_peaks(records: Iterable[dict[str, Any]]) -> dict[Any, dict[str, Any]]:
    """Device name -> its newest ok ``task == "peak"`` record (``dlmark peak``)."""
    peaks: dict[Any, dict[str, Any]] = {}
    for r in records:
        if r.get("task") == "peak" and r.get("status") == "ok":
            best = peaks.get(r.get("device"))
            if best is None or str(r.get("timestamp") or "") > str(best.get("timestamp") or ""):
                peaks[r.get("device")] = r
    return peaks


def peak_for(device_name: str | None, precision: str,
             measured: dict[str, Any] | None = None) -> tuple[float | None, float | None, str | None]:
    """(peak TFLOP/s for the precision, memory bandwidth GB/s, source) for a device.

    A measured peak (a ``dlmark peak`` record) wins over the datasheet table.
    """
    key = PEAK_PRECISION.get(precision, precision)
    if measured is not None and measured.get(f"peak_tflops_{key}"):
        return measured[f"peak_tflops_{key}"], measured.get("peak_bandwidth_gbs"), MEASURED
    entry = lookup(device_name)
    if entry is None or key not in entry.tflops:
        return None, (entry.bandwidth_gbs if entry else None), None
    return entry.tflops[key], entry.bandwidth_gbs, TABLE


def bytes_per_sample(params: int | None, activation_elements: float | None, batch_size: int | None,
                     precision: str) -> float | None:
    """Estimated DRAM bytes moved per sample by one forward pass.

    Weights are read once per batch (so their share per sample falls as the
    batch grows); every activation tensor an operator writes is written once
    and read once by its consumer (``activation_elements`` counts both, per
    sample). This is the traffic of an unfused eager pass with nothing kept in
    cache: an upper bound for compiled (fused) execution, whose intermediates
    partly stay on chip, and a lower bound where convolutions re-read inputs.
    """
    if not params or activation_elements is None or not batch_size:
        return None
    weight_b = _WEIGHT_BYTES.get(precision, 4)
    act_b = _ACTIVATION_BYTES.get(precision, 4)
    return params * weight_b / batch_size + activation_elements * act_b


def ridge_point(peak_tflops: float, bandwidth_gbs: float) -> float:
    """FLOP per byte where the roofline turns from bandwidth-bound to compute-bound."""
    return peak_tflops * 1e12 / (bandwidth_gbs * 1e9)


def roofline(flops_per_sample: float | None, bytes_sample: float | None, peak_tflops: float | None,
             bandwidth_gbs: float | None) -> dict[str, Any]:
    """Arithmetic intensity, ridge point, bound and the roofline's attainable TFLOP/s."""
    out: dict[str, Any] = {"arithmetic_intensity": None, "ridge_intensity": None, "bound": None,
                           "roofline_tflops": None}
    if not flops_per_sample or not bytes_sample:
        return out
    intensity = flops_per_sample / bytes_sample  # FLOP per byte
    out["arithmetic_intensity"] = intensity
    if peak_tflops and bandwidth_gbs:
        ridge = ridge_point(peak_tflops, bandwidth_gbs)
        out["ridge_intensity"] = ridge
        out["bound"] = "compute" if intensity >= ridge else "memory"
        out["roofline_tflops"] = min(peak_tflops, intensity * bandwidth_gbs * 1e9 / 1e12)
    return out


#: Figures derived from a throughput record's measured columns when results are read
#: (``derive``); records never store them, so a later ``dlmark peak`` record re-derives them all.
DERIVED_FIELDS = ("achieved_tflops", "mfu", "peak_tflops", "peak_source", "peak_bandwidth_gbs",
                  "bytes_per_sample_est", "arithmetic_intensity", "ridge_intensity", "bound",
                  "roofline_tflops", "roofline_fraction", "energy_j_per_sample")


def efficiency_fields(record: dict[str, Any], measured: dict[str, Any] | None = None) -> dict[str, Any]:
    """The derived fields of one throughput record (None where not computable).

    ``measured``: the ``dlmark peak`` record of the record's device, if the results hold one.
    """
    out: dict[str, Any] = dict.fromkeys(DERIVED_FIELDS)
    if record.get("task") != "throughput" or record.get("status") != "ok":
        return out
    samples = _timed_samples(record)
    if record.get("energy_j") is not None and samples:
        out["energy_j_per_sample"] = record["energy_j"] / samples
    precision = record.get("precision") or "fp32"
    achieved = achieved_tflops(record.get("flops_per_sample"), record.get("throughput"))
    out["achieved_tflops"] = achieved
    if measured is None and not str(record.get("device_spec") or "").startswith("cuda"):
        return out  # the table holds GPUs only; a CPU gets peaks from `dlmark peak --device cpu`
    peak, bandwidth, source = peak_for(record.get("device"), precision, measured)
    out.update(peak_tflops=peak, peak_source=source, peak_bandwidth_gbs=bandwidth, mfu=mfu(achieved, peak))
    moved = bytes_per_sample(record.get("params"), record.get("activation_elements_per_sample"),
                             record.get("batch_size"), precision)
    out["bytes_per_sample_est"] = moved
    out.update(roofline(record.get("flops_per_sample"), moved, peak, bandwidth))
    if achieved is not None and out["roofline_tflops"]:
        out["roofline_fraction"] = achieved / out["roofline_tflops"]
    return out


def _timed_samples(record: dict[str, Any]) -> int | None:
    blocks, iters, batch = record.get("num_blocks"), record.get("iters_per_block"), record.get("batch_size")
    if not all(isinstance(v, (int, float)) and v == v and v > 0 for v in (blocks, iters, batch)):
        return None
    return int(blocks) * int(iters) * int(batch)


def derive_records(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Every record with its derived fields computed now, against the peak records among them.

    Where a field cannot be computed from what was measured, a value an older record
    stored (schema 1 records stored them at write time) is kept.
    """
    peaks = newest_peaks(records)
    out = []
    for r in records:
        if r.get("task") == "throughput":
            derived = efficiency_fields(r, peaks.get(r.get("device")))
            r = {**r, **{k: v for k, v in derived.items() if v is not None or k not in r}}
        out.append(r)
    return out


def derive(frame):
    """``derive_records`` over a DataFrame (what ``load_results`` returns): the one place
    every reader (ls, plot, report, pareto) gets MFU, roofline and energy per sample from.

    Computed over whole columns, not record by record: the values (and dtypes) are
    those ``derive_records`` gives for the frame's records (``tests/analysis`` checks it).
    """
    import numpy as np
    import pandas as pd

    if frame.empty or "task" not in frame:
        return frame
    is_thr = (frame["task"] == "throughput").to_numpy(dtype=bool, na_value=False)
    if not is_thr.any():
        return frame
    is_peak = frame["task"] == "peak"
    peaks = newest_peaks(_without_nan(frame[is_peak].to_dict("records"))) if is_peak.any() else {}
    derived = _derived_columns(frame, is_thr, peaks)
    frame = frame.copy(deep=False)  # copy-on-write (pandas >= 3): the caller's frame is not changed
    index = frame.index
    for column in DERIVED_FIELDS:
        values, valid = derived[column]
        text = column in ("peak_source", "bound")
        if column not in frame and (text or values.dtype.kind == "f"):
            # Nothing stored to fall back on: the derived values where computable, else None in a
            # throughput row and NaN in any other (as pandas fills the column derive_records' rows lack).
            full = np.full(len(frame), np.nan, dtype=object if text else float)
            rows = np.flatnonzero(is_thr)
            if text:
                full[rows] = None
            full[rows[valid]] = values[valid]
            frame[column] = pd.Series(full, index=index, dtype=object) if text else full
            continue
        # A value an older record stored is kept where nothing can be derived (as derive_records does).
        if column in frame and frame[column].dtype == np.float64 and not text and values.dtype.kind == "f":
            full = frame[column].to_numpy(dtype=float, copy=True)  # floats stay floats, NaN stays NaN
            full[np.flatnonzero(is_thr)[valid]] = values[valid]
            frame[column] = full
            continue
        thr = np.empty(int(is_thr.sum()), dtype=object)
        if column in frame:
            stored = frame[column].to_numpy(dtype=object)[is_thr]
            thr[:] = [None if isinstance(v, float) and v != v else v for v in stored]
        else:
            thr[:] = None
        thr[valid] = values[valid]
        thr_values = pd.Series(thr, index=index[is_thr], dtype=object)
        if not text:
            thr_values = pd.to_numeric(thr_values, errors="coerce")
        full = frame[column].astype(object) if column in frame else pd.Series(None, index=index, dtype=object)
        full.loc[is_thr] = thr_values
        frame[column] = full if text else pd.to_numeric(full, errors="coerce")
    return frame


def _numbers(frame, column: str, rows: np.ndarray) -> np.ndarray:
    """A column's values in ``rows`` as floats, NaN where absent or not a number (the record's None)."""
    import numpy as np
    import pandas as pd

    if column not in frame:
        return np.full(int(rows.sum()), np.nan)
    series = frame[column]
    if pd.api.types.is_numeric_dtype(series.dtype):  # int, float and bool columns, numpy or nullable
        return series.to_numpy(dtype=float, na_value=np.nan)[rows]
    values = series.to_numpy(dtype=object)[rows]
    return np.fromiter((float(v) if isinstance(v, (int, float, np.number)) else np.nan for v in values),
                       dtype=float, count=len(values))


def _codes(frame, column: str, rows: np.ndarray) -> tuple[np.ndarray, list]:
    """(code per row in ``rows``, -1 where missing; the distinct values) of a column."""
    import numpy as np
    import pandas as pd

    if column not in frame:
        return np.full(int(rows.sum()), -1, dtype=np.int64), []
    codes, uniques = pd.factorize(frame[column].to_numpy(dtype=object)[rows])
    return codes.astype(np.int64), list(uniques)


def _exact(values: np.ndarray, floats: np.ndarray) -> np.ndarray:
    """Per-configuration values as floats when they all are (or None), else as the objects (an int stays an int)."""
    return floats if all(v is None or type(v) is float for v in values) else values


def _truthy(x: np.ndarray) -> np.ndarray:
    """Where a number the records hold is truthy in Python: present and not zero."""
    import numpy as np

    return ~np.isnan(x) & (x != 0)


def _derived_columns(frame, is_thr: np.ndarray, peaks: dict) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """Field -> (values, computable) over the throughput rows: ``efficiency_fields`` column-wise.

    Per-configuration work (the peak a device and precision are held against) is done
    once per distinct (device, precision, device kind), the arithmetic over arrays.
    """
    import numpy as np

    n = int(is_thr.sum())
    ok = np.zeros(n, dtype=bool)
    if "status" in frame:
        ok = (frame["status"] == "ok").to_numpy(dtype=bool, na_value=False)[is_thr]
    number = {c: _numbers(frame, c, is_thr) for c in ("flops_per_sample", "throughput", "params",
                                                       "activation_elements_per_sample", "batch_size", "energy_j",
                                                       "num_blocks", "iters_per_block")}
    flops, throughput, batch = number["flops_per_sample"], number["throughput"], number["batch_size"]

    # The per-configuration figures: (device, precision or fp32, cuda?) -> peak, bandwidth, source, bytes.
    device, devices = _codes(frame, "device", is_thr)
    precision, precisions = _codes(frame, "precision", is_thr)
    spec, specs = _codes(frame, "device_spec", is_thr)
    precision_names = [p or "fp32" for p in precisions] + ["fp32"]  # the last: a record without one
    device_names = list(devices) + [None]
    cuda_spec = np.array([str(s or "").startswith("cuda") for s in specs] + [False], dtype=bool)
    device = np.where(device < 0, len(devices), device)
    precision = np.where(precision < 0, len(precisions), precision)
    cuda = cuda_spec[np.where(spec < 0, len(specs), spec)]
    keys = (device * len(precision_names) + precision) * 2 + cuda
    combos, combo_of_row = np.unique(keys, return_inverse=True)
    combo_of_row = combo_of_row.reshape(-1)
    m = len(combos)
    go = np.zeros(m, dtype=bool)
    peak_obj, bandwidth_obj, source_obj = (np.full(m, None, dtype=object) for _ in range(3))
    weight_bytes, activation_bytes = np.full(m, np.nan), np.full(m, np.nan)
    for i, key in enumerate(combos.tolist()):
        name = device_names[key // 2 // len(precision_names)]
        prec = precision_names[key // 2 % len(precision_names)]
        measured = peaks.get(name)
        if measured is None and not key % 2:
            continue  # the table holds GPUs only; a CPU gets peaks from `dlmark peak --device cpu`
        go[i] = True
        peak_obj[i], bandwidth_obj[i], source_obj[i] = peak_for(name, prec, measured)
        weight_bytes[i], activation_bytes[i] = _WEIGHT_BYTES.get(prec, 4), _ACTIVATION_BYTES.get(prec, 4)
    as_float = np.vectorize(lambda v: float(v) if isinstance(v, (int, float)) else np.nan, otypes=[float])
    peak_f = as_float(peak_obj) if m else np.empty(0)
    bandwidth_f = as_float(bandwidth_obj) if m else np.empty(0)

    out: dict[str, tuple[np.ndarray, np.ndarray]] = {}

    def put(name, values, valid):
        out[name] = (values, valid)

    with np.errstate(all="ignore"):
        blocks, iters = number["num_blocks"], number["iters_per_block"]
        timed = (blocks > 0) & (iters > 0) & (batch > 0)  # NaN compares False
        samples = np.trunc(blocks) * np.trunc(iters) * np.trunc(batch)
        energy = ok & timed & ~np.isnan(number["energy_j"])
        put("energy_j_per_sample", number["energy_j"] / samples, energy)
        has_achieved = ok & _truthy(flops) & _truthy(throughput)
        achieved = flops * throughput / 1e12
        put("achieved_tflops", achieved, has_achieved)
        row_go = ok & go[combo_of_row]
        peak, bandwidth = peak_f[combo_of_row], bandwidth_f[combo_of_row]
        has_peak = row_go & np.array([v is not None for v in peak_obj], dtype=bool)[combo_of_row]
        put("peak_tflops", _exact(peak_obj, peak_f)[combo_of_row], has_peak)
        put("peak_source", source_obj[combo_of_row], row_go & np.array([v is not None for v in source_obj],
                                                                        dtype=bool)[combo_of_row])
        has_bandwidth = row_go & np.array([v is not None for v in bandwidth_obj], dtype=bool)[combo_of_row]
        put("peak_bandwidth_gbs", _exact(bandwidth_obj, bandwidth_f)[combo_of_row], has_bandwidth)
        put("mfu", achieved / peak, has_achieved & row_go & _truthy(peak))
        params, activations = number["params"], number["activation_elements_per_sample"]
        moved = params * weight_bytes[combo_of_row] / batch + activations * activation_bytes[combo_of_row]
        has_moved = row_go & _truthy(params) & ~np.isnan(activations) & _truthy(batch)
        put("bytes_per_sample_est", moved, has_moved)
        has_intensity = has_moved & _truthy(flops) & _truthy(moved)
        intensity = flops / moved
        put("arithmetic_intensity", intensity, has_intensity)
        has_ridge = has_intensity & _truthy(peak) & _truthy(bandwidth)
        ridge = peak * 1e12 / (bandwidth * 1e9)
        put("ridge_intensity", ridge, has_ridge)
        bound = np.where(intensity >= ridge, "compute", "memory").astype(object)
        put("bound", bound, has_ridge)
        attainable = intensity * bandwidth * 1e9 / 1e12
        # min(peak, attainable) as Python gives it: the peak itself (an int, if measured so) unless attainable is lower.
        lower = attainable < peak
        roof = np.where(lower, attainable, peak)
        if any(type(v) is not float for v in peak_obj if v is not None):
            roof_obj = peak_obj[combo_of_row].copy()
            roof_obj[lower] = attainable[lower]
            put("roofline_tflops", roof_obj, has_ridge)
        else:
            put("roofline_tflops", roof, has_ridge)
        put("roofline_fraction", achieved / roof, has_ridge & has_achieved & _truthy(roof))
    return out


def _without_nan(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    # A DataFrame fills absent fields with NaN, which is truthy; the record functions expect None.
    return [{k: (None if isinstance(v, float) and v != v else v) for k, v in r.items()} for r in rows]


#: Facts a worker measures at load (model traffic, output agreement) that records carry as they are.
FACT_FIELDS = ("activation_elements_per_sample", "agreement_max_abs", "agreement_max_rel", "agreement_top1",
               "agreement_ok", "agreement_method")


def load_facts(facts: dict[str, Any]) -> dict[str, Any]:
    """The load-time facts a record stores."""
    return {k: facts[k] for k in FACT_FIELDS if k in facts}
