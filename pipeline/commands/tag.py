"""`dolma-prep tag`: run taggers over documents, writing dolma attribute files beside them."""
from __future__ import annotations

import argparse
import json
import sys

from ...core.io import InputError
from .common import EXIT_OK, EXIT_REJECTS, add_ray_args, expand

NAME = "tag"
HELP = "tag documents, writing dolma attribute files beside them"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Run taggers over documents and write <dataset>/attributes/EXP/<same path> "
                                          "exactly as `dolma tag` does (keys EXP__TAGGER__FIELD, spans [start, end, "
                                          "score]).")
    p.add_argument("--documents", nargs="+", required=True, help="document files or globs (<dataset>/documents/...)")
    p.add_argument("--taggers", required=True, help="comma-separated tagger names, e.g. gopher_v1,c4_v1")
    p.add_argument("--experiment", required=True, help="attribute folder and key prefix")
    p.add_argument("--tagger-modules", nargs="*", help="Python files or modules registering extra taggers")
    p.add_argument("--options", help='JSON of per-tagger options, e.g. {"ft_lang_id_en_doc_v2": {"model_path": "lid.bin"}}')
    add_ray_args(p)
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from dolma_prep.taggers import registry

    from ...core.runtime import init_ray, make_progress
    from ..mixfile import check_name
    from ..stages.tag import tag_documents

    check_name(args.experiment, "--experiment")  # it becomes a folder name beside the documents
    registry.load_modules(args.tagger_modules or [])
    names = [t.strip() for t in args.taggers.split(",") if t.strip()]
    unknown = [n for n in names if n not in registry.available()]
    if unknown:
        raise InputError(f"unknown tagger(s) {', '.join(unknown)}; known: {', '.join(registry.available())}")
    options = json.loads(args.options) if args.options else {}
    specs = [(n, options.get(n, {})) for n in names]
    paths = expand(args.documents)
    init_ray(args.workers, args.ray_address)
    with make_progress(not args.quiet) as prog:
        totals = tag_documents(paths, specs, args.experiment, args.tagger_modules or [], prog)
    print(f"tagged {totals['documents']:,} documents in {totals['files'] - totals['skipped']} files "
          f"({totals['skipped']} already done)")
    for ex in totals["examples"][:20]:
        print(f"rejected: {ex}", file=sys.stderr)
    if totals["rejected_earlier"]:
        print(f"{totals['rejected_earlier']:,} bad records of files tagged by an earlier run are still set aside "
              "(<attributes file>.rejects.jsonl)", file=sys.stderr)
    for p in totals["empty_files"]:
        print(f"warning: {p} holds no documents", file=sys.stderr)
    if totals["tagger_errors"]:
        print(f"taggers raised on {totals['tagger_errors']:,} document(s): those documents lack the failing "
              "tagger's fields (details in the Ray worker logs)", file=sys.stderr)
    return EXIT_REJECTS if totals["rejected"] or totals["tagger_errors"] else EXIT_OK
