"""Output agreement of a runtime with the reference: PyTorch, fp32, eager, NCHW, same weights.

After a lane's worker has loaded a model on any other configuration, the driver asks
it for the logits of a fixed seeded input (``op: outputs``), then the reference logits
of the same input from the same lane's worker (the reference is loaded there, then the
group's model again; the reference's logits are kept per model and device for the run),
and stores in every record of the group:

* ``agreement_max_abs`` -- max |out - ref| over all logits;
* ``agreement_max_rel`` -- that over max |ref| (an element-wise ratio is
  meaningless for logits near zero);
* ``agreement_top1`` -- fraction of samples whose arg-max is the same;
* ``agreement_ok`` -- finite and ``max_rel`` within the precision's tolerance
  (``TOLERANCE``); ``None`` when the outputs are not comparable (different
  weights or a different network), never a guess;
* ``agreement_method`` -- how the comparison was made.

Runners that compute agreement themselves (PyTorch's reduced precisions, in
``backends.precision_check``) report the same fields at load; they are kept.
"""
from __future__ import annotations

import threading
from typing import Any

from dlmark.backends.precision_check import AGREEMENT_BATCH, AGREEMENT_SEED, compare_logits
from dlmark.backends.precision_check import TOLERANCE as _REDUCED_TOLERANCE
from dlmark.run.plan import Variant

#: Largest accepted max_rel per precision. fp32 runtimes differ only in the order of
#: floating-point sums (fused kernels, Winograd, blocked layouts): about 1e-6 relative on
#: the zoo's networks, so 1e-3 leaves room for depth while a wrong weight, a wrong layout
#: or a dropped operator is off by order 1. Reduced precisions share PyTorch's bounds.
TOLERANCE: dict[str, float] = {"fp32": 1e-3, **_REDUCED_TOLERANCE}

REFERENCE = Variant(backend="pytorch", precision="fp32", layout="nchw", compile_mode=None)

_reference_cache: dict[tuple, list[list[float]]] = {}
_lock = threading.Lock()


def is_reference(group: Any) -> bool:
    v = group.variant
    return (v.backend, v.precision, v.layout, v.compile_mode) == (REFERENCE.backend, REFERENCE.precision,
                                                                   REFERENCE.layout, REFERENCE.compile_mode)


def compare(reference: Any, output: Any, precision: str, method: str) -> dict[str, Any]:
    """The ``agreement_*`` fields for two logit arrays (batch x classes)."""
    return compare_logits(reference, output, TOLERANCE.get(precision, TOLERANCE["fp32"]), method)


def not_comparable(why: str) -> dict[str, Any]:
    return {"agreement_max_abs": None, "agreement_max_rel": None, "agreement_top1": None,
            "agreement_ok": None, "agreement_method": why}


def _outputs(lane: Any, timeout_s: float) -> dict[str, Any]:
    return lane.worker.request({"op": "outputs", "batch_size": AGREEMENT_BATCH, "seed": AGREEMENT_SEED}, timeout_s)


def reference_logits(model_ref: str, lane: Any, timeout_s: float = 900.0) -> list[list[float]]:
    """Logits of PyTorch fp32 eager on the lane's device for the seeded input, from the lane's worker."""
    from dlmark.run.jobs import load_model

    key = (model_ref, lane.device.spec)
    with _lock:
        if key in _reference_cache:
            return _reference_cache[key]
    loaded = load_model(lane, REFERENCE.backend, model_ref, REFERENCE, timeout_s)
    if not loaded["ok"]:
        raise RuntimeError(f"the reference did not load: {loaded['error']}")
    answer = _outputs(lane, timeout_s)
    if not answer["ok"]:
        raise RuntimeError(f"the reference did not run: {answer['error']}")
    with _lock:
        _reference_cache[key] = answer["logits"]
    return answer["logits"]


def check(group: Any, lane: Any, facts: dict[str, Any], timeout_s: float = 900.0) -> dict[str, Any]:
    """Agreement fields for a group loaded on ``lane``; {} for the reference itself or when the
    runner gave them. On return the lane's worker may hold the reference: load the group again."""
    model_ref = group.model.source_ref
    if is_reference(group) or "agreement_ok" in facts:
        return {}
    via = facts.get("agreement_via") or f"the same {model_ref} network built in each runtime"
    if facts.get("agreement_comparable") is False:
        return not_comparable(via)
    method = (f"{via}; seeded N(0,1) input (numpy PCG64, seed {AGREEMENT_SEED}), batch {AGREEMENT_BATCH}, "
              f"vs PyTorch fp32 eager on {lane.device.spec}")
    try:
        answer = _outputs(lane, timeout_s)
        if not answer["ok"]:
            return not_comparable(f"not compared: the runtime failed on the check input: {answer['error'][:300]}")
        reference = reference_logits(model_ref, lane, timeout_s=timeout_s)
    except Exception as exc:  # noqa: BLE001 -- no check is a stated fact, never a silent pass
        return not_comparable(f"not compared: {type(exc).__name__}: {str(exc)[:300]}")
    return compare(reference, answer["logits"], group.precision, method)
