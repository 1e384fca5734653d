"""``dlmark run``: parse the options, hand them to the library, print the summary."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

from dlmark.cli.args import parse_batch_sizes, parse_size, split_list
from dlmark.errors import UserError


def register(commands) -> None:
    run = commands.add_parser("run", help="run a suite: throughput sweeps, largest batch size, accuracy",
                              description="Run a suite (default: quick) with the options below changing it.")
    run.add_argument("suite", nargs="?", default="quick",
                     help="shipped suite (quick, the default; cnn) or a .toml file; `dlmark suites` lists them")
    run.add_argument("--models", help="comma-separated display names or torchvision:NAME / timm:NAME / py:MOD:FN")
    run.add_argument("--batch-sizes", help="e.g. 1,2,4 or 1:256 (the powers of two from 1 to 256)")
    run.add_argument("--device", help="cpu, cuda, cuda:N, cuda:all, cuda:0,cuda:1 (default: a GPU when present)")
    run.add_argument("--precision", help="comma-separated: fp32, tf32, fp16, bf16, amp-fp16, amp-bf16")
    run.add_argument("--layout", help="nchw, channels_last, or both comma-separated")
    run.add_argument("--backend", help="runtime(s), comma-separated: pytorch, pytorch-compile, onnxruntime, openvino, "
                                       "openvino-throughput, mxnet (default: pytorch; see docs/runtimes.md)")
    run.add_argument("--compile", help="torch.compile mode(s): default, reduce-overhead, max-autotune (none = eager)")
    run.add_argument("--threads", type=int, help="CPU intra-op threads (default: the runtime's)")
    run.add_argument("--in-flight", type=split_list, metavar="N[,M]|auto",
                     help="requests running at once, or auto (the runtime's choice): throughput on CPU (docs/int8.md)")
    run.add_argument("--task", help="throughput, max-batch-size, accuracy, serving (comma-separated; "
                                    "default: the suite's)")
    run.add_argument("--out", default="runs", help="results folder (default: runs)")
    run.add_argument("--force", action="store_true", help="re-measure jobs that are already in the results folder")
    run.add_argument("--repetitions", type=int, default=1, metavar="N",
                     help="run the whole plan N times, one pass after another, so that `dlmark compare` can tell "
                          "a change from the machine's drift between moments (docs/compare.md)")
    run.add_argument("--timeout", type=float, default=900.0, help="seconds one job may take before it is killed")
    run.add_argument("--memory-limit", help="cap on the worker's memory, e.g. 8GiB (largest-batch search on CPU)")
    run.add_argument("--max-batch-cap", type=int, help="largest batch the largest-batch search tries")
    run.add_argument("--min-time", type=float, help="seconds of timed blocks per measurement (default from the suite)")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.add_argument("--imagenet", metavar="DIR",
                     help="accuracy task: ImageNet-1k validation folder (class folders, devkit or Kaggle layout); "
                          "without it accuracy records carry the weights' published figures. With --precision "
                          "int8 the quantizers also calibrate on its images")
    run.add_argument("--calibration-samples", type=int, metavar="N",
                     help="int8: samples the quantizer calibrates on (default 32): generated, or ImageNet "
                          "validation images (a class-balanced subset) with --imagenet")
    run.add_argument("--limit", type=int, metavar="N", help="accuracy task: a class-balanced subset of N images (with a 95%% CI)")
    run.add_argument("--accuracy-batch-size", type=int, default=64, help="accuracy task: images per forward pass (default 64)")
    run.add_argument("--data-workers", type=int, help="accuracy task: image-decoding processes (default: up to 8)")
    pipeline = run.add_argument_group("input pipeline (JPEG to logits, each stage measured; docs/pipeline.md)")
    pipeline.add_argument("--input", metavar="images[:DIR]",
                          help="measure the pipeline task on JPEG files: images (a generated ImageNet-like set) "
                               "or images:DIR (your folder, read recursively); with --scenario, the serving "
                               "scenarios' samples instead (docs/serving.md)")
    pipeline.add_argument("--decoder", default="pil", help="pil (default), torchvision (CPU) or nvjpeg (CUDA)")
    pipeline.add_argument("--pipeline-workers", metavar="N[,M...]",
                          help="DataLoader worker processes, swept like batch sizes (default 0: in-process)")
    pipeline.add_argument("--images", type=int, default=256,
                          help="images: the generated set's size, or how many of DIR's files (default 256)")
    serving = run.add_argument_group("serving scenarios (MLPerf LoadGen; docs/serving.md)")
    serving.add_argument("--scenario", help="offline, single-stream, multi-stream, server (comma-separated)")
    serving.add_argument("--latency-bound-ms", type=float,
                         help="server: the p99 bound; without --target-qps the largest QPS within it is searched")
    serving.add_argument("--target-qps", type=float, help="server: one run at this offered load")
    serving.add_argument("--max-batch", type=int, help="server: the dynamic batcher's largest batch (default 8)")
    serving.add_argument("--max-queue-delay-ms", type=float, help="server: the longest a query waits for a batch (default 2)")
    serving.add_argument("--batches-in-flight", type=int, help="batches run at once (default 1)")
    serving.add_argument("--samples-per-query", type=int, help="multi-stream: samples per query (default 8)")
    serving.add_argument("--serving-min-time", type=float, dest="serving_min_time",
                         help="seconds LoadGen runs each scenario at least (default 10; not MLPerf-compliant)")
    serving.add_argument("--serving-min-queries", type=int, dest="serving_min_queries",
                         help="queries LoadGen issues each scenario at least (default 1024; fewer weakens the "
                              "tail estimates, and LoadGen's early stopping may then call the run INVALID)")
    serving.add_argument("--pad-batches", action="store_true",
                         help="pad every batch to the batcher's size: one input shape (compiled models, cuDNN autotune)")
    serving.add_argument("--pad-sizes", metavar="N[,M...]",
                         help="server: pad each batch up to the smallest of these (and --max-batch) that holds it: "
                              "a few shapes, each warmed first, instead of every batch at full size")
    serving.add_argument("--gil-switch-interval-ms", type=float, dest="switch_interval_ms",
                         help="Python's GIL switch interval during each LoadGen test (default: Python's 5 ms)")
    serving.add_argument("--no-gc-freeze", action="store_false", dest="gc_freeze",
                         help="leave the objects alive at each LoadGen test's start in reach of Python's cyclic "
                              "garbage collector (default: frozen, gc.freeze, so no collection walks the model's heap)")
    serving.add_argument("--own-streams", action="store_true",
                         help="CUDA: each batch in flight on its own stream, run side by side (default: one stream)")
    serving.add_argument("--mlperf-rules", action="store_true",
                         help="MLPerf's own durations and query counts (600 s a scenario), said so in the record")
    run.add_argument("--executor", choices=("local", "ray"), help="local (this host's devices, default) or ray")
    run.add_argument("--ray-address", help="Ray cluster to use (default: start a local Ray instance)")
    run.add_argument("--accelerator-type", help="Ray: only GPUs of this type, e.g. H100 (see ray.cluster_resources())")
    run.add_argument("--each-accelerator", action="store_true",
                     help="Ray: run the sweep once on every accelerator type the cluster offers")
    run.add_argument("--include-cpu", action="store_true", help="Ray: also run the sweep once on CPU")
    run.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    from dlmark.run import options as run_options
    from dlmark.run.driver import run, summary_table
    from dlmark.tasks.pipeline import parse_workers

    make_executor = _ray_executor_factory(args)
    options = run_options.build(
        args.suite, models=split_list(args.models), tasks=split_list(args.task),
        batch_sizes=parse_batch_sizes(args.batch_sizes) if args.batch_sizes else None,
        # Under Ray the cluster assigns devices; the driver host may have none.
        device=args.device, devices=_ray_devices(args) if make_executor else None,
        precisions=split_list(args.precision), layouts=split_list(args.layout),
        compile_modes=split_list(args.compile), backends=split_list(args.backend), threads=args.threads,
        in_flight=args.in_flight or [1],
        min_time_s=args.min_time, max_batch_cap=args.max_batch_cap,
        memory_limit_bytes=parse_size(args.memory_limit) if args.memory_limit else None,
        timeout_s=args.timeout, force=args.force, repetitions=args.repetitions, imagenet=args.imagenet, accuracy_limit=args.limit,
        accuracy_batch_size=args.accuracy_batch_size, data_workers=args.data_workers,
        calibration_samples=args.calibration_samples,
        scenarios=split_list(args.scenario) or [], serving=_serving_knobs(args),
        input=args.input, decoder=args.decoder, pipeline_workers=parse_workers(args.pipeline_workers),
        pipeline_images=args.images,
    )
    out = Path(args.out)
    result = run(options, out, quiet=args.quiet, make_executor=make_executor)
    # The whole command's records (a resume's earlier ones too), not only this invocation's.
    shown = result.command_records or result.records
    print(summary_table(shown) if shown else "no new measurements")
    measured = len(result.records)
    print(f"\n{measured} record(s) written to {out}/ in {result.seconds:.0f} s"
          + (f"; {result.skipped} job(s) skipped (already done, or after an out-of-memory)" if result.skipped else ""))
    contended = [r for r in result.records if r.get("contended")]
    if contended:
        from dlmark.measure.contention import cause, suggestion

        print(f"\nwarning: {len(contended)} of {len(result.records)} record(s) were timed while other work competed "
              f"({cause(contended[0]) or 'see their contended fields'}); {suggestion(contended[0]) or ''}".rstrip("; "),
              file=sys.stderr)
    if not measured and shown and not result.interrupted:
        print(f"nothing new to measure: the table above is this command's stored results; "
              f"`dlmark ls {out}` lists them, --force re-measures")
    if result.interrupted:
        print("interrupted: every finished record is kept; run the same command again to resume", file=sys.stderr)
        return 130
    return 0


def _serving_knobs(args: argparse.Namespace) -> dict[str, Any]:
    knobs = {"latency_bound_ms": args.latency_bound_ms, "target_qps": args.target_qps, "max_batch": args.max_batch,
             "max_queue_delay_ms": args.max_queue_delay_ms, "batches_in_flight": args.batches_in_flight,
             "samples_per_query": args.samples_per_query, "min_duration_s": args.serving_min_time,
             "min_query_count": args.serving_min_queries,
             "mlperf_rules": args.mlperf_rules or None, "pad_batches": args.pad_batches or None,
             "own_streams": args.own_streams or None, "pad_sizes": _pad_sizes(args.pad_sizes),
             "switch_interval_ms": args.switch_interval_ms, "gc_freeze": None if args.gc_freeze else False}
    return {k: v for k, v in knobs.items() if v is not None}


def _pad_sizes(text: str | None) -> list[int] | None:
    if text is None:
        return None
    try:
        return sorted({int(part) for part in text.split(",")})
    except ValueError:
        raise UserError(f"--pad-sizes takes positive integers like 16,32,64, got {text!r}") from None


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
