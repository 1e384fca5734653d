"""dlmark's in-flight throughput beside OpenVINO's own benchmark_app, same model, same settings, same run.

    PYTHONPATH=src python scripts/openvino_benchmark_app.py [--models resnet50,squeezenet1_1] [-t 10] [--int8]

For each model: torchvision's network (weights=None, seeded) converted to an
fp32 IR of static shape 1x3x224x224; then, in alternation, benchmark_app and
dlmark (``backends.in_flight.openvino_in_flight``) under ``-hint latency
-nireq 1`` and under ``-hint throughput`` with its own number of requests.
``--int8`` adds the same for the model quantized by NNCF. Prints both
throughputs, their ratio and the load average before and after each pair
(the CPU may be shared: compare the pairs, not runs on different days).
"""
from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
from pathlib import Path

SHAPE = (3, 224, 224)


def export(name: str, folder: Path) -> Path:
    import openvino as ov
    import torch
    import torchvision

    xml = folder / f"{name}-fp32.xml"
    if not xml.exists():
        torch.manual_seed(0)
        module = getattr(torchvision.models, name)(weights=None).eval()
        model = ov.convert_model(module, example_input=torch.zeros((1, *SHAPE)), input=[ov.PartialShape([1, *SHAPE])])
        ov.save_model(model, str(xml), compress_to_fp16=False)
    return xml


def benchmark_app(xml: Path, hint: str, nireq: int | None, seconds: int, threads: int | None) -> dict:
    tool = shutil.which("benchmark_app") or str(Path(sys.executable).with_name("benchmark_app"))
    # benchmark_app takes -nthreads only with -hint none: then the latency hint's one stream is said.
    if threads and hint != "latency":
        raise SystemExit("--threads is compared for the latency hint only (benchmark_app: -hint none -nstreams 1)")
    shown_hint = ["-hint", "none", "-nstreams", "1"] if threads else ["-hint", hint]
    cmd = [tool, "-m", str(xml), "-d", "CPU", *shown_hint, "-t", str(seconds), "-infer_precision", "f32",
           "-ip", "f32"]  # benchmark_app feeds image inputs as u8 by default; dlmark's are f32
    if nireq:
        cmd += ["-nireq", str(nireq)]
    if threads:
        cmd += ["-nthreads", str(threads)]
    text = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    found = {key: re.search(pattern, text) for key, pattern in {
        "throughput": r"Throughput:\s+([\d.]+)\s*FPS", "nireq": r"(\d+) inference requests",
        "median_ms": r"Median:\s+([\d.]+)\s*ms", "streams": r"NUM_STREAMS:\s*(\d+)"}.items()}
    out = {"command": " ".join(cmd[1:]), **{k: float(m.group(1)) if m else None for k, m in found.items()}}
    out["nireq"] = out["nireq"] or nireq  # the latency hint runs synchronously and prints no count
    return out


def dlmark(xml: Path, hint: str, nireq: int | str, seconds: int, threads: int | None) -> dict:
    from dlmark.backends import in_flight

    # The same timed span as benchmark_app's -t, in 5 windows for a spread.
    config = in_flight.WindowConfig(warmup_s=1.0, window_s=seconds / 5, windows=5, min_requests_per_window=0)
    out = in_flight.openvino_in_flight(str(xml), nireq, 1, SHAPE, hint=hint.upper(), threads=threads, config=config)
    return {k: out[k] for k in ("throughput", "in_flight", "streams", "threads_per_request", "latency_ms_median",
                                "rel_iqr", "requests_counted")}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--models", default="resnet50,squeezenet1_1")
    parser.add_argument("-t", type=int, default=10, help="seconds per measurement")
    parser.add_argument("--threads", type=int, default=None, help="INFERENCE_NUM_THREADS (default: the runtime's)")
    parser.add_argument("--int8", action="store_true", help="also the NNCF-quantized model")
    parser.add_argument("--repeat", type=int, default=1, help="pairs per setting, the order alternating")
    parser.add_argument("--hints", default="latency,throughput", help="latency (one request), throughput, or both")
    parser.add_argument("--folder", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "dlmark-benchmark-app")
    args = parser.parse_args()
    args.folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for name in args.models.split(","):
        models = [("fp32", export(name, args.folder))]
        if args.int8:
            from dlmark.backends import int8

            models.append(("int8", int8.quantize_openvino(models[0][1], SHAPE, int8.Calibration(samples=32),
                                                         model=name).path))
        for precision, xml in models:
            hints = [(h, q) for h, q in (("latency", 1), ("throughput", None)) if h in args.hints.split(",")]
            for hint, nireq, rep in [(h, q, r) for h, q in hints for r in range(args.repeat)]:
                load_before = os.getloadavg()[0]
                # Alternate which tool goes first, so that a drifting load favours neither.
                if rep % 2 == 0:
                    vendor = benchmark_app(xml, hint, nireq, args.t, args.threads)
                    ours = dlmark(xml, hint, nireq or "auto", args.t, args.threads)
                else:
                    ours = dlmark(xml, hint, nireq or "auto", args.t, args.threads)
                    vendor = benchmark_app(xml, hint, nireq, args.t, args.threads)
                load_after = os.getloadavg()[0]
                ratio = ours["throughput"] / vendor["throughput"] if vendor["throughput"] else float("nan")
                rows.append((name, precision, hint, vendor, ours, ratio, load_before, load_after))
                print(f"benchmark_app {vendor['command']}", flush=True)
                print(f"{name} {precision} -hint {hint}: benchmark_app {vendor['throughput']:.2f} FPS "
                      f"(nireq {vendor['nireq']}, streams {vendor['streams']}), dlmark {ours['throughput']:.2f} "
                      f"samples/s (in_flight {ours['in_flight']}, streams {ours['streams']}, "
                      f"threads/request {ours['threads_per_request']}, rel_iqr {ours['rel_iqr']:.3f}); "
                      f"ratio {ratio:.3f}; load {load_before:.2f} -> {load_after:.2f}", flush=True)
    print("\n| model | precision | hint | benchmark_app FPS | dlmark samples/s | ratio | load avg |")
    print("|---|---|---|---|---|---|---|")
    for name, precision, hint, vendor, ours, ratio, lb, la in rows:
        print(f"| {name} | {precision} | {hint} (nireq {int(vendor['nireq'] or 0)}) | {vendor['throughput']:.2f} | "
              f"{ours['throughput']:.2f} | {ratio:.3f} | {lb:.2f}-{la:.2f} |")
    # Per setting, the medians over its alternating pairs: the machine drifts between runs by more
    # than either tool's own spread (benchmark_app moved 22% a minute apart), so one pair can
    # disagree where the settings do not.
    print("\n| model | precision | hint | pairs | benchmark_app median FPS | dlmark median samples/s | ratio of medians |")
    print("|---|---|---|---:|---:|---:|---:|")
    settings: dict[tuple, list] = {}
    for name, precision, hint, vendor, ours, *_ in rows:
        settings.setdefault((name, precision, hint), []).append((vendor["throughput"], ours["throughput"]))
    within = 0
    for (name, precision, hint), pairs in settings.items():
        theirs, mine = statistics.median(p[0] for p in pairs), statistics.median(p[1] for p in pairs)
        within += abs(mine / theirs - 1) <= 0.10
        print(f"| {name} | {precision} | {hint} | {len(pairs)} | {theirs:.2f} | {mine:.2f} | {mine / theirs:.3f} |")
    print(f"\n{within} of {len(settings)} settings within 10% (ratio of medians)")


if __name__ == "__main__":
    main()
