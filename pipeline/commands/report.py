"""`dolma-prep report`: one self-contained HTML report of a finished run."""
from __future__ import annotations

import argparse
import sys

from ...core import io
from .common import EXIT_INCONSISTENT, EXIT_OK

NAME = "report"
HELP = "write a self-contained HTML report of a finished run"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Write one HTML file (inline SVG charts, no network needed) with tokens per "
                                          "source planned vs achieved, the funnel per stage, each source's document "
                                          "fates and histograms of the main attributes; exit 4 if the outputs "
                                          "disagree with the manifest (the report lists the disagreements).")
    p.add_argument("output", help="the output folder of a `dolma-prep run`")
    p.add_argument("--html", metavar="PATH", help="the HTML file to write (default OUTPUT/report.html)")
    p.add_argument("--attribute", "-a", action="append", metavar="KEY[:MODE]",
                   help="attribute to plot, MODE score|count|coverage (repeatable; default: the main tagger "
                        "attributes)")
    p.add_argument("--max-attributes", type=int, default=6, help="attributes plotted when none is named (default 6)")
    p.add_argument("--bins", type=int, default=30, help="histogram bins (default 30)")
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..report import write

    if args.html is None:
        args.html = io.join(args.output, "report.html")
    result = write(args.output, args.html, attributes=args.attribute, max_attributes=args.max_attributes,
                   bins=args.bins)
    print(f"wrote {args.html}: {len(result['sources'])} sources, {result['total_tokens']:,} tokens"
          + (f"; {len(result['errors'])} disagreements between the manifest and the outputs (listed in the report)"
             if result["errors"] else ""))
    for e in result["errors"]:
        print(f"error: {e}", file=sys.stderr)
    return EXIT_INCONSISTENT if result["errors"] else EXIT_OK
