"""`dolma-prep stats`: documents and tokens per source and stage of a finished run, checked against its manifest."""
from __future__ import annotations

import argparse
import json
import sys

from .common import EXIT_INCONSISTENT, EXIT_OK

NAME = "stats"
HELP = "documents and tokens per source and stage of a finished run"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Documents, characters and tokens per source in and out of every stage "
                                          "(read, tagged, deduplicated by kind, filtered by rule, sampled, tokenized), "
                                          "planned vs achieved tokens and shares, recounted from the run's indexes, "
                                          "array sizes, attribute files, dropped/ and rejects/ and cross-checked "
                                          "against the manifest (exit 4 on any disagreement). Tokens before selection "
                                          "are estimates, marked ~. With --attribute, quantiles and a histogram of an "
                                          "attribute per source.")
    p.add_argument("output", help="the output folder of a `dolma-prep run`")
    p.add_argument("--json", action="store_true", help="print JSON instead of tables")
    p.add_argument("--no-funnel", action="store_true", help="only the per-source summary table, no stage tables")
    p.add_argument("--quick", action="store_true", help="check only the indexes and array sizes, not attribute, "
                                                        "dropped and rejects files or the sampling replay")
    p.add_argument("--attribute", "-a", action="append", metavar="KEY",
                   help="an attribute key, e.g. anneal__char_length_v1__length: print its distribution per source "
                        "(repeatable)")
    p.add_argument("--value", choices=["score", "count", "coverage"], default="score",
                   help="per document: the first span's score (default), the number of spans, or the characters "
                        "the spans cover")
    p.add_argument("--status", choices=["all", "kept", "dropped"], default="all",
                   help="documents to include: all read documents (default), or those kept / dropped by select")
    p.add_argument("--source", action="append", metavar="NAME", help="only this source (repeatable)")
    p.add_argument("--bins", type=int, default=20, help="histogram bins (default 20)")
    p.add_argument("--bin-scale", choices=["auto", "log", "linear"], default="auto",
                   help="histogram bins: log-spaced for positive values spanning 100x or more (auto), or forced")
    p.add_argument("--no-histogram", action="store_true", help="quantiles only")
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..stats import compute
    from ..stats_render import render

    result = compute(args.output, verify=not args.quick)
    summaries = []
    if args.attribute:
        from .. import attrstats

        log = {"auto": None, "log": True, "linear": False}[args.bin_scale]
        summaries = [attrstats.attribute_summary(args.output, key, args.value, bins=args.bins, log=log,
                                                 status=args.status, sources=args.source)
                     for key in args.attribute]
    if args.json:
        if summaries:
            result["attributes"] = {s["key"]: s for s in summaries}
        print(json.dumps(result, indent=1, sort_keys=True))
    elif summaries:
        from .. import attrstats

        for s in summaries:
            attrstats.render(s, histograms=not args.no_histogram)
        for e in result["errors"]:
            print(f"error: {e}", file=sys.stderr)
    else:
        render(result, funnels=not args.no_funnel)
    return EXIT_INCONSISTENT if result["errors"] else EXIT_OK
