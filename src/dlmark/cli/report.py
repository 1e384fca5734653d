"""``dlmark report RESULTS_DIR -o SITE_DIR``: the static site (``report.site``)."""
from __future__ import annotations

import argparse


def register(subparsers) -> None:
    """Add ``report`` to the ``dlmark`` command's subparsers."""
    report = subparsers.add_parser(
        "report", help="build a static HTML report site from a results folder",
        description="Build a static site that opens offline and can be published as it is: an index "
                    "with every model and configuration in a searchable, sortable, paginated table, "
                    "a page of interactive plots for all networks and one per model family, and a "
                    "CSV download. Subfolders of RESULTS are read too.")
    report.add_argument("results", help="results folder written by `dlmark run --out` (subfolders included)")
    report.add_argument("-o", "--out", default="site", help="site folder to write (default: site)")
    report.set_defaults(handler=main)


def main(args: argparse.Namespace) -> int:
    """Build the site; a folder without readable results is a UserError (one line, exit 2)."""
    from dlmark.report.site import build_site

    summary = build_site(args.results, args.out)
    print(summary.line())
    return 0
