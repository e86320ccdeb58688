"""`dolma-prep index build|add|info`: a persistent dedup index beside a released corpus."""
from __future__ import annotations

import argparse
import json

from ...core.io import InputError
from .common import EXIT_INCONSISTENT, EXIT_OK, add_ray_args, expand

NAME = "index"
HELP = "a persistent dedup index beside a released corpus: build, add, info"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Keep the hashes of a released corpus so that later releases are "
                                          "deduplicated against it (`dedup KIND --against INDEX`) without recomputing "
                                          "it. Each `add` writes a new immutable version; earlier files are never "
                                          "rewritten.")
    actions = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    ib = actions.add_parser("build", help="create INDEX (version 1) over documents")
    ib.add_argument("--documents", nargs="+", required=True, help="document files or globs")
    ib.add_argument("--kinds", default="exact,minhash",
                    help="comma-separated: exact, minhash (default: both), paragraphs, or ngram (an evaluation registry for "
                         "decontaminate: --documents are evaluation sets)")
    ib.add_argument("--output", required=True, metavar="INDEX", help="folder or URL of the new index")
    ib.add_argument("--params", help='JSON per kind, e.g. {"minhash": {"bands": 16, "rows": 7}, "exact": {"key": "text"}}')
    add_ray_args(ib)
    ia = actions.add_parser("add", help="append documents as the next version of INDEX")
    ia.add_argument("index", metavar="INDEX")
    ia.add_argument("--documents", nargs="+", required=True, help="document files or globs of the new release")
    add_ray_args(ia)
    ii = actions.add_parser("info", help="versions, sizes and parameters of INDEX")
    ii.add_argument("index", metavar="INDEX")
    ii.add_argument("--json", action="store_true")
    ii.add_argument("--verify", action="store_true", help="recompute every file's sha256 (exit 4 on a mismatch)")
    for q in (ib, ia, ii):
        q.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from dolma_prep.dedup import index

    from ...core.runtime import init_ray

    if args.action == "info":
        out = index.info(args.index, verify=args.verify)
        if args.json:
            print(json.dumps(out, indent=1))
        else:
            print(index.render_info(out))
        return EXIT_INCONSISTENT if out.get("checksum_errors") else EXIT_OK
    paths = expand(args.documents)
    if args.action == "build":
        from dolma_prep.dedup.kinds import index_spec

        kinds = [k.strip() for k in args.kinds.split(",") if k.strip()]
        params = json.loads(args.params) if args.params else {}
        alone = [k for k in kinds if (spec := index_spec(k)) is not None and not spec.documents]
        if alone and len(kinds) > 1:
            raise InputError(f"index build: an evaluation registry (--kinds {alone[0]}) holds evaluation sets; "
                             "build it apart from the exact/minhash index of a corpus")
        extra = set(params) - set(kinds)
        if extra:
            raise InputError(f"index build: --params names kinds not in --kinds: {', '.join(sorted(extra))}")
        spec = {k: index.default_params(k, params.get(k)) for k in kinds}
        init_ray(args.workers, args.ray_address)
        out = index.build(args.output, paths, spec)
    else:
        init_ray(args.workers, args.ray_address)
        out = index.add(args.index, paths)
    print(json.dumps({k: v for k, v in out.items() if k != "stages"}, indent=1))
    return EXIT_OK
