"""``dlmark report RESULTS_DIR -o SITE_DIR``: the static site (``report.site``); ``--baseline``: its comparison page."""
from __future__ import annotations

import argparse

from dlmark.errors import UserError


def register(subparsers) -> None:
    """Add ``report`` to the ``dlmark`` command's subparsers."""
    report = subparsers.add_parser(
        "report", help="build a static HTML report site from a results folder",
        description="Build a static site that opens offline and can be published as it is: an index "
                    "with every model and configuration in a searchable, sortable, paginated table, "
                    "a page of interactive plots for all networks and one per model family, and a "
                    "CSV download. Subfolders of RESULTS are read too.")
    report.add_argument("results", help="results folder written by `dlmark run --out` (subfolders included; "
                                         "RESULTS@RUN_ID: the comparison page judges that run only)")
    report.add_argument("-o", "--out", default="site", help="site folder to write (default: site)")
    report.add_argument("--baseline", metavar="BASELINE",
                        help="add a comparison page against these results (folder, file, glob or RESULTS@RUN_ID), "
                             "as `dlmark compare BASELINE RESULTS` judges them")
    report.add_argument("--axis", default="", help="with --baseline: fields expected to differ, e.g. env.torch")
    report.add_argument("--threshold", default="2%", help="with --baseline: smallest change to call (default 2%%)")
    report.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Build the site; a folder without readable results is a UserError (one line, exit 2)."""
    from dlmark.cli.compare import split_side
    from dlmark.report.site import build_site

    pages = ()
    if not args.baseline and (args.axis or args.threshold != "2%"):
        raise UserError("--axis and --threshold shape the comparison page: give --baseline BASELINE too")
    if args.baseline:
        from dlmark.analysis.compare import compare, parse_fraction
        from dlmark.cli.compare import load_side
        from dlmark.report.compare_page import page

        # Both sides are read and paired before anything is written: bad input leaves no half-built site.
        result = compare(load_side("baseline", args.baseline), load_side("candidate", args.results),
                         axis=args.axis, threshold=parse_fraction(args.threshold))
        pages = (page(result, args.baseline, args.results),)
    summary = build_site(split_side(args.results)[0], args.out, extra_pages=pages)
    print(summary.line())
    if args.baseline:
        from dlmark.analysis.compare import summary_line

        print(f"comparison with {args.baseline}: {summary_line(result)}")
    return 0
