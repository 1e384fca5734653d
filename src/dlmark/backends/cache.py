"""Where runtimes keep what they build once and reuse: exported models, copied weights, environments.

The root is ``$DLMARK_CACHE`` or ``~/.cache/dlmark``. An artifact's file name
carries a readable stem and a hash of everything that decides its content, so
a change of model, weights, opset, shape or library version is a new file and
never a stale hit.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Callable


def root() -> Path:
    return Path(os.environ.get("DLMARK_CACHE") or Path.home() / ".cache" / "dlmark")


def folder(*parts: str) -> Path:
    path = root().joinpath(*parts)
    path.mkdir(parents=True, exist_ok=True)
    return path


def artifact(kind: str, key: dict[str, Any], suffix: str) -> Path:
    """``{root}/{kind}/{readable stem}__{hash of key}{suffix}``."""
    digest = hashlib.sha256(json.dumps(key, sort_keys=True, default=str).encode()).hexdigest()[:12]
    stem = re.sub(r"[^A-Za-z0-9.+-]+", "-", str(key.get("model", "model"))).strip("-.")[:48] or "model"
    return folder(kind) / f"{stem}__{digest}{suffix}"


def build_atomically(path: Path, write: Callable[[Path], None]) -> Path:
    """Create ``path`` with ``write(tmp)`` then rename, so a killed build leaves no half file."""
    if path.exists():
        return path
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(Path(tmp))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
    return path
