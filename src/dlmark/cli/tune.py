"""``dlmark tune MODEL``: the fastest configuration of one model on one device (``run.tune``)."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from dlmark.errors import UserError


def register(commands) -> None:
    parser = commands.add_parser("tune", help="find the fastest configuration of one model on one device")
    parser.add_argument("model", help="display name or torchvision:NAME / timm:NAME / py:MOD:FN")
    parser.add_argument("--device", help="cuda, cuda:N or cpu (default: a GPU when present)")
    parser.add_argument("--out", default="runs", help="results folder (default: runs)")
    # Defaults by device kind (run.tune.default_space): a GPU's first, then a CPU's.
    parser.add_argument("--budget-s", type=float, help="wall-time budget of the search (default 600 s on a GPU, 300 on a CPU)")
    parser.add_argument("--screen-batch", type=int, help="batch of the precision/layout screen (default 256 on a GPU, 16 on a CPU)")
    parser.add_argument("--max-batch", type=int, help="largest batch the growth step tries (default 4096 on a GPU, 256 on a CPU)")
    parser.add_argument("--precisions", help="comma-separated precisions to search "
                                             "(default fp32,tf32,fp16,bf16,amp-bf16 on a GPU, fp32,bf16,amp-bf16 on a CPU)")
    parser.add_argument("--layouts", help="comma-separated layouts to search (default nchw,channels_last)")
    parser.add_argument("--modes", help="execution modes tried on the best pair "
                                        "(default default,cudagraphs,default+freezing on a GPU, default on a CPU)")
    parser.add_argument("--latency-modes", help="modes tried at batch 1 (default eager,cudagraphs,reduce-overhead on a GPU, "
                                                "eager on a CPU)")
    parser.add_argument("--slow-modes", help="modes tried last under their own cap (default max-autotune on a GPU, none "
                                             "on a CPU; 'none' for none)")
    parser.add_argument("--slow-mode-timeout-s", type=float, help="compile cap of a slow mode (default 180)")
    parser.add_argument("--keep", type=int, help="precision/layout pairs that go on to the execution modes (default 2)")
    parser.add_argument("--force", action="store_true", help="measure again what is already in the results folder")
    parser.set_defaults(handler=main)


def main(args) -> int:
    from dlmark.run.options import check_writable
    from dlmark.run.tune import summary, tune

    if args.budget_s is not None and args.budget_s <= 0:
        raise UserError("--budget-s must be positive")
    overrides = overrides_from_args(args)
    out = Path(args.out)
    check_writable(out)
    result, written = tune(args.model, args.device, out, args.budget_s, force=args.force, overrides=overrides)
    print(summary(result))
    print(f"{len(written)} record(s) written to {out}/")
    # A tune without a single successful measurement has no answer: a failure for scripts and CI.
    return 0 if result.best_throughput() is not None else 1


def _names(text: str | None) -> tuple[str | None, ...] | None:
    """'a,b' -> ('a', 'b'); 'none' -> (); 'eager' -> None (the eager mode)."""
    if text is None:
        return None
    names = [x.strip() for x in text.split(",") if x.strip() and x.strip() != "none"]
    return tuple(None if x == "eager" else x for x in names)  # None: eager (run.tune.EAGER)


def overrides_from_args(args) -> dict[str, Any]:
    """The SearchSpace fields the flags set; the rest come from the device kind's defaults."""
    from dlmark.backends import LAYOUTS, PRECISIONS

    changes: dict[str, Any] = {}
    for attr, flag in (("precisions", "precisions"), ("layouts", "layouts"), ("modes", "modes"),
                       ("latency_modes", "latency_modes"), ("slow_modes", "slow_modes")):
        value = _names(getattr(args, flag))
        if value is not None:
            changes[attr] = value
    for p in changes.get("precisions", ()):
        if p not in PRECISIONS:
            raise UserError(f"unknown precision {p!r}; use one of {', '.join(PRECISIONS)}")
    for layout in changes.get("layouts", ()):
        if layout not in LAYOUTS:
            raise UserError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if args.screen_batch is not None:
        changes["screen_batch"] = args.screen_batch
    if args.max_batch is not None:
        changes["max_batch"] = args.max_batch
    if args.keep is not None:
        if args.keep < 1:
            raise UserError("--keep must be at least 1")
        changes["keep"] = args.keep
    if args.slow_mode_timeout_s is not None:
        changes["slow_mode_timeout_s"] = args.slow_mode_timeout_s
    if changes.get("screen_batch", 1) < 1 or changes.get("max_batch", 1) < 1:
        raise UserError("batch sizes must be positive integers")
    return changes
