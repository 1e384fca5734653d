"""An independent timing of ResNet-50 fp32 eager at batch 256, beside dlmark's record of it.

No dlmark timing code: a plain loop with torch.cuda.synchronize and
perf_counter, the same network (torchvision resnet50), the same settings
(fp32 without TF32, cuDNN benchmark mode, inference_mode). Prints both
figures and their ratio; the target is agreement within 3%.

    python scripts/gpu_fp32_check.py RESULTS_DIR [--device cuda:0]
"""
from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import torchvision


def independent_img_per_s(device: str, batch: int = 256, repeats: int = 7, iters: int = 20) -> list[float]:
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.backends.cudnn.benchmark = True
    net = torchvision.models.resnet50().eval().to(device)
    x = torch.randn(batch, 3, 224, 224, device=device)
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


def dlmark_figure(out: Path) -> float | None:
    for path in out.glob("*.json"):
        r = json.loads(path.read_text())
        if (r.get("task") == "throughput" and r.get("status") == "ok" and r.get("model") == "ResNet-v1-50"
                and r.get("precision") == "fp32" and r.get("layout") == "nchw" and r.get("compile_mode") is None
                and r.get("batch_size") == 256):
            return r["throughput"]
    return None


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("out", type=Path)
    parser.add_argument("--device", default="cuda:0")
    args = parser.parse_args()
    rates = independent_img_per_s(args.device)
    independent = statistics.median(rates)
    ours = dlmark_figure(args.out)
    print(f"independent loop: {independent:,.1f} img/s (median of {len(rates)} blocks of 20; "
          f"min {min(rates):,.1f}, max {max(rates):,.1f})")
    if ours is None:
        print("no dlmark fp32 eager batch-256 ResNet-v1-50 record in", args.out)
        return
    print(f"dlmark record:    {ours:,.1f} img/s; dlmark / independent = {ours / independent:.4f} "
          f"({'within' if abs(ours / independent - 1) <= 0.03 else 'OUTSIDE'} 3%)")


if __name__ == "__main__":
    main()
