"""Markdown tables for BENCHMARKS.md from the committed H200 result files.

    .venv/bin/python scripts/gpu_tables.py results/h200 results/h200-tune
"""
from __future__ import annotations

import sys
import warnings

import dlmark as dm


def fmt(value, digits=0):
    if value is None or value != value:
        return "-"
    return f"{value:,.{digits}f}"


def sweep_table(folder: str) -> str:
    thr = dm.benchmark.load_results(f"{folder}/cnn.py__benchmark_throughput*json")
    lines = ["| precision | batch | img/s (median) | 95% CI | latency ms (median / p99) | peak allocated MB | peak reserved MB | NVML used MB | MFU | J/img |",
             "|---|---:|---:|---|---|---:|---:|---:|---:|---:|"]
    for _, r in thr.sort_values(["precision", "batch_size"], ascending=[False, True]).iterrows():
        noisy = " (noisy)" if r.noisy else ""
        lines.append(
            f"| {r.precision} | {r.batch_size} | {fmt(r.throughput)}{noisy} | {fmt(r.throughput_ci95_low)}-{fmt(r.throughput_ci95_high)} "
            f"| {fmt(r.latency_ms_median, 2)} / {fmt(r.latency_ms_p99, 2)} | {fmt(r.peak_mem_allocated_mb)} | {fmt(r.peak_mem_reserved_mb)} "
            f"| {fmt(r.nvml_mem_used_mb)} | {fmt(r.mfu, 3)} | {fmt(r.energy_j_per_sample, 3)} |")
    return "\n".join(lines)


def max_batch_table(folder: str) -> str:
    bs = dm.benchmark.load_results(f"{folder}/cnn.py__benchmark_largest_batch_size.json")
    lines = ["| model | largest batch | first failing | trials | search s | what stopped it |", "|---|---:|---:|---:|---:|---|"]
    for _, r in bs.sort_values("model").iterrows():
        lines.append(f"| {r.model} | {r.max_batch_size:,} | {r.first_failing_batch:,} | {r.num_trials} | {r.search_s:.0f} | {r.limit_status} |")
    return "\n".join(lines)


def tune_table(folder: str, model: str = "ResNet-v1-50") -> str:
    t = dm.benchmark.load_results(f"{folder}/*.json")
    t = t[(t.model == model) & (t.task == "throughput")]
    lines = ["| precision | layout | execution | batch | img/s | ms/batch | MFU | W | J/img | top-1 agreement with fp32 | max logit error | throttled |",
             "|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"]
    for _, r in t.sort_values(["batch_size", "throughput"]).iterrows():
        mode = r.compile_mode if isinstance(r.compile_mode, str) else "eager"
        if r.status != "ok":
            lines.append(f"| {r.precision} | {r.layout} | {mode} | {r.batch_size} | {r.status} | - | - | - | - | - | - | - |")
            continue
        lines.append(
            f"| {r.precision} | {r.layout} | {mode} | {r.batch_size} | {fmt(r.throughput)} | {fmt(r.latency_ms_median, 3)} "
            f"| {fmt(r.mfu, 3)} | {fmt(r.avg_power_w)} | {fmt(r.energy_j_per_sample, 3)} | {fmt(r.agreement_top1, 2)} "
            f"| {fmt(r.agreement_max_abs, 3)} | {'yes' if r.throttled is True else ''} |")
    return "\n".join(lines)


if __name__ == "__main__":
    warnings.simplefilter("ignore")
    sweep, tune = sys.argv[1], sys.argv[2]
    print(sweep_table(sweep), end="\n\n")
    print(max_batch_table(sweep), end="\n\n")
    for model in ("ResNet-v1-50", "SqueezeNet-1.1", "VGG-16"):
        print(f"{model}:\n{tune_table(tune, model)}", end="\n\n")
