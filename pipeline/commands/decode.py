"""`dolma-prep decode`: one tokenized document back as text, found through its array's index."""
from __future__ import annotations

import argparse
import json
import sys

from ...core import io
from ...core.io import InputError
from .common import EXIT_OK

NAME = "decode"
HELP = "print one tokenized document back as text, via its index"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP)
    p.add_argument("file", help="a part-*.npy file (its .csv.gz index must be beside it)")
    p.add_argument("--doc", type=int, required=True, help="0-based row of the index")
    p.add_argument("--tokenizer", help="tokenizer.json (default: the bundled OLMo 1.7 tokenizer)")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..mixfile import BUNDLED_TOKENIZER
    from ..stages.tokenize import decode

    if not io.exists(args.file):
        raise InputError(f"{args.file}: no such token file")
    row, text = decode(args.file, args.doc, args.tokenizer or BUNDLED_TOKENIZER)
    if args.json:
        print(json.dumps({**row, "text": text}, ensure_ascii=False))
    else:
        print(f"# id={row['id']} tokens={row['tokens']} src={row['src']}:{row['loc']}", file=sys.stderr)
        print(text)
    return EXIT_OK
