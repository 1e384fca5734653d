"""Command line: thin commands over the library, one module per command group.

Commands are registered explicitly (``COMMANDS``); building the parser imports
only these small modules, and a command's library code is imported when it
runs, so ``dlmark --help`` loads neither torch, pandas nor Bokeh. Every user
mistake travels one path: a UserError (or an argument error) becomes one line
on stderr and exit code 2, before anything is written.
"""
from __future__ import annotations

import importlib
import sys
from typing import Sequence

from dlmark.cli.args import Parser
from dlmark.errors import UserError

#: Each module registers its subcommands with ``register(subparsers)``; in the order --help lists them.
COMMANDS = ("run", "ls", "models", "env", "report", "pareto", "tune", "peak", "plot", "export")


def build_parser() -> Parser:
    import dlmark

    parser = Parser(prog="dlmark", description="Benchmark deep-learning inference.")
    parser.add_argument("--version", action="version", version=f"dlmark {dlmark.__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=Parser)
    for name in COMMANDS:
        importlib.import_module(f"dlmark.cli.{name}").register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
        return int(args.handler(args) or 0)
    except UserError as exc:
        print(f"dlmark: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
