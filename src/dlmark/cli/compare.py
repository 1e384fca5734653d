"""``dlmark compare BASELINE CANDIDATE``: what got faster or slower between two runs, and is it real.

The statistics are ``analysis.compare``'s (docs/compare.md). Exit codes: 0, or
1 when ``--fail-on-slower`` finds a pair significantly slower by more than its
fraction (a CI gate), 2 for bad input (a side that matches no result files,
a run id that is not there, no pair at all, an unknown axis). A side is a
results folder, file or glob, or one run of it: ``RESULTS@RUN_ID``.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from dlmark.errors import UserError

FORMATS = ("terminal", "md", "json")


def register(commands) -> None:
    parser = commands.add_parser("compare", help="compare two runs: which configurations got faster or slower, "
                                                 "with significance; a CI gate with --fail-on-slower")
    parser.add_argument("baseline", help="results folder, file or glob: the reference; RESULTS@RUN_ID for one "
                                         "run of a folder that holds several (a prefix of the id will do)")
    parser.add_argument("candidate", help="results folder, file or glob, or RESULTS@RUN_ID: the run to judge "
                                          "against the baseline")
    parser.add_argument("--axis", default="",
                        help="fields expected to differ, comma-separated, e.g. env.torch, device, backend "
                             "(records pair when everything else about the configuration is equal)")
    parser.add_argument("--threshold", default="2%",
                        help="smallest change to call: a significant difference below it reads 'same' (default 2%%)")
    parser.add_argument("--format", choices=FORMATS, default="terminal",
                        help="terminal (an aligned table), md (for a pull request) or json")
    parser.add_argument("--fail-on-slower", metavar="FRACTION",
                        help="exit 1 when any pair is significantly slower by more than this, e.g. 5%%")
    parser.set_defaults(handler=main)


def split_side(text: str) -> tuple[str, str | None]:
    """'runs/x' -> ('runs/x', None); 'runs/x@RUN' -> ('runs/x', 'RUN'), unless a file or folder is named so."""
    from dlmark.records.load import result_files

    if "@" not in text or result_files(text):
        return text, None
    pattern, run = text.rsplit("@", 1)
    if not pattern or not run:
        raise UserError(f"{text!r}: write a run as RESULTS@RUN_ID, e.g. runs/quick@3f2a9c1b (a prefix of the id will do)")
    return pattern, run


def load_side(side: str, text: str) -> list[dict]:
    """The records one side names: a results folder, file or glob, or one run of it as RESULTS@RUN_ID.

    UserError (one line) for a side that matches no files, and for a run that is not there
    (listing the runs that are). Also ``dlmark report --baseline``'s reader.
    """
    from dlmark.analysis.compare import select_run
    from dlmark.records.load import load_records, result_files

    pattern, run = split_side(text)
    if not result_files(pattern):
        raise UserError(f"the {side} {pattern!r} matches no result files; give a results folder, "
                        "a JSON file or a glob that `dlmark run` wrote (or RESULTS@RUN_ID for one run of it)")
    records = load_records(pattern)
    return records if run is None else select_run(records, run, pattern)


def _colour() -> bool:
    # https://no-color.org: any non-empty NO_COLOR turns colour off; a pipe or a file never gets it.
    return sys.stdout.isatty() and not os.environ.get("NO_COLOR")


def main(args: argparse.Namespace) -> int:
    from dlmark.analysis.compare import compare, format_markdown, format_terminal, gate, parse_fraction, to_json

    threshold = parse_fraction(args.threshold)
    fail_on = parse_fraction(args.fail_on_slower) if args.fail_on_slower is not None else None
    result = compare(load_side("baseline", args.baseline), load_side("candidate", args.candidate),
                     axis=args.axis, threshold=threshold)
    if args.format == "json":
        print(json.dumps(to_json(result), indent=1))
    elif args.format == "md":
        print(format_markdown(result), end="")
    else:
        print(format_terminal(result, colour=_colour()))
    code = gate(result, fail_on)
    if code:
        slower = sorted((p for p in result.pairs if p.verdict == "slower" and p.ratio is not None
                         and p.ratio < 1 - fail_on), key=lambda p: p.ratio)  # the worst first
        names = ", ".join(f"{p.model} {p.label} ({p.ratio - 1:+.1%})" for p in slower[:5])
        more = f" and {len(slower) - 5} more" if len(slower) > 5 else ""
        print(f"dlmark compare: {len(slower)} pair(s) significantly slower by more than {fail_on * 100:g}%: "
              f"{names}{more}", file=sys.stderr)
    return code
