"""Shipped suites (TOML files beside this module) and their loading."""
from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

from ..errors import UserError


@dataclass(frozen=True)
class Suite:
    name: str
    description: str
    file_prefix: str
    models: list[str]
    tasks: list[str]
    batch_sizes: list[int]
    precisions: list[str] = field(default_factory=lambda: ["fp32"])
    timing: dict[str, Any] = field(default_factory=dict)
    max_batch_size: dict[str, Any] = field(default_factory=dict)


def available() -> list[str]:
    return sorted(p.name[:-5] for p in resources.files(__name__).iterdir() if p.name.endswith(".toml"))


def load(name_or_path: str) -> Suite:
    """A shipped suite by name, or a TOML file by path."""
    path = Path(name_or_path)
    if path.suffix == ".toml" and path.exists():
        text = path.read_text()
    else:
        resource = resources.files(__name__) / f"{name_or_path}.toml"
        if not resource.is_file():
            raise UserError(f"unknown suite {name_or_path!r}; shipped suites: {', '.join(available())} (or give a .toml path)")
        text = resource.read_text()
    try:
        data = tomllib.loads(text)
        return Suite(
            name=data["name"], description=data.get("description", ""),
            file_prefix=data.get("file_prefix", f"{data['name']}.py"), models=list(data["models"]),
            tasks=list(data.get("tasks", ["throughput"])), batch_sizes=[int(b) for b in data["batch_sizes"]],
            precisions=list(data.get("precisions", ["fp32"])), timing=dict(data.get("timing", {})),
            max_batch_size=dict(data.get("max_batch_size", {})),
        )
    except (tomllib.TOMLDecodeError, KeyError, TypeError, ValueError) as exc:
        raise UserError(f"suite {name_or_path!r} is not valid: {exc}") from None
