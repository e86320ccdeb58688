"""`dolma-prep show`: sample documents of a source, each with the rule that kept or removed it."""
from __future__ import annotations

import argparse
import json

from ...core.io import InputError
from .common import EXIT_OK

NAME = "show"
HELP = "sample documents of a source with the rule that kept or removed them"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Print sample documents of one source, kept (in the token arrays) or, with "
                                          "--dropped, removed by a rule (dropped/ gives the reason, replayed here) or "
                                          "by sampling (u = unit_hash(seed, source, id) against the source's rule "
                                          "copies = whole + [u < threshold]), each with its attributes and text.")
    p.add_argument("output", help="the output folder of a `dolma-prep run`")
    p.add_argument("--source", required=True, help="the source, as named in the mix file")
    p.add_argument("--dropped", action="store_true", help="documents not in the token arrays: removed by a rule, "
                                                          "not drawn by sampling, or rejected as bad input")
    p.add_argument("-n", type=int, default=5, help="how many documents (default 5), spread over the deciding rules")
    p.add_argument("--reason", help="only documents whose reason contains this text (e.g. exact_duplicates, "
                                    "min_text_length, sampling); implies --dropped")
    p.add_argument("--id", help="explain this one document, whatever happened to it")
    p.add_argument("--chars", type=int, default=300, help="characters of text to print (default 300)")
    p.add_argument("--json", action="store_true", help="print JSON instead of panels")
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..show import explain, render

    if args.n < 1:
        raise InputError(f"-n must be at least 1, got {args.n}")
    result = explain(args.output, args.source, dropped=args.dropped, n=args.n, reason=args.reason,
                     doc_id=args.id, chars=args.chars)
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
    else:
        render(result)
    return EXIT_OK
