"""Separate Python environments for runtimes that cannot live beside dlmark's own stack.

MXNet 1.9.1 (the last release) imports ``np.bool``, removed in numpy 1.24, so
it needs numpy 1.23.5, which torch, pandas and bokeh here have outgrown. It
therefore gets a virtual environment of its own, in which only dlmark's worker
runs (standard library, numpy and the runtime; dlmark's source comes through
PYTHONPATH). ``dlmark env create mxnet`` builds it with pip.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from dlmark.errors import UserError


@dataclass(frozen=True)
class EnvSpec:
    name: str
    packages: tuple[str, ...]
    check: str  # Python statement that succeeds when the environment works
    why: str


ENVS = {
    "mxnet": EnvSpec(
        "mxnet", ("mxnet==1.9.1", "numpy==1.23.5", "mlcommons-loadgen"),  # LoadGen: the serving task
        "import mxnet, numpy; print(mxnet.__version__, numpy.__version__)",
        "MXNet 1.9.1 needs numpy < 1.24; dlmark's own stack needs numpy >= 1.24"),
}


def _spec(name: str) -> EnvSpec:
    if name not in ENVS:
        raise UserError(f"unknown environment {name!r}; known: {', '.join(ENVS)}")
    return ENVS[name]


def env_dir(name: str) -> Path:
    from dlmark.backends.cache import root

    return root() / "envs" / name


def python_path(name: str) -> Path:
    """The interpreter of environment ``name``; ``DLMARK_<NAME>_PYTHON`` overrides the location."""
    override = os.environ.get(f"DLMARK_{name.upper()}_PYTHON")
    return Path(override) if override else env_dir(name) / "bin" / "python"


def ready(name: str) -> bool:
    return python_path(name).exists()


def require(name: str) -> str:
    """The interpreter path, or a UserError saying how to build the environment."""
    python = python_path(name)
    variable = f"DLMARK_{name.upper()}_PYTHON"
    if not python.exists() and os.environ.get(variable):
        # The user pointed us somewhere: building the default environment would not help.
        raise UserError(f"{variable}={os.environ[variable]} does not exist; point {variable} at the {name} "
                        f"environment's python, or unset it to use the one `dlmark env create {name}` builds")
    if not python.exists():
        raise UserError(f"the {name} runtime runs in its own environment, which is not built yet "
                        f"({python} missing); create it with: dlmark env create {name}")
    return str(python)


def create(name: str, stream: TextIO | None = None, force: bool = False) -> Path:
    """Build (or rebuild with ``force``) the environment with venv and pip; returns its interpreter."""
    spec = _spec(name)
    stream = stream or sys.stderr
    target = env_dir(name)
    python = target / "bin" / "python"
    began = time.monotonic()
    if force or not python.exists():
        stream.write(f"creating {target} (python {sys.version.split()[0]})\n")
        args = [sys.executable, "-m", "venv"] + (["--clear"] if force else []) + [str(target)]
        _run(args, "creating the virtual environment")
    stream.write(f"installing {' '.join(spec.packages)}\n")
    _run([str(python), "-m", "pip", "install", "--quiet", *spec.packages], f"pip install {' '.join(spec.packages)}")
    versions = _run([str(python), "-c", spec.check], "checking the environment").strip()
    stream.write(f"ready: {python} ({versions}) in {time.monotonic() - began:.0f} s\n")
    return python


def _run(args: list[str], what: str) -> str:
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        tail = "\n".join((done.stderr or done.stdout).strip().splitlines()[-5:])
        raise UserError(f"{what} failed (exit {done.returncode}): {tail}")
    return done.stdout


def status() -> list[dict[str, str]]:
    return [{"env": name, "python": str(python_path(name)), "ready": "yes" if ready(name) else "no",
             "packages": " ".join(spec.packages)} for name, spec in ENVS.items()]
