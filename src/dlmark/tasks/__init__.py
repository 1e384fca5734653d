"""Tasks: what is measured for a job, one module per task, found through this registry.

A task module provides:

* ``plan_jobs(options, model, variant, planned) -> list[Job]``: its jobs for one model and variant;
* ``preflight(options)``: what it can check before any work (data sets, weights), as UserErrors;
* ``run_group(group, lane, ctx)``: the driver half, a group's jobs -> records (``run.jobs`` helps);
* ``WORKER_OPS``: op name -> function(runner, request) -> answer fields, the worker half.

The registry below holds what the store and the planner need without importing a
task (its file names, how a job reads on the progress line, its relative cost), so
that naming a record file never loads a task's code. Adding a task is one module
and one line here.
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass
from types import ModuleType


@dataclass(frozen=True)
class TaskInfo:
    name: str
    module: str
    file_stem: str  # result file names: {prefix}__{file_stem}__...{file_suffix}; the seed's stems
    file_suffix: str = ".json"
    describe: str = ""  # how a job without a batch size reads on the progress line
    cost_per_job: float = 1.0  # relative time, for scheduling several lanes


REGISTRY: dict[str, TaskInfo] = {info.name: info for info in (
    TaskInfo("throughput", "dlmark.tasks.throughput", "benchmark_throughput"),
    TaskInfo("max_batch_size", "dlmark.tasks.max_batch_size", "benchmark_largest_batch_size",
             describe="largest batch", cost_per_job=8.0),
    TaskInfo("accuracy", "dlmark.tasks.accuracy", "benchmark_accuracy", "__accuracy.json", describe="accuracy"),
    TaskInfo("serving", "dlmark.tasks.serving", "benchmark_serving", describe="serving", cost_per_job=4.0),
    TaskInfo("pipeline", "dlmark.tasks.pipeline", "benchmark_pipeline", describe="input pipeline", cost_per_job=3.0),
)}

TASKS = tuple(REGISTRY)


def normalize_task(name: str) -> str:
    """Accept the CLI's spelling (max-batch-size) and the record's (max_batch_size)."""
    return name.strip().replace("-", "_")


def info(name: str) -> TaskInfo:
    try:
        return REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown task {name!r}; known: {', '.join(TASKS)}") from None


def get(name: str) -> ModuleType:
    """The task's module (imported on first use)."""
    return importlib.import_module(info(name).module)


def worker_op(task: str, op: str):
    """The worker-side function of ``task`` answering ``op``."""
    ops = get(task).WORKER_OPS
    if op not in ops:
        raise KeyError(f"task {task!r} has no worker operation {op!r}; it has {', '.join(ops)}")
    return ops[op]
