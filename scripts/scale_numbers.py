"""The measured inputs of docs/scale-out.md's plan for a timm-zoo sweep.

    .venv/bin/python scripts/scale_numbers.py OUT_DIR [--models timm:resnet50,...]

Measures on this machine, and writes OUT_DIR/scale_numbers.json:

* how many models ``timm.list_models()`` offers;
* how many records per second ``Store.write`` sustains (the driver is the only
  writer, so this caps every executor), and the size of a real record file;
* worker start-up (process start + ``import torch``) and model build
  (``load``: build, FLOP count, move to the device) per model;
* per-job time of a short throughput sweep, from a real ``dlmark run``.

Run it on an idle machine: every figure here is wall time.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path

from dlmark.measure import environment
from dlmark import suites
from dlmark.run import driver as sweep
from dlmark.models import zoo
from dlmark.backends import RunConfig
from dlmark.measure.devices import cpu
from dlmark.run.local import WorkerProcess
from dlmark.run.options import RunOptions
from dlmark.records.store import Store


def store_rate(sample: dict, seconds: float = 5.0) -> dict:
    """Records/s that Store.write (atomic: temp file, fsync, rename) sustains into a fresh folder."""
    with tempfile.TemporaryDirectory(dir=os.environ.get("DLMARK_STORE_DIR")) as folder:
        store = Store(folder, "rate.py")
        written, began = 0, time.perf_counter()
        while time.perf_counter() - began < seconds:
            record = dict(sample, job_key=f"{written:016x}")
            store.write(record)
            written += 1
        elapsed = time.perf_counter() - began
        size = statistics.median(p.stat().st_size for p in Path(folder).glob("*.json"))
    return {"records_per_s": written / elapsed, "records": written, "file_bytes_median": size}


def startup(models: list[str]) -> list[dict]:
    """Worker start-up and model build, each in a fresh worker, as every group pays them."""
    config = asdict(RunConfig(device="cpu"))
    rows = []
    for name in models:
        worker = WorkerProcess(cpu())
        began = time.perf_counter()
        worker.start()
        # ping answers before torch is imported; the torch import happens in the first load.
        worker.request({"op": "ping"}, 60)
        import_began = time.perf_counter()
        answer = worker.request({"op": "load", "backend": "pytorch", "model": zoo.get(name).source_ref,
                                 "config": config}, 600)
        loaded = time.perf_counter()
        again = worker.request({"op": "load", "backend": "pytorch", "model": zoo.get(name).source_ref,
                                "config": config}, 600)
        reloaded = time.perf_counter()
        worker.close()
        rows.append({"model": name, "ok": answer["ok"] and again["ok"], "process_start_s": import_began - began,
                     "first_load_s": loaded - import_began, "warm_load_s": reloaded - loaded,
                     "torch_import_and_runtime_setup_s": (loaded - import_began) - (reloaded - loaded)})
    return rows


def per_job(out: Path, models: list[str]) -> dict:
    options = RunOptions(suite=suites.load("quick"), models=[zoo.get(m) for m in models], tasks=["throughput"],
                         batch_sizes=[1, 2, 4, 8], devices=[cpu()], timing={"min_run_s": 0.5})
    result = sweep.run(options, out, quiet=True)
    jobs = len(result.records)
    return {"jobs": jobs, "wall_s": result.seconds, "s_per_job": result.seconds / jobs if jobs else None,
            "statuses": sorted({r["status"] for r in result.records}),
            "record_file_bytes": statistics.median(p.stat().st_size for p in out.glob("*.json"))}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--models", default="timm:resnet50,ResNet-v1-50,MobileNet-v3-Small")
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    import timm

    models = [m for m in args.models.split(",") if m]
    numbers: dict = {"host": environment.host(), "cpu": environment.cpu_model(), "cpus": environment.usable_cpus(),
                     "load_average_before": os.getloadavg(), "timm": timm.__version__,
                     "timm_models": len(timm.list_models()),
                     "timm_models_pretrained": len(timm.list_models(pretrained=True))}
    print(f"timm {timm.__version__}: {numbers['timm_models']} architectures, "
          f"{numbers['timm_models_pretrained']} pretrained tags", flush=True)
    numbers["per_job"] = per_job(args.out / "sweep", models)
    print("per job:", numbers["per_job"], flush=True)
    sample = json.loads(next((args.out / "sweep").glob("*.json")).read_text())
    numbers["store"] = store_rate(sample)
    print("store:", numbers["store"], flush=True)
    numbers["startup"] = startup(models)
    for row in numbers["startup"]:
        print("startup:", row, flush=True)
    numbers["load_average_after"] = os.getloadavg()
    (args.out / "scale_numbers.json").write_text(json.dumps(numbers, indent=1))


if __name__ == "__main__":
    sys.exit(main())
