"""An independent timing of ResNet-50 at batch 256, beside dlmark's record of the same configuration.

No dlmark code: a plain loop with torch.cuda.synchronize and perf_counter,
the same network (torchvision resnet50), the same settings (cuDNN benchmark
mode, inference_mode; fp32 without TF32, or the tuned configuration: fp16
weights and inputs, channels_last, torch.compile's default mode). Prints both
figures and their ratio; the target is agreement within 3%.

    python scripts/gpu_peer_check.py RESULTS_DIR [--device cuda:0] [--config fp32-eager,tuned]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torchvision


#: The record fields that name each configuration, and how the plain loop builds it.
CONFIGS = {
    "fp32-eager": {"precision": "fp32", "layout": "nchw", "compile_mode": None},
    "tuned": {"precision": "fp16", "layout": "channels_last", "compile_mode": "default"},
}


def independent_img_per_s(device: str, config: str, batch: int = 256, repeats: int = 7,
                          iters: int = 20) -> list[float]:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    net = torchvision.models.resnet50().eval().to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
    if config == "tuned":
        net = net.half().to(memory_format=torch.channels_last)
        x = x.half().contiguous(memory_format=torch.channels_last)
        net = torch.compile(net)
    rates = []
    with torch.inference_mode():
        for _ in range(10):
            net(x)
        torch.cuda.synchronize(device)
        for _ in range(repeats):
            began = time.perf_counter()
            for _ in range(iters):
                net(x)
            torch.cuda.synchronize(device)
            rates.append(batch * iters / (time.perf_counter() - began))
    return rates


def dlmark_figure(out: Path, config: str) -> float | None:
    wanted = CONFIGS[config]
    for path in out.rglob("*.json"):
        r = json.loads(path.read_text())
        if (isinstance(r, dict) and r.get("task") == "throughput" and r.get("status") == "ok"
                and r.get("model") == "ResNet-v1-50" and r.get("batch_size") == 256
                and r.get("backend", "pytorch") == "pytorch" and r.get("in_flight", 1) in (1, None)
                and all(r.get(k) == v for k, v in wanted.items())):
            return r["throughput"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda:0")
    parser.add_argument("--config", default="fp32-eager", help=f"comma-separated: {', '.join(CONFIGS)}")
    args = parser.parse_args()
    for config in args.config.split(","):
        rates = independent_img_per_s(args.device, config)
        independent = statistics.median(rates)
        ours = dlmark_figure(args.out, config)
        print(f"{config}: independent loop: {independent:,.1f} img/s (median of {len(rates)} blocks of 20; "
              f"min {min(rates):,.1f}, max {max(rates):,.1f})")
        if ours is None:
            print(f"{config}: no dlmark batch-256 ResNet-v1-50 record of {CONFIGS[config]} in", args.out)
            continue
        print(f"{config}: dlmark record:    {ours:,.1f} img/s; dlmark / independent = {ours / independent:.4f} "
              f"({'within' if abs(ours / independent - 1) <= 0.03 else 'OUTSIDE'} 3%)")


if __name__ == "__main__":
    main()
