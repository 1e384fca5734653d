"""Which devices exist and what they are called, without importing torch.

GPUs are found through NVML, so that the driver process can validate
``--device cuda:3`` and name the device in file names before any worker (and
CUDA) starts.
"""
from __future__ import annotations

import os
from dataclasses import dataclass

from dlmark.measure.environment import cpu_model
from dlmark.errors import UserError


@dataclass(frozen=True)
class Device:
    spec: str  # as records store it: "cpu", "cuda:0"
    kind: str  # "cpu" or "cuda"
    name: str  # "NVIDIA H200", or the CPU model
    index: int | None = None  # CUDA index as the worker sees it
    uuid: str | None = None

    @property
    def worker_env(self) -> dict[str, str]:
        """Environment that pins a worker to this device and nothing else."""
        if self.kind == "cuda" and self.uuid:
            return {"CUDA_VISIBLE_DEVICES": self.uuid}
        if self.kind == "cpu":
            return {"CUDA_VISIBLE_DEVICES": ""}
        return {}

    @property
    def worker_device(self) -> str:
        """The torch device string inside a worker pinned by ``worker_env``."""
        if self.kind == "cuda":
            return "cuda:0" if self.uuid else f"cuda:{self.index}"
        return "cpu"


def _visible_filter(count: int) -> list[int]:
    """NVML indices visible under CUDA_VISIBLE_DEVICES (plain integer lists only)."""
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        return list(range(count))
    picked = []
    for token in visible.split(","):
        token = token.strip()
        if token.isdigit() and int(token) < count:
            picked.append(int(token))
        elif token:
            # UUIDs or MIG names: keep NVML order, CUDA will do the mapping.
            return list(range(count))
    return picked


def gpus() -> list[Device]:
    """Visible CUDA devices, in CUDA's numbering, named by NVML."""
    try:
        import pynvml

        pynvml.nvmlInit()
        count = pynvml.nvmlDeviceGetCount()
    except Exception:  # noqa: BLE001 -- no driver or no NVML: no GPU
        return []
    found = []
    for cuda_index, nvml_index in enumerate(_visible_filter(count)):
        handle = pynvml.nvmlDeviceGetHandleByIndex(nvml_index)
        name = pynvml.nvmlDeviceGetName(handle)
        uuid = pynvml.nvmlDeviceGetUUID(handle)
        name = name.decode() if isinstance(name, bytes) else name
        uuid = uuid.decode() if isinstance(uuid, bytes) else uuid
        found.append(Device(f"cuda:{cuda_index}", "cuda", name, cuda_index, uuid))
    return found


def cpu() -> Device:
    return Device("cpu", "cpu", cpu_model())


def resolve(spec: str | None) -> list[Device]:
    """Devices for a ``--device`` value: cpu, cuda, cuda:N, cuda:all, cuda:0,cuda:1, or None (best)."""
    if spec in (None, "", "auto"):
        found = gpus()
        return [found[0]] if found else [cpu()]
    spec = spec.strip().lower()
    if spec == "cpu":
        return [cpu()]
    if not spec.startswith("cuda"):
        raise UserError(f"unknown device {spec!r}; use cpu, cuda, cuda:N, cuda:all or a list like cuda:0,cuda:1")
    found = gpus()
    if not found:
        raise UserError(f"device {spec!r} asked for, but no CUDA GPU is visible here; use --device cpu")
    if spec in ("cuda", "cuda:0") and found:
        return [found[0]]
    if spec == "cuda:all":
        return found
    picked = []
    for part in spec.split(","):
        part = part.strip()
        index_text = part.split(":", 1)[1] if ":" in part else ""
        if not part.startswith("cuda:") or not index_text.isdigit():
            raise UserError(f"bad device {part!r}; use cuda:N with N a GPU index")
        index = int(index_text)
        if index >= len(found):
            raise UserError(f"device {part} is not there: this host has {len(found)} GPU(s), cuda:0..cuda:{len(found) - 1}")
        picked.append(found[index])
    return picked
