"""The accuracy/speed trade-off: join throughput and accuracy records, find the frontier.

``dlmark pareto RESULTS_DIR`` prints the Pareto-optimal configurations (no
other is both faster and more accurate) on a device at one batch size, and
answers "the fastest model with at least X top-1" or "the most accurate one
within Y ms". The frontier is ``dlmark.analysis.pareto.pareto_frontier``, the same
function the accuracy/throughput plot draws. Only pandas is needed.
"""
from __future__ import annotations

import argparse
import math
from typing import Any

from dlmark.errors import UserError

_KEEP = ("model", "device", "device_spec", "precision", "layout", "compile_mode", "backend", "batch_size",
         "throughput", "latency_ms_median")
_ACCURACY = ("accuracy", "top5", "accuracy_source", "accuracy_reference", "accuracy_ci95_low",
             "accuracy_ci95_high", "num_images")


def _ok(df, task: str):
    rows = df[df["task"] == task] if "task" in df.columns else df.iloc[0:0]
    if "status" in rows.columns:
        rows = rows[rows["status"].fillna("ok") == "ok"]
    return rows


def _matches_device(df, device: str):
    wanted = device.strip().lower()
    names = df["device"].astype(str).str.lower()
    specs = df["device_spec"].astype(str).str.lower() if "device_spec" in df.columns else names
    exact = (names == wanted) | (specs == wanted)
    return exact if exact.any() else names.str.contains(wanted, regex=False)


def tradeoff_table(df, device: str | None = None, batch_size: int = 64):
    """One row per measured throughput configuration at ``batch_size`` with its top-1 accuracy.

    Accuracy measured on the same device and precision wins; otherwise the
    model's published figure is used (it does not depend on the device); an int8
    row takes only the accuracy of its own quantized model (``AccuracyPairs``).
    Rows without any accuracy are left out and listed in ``table.attrs["no_accuracy"]``.
    """
    import pandas as pd

    thr = _ok(df, "throughput")
    thr = thr[pd.to_numeric(thr["batch_size"], errors="coerce") == batch_size] if len(thr) else thr
    if device and len(thr):
        thr = thr[_matches_device(thr, device)]
    if thr.empty:
        available = sorted(set(zip(_ok(df, "throughput").get("device", []),
                                   _ok(df, "throughput").get("batch_size", []))))
        shown = ", ".join(f"{d} b={int(b)}" for d, b in available[:12]) or "none"
        raise UserError(f"no throughput results at batch size {batch_size}"
                        + (f" on device {device!r}" if device else "") + f"; available: {shown}")
    pairs = AccuracyPairs(df)
    rows, missing = [], {}
    for row in thr.to_dict("records"):
        hit = pairs.find(row)
        if hit is None:
            name, why = pairs.why_not(row)
            missing.setdefault(name, why)
            continue
        out = {k: row.get(k) for k in _KEEP}
        out.update({k: hit.get(k) for k in _ACCURACY})
        rows.append(out)
    table = pd.DataFrame(rows, columns=[*_KEEP, *_ACCURACY])
    table.attrs["no_accuracy"] = dict(sorted(missing.items()))
    return table


def _value(row: dict[str, Any], key: str) -> Any:
    value = row.get(key)
    return None if value is None or (isinstance(value, float) and math.isnan(value)) else value


def _calibration(row: dict[str, Any]) -> tuple:
    """Which calibration made an int8 model: its source, count, seed and (ImageNet) files."""
    return tuple(_value(row, k) for k in ("calibration_source", "calibration_samples", "calibration_seed",
                                          "calibration_files_sha256"))


class AccuracyPairs:
    """The accuracy record that goes with a throughput record, by configuration.

    A floating-point configuration takes the accuracy measured on its device in its
    precision (its own runtime and compile mode first, then any other), else the weights'
    published figure. An int8 one is another model per runtime and calibration: it takes
    only the accuracy measured on that runtime, compile mode and calibration (the same
    quantized model), and never the floating-point published figure.
    """

    def __init__(self, df):
        import pandas as pd

        acc = _ok(df, "accuracy")
        if len(acc):
            acc = acc[pd.to_numeric(acc["accuracy"], errors="coerce").notna()]
            if "timestamp" in acc.columns:
                acc = acc.sort_values("timestamp", kind="stable")  # the latest record wins below
        self.exact: dict[tuple, dict[str, Any]] = {}
        self.measured: dict[tuple, dict[str, Any]] = {}
        self.published: dict[str, dict[str, Any]] = {}
        for row in acc.to_dict("records"):
            if row.get("accuracy_source") == "measured":
                self.exact[self._exact_key(row)] = row
                self.measured[(row["model"], row["device"], row.get("precision"))] = row
            elif row.get("precision") != "int8":
                self.published[row["model"]] = row
        # Records stating that no figure is known say why: per model, and per int8 runtime.
        self.absent: dict[tuple, str] = {}
        if "task" in df.columns and "status" in df.columns:
            for row in df[(df["task"] == "accuracy") & (df["status"] == "unavailable")].to_dict("records"):
                self.absent[self._absent_key(row)] = row.get("error")

    @staticmethod
    def _exact_key(row: dict[str, Any]) -> tuple:
        int8 = row.get("precision") == "int8"
        return (row["model"], row["device"], row.get("precision"), _value(row, "backend") or "pytorch",
                _value(row, "compile_mode"), _calibration(row) if int8 else None)

    @staticmethod
    def _absent_key(row: dict[str, Any]) -> tuple:
        if row.get("precision") == "int8":
            return (row["model"], "int8", _value(row, "backend") or "pytorch", _value(row, "compile_mode"))
        return (row["model"],)

    def find(self, row: dict[str, Any]) -> dict[str, Any] | None:
        hit = self.exact.get(self._exact_key(row))
        if hit is not None or row.get("precision") == "int8":
            return hit
        return self.measured.get((row["model"], row["device"], row.get("precision"))) or \
            self.published.get(row["model"])

    def why_not(self, row: dict[str, Any]) -> tuple[str, str]:
        """(what is left out, why): a model, or an int8 configuration of one."""
        if row.get("precision") != "int8":
            return row["model"], self.absent.get((row["model"],)) or "no accuracy record"
        backend, mode = _value(row, "backend") or "pytorch", _value(row, "compile_mode")
        name = f"{row['model']} int8 on {backend}" + (f" (compile {mode})" if mode else "")
        why = self.absent.get((row["model"], "int8", backend, mode)) or \
            "no int8 accuracy record of this runtime and calibration (measure it with --task accuracy --imagenet DIR)"
        return name, why


def accuracy_frames(df) -> dict[str, Any]:
    """Per device, its throughput records with an ``accuracy`` column, paired by configuration
    (``AccuracyPairs``: an int8 point beside the fp32 one, never the fp32 figure on it), for
    ``plot.throughput_vs_accuracy``. At the accuracy records' batch size where throughput was
    measured there, else at the largest batch size measured for the most models."""
    import pandas as pd

    thr, acc = _ok(df, "throughput"), _ok(df, "accuracy")
    if thr.empty or acc.empty:
        return {}
    pairs = AccuracyPairs(df)
    wanted = set(pd.to_numeric(acc["batch_size"], errors="coerce").dropna()) if "batch_size" in acc else set()
    frames = {}
    for device, rows in thr.groupby("device", sort=False):
        chosen = rows[pd.to_numeric(rows["batch_size"], errors="coerce").isin(wanted)]
        if chosen.empty:
            common = rows.groupby("batch_size")["model"].nunique()
            chosen = rows[rows["batch_size"] == common[common == common.max()].index.max()]
        hits = [pairs.find(row) for row in chosen.to_dict("records")]
        paired = chosen.assign(accuracy=[h.get("accuracy") if h else None for h in hits],
                               accuracy_source=[h.get("accuracy_source") if h else None for h in hits])
        paired = paired[paired["accuracy"].notna()]
        if not paired.empty:
            frames[str(device)] = paired
    return frames


def _fraction(value: float | None) -> float | None:
    """--min-accuracy takes 76 or 0.76 for 76% top-1."""
    if value is None:
        return None
    if value < 0 or value > 100:
        raise UserError(f"--min-accuracy must be a top-1 accuracy in percent (76) or as a fraction (0.76), got {value}")
    return value / 100.0 if value > 1 else value


def answer(table, min_accuracy: float | None = None, max_latency_ms: float | None = None) -> dict[str, Any]:
    """Frontier and the best picks under the constraints (accuracy as a fraction)."""
    from dlmark.analysis.pareto import pareto_frontier

    frontier = pareto_frontier(table, x="throughput", y="accuracy")
    allowed = table
    if min_accuracy is not None:
        allowed = allowed[allowed["accuracy"] >= min_accuracy - 1e-12]
    if max_latency_ms is not None:
        allowed = allowed[allowed["latency_ms_median"].astype(float) <= max_latency_ms]
    fastest = allowed.loc[allowed["throughput"].astype(float).idxmax()] if len(allowed) else None
    most_accurate = allowed.loc[allowed["accuracy"].astype(float).idxmax()] if len(allowed) else None
    return {"frontier": frontier, "allowed": allowed, "fastest": fastest, "most_accurate": most_accurate}


def _percent(value: Any) -> str:
    return "-" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{100 * float(value):.2f}%"


def _describe(row) -> str:
    backend = row.get("backend") if row.get("backend") not in (None, "pytorch") and not _isnan(row.get("backend")) else None
    config = "/".join(str(v) for v in (row.get("precision"), row.get("layout"), backend) if v and v != "nchw")
    return (f"{row['model']}{f' ({config})' if config else ''}: {float(row['throughput']):,.1f} img/s, "
            f"{_percent(row['accuracy'])} top-1 {row.get('accuracy_source')}")


def _isnan(value: Any) -> bool:
    return isinstance(value, float) and math.isnan(value)
