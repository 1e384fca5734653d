"""Command line: thin commands over the library, one module per command group.

Commands are registered explicitly (``COMMANDS``); building the parser imports
only these small modules, and a command's library code is imported when it
runs, so ``dlmark --help`` loads neither torch, pandas nor Bokeh. Every user
mistake travels one path: a UserError (or an argument error) becomes one line
on stderr and exit code 2, before anything is written. As a Unix tool: SIGTERM
and SIGHUP stop like Ctrl-C (exit 130), a closed output pipe ends quietly
(exit 0), and a Python warning is one ``dlmark: warning:`` line, never a
source line and a traceback-like location.
"""
from __future__ import annotations

import contextlib
import glob
import importlib
import os
import signal
import sys
import threading
import warnings
from typing import Any, Iterator, Sequence

from dlmark.cli.args import Parser
from dlmark.errors import UserError

#: Each module registers its subcommands with ``register(subparsers)``; in the order --help lists them.
COMMANDS = ("run", "ls", "compare", "models", "env", "report", "pareto", "tune", "peak", "plot", "export")


def build_parser() -> Parser:
    import dlmark

    parser = Parser(prog="dlmark", description="Benchmark deep-learning inference.")
    parser.add_argument("--version", action="version", version=f"dlmark {dlmark.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"dlmark.cli.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    command = None
    with _stop_signals_interrupt(), _warnings_as_lines():
        try:
            args = build_parser().parse_args(argv)
            command = args.command
            _require_results(args)
            code = int(args.handler(args) or 0)
            sys.stdout.flush()  # here, so that a closed pipe is caught below and not at exit
            return code
        except UserError as exc:
            print(f"dlmark: error: {exc}", file=sys.stderr)
            return 2
        except KeyboardInterrupt:
            resume = "; every finished record is kept: run the same command again to resume" if command == "run" else ""
            print(f"dlmark: interrupted{resume}", file=sys.stderr)
            return 130
        except BrokenPipeError:
            # The reader (`| head -1`) has what it wanted. Point stdout at /dev/null so that
            # the interpreter's own flush at exit does not fail on the closed pipe again.
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
            os.close(devnull)
            return 0


#: Commands that read a results folder, file or glob (their ``results`` argument).
READERS = ("ls", "pareto", "plot", "report")


def _require_results(args: Any) -> None:
    """One line, exit 2, when a reader command's results argument names no result file."""
    if args.command not in READERS:
        return
    from dlmark.records.load import has_result_files

    where = str(args.results)
    if args.command == "report":  # RESULTS@RUN_ID: the folder is checked here, the run when it is read
        from dlmark.cli.compare import split_side

        where = split_side(where)[0]
    if not has_result_files(where):
        if not glob.has_magic(where) and not os.path.exists(where):
            raise UserError(f"no such results folder or file: {where}")
        raise UserError(f"no result files in {where}; `dlmark run --out {where}` writes them")


@contextlib.contextmanager
def _stop_signals_interrupt() -> Iterator[None]:
    """SIGTERM (a CI cancel, `docker stop`) and SIGHUP (a closed terminal) stop like Ctrl-C."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def interrupt(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = {s: signal.signal(s, interrupt) for s in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)


@contextlib.contextmanager
def _warnings_as_lines() -> Iterator[None]:
    """Each distinct warning once, as ``dlmark: warning: MESSAGE`` (first line) on stderr."""
    seen: set[str] = set()

    def show(message, category, filename, lineno, file=None, line=None) -> None:
        text = (str(message).strip().splitlines() or [category.__name__])[0]
        if text not in seen:
            seen.add(text)
            print(f"dlmark: warning: {text}", file=sys.stderr)

    with warnings.catch_warnings():  # Python's filters (once per location), our way of showing
        warnings.showwarning = show
        yield
