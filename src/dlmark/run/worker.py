"""The worker process: loads one model at a time and answers measurement requests.

Started by an executor as ``python -m dlmark.run.worker`` (possibly under another
interpreter, e.g. MXNet's environment, so this module imports only the
standard library and what the requested backend needs). Requests arrive as
JSON lines on stdin; answers leave as JSON lines on the original stdout, which
is moved aside at start so that anything a library prints goes to stderr and
cannot corrupt the protocol.

Requests (``op``): ``load`` (backend, model, config), ``outputs`` (batch_size,
seed), ``ping``, ``exit``, and a task's own operations, ``TASK.OP`` (e.g.
``throughput.measure``), found through the task registry (``dlmark.tasks``).
Answers: ``{"ok": true, ...fields}`` or ``{"ok": false, "status": "oom" |
"error", "error": message, "user_error": bool}``; a ``user_error`` (a UserError
raised here: a missing package, absent weights, an unreadable data set) stops
the driver's run with its message.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import time
import traceback
from typing import Any, Callable

# Nothing may be fetched from a hub while measuring; set before any HF import.
os.environ.setdefault("HF_HUB_OFFLINE", "1")


def _apply_memory_limit(limit_bytes: int | None) -> None:
    if not limit_bytes:
        return
    import resource

    # RLIMIT_DATA caps private writable memory (heap and anonymous mmaps, where
    # tensors live) but not mapped libraries, so a cap of a few GiB still lets
    # torch import, and a too-large batch fails its allocation instead of
    # pulling the whole host into swap or the OOM killer.
    resource.setrlimit(resource.RLIMIT_DATA, (limit_bytes, limit_bytes))


def watch_parent(parent_pid: int | None, poll_s: float = 0.5) -> None:
    """Die with the driver, even when it dies by SIGKILL and cannot stop us itself.

    Linux: the kernel sends SIGKILL when the thread that started us ends
    (``PR_SET_PDEATHSIG``). Everywhere, and for the instant before the prctl
    call: a thread that kills this process once our parent is no longer
    ``parent_pid`` (orphans are re-parented to init or a subreaper).
    """
    import threading

    parent_pid = parent_pid or os.getppid()
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
        except (OSError, AttributeError):
            pass  # no libc prctl (another libc): the thread below still watches

    def watch() -> None:
        while os.getppid() == parent_pid:
            time.sleep(poll_s)
        os.kill(os.getpid(), signal.SIGKILL)

    if os.getppid() != parent_pid:  # the driver died before the prctl call took effect
        os.kill(os.getpid(), signal.SIGKILL)
    threading.Thread(target=watch, daemon=True, name="dlmark-parent-watch").start()


class Worker:
    def __init__(self) -> None:
        self.runner: Any = None

    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = str(request.get("op"))
        try:
            handler = self._handler(op)
        except KeyError as exc:
            return {"ok": False, "status": "error", "error": str(exc)}
        try:
            return {"ok": True, **handler(request)}
        except BaseException as exc:  # noqa: BLE001 -- every failure must become an answer
            if isinstance(exc, (SystemExit, KeyboardInterrupt)):
                raise
            oom = (self.runner is not None and self.runner.is_oom(exc)) or type(exc).__name__ in (
                "MemoryError", "OutOfMemoryError")
            from dlmark.errors import UserError

            user_error = isinstance(exc, UserError)
            message = str(exc) if user_error else f"{type(exc).__name__}: {exc}".strip()
            failure = {
                "ok": False, "status": "oom" if oom else "error",
                "error": message[:2000], "traceback": traceback.format_exc()[-4000:],
                "user_error": user_error,
            }
        # Recover only here: inside the except block the traceback still holds
        # the failed pass's tensors, and freeing the cache would free nothing.
        if failure["status"] == "oom" and self.runner is not None:
            self.runner.recover()
        return failure

    def op_ping(self, request: dict[str, Any]) -> dict[str, Any]:
        return {"pid": os.getpid(), "python": sys.version.split()[0]}

    def op_load(self, request: dict[str, Any]) -> dict[str, Any]:
        from dlmark.backends import RunConfig, load

        if self.runner is not None:
            close = getattr(self.runner, "close", None)
            self.runner = None
            if close:
                close()
        config = RunConfig(**request["config"])
        self.runner = load(request["backend"], request["model"], config)
        return self.runner.facts()

    def _handler(self, op: str) -> Callable[[dict[str, Any]], dict[str, Any]]:
        if "." in op:  # a task's operation, on the loaded runner
            from dlmark import tasks

            task, name = op.split(".", 1)
            function = tasks.worker_op(task, name)
            return lambda request: function(self.runner, request)
        handler = getattr(self, f"op_{op}", None)
        if handler is None:
            raise KeyError(f"unknown op {op!r}")
        return handler

    def op_outputs(self, request: dict[str, Any]) -> dict[str, Any]:
        """Logits for a fixed seeded input, for output agreement checks."""
        runner = self.runner
        inputs = runner.make_inputs(int(request["batch_size"]), seed=int(request.get("seed", 0)))
        out = runner.run(inputs)
        runner.synchronize()
        if hasattr(runner, "to_numpy"):  # runtimes whose outputs are not torch tensors (ORT, OpenVINO, MXNet)
            out = runner.to_numpy(out)
        to_list = getattr(out, "float", None)
        values = out.float().cpu().tolist() if to_list else [list(map(float, row)) for row in out]
        return {"logits": values}


def serve(stdin, answer) -> None:
    worker = Worker()
    for line in stdin:
        line = line.strip()
        if not line:
            continue
        request = json.loads(line)
        if request.get("op") == "exit":
            answer({"ok": True})
            return
        answer(worker.handle(request))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m dlmark.run.worker")
    parser.add_argument("--memory-limit", type=int, default=None, help="bytes of private memory the worker may use")
    parser.add_argument("--cpus", default=None, help="comma-separated CPU ids this worker runs on (one lane's share)")
    parser.add_argument("--parent-pid", type=int, default=None, help="the driver's pid: exit when it is gone")
    args = parser.parse_args(argv)
    watch_parent(args.parent_pid)
    # The driver owns Ctrl-C: it stops us explicitly and keeps finished records.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    protocol = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    sys.stdout = sys.stderr
    _apply_memory_limit(args.memory_limit)
    if args.cpus:
        # Before torch starts its thread pool, so every thread inherits the lane's CPUs.
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})

    def answer(message: dict[str, Any]) -> None:
        protocol.write(json.dumps(message, default=str) + "\n")
        protocol.flush()

    serve(sys.stdin, answer)


if __name__ == "__main__":
    main()
