"""Synthetic dlmark records for the plot, report and seed-notebook tests.

The numbers follow the shapes real runs have (throughput saturating with batch
size, memory growing linearly, a GPU far faster than a CPU) so the figures they
produce look like real ones, and the files use the documented naming of
docs/records.md so the seed notebook's globs find them.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pandas as pd

from dlmark.records.schema import family_of, job_key, new_record

HOST = "testhost"
GPU = "NVIDIA H200"
CPU = "Intel(R) Xeon(R) Platinum 8480C"

#: model -> (images/s at saturation on the GPU, top-1 accuracy, weights MB, params)
MODELS = {
    "AlexNet": (9000.0, 0.5652, 233.0, 61_100_840),
    "ResNet-v1-18": (7000.0, 0.6976, 45.0, 11_689_512),
    "ResNet-v1-50": (2600.0, 0.8086, 98.0, 25_557_032),
    "ResNet-v2-50": (2400.0, 0.8023, 98.0, 25_549_352),
    "VGG-16": (1100.0, 0.7159, 528.0, 138_357_544),
    "MobileNet-v2-1.0": (8000.0, 0.7188, 14.0, 3_504_872),
    "DenseNet-121": (1900.0, 0.7443, 31.0, 7_978_856),
    "Inception-v3": (2200.0, 0.7729, 104.0, 27_161_264),
}
XSS_MODEL = "<script>document.title='pwned'</script>"
BATCH_SIZES = (1, 2, 4, 8, 16, 32, 64)


def _env(device: str) -> dict:
    return {"dlmark": "0.1.0", "python": "3.11.2", "torch": "2.14.1", "torchvision": "0.29.1",
            "timm": "1.0.0", "cuda": "12.8" if device == GPU else None,
            "cudnn": "91000" if device == GPU else None,
            "driver": "570.86.15" if device == GPU else None,
            "device_name": device, "cpu_model": CPU, "os": "Linux-6.8", "host": HOST,
            "threads": 2, "gpu_count": 1 if device == GPU else 0}


def throughput_record(model: str, device: str, batch_size: int, *, status: str = "ok",
                      run_id: str = "run-1") -> dict:
    saturated, _, weights_mb, params = MODELS.get(model, (500.0, 0.5, 50.0, 1_000_000))
    if device == CPU:
        saturated /= 60.0
    throughput = saturated * batch_size / (batch_size + 8.0)
    latency_ms = 1000.0 * batch_size / throughput
    activations_mb = 12.0 * batch_size
    on_gpu = device == GPU
    config = dict(task="throughput", source=f"torchvision:{model.lower()}", backend="pytorch",
                  precision="fp32", layout="nchw", compile_mode=None, threads=2,
                  batch_size=batch_size, input_shape=[3, 224, 224],
                  device_spec="cuda:0" if on_gpu else "cpu", device=device, host=HOST)
    ok = status == "ok"
    record = new_record(
        **config, job_key=job_key(config), model=model, family=family_of(model),
        throughput=throughput if ok else None,
        device_mem=(weights_mb + activations_mb + 500.0) if ok else None,
        params=params, flops_per_sample=2 * params * 10, weights="random", weights_tag=None,
        status=status, error=None if ok else "CUDA out of memory",
        env=_env(device), timestamp="2025-01-01T00:00:00Z", run_id=run_id, suite="cnn")
    if ok:
        record.update(latency_ms_median=latency_ms, latency_ms_p90=latency_ms * 1.05,
                      latency_ms_p99=latency_ms * 1.1, latency_ms_min=latency_ms * 0.97,
                      latency_ms_iqr=latency_ms * 0.03, rel_iqr=0.03, noisy=False,
                      block_times_s=[latency_ms / 1000.0 * 10] * 5, iters_per_block=10,
                      timer="cuda_event" if on_gpu else "perf_counter")
        if on_gpu:
            record.update(peak_mem_allocated_mb=weights_mb + activations_mb,
                          peak_mem_reserved_mb=weights_mb + activations_mb * 1.3 + 20,
                          nvml_mem_used_mb=weights_mb + activations_mb * 1.3 + 520)
        else:
            record.update(peak_rss_mb=weights_mb + activations_mb + 300)
    return record


def max_batch_record(model: str, device: str) -> dict:
    _, _, weights_mb, params = MODELS.get(model, (500.0, 0.5, 50.0, 1_000_000))
    largest = int((8000 if device == GPU else 2000) / (1 + weights_mb / 100))
    config = dict(task="max_batch_size", source=f"torchvision:{model.lower()}", backend="pytorch",
                  precision="fp32", layout="nchw", compile_mode=None, threads=2, batch_size=None,
                  input_shape=[3, 224, 224], device_spec="cuda:0" if device == GPU else "cpu",
                  device=device, host=HOST)
    record = new_record(**config, job_key=job_key(config), model=model, family=family_of(model),
                        params=params, status="ok", env=_env(device),
                        timestamp="2025-01-01T00:00:00Z", run_id="run-1", suite="cnn")
    record.update(batch_size=largest, max_batch_size=largest, first_failing_batch=largest + 1,
                  cap=65536, capped=False, trials=[], num_trials=12, search_s=3.0,
                  memory_limit_mb=None if device == GPU else 4096)
    return record


def accuracy_record(model: str, device: str, batch_size: int) -> dict:
    """Published torchvision top-1 figures, in the shape the seed's accuracy cell reads."""
    config = dict(task="accuracy", source=f"torchvision:{model.lower()}", device=device, host=HOST,
                  batch_size=batch_size)
    return new_record(**config, job_key=job_key(config), model=model, family=family_of(model),
                      accuracy=MODELS[model][1], status="ok", env=_env(device),
                      timestamp="2025-01-01T00:00:00Z", run_id="run-1", suite="cnn")


def _file_part(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.-]+", "-", text).strip("-") or "x"


def write_record(folder: Path, record: dict, kind: str, suffix: str = "") -> Path:
    """Write one record under the documented name: {prefix}__benchmark_{kind}__{host}__{device}__{model}__{key}."""
    name = "__".join(["cnn.py", f"benchmark_{kind}", HOST, _file_part(record["device"]),
                      _file_part(record["model"]), record["job_key"]]) + suffix + ".json"
    path = folder / name
    path.write_text(json.dumps(record))
    return path


def write_results(folder: Path, *, models=tuple(MODELS), devices=(GPU, CPU), xss: bool = False,
                  failures: bool = True, accuracy_batch_size: int = 32) -> Path:
    """A results folder as `dlmark run cnn` on two machines, merged by copying, would leave it."""
    folder.mkdir(parents=True, exist_ok=True)
    names = list(models) + ([XSS_MODEL] if xss else [])
    for device in devices:
        for model in names:
            for batch_size in BATCH_SIZES:
                write_record(folder, throughput_record(model, device, batch_size), "throughput")
            write_record(folder, max_batch_record(model, device), "largest_batch_size")
        if failures:
            write_record(folder, throughput_record("VGG-16", device, 4096, status="oom"), "throughput")
    for model in models:
        write_record(folder, accuracy_record(model, devices[0], accuracy_batch_size), "accuracy",
                     suffix="__accuracy")
    return folder


def read_records(folder: Path, pattern: str) -> pd.DataFrame:
    """A minimal reader of the folder, for tests that must not depend on load_results."""
    rows = [json.loads(path.read_text()) for path in sorted(folder.glob(pattern))]
    return pd.json_normalize(rows, max_level=1) if rows else pd.DataFrame()


# ---------------------------------------------------------------- real results

#: Published ImageNet top-1 of the weights dlmark's zoo loads (torchvision's and timm's
#: model cards), for accuracy records until `dlmark run --task accuracy` exists.
PUBLISHED_TOP1 = {"AlexNet": 0.56522, "ResNet-v2-50": 0.8040}
REAL_MODELS = tuple(PUBLISHED_TOP1)
_real_results: Path | None = None


def real_cpu_results() -> Path:
    """A folder a short real `dlmark run cnn` on this CPU wrote, made once per test session.

    AlexNet and ResNet-v2-50 are the two models the seed notebook names; batch sizes
    1 and 2 and a largest-batch search capped at 4 keep it to a minute or two.
    """
    global _real_results
    if _real_results is None:
        import subprocess
        import sys
        import tempfile

        folder = Path(tempfile.mkdtemp(prefix="dlmark-real-results-"))
        command = [sys.executable, "-m", "dlmark.cli", "run", "cnn", "--device", "cpu",
                   "--models", ",".join(REAL_MODELS), "--batch-sizes", "1,2",
                   "--task", "throughput,max-batch-size", "--max-batch-cap", "4",
                   "--memory-limit", "6GiB", "--min-time", "0.05", "--quiet", "--out", str(folder)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=900)
        if done.returncode != 0:
            raise RuntimeError(f"`dlmark run` failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
        _real_results = folder
    return _real_results


def published_accuracy_records(folder: Path, device: str, batch_size: int) -> None:
    """Accuracy records from published figures, named as the seed's glob `cnn*accuracy.json` expects."""
    for model, top1 in PUBLISHED_TOP1.items():
        config = dict(task="accuracy", source=model, device=device, host=HOST, batch_size=batch_size)
        record = new_record(**config, job_key=job_key(config), model=model, family=family_of(model),
                            accuracy=top1, status="ok", weights="pretrained", run_id="published",
                            suite="cnn", timestamp="2025-01-01T00:00:00Z")
        write_record(folder, record, "accuracy", suffix="__accuracy")


# ---------------------------------------------------------------- int8 and requests in flight

#: SqueezeNet-1.1's account under OpenVINO + NNCF (docs/int8.md): three squeeze convolutions and three
#: MaxPools in f32, 97.7% of the FLOPs in int8.
OPENVINO_FALLBACKS = [f"Convolution fire{i}/squeeze" for i in (3, 5, 9)] + [f"MaxPool pool{i}" for i in (1, 2, 3)]


def int8_record(model: str, backend: str, batch_size: int, *, in_flight: int | None = None,
                fallbacks: list[str] | None = None, int8_share: float = 1.0, agrees: bool = True) -> dict:
    """A CPU int8 throughput record with its int8 account, every field named as the registry names it."""
    extra = {"in_flight": in_flight} if in_flight not in (None, 1) else None
    config = dict(task="throughput", source=f"torchvision:{model.lower()}", backend=backend, precision="int8",
                  layout="nchw", compile_mode=None, threads=2, batch_size=batch_size, input_shape=[3, 224, 224],
                  device_spec="cpu", device=CPU, host=HOST, extra_config=extra)
    flops = 698_303_872
    fallbacks = list(fallbacks or [])
    throughput = 40.0 * batch_size / (batch_size + 2.0) * (in_flight or 1) ** 0.5
    record = new_record(
        **config, job_key=job_key(config), model=model, family=family_of(model), throughput=throughput,
        throughput_ci95_low=throughput * 0.97, throughput_ci95_high=throughput * 1.03,
        latency_ms_median=1000.0 * batch_size / throughput, params=1_235_496, flops_per_sample=flops,
        weights="random", status="ok", env=_env(CPU), timestamp="2025-01-02T00:00:00Z", run_id="run-int8",
        suite="quick", quantizer=f"{backend} quantizer", quant_scheme="per-channel symmetric int8 weights",
        calibration_source="generated", calibration_samples=32, calibration_seed=1,
        int8_ops=37 - len(fallbacks), float_ops=len(fallbacks), quantize_ops=12, int8_flops_share=int8_share,
        int8_flops_per_sample=round(flops * int8_share), float_flops_per_sample=flops - round(flops * int8_share),
        fallback_ops=fallbacks, int8_account_method=f"{backend}'s executed graph",
        agreement_ok=agrees, agreement_method="logits against pytorch fp32 eager (quantized by the runtime)")
    if extra:
        record.update(in_flight=in_flight, in_flight_requested=str(in_flight), streams=in_flight)
    return record
