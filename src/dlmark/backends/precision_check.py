"""Output agreement of a reduced precision with fp32, on a fixed input, in the same worker.

The fp32 reference is computed on the device before the weights are cast,
so no second copy of the model is kept; the candidate is the cast model run
eagerly (before any compilation) on the same seeded input. Field names are
shared with the other runtimes' agreement checks (docs/records.md).
"""
from __future__ import annotations

from typing import Any

#: Inputs of the check: a seeded N(0, 1) batch of this many samples.
AGREEMENT_BATCH = 8
AGREEMENT_SEED = 0

#: Largest relative logit error (max |out - ref| / max |ref|) accepted per precision.
#: TF32 keeps 10 mantissa bits, fp16 10 and bf16 7: the error of a deep network's
#: logits grows with depth, so these are loose bounds that a wrong computation
#: (a wrong layout, an overflow, garbage weights) still exceeds by far.
TOLERANCE = {"tf32": 0.01, "fp16": 0.05, "amp-fp16": 0.05, "bf16": 0.1, "amp-bf16": 0.1}


def agreement_fields(reference: Any, output: Any, precision: str, method: str) -> dict[str, Any]:
    """``agreement_*`` record fields comparing ``output`` logits with fp32 ``reference`` logits."""
    import torch

    ref = reference.detach().float().cpu().reshape(reference.shape[0], -1)
    out = output.detach().float().cpu().reshape(output.shape[0], -1)
    diff = (out - ref).abs()
    max_abs = float(diff.max()) if diff.numel() else 0.0
    scale = float(ref.abs().max()) if ref.numel() else 0.0
    max_rel = max_abs / scale if scale > 0 else (0.0 if max_abs == 0 else float("inf"))
    top1 = float((out.argmax(dim=1) == ref.argmax(dim=1)).float().mean())
    finite = bool(torch.isfinite(out).all())
    tolerance = TOLERANCE.get(precision, 0.0)
    return {
        "agreement_max_abs": max_abs,
        "agreement_max_rel": max_rel,
        "agreement_top1": top1,
        "agreement_ok": finite and max_rel <= tolerance,
        "agreement_method": method,
    }
