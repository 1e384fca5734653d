"""Command line: thin commands over the library.

Every user mistake travels one path: a UserError (or an argument error)
becomes one line on stderr and exit code 2, before anything is written.
"""
from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path
from typing import Any, Callable, Sequence

from dlmark.errors import UserError

_SIZE_UNITS = {"": 1, "b": 1, "k": 1e3, "kb": 1e3, "kib": 2**10, "m": 1e6, "mb": 1e6, "mib": 2**20,
               "g": 1e9, "gb": 1e9, "gib": 2**30, "t": 1e12, "tb": 1e12, "tib": 2**40}


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, like every other user error
        raise UserError(message)


def parse_size(text: str) -> int:
    """'8GiB' -> bytes. Decimal (GB) and binary (GiB) units; a bare number is bytes."""
    match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", text)
    unit = match.group(2).lower() if match else None
    if not match or unit not in _SIZE_UNITS:
        raise UserError(f"bad memory size {text!r}; write it like 8GiB, 512MiB or 2GB")
    value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise UserError(f"memory size must be positive, got {text!r}")
    return value


def parse_batch_sizes(text: str) -> list[int]:
    """'1,2,4' or '1:256' (powers of two from 1 to 256)."""
    sizes: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if ":" in part:
                low, high = (int(x) for x in part.split(":", 1))
                if low < 1 or high < low:
                    raise ValueError
                b = low
                while b <= high:
                    sizes.append(b)
                    b *= 2
            else:
                sizes.append(int(part))
        except ValueError:
            raise UserError(f"bad batch size {part!r} in --batch-sizes; give positive integers like 1,2,4 or a range 1:256") from None
    if not sizes or any(b < 1 for b in sizes):
        raise UserError(f"batch sizes must be positive integers, got {text!r}")
    return sorted(set(sizes))


def _split(text: str | None) -> list[str] | None:
    if text is None:
        return None
    items = [x.strip() for x in text.split(",") if x.strip()]
    if not items:
        raise UserError("empty list; give comma-separated values")
    return items


# ------------------------------------------------------------------- commands


def cmd_run(args: argparse.Namespace) -> int:
    from dlmark.measure import devices
    from dlmark import suites
    from dlmark.models import zoo
    from dlmark.run.plan import RunOptions, parse_tasks
    from dlmark.records.store import check_writable
    from dlmark.run.driver import run, summary_table

    suite = suites.load(args.suite)
    names = _split(args.models) or suite.models
    models = [zoo.get(name) for name in names]
    batch_sizes = parse_batch_sizes(args.batch_sizes) if args.batch_sizes else suite.batch_sizes
    timing = dict(suite.timing)
    if args.min_time is not None:  # the user's figure holds on every device, over the suite's own
        timing = {k: ({**v} if isinstance(v, dict) else v) for k, v in timing.items()}
        timing["min_run_s"] = args.min_time
        for per_kind in (v for v in timing.values() if isinstance(v, dict)):
            per_kind.pop("min_run_s", None)
    compile_modes: list[str | None] = [None]
    if args.compile:
        compile_modes = [None if m in ("none", "eager") else m for m in _split(args.compile) or []]
    make_executor = _ray_executor_factory(args)
    options = RunOptions(
        suite=suite, models=models, tasks=parse_tasks(args.task) if args.task else suite.tasks,
        batch_sizes=batch_sizes,
        # Under Ray the cluster assigns devices; the driver host may have none.
        devices=_ray_devices(args) if make_executor else devices.resolve(args.device),
        precisions=_split(args.precision) or suite.precisions, layouts=_split(args.layout) or ["nchw"],
        compile_modes=compile_modes, threads=args.threads, timing=timing, backends=_split(args.backend) or ["pytorch"],
        max_batch_cap=args.max_batch_cap or int(suite.max_batch_size.get("cap", 65536)),
        memory_limit_bytes=parse_size(args.memory_limit) if args.memory_limit else None,
        timeout_s=args.timeout, force=args.force,
        imagenet=args.imagenet, accuracy_limit=args.limit, accuracy_batch_size=args.accuracy_batch_size,
        data_workers=args.data_workers,
    )
    from dlmark.backends.registry import check_installed, expand

    for backend, _ in expand(options.backends, options.compile_modes):
        check_installed(backend)  # a missing extra or environment: one line, before any work
    if len(options.devices) > 1 and any(d.kind == "cpu" for d in options.devices):
        raise UserError("several CPU lanes would measure each other; use one device for CPU runs")
    out = Path(args.out)
    check_writable(out)
    if options.imagenet:
        from dlmark.tasks.accuracy import preflight

        preflight(options)  # an unreadable data set or missing weights fail here, before any work
    result = run(options, out, quiet=args.quiet, make_executor=make_executor)
    print(summary_table(result.records) if result.records else "no new measurements")
    measured = len(result.records)
    print(f"\n{measured} record(s) written to {out}/ in {result.seconds:.0f} s"
          + (f"; {result.skipped} job(s) skipped (already done, or after an out-of-memory)" if result.skipped else ""))
    if result.interrupted:
        print("interrupted: every finished record is kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def _ray_executor_factory(args: argparse.Namespace) -> Callable[[Any], Any] | None:
    """None for a local run; otherwise what builds the Ray executor once the run context exists."""
    ray_flags = [flag for flag, value in (("--ray-address", args.ray_address), ("--accelerator-type", args.accelerator_type),
                                          ("--each-accelerator", args.each_accelerator),
                                          ("--include-cpu", args.include_cpu)) if value]
    if args.executor == "local" and ray_flags:
        raise UserError(f"{ray_flags[0]} needs --executor ray")
    if args.executor != "ray" and not ray_flags:
        return None
    from dlmark.run.ray import RayExecutor, import_ray

    import_ray()  # fail now, in one line, when Ray is missing
    spec = (args.device or "cuda").strip().lower()
    if spec not in ("cpu", "cuda", "cuda:all"):
        raise UserError(f"--device {args.device} names a local GPU; under Ray use --device cuda (any GPU Ray assigns) or cpu")
    want_gpu = spec != "cpu"
    return lambda ctx: RayExecutor(ctx, want_gpu=want_gpu, address=args.ray_address,
                                   accelerator_type=args.accelerator_type, each_accelerator=args.each_accelerator,
                                   include_cpu=args.include_cpu)


def _ray_devices(args: argparse.Namespace) -> list[Any]:
    from dlmark.measure import devices

    if (args.device or "").strip().lower() == "cpu":
        return [devices.cpu()]
    return [devices.Device("cuda", "cuda", "any GPU Ray assigns")]


_LS_COLUMNS = [
    ("model", "model"), ("device", "device"), ("runtime", "runtime"), ("task", "task"), ("precision", "precision"),
    ("layout", "layout"), ("batch_size", "batch"), ("throughput_label", "img/s [95% CI]"),
    ("latency_ms_median", "latency ms"), ("device_mem", "mem MB"), ("status", "status"),
    ("agreement_label", "agrees"),  # output agreement with PyTorch fp32 eager: yes / NO / n/c (not comparable)
]


def cmd_ls(args: argparse.Namespace) -> int:
    from dlmark.records.load import load_records
    from dlmark.backends.registry import label as runtime_label
    from dlmark.report.tables import agreement_label, format_table, throughput_label

    if not Path(args.results).exists():
        raise UserError(f"no such results folder or file: {args.results}")
    rows = load_records(args.results)
    filters = {"model": args.model, "device": args.device, "task": args.task and args.task.replace("-", "_"),
               "status": args.status, "precision": args.precision, "backend": args.backend}
    for column, wanted in filters.items():
        if wanted:
            choices = {w.lower() for w in _split(wanted) or []}
            rows = [r for r in rows if str(r.get(column, "")).lower() in choices]
    if not rows:
        print("no results match")
        return 0
    rows.sort(key=lambda r: (str(r.get("model")), str(r.get("device")), str(r.get("task")),
                             str(r.get("precision")), r.get("batch_size") or 0))
    for r in rows:
        r["throughput_label"] = throughput_label(r)
        r["runtime"], r["agreement_label"] = runtime_label(r), agreement_label(r)
    if args.compare:
        from dlmark.analysis.runtimes import COLUMNS, runtime_rows

        print(format_table(runtime_rows(rows), COLUMNS))
        return 0
    print(format_table(rows, _LS_COLUMNS))
    print(f"\n{len(rows)} record(s)")
    return 0


def cmd_models(args: argparse.Namespace) -> int:
    from dlmark.models import zoo
    from dlmark.report.tables import format_table

    rows = [{"name": n, "source": zoo.REGISTRY[n].source_ref, "family": zoo.REGISTRY[n].family,
             "seed": "yes" if n in zoo.SEED_MODELS else ""} for n in zoo.list_models(args.pattern)]
    if not rows:
        raise UserError(f"no registered model matches {args.pattern!r}; any torchvision:NAME or timm:NAME works too")
    print(format_table(rows, [("name", "name"), ("source", "source"), ("family", "family"), ("seed", "seed page")]))
    print("\nAny other network: torchvision:NAME, timm:NAME, or py:MODULE:FUNCTION")
    return 0


def cmd_suites(args: argparse.Namespace) -> int:
    from dlmark import suites
    from dlmark.report.tables import format_table

    rows = []
    for name in suites.available():
        s = suites.load(name)
        rows.append({"suite": name, "models": len(s.models), "tasks": ",".join(s.tasks),
                     "batch sizes": f"{min(s.batch_sizes)}..{max(s.batch_sizes)}", "about": s.description})
    print(format_table(rows, [(k, k) for k in ("suite", "models", "tasks", "batch sizes", "about")]))
    return 0


def cmd_env(args: argparse.Namespace) -> int:
    from dlmark.backends import envs
    from dlmark.report.tables import format_table

    if args.action == "list":
        print(format_table(envs.status(), [(k, k) for k in ("env", "ready", "python", "packages")]))
        return 0
    if not args.name:
        raise UserError(f"name the environment to create: {', '.join(envs.ENVS)}")
    envs.create(args.name, force=args.force)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="dlmark", description="Benchmark deep-learning inference.")
    parser.add_argument("--version", action="version", version=f"dlmark {__import__('dlmark').__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    run = commands.add_parser("run", help="run a suite: throughput sweeps, largest batch size")
    run.add_argument("suite", nargs="?", default="quick", help="shipped suite (quick, cnn) or a .toml file")
    run.add_argument("--models", help="comma-separated display names or torchvision:NAME / timm:NAME / py:MOD:FN")
    run.add_argument("--batch-sizes", help="e.g. 1,2,4 or 1:256 (powers of two)")
    run.add_argument("--device", help="cpu, cuda, cuda:N, cuda:all, cuda:0,cuda:1 (default: a GPU when present)")
    run.add_argument("--precision", help="comma-separated: fp32, tf32, fp16, bf16, amp-fp16, amp-bf16")
    run.add_argument("--layout", help="nchw, channels_last, or both comma-separated")
    run.add_argument("--backend", help="runtime(s), comma-separated: pytorch, pytorch-compile, onnxruntime, openvino, "
                                       "openvino-throughput, mxnet (default: pytorch; see docs/runtimes.md)")
    run.add_argument("--compile", help="torch.compile mode(s): default, reduce-overhead, max-autotune (none = eager)")
    run.add_argument("--threads", type=int, help="CPU intra-op threads (default: the runtime's)")
    run.add_argument("--task", help="throughput, max-batch-size, accuracy (comma-separated)")
    run.add_argument("--out", default="runs", help="results folder (default: runs)")
    run.add_argument("--force", action="store_true", help="re-measure jobs that are already in the results folder")
    run.add_argument("--timeout", type=float, default=900.0, help="seconds one job may take before it is killed")
    run.add_argument("--memory-limit", help="cap on the worker's memory, e.g. 8GiB (largest-batch search on CPU)")
    run.add_argument("--max-batch-cap", type=int, help="largest batch the largest-batch search tries")
    run.add_argument("--min-time", type=float, help="seconds of timed blocks per measurement (default from the suite)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--imagenet", metavar="DIR",
                     help="accuracy task: ImageNet-1k validation folder (class folders, devkit or Kaggle layout); "
                          "without it accuracy records carry the weights' published figures")
    run.add_argument("--limit", type=int, metavar="N", help="accuracy task: a class-balanced subset of N images (with a 95%% CI)")
    run.add_argument("--accuracy-batch-size", type=int, default=64, help="accuracy task: images per forward pass (default 64)")
    run.add_argument("--data-workers", type=int, help="accuracy task: image-decoding processes (default: up to 8)")
    run.add_argument("--executor", choices=("local", "ray"), help="local (this host's devices, default) or ray")
    run.add_argument("--ray-address", help="Ray cluster to use (default: start a local Ray instance)")
    run.add_argument("--accelerator-type", help="Ray: only GPUs of this type, e.g. H100 (see ray.cluster_resources())")
    run.add_argument("--each-accelerator", action="store_true",
                     help="Ray: run the sweep once on every accelerator type the cluster offers")
    run.add_argument("--include-cpu", action="store_true", help="Ray: also run the sweep once on CPU")
    run.set_defaults(handler=cmd_run)

    ls = commands.add_parser("ls", help="print stored results as a table")
    ls.add_argument("results", help="results folder, file or glob")
    for flag in ("model", "device", "task", "status", "precision", "backend"):
        ls.add_argument(f"--{flag}", help=f"only these {flag}s (comma-separated)")
    ls.add_argument("--compare", action="store_true",
                    help="runtimes side by side per model, device and batch, with the speed-up over PyTorch eager")
    ls.set_defaults(handler=cmd_ls)

    models = commands.add_parser("models", help="list the model zoo")
    models.add_argument("pattern", nargs="?", default="*", help="shell-style pattern, e.g. 'ResNet*'")
    models.set_defaults(handler=cmd_models)

    suites_cmd = commands.add_parser("suites", help="list shipped suites")
    suites_cmd.set_defaults(handler=cmd_suites)

    env = commands.add_parser("env", help="separate environments for runtimes that need one (mxnet)")
    env.add_argument("action", choices=("create", "list"), help="create an environment, or list them")
    env.add_argument("name", nargs="?", help="environment name (mxnet)")
    env.add_argument("--force", action="store_true", help="rebuild from scratch")
    env.set_defaults(handler=cmd_env)

    for register in _extension_commands():
        register(commands)
    return parser


def _extension_commands() -> list[Callable[[Any], None]]:
    """Commands that live beside their feature (report, pareto, ...), registered if present."""
    found = []
    for module_name, function in (("dlmark.cli.report", "add_report_command"), ("dlmark.analysis.tradeoff", "add_pareto_command"),
                                  ("dlmark.run.tune", "add_tune_command"), ("dlmark.measure.peak", "add_peak_command"),
                                  ("dlmark.cli.plot", "add_plot_command")):
        try:
            module = __import__(module_name, fromlist=[function])
        except ImportError:
            continue
        found.append(getattr(module, function))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"dlmark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
