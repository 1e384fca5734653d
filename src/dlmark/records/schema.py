"""The record schema: one flat JSON object per measurement, versioned.

Format history (bump SCHEMA_VERSION and add an upgrade step for every change):

* 0 -- the 2018 dlmark files: a JSON list of dicts with ``model``, ``device``,
  ``batch_size``, ``throughput``, ``device_mem`` and ``workload``; ``null``
  entries where a job died. No version field.
* 1 -- dlmark 0.1: the seed's columns plus configuration, statistics, status,
  model facts and the environment (``env``, a nested object).

Records are plain dicts so that they flow into pandas untouched. Every column
that has a unit names it (``latency_ms_median``, ``peak_mem_allocated_mb``),
except the seed's own ``throughput`` (samples/s) and ``device_mem`` (MB).
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Iterable

from dlmark.errors import UserError

SCHEMA_VERSION = 1

#: Terminal states of a job. ``ok`` and ``oom`` are facts about the model and
#: configuration; the others are failures of the run and are retried on resume.
STATUSES = ("ok", "oom", "error", "timeout", "crash", "unavailable")
FINAL_STATUSES = ("ok", "oom")

#: Columns every v1 record has (values may be ``None``). Documented in docs/records.md.
COLUMNS = (
    # identity and the seed's columns
    "schema_version", "job_key", "task", "workload", "model", "family", "source",
    "device", "device_spec", "batch_size", "throughput", "device_mem",
    # configuration
    "backend", "precision", "layout", "compile_mode", "threads", "input_shape",
    # model facts
    "params", "flops_per_sample", "weights", "weights_tag",
    # outcome
    "status", "error",
    # environment and provenance
    "env", "host", "timestamp", "run_id", "suite",
)

#: The fields that say *what* was measured. Two records with equal values here
#: measure the same thing, so resume skips the second and a re-run replaces it.
CONFIG_FIELDS = (
    "task", "source", "backend", "precision", "layout", "compile_mode", "threads",
    "batch_size", "input_shape", "device_spec", "device", "host", "extra_config",
)


#: Version of the ``job_key`` hash. Bump it with any change to CONFIG_FIELDS or the hashing:
#: resume then recomputes the keys of records written under another scheme from their
#: configuration fields instead of silently re-measuring (or skipping) everything.
JOB_KEY_SCHEME = 1


def job_key(config: dict[str, Any]) -> str:
    """A short stable hash of a job's configuration fields (scheme ``JOB_KEY_SCHEME``)."""
    canonical = {k: config.get(k) for k in CONFIG_FIELDS}
    blob = json.dumps(canonical, sort_keys=True, default=str).encode()
    return hashlib.sha256(blob).hexdigest()[:16]


def new_record(**fields: Any) -> dict[str, Any]:
    """A v1 record with every standard column present."""
    record = {column: None for column in COLUMNS}
    record.update(fields)
    record["schema_version"] = SCHEMA_VERSION
    record["job_key_scheme"] = JOB_KEY_SCHEME
    record.setdefault("workload", "Inference")
    if record["workload"] is None:
        record["workload"] = "Inference"
    if record["status"] not in STATUSES:
        raise ValueError(f"record status must be one of {STATUSES}, got {record['status']!r}")
    return record


def _upgrade_0_to_1(record: dict[str, Any]) -> dict[str, Any]:
    upgraded = {column: None for column in COLUMNS}
    upgraded.update(record)
    if "task" not in record or record.get("task") is None:
        upgraded["task"] = "accuracy" if "accuracy" in record and "throughput" not in record else (
            "throughput" if "throughput" in record else "max_batch_size")
    upgraded["status"] = record.get("status") or "ok"
    upgraded["workload"] = record.get("workload") or "Inference"
    model = str(record.get("model", ""))
    upgraded["family"] = record.get("family") or family_of(model)
    upgraded["schema_version"] = 1
    return upgraded


_UPGRADES = {0: _upgrade_0_to_1}


def upgrade(record: dict[str, Any]) -> dict[str, Any]:
    """Bring a record of any known version to the current one.

    Raises ``UserError`` for a record written by a newer dlmark.
    """
    version = record.get("schema_version", 0)
    if not isinstance(version, int) or version < 0:
        raise ValueError(f"bad schema_version {version!r}")
    if version > SCHEMA_VERSION:
        raise UserError(
            f"record has schema version {version} but this dlmark reads up to {SCHEMA_VERSION}; "
            "upgrade dlmark (pip install -U dlmark)")
    while version < SCHEMA_VERSION:
        record = _UPGRADES[version](record)
        version = record["schema_version"]
    return record


def family_of(model: str) -> str:
    """The seed notebook's grouping: the display name up to its last '-'."""
    cut = model.rfind("-")
    return model[:cut] if cut > 0 else model


def iter_file_records(payload: Any) -> Iterable[dict[str, Any]]:
    """Records in one parsed result file: a dict, or a (2018) list with ``null`` holes."""
    if isinstance(payload, dict):
        yield payload
    elif isinstance(payload, list):
        for item in payload:
            if item is None:
                continue  # a job that died in the 2018 tool
            if not isinstance(item, dict):
                raise ValueError(f"expected a JSON object in the list, got {type(item).__name__}")
            yield item
    else:
        raise ValueError(f"expected a JSON object or list, got {type(payload).__name__}")
