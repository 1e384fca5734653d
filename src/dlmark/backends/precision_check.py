"""Output agreement of a reduced precision with fp32, on a fixed input, in the same worker.

The fp32 reference is computed on the device before the weights are cast,
so no second copy of the model is kept; the candidate is the cast model run
eagerly (before any compilation) on the same seeded input. Field names are
shared with the other runtimes' agreement checks (docs/records.md).
"""
from __future__ import annotations

from typing import Any

from .int8 import INT8_TOLERANCE

#: Inputs of the check: a seeded N(0, 1) batch of this many samples.
AGREEMENT_BATCH = 8
AGREEMENT_SEED = 0

#: Largest relative logit error (max |out - ref| / max |ref|) accepted per precision.
#: TF32 keeps 10 mantissa bits, fp16 10 and bf16 7: the error of a deep network's
#: logits grows with depth, so these are loose bounds that a wrong computation
#: (a wrong layout, an overflow, garbage weights) still exceeds by far.
#: int8's bound is explained beside it (backends.int8).
TOLERANCE = {"tf32": 0.01, "fp16": 0.05, "amp-fp16": 0.05, "bf16": 0.1, "amp-bf16": 0.1, "int8": INT8_TOLERANCE}


def compare_logits(reference: Any, output: Any, tolerance: float, method: str) -> dict[str, Any]:
    """``agreement_*`` record fields for two logit arrays (batch x classes), any array-likes.

    The one place the comparison is computed: PyTorch's reduced precisions (in the worker)
    and the other runtimes (``dlmark.run.agreement``, in the driver) both come here.
    """
    import math

    import numpy as np

    ref = np.asarray(reference, dtype=np.float64).reshape(len(reference), -1)
    out = np.asarray(output, dtype=np.float64).reshape(len(output), -1)
    if ref.shape != out.shape:
        return {"agreement_max_abs": None, "agreement_max_rel": None, "agreement_top1": None, "agreement_ok": None,
                "agreement_method": f"{method}; output shape {out.shape} differs from the reference's {ref.shape}"}
    finite = bool(np.isfinite(out).all())
    max_abs = float(np.abs(out - ref).max()) if finite and out.size else (0.0 if finite else math.inf)
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else math.inf)
    top1 = float((out.argmax(axis=1) == ref.argmax(axis=1)).mean())
    return {"agreement_max_abs": max_abs, "agreement_max_rel": max_rel, "agreement_top1": top1,
            "agreement_ok": finite and max_rel <= tolerance, "agreement_method": method}


def agreement_fields(reference: Any, output: Any, precision: str, method: str) -> dict[str, Any]:
    """``agreement_*`` fields comparing ``output`` logits (a tensor) with fp32 ``reference`` logits."""
    def to_numpy(tensor: Any) -> Any:
        return tensor.detach().float().cpu().numpy()

    return compare_logits(to_numpy(reference), to_numpy(output), TOLERANCE.get(precision, 0.0), method)
