"""The driver of ``dlmark run``: plan, execute, write each record as it arrives, summarise."""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from dlmark.measure import environment
from dlmark.measure.devices import Device
from dlmark.run.jobs import RunContext, run_group
from dlmark.run.local import LocalExecutor
from dlmark.run.options import RunOptions
from dlmark.run.plan import Group, Job, plan
from dlmark.records.store import Store
from dlmark.backends.registry import label as runtime_label
from dlmark.report.tables import agreement_label, format_table, in_flight_of, throughput_label


class Progress:
    """One status line per job with counts, elapsed time and an ETA."""

    def __init__(self, total: int, stream: TextIO | None = None, quiet: bool = False):
        self.total = total
        self.stream = stream or sys.stderr
        self.quiet = quiet
        self.started = time.monotonic()
        self.measured = 0
        self.skipped = 0
        self._lock = threading.Lock()
        self._tty = hasattr(self.stream, "isatty") and self.stream.isatty()

    @property
    def finished(self) -> int:
        return self.measured + self.skipped

    def eta_s(self) -> float | None:
        if not self.measured:
            return None
        per_job = (time.monotonic() - self.started) / self.measured
        return per_job * (self.total - self.finished)

    def _write(self, text: str) -> None:
        if self.quiet:
            return
        with self._lock:
            if self._tty:
                self.stream.write("\r\033[K" + text)
            else:
                self.stream.write(text + "\n")
            self.stream.flush()

    def start(self, job: Job, device: Device) -> None:
        eta = self.eta_s()
        eta_text = f" ETA {_duration(eta)}" if eta is not None else ""
        percent = 100 * self.finished / self.total if self.total else 100
        self._write(f"[{self.finished + 1:>3}/{self.total}] {percent:3.0f}% {job.describe()} on {device.spec} "
                    f"| elapsed {_duration(time.monotonic() - self.started)}{eta_text}")

    def done(self, record: dict[str, Any]) -> None:
        self.measured += 1
        if record["status"] != "ok" and not self.quiet:
            self._write(f"      {record['model']} b={record['batch_size']}: {record['status']}: "
                        f"{str(record.get('error') or '').splitlines()[0][:160] if record.get('error') else ''}")

    def note(self, job: Job, text: str) -> None:
        """A step inside a job (a largest-batch trial, a QPS step), so a long search is never silent."""
        self._write(f"      {job.model.name}: {text} | elapsed {_duration(time.monotonic() - self.started)}")

    def skip(self, job: Job, why: str) -> None:
        self.skipped += 1

    def close(self) -> None:
        if self._tty and not self.quiet:
            self.stream.write("\n")


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m{seconds % 60:02d}s"
    return f"{seconds // 3600}h{seconds % 3600 // 60:02d}m"


@dataclass
class RunResult:
    records: list[dict[str, Any]] = field(default_factory=list)  # written by this invocation
    skipped: int = 0
    interrupted: bool = False
    seconds: float = 0.0
    out_dir: Path | None = None
    #: Every record of the planned jobs: found on disk at the start (unless --force) and written now.
    command_records: list[dict[str, Any]] = field(default_factory=list)


#: Signals that stop a run the way Ctrl-C does: a CI cancel, `docker stop`, a batch scheduler, a closed terminal.
STOP_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


@contextlib.contextmanager
def stop_signals_interrupt():
    """SIGTERM and SIGHUP raise KeyboardInterrupt, as Ctrl-C does, while the block runs (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, _interrupt) for s in STOP_SIGNALS}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


def run(options: RunOptions, out_dir: Path | str, stream: TextIO | None = None, quiet: bool = False,
        make_executor: Callable[[RunContext], Any] | None = None) -> RunResult:
    """Run a planned sweep, writing each record to ``out_dir`` the moment it exists.

    ``make_executor(ctx)`` picks where jobs run (default: this host's devices,
    one lane each); see ``ray_executor.RayExecutor``.

    Ctrl-C, SIGTERM and SIGHUP stop at once: the job in flight is dropped,
    every worker is killed, every finished record is already on disk, and
    re-running the same command resumes.
    """
    with stop_signals_interrupt():
        return _run(options, out_dir, stream, quiet, make_executor)


def _run(options: RunOptions, out_dir: Path | str, stream: TextIO | None, quiet: bool,
         make_executor: Callable[[RunContext], Any] | None) -> RunResult:
    began = time.monotonic()
    options.preflight(out_dir)  # every check that can fail before any work, for library callers too
    store = Store(out_dir, options.suite.file_prefix)
    groups: list[Group] = plan(options)
    total = sum(len(g.jobs) for g in groups)
    progress = Progress(total, stream, quiet)
    result = RunResult(out_dir=Path(out_dir))
    write_lock = threading.Lock()

    def emit(record: dict[str, Any]) -> None:
        with write_lock:  # the driver is the only writer; lanes hand records over here
            store.write(record)
            result.records.append(record)
        progress.done(record)

    ctx = RunContext(
        options=options, emit=emit, finished={} if options.force else store.finished_keys(),
        env=environment.capture(), host=environment.host(),
        on_job_start=progress.start, on_job_skipped=progress.skip, on_progress=progress.note, out_dir=Path(out_dir),
    )
    if make_executor is not None:
        executor = make_executor(ctx)
        # An executor may run the sweep once per device kind (Ray's --each-accelerator).
        progress.total = total * getattr(executor, "copies", 1)
    else:
        executor = LocalExecutor(options.devices, options.memory_limit_bytes)
    try:
        executor.run(groups, lambda group, lane: run_group(group, lane, ctx), ctx.stop)
    except KeyboardInterrupt:
        ctx.stop.set()
        executor.kill_all()
        result.interrupted = True
    finally:
        progress.close()
    result.skipped = progress.skipped
    result.seconds = time.monotonic() - began
    result.command_records = command_records(groups, options.devices, ctx.host, ctx.finished, result.records)
    return result


def command_records(groups: list[Group], devices: list[Device], host: str, finished: dict[str, dict[str, Any]],
                    written: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The records of the planned jobs: stored ones (``finished``) and this invocation's, the latter winning.

    Keys are computed for every planned device, as lanes do; under Ray, whose devices
    are known only to the cluster, this finds what was written now.
    """
    by_key: dict[str, dict[str, Any]] = {}
    for group in groups:
        for job in group.jobs:
            for device in devices:
                key = job.key(device, host)
                if key in finished:
                    by_key[key] = finished[key]
    for record in written:
        by_key[record.get("job_key") or str(id(record))] = record
    return list(by_key.values())


def _configuration(r: dict[str, Any]) -> tuple:
    """A summary row's key: model, device and everything that makes a configuration its own,
    requests in flight included (1 for every task that keeps one at a time)."""
    return (r["model"], r["device_spec"], r.get("backend"), r["precision"], r["layout"], r.get("compile_mode"),
            in_flight_of(r) or 1)


def summary_table(records: list[dict[str, Any]]) -> str:
    """Per model, device and configuration: best throughput, batch-1 latency, largest batch, failures."""
    groups: dict[tuple, dict[str, Any]] = {}
    for r in records:
        key = _configuration(r)
        row = groups.setdefault(key, {
            "model": r["model"], "device": r["device_spec"], "precision": r["precision"], "runtime": runtime_label(r),
            "in_flight": key[-1], "agrees": agreement_label(r),
            "best": None, "best_b": None, "lat1": None, "max_b": None, "failed": []})
        if r["task"] == "throughput" and r["status"] == "ok":
            if row["best"] is None or r["throughput"] > row["best"]["throughput"]:
                row["best"], row["best_b"] = r, r["batch_size"]
            if r["batch_size"] == 1:
                row["lat1"] = r["latency_ms_median"]
        elif r["task"] == "max_batch_size" and r["status"] in ("ok", "oom"):
            row["max_b"] = r.get("max_batch_size")
        elif r["task"] == "pipeline" and r["status"] == "ok":
            best = row.get("_e2e")
            if best is None or (r.get("e2e_throughput") or 0) > (best.get("e2e_throughput") or 0):
                row["_e2e"] = r
        elif r["task"] == "accuracy" and r["status"] == "ok" and r.get("accuracy") is not None:
            row["top1"] = f"{100 * r['accuracy']:.2f}% {r.get('accuracy_source') or ''}".strip()
        if r["status"] != "ok":
            row["failed"].append(f"{r['status']}@{r['batch_size']}" if r["task"] == "throughput" else r["status"])
    rows = []
    for row in groups.values():
        rows.append({
            "model": row["model"], "device": row["device"], "precision": row["precision"],
            "runtime": row["runtime"], "in_flight": row["in_flight"], "agrees": row["agrees"],
            "best": throughput_label(row["best"]) if row["best"] else None, "best_b": row["best_b"],
            "lat1": row["lat1"], "max_b": row["max_b"], "failed": ", ".join(row["failed"]) or None,
            "top1": row.get("top1"),
            "e2e": (f"{row['_e2e']['e2e_throughput']:,.1f} ({row['_e2e'].get('bottleneck')}, "
                    f"{row['_e2e'].get('data_workers')} workers)") if row.get("_e2e") else None,
        })
    # The accuracy column appears only when the run measured or looked up accuracy.
    accuracy_column = [("top1", "top-1")] if any(row["top1"] for row in rows) else []
    accuracy_column += [("e2e", "JPEG to logits img/s (bound by)")] if any(row["e2e"] for row in rows) else []
    serving = ""
    if any(r["task"] == "serving" for r in records):
        from dlmark.analysis.serving import serving_rows, shown_columns

        served = serving_rows(records)
        serving = "\n\nServing (MLPerf LoadGen):\n" + format_table(served, shown_columns(served))
        rows = [row for row, key in zip(rows, groups) if any(
            r["task"] != "serving" for r in records if _configuration(r) == key)]
    if not rows:
        return serving.lstrip("\n")
    # Requests in flight appear only when the run kept more than one.
    in_flight_column = [("in_flight", "in flight")] if any(row["in_flight"] != 1 for row in rows) else []
    return format_table(rows, [
        ("model", "model"), ("device", "device"), ("runtime", "runtime"), ("precision", "precision"),
        *in_flight_column, ("agrees", "agrees"), ("best", "best img/s [95% CI]"), ("best_b", "at batch"), ("lat1", "batch-1 ms"),
        ("max_b", "largest batch"), *accuracy_column, ("failed", "not ok"),
    ]) + serving
