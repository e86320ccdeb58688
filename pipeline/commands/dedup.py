"""`dolma-prep dedup KIND`: run one registered dedup kind (dedup/kinds.py) over documents, writing attributes."""
from __future__ import annotations

import argparse
import json
import sys

from ...core import io
from ...core.io import InputError
from .common import EXIT_OK, EXIT_USER, add_ray_args, expand

NAME = "dedup"
HELP = "deduplicate documents: exact, paragraphs, minhash, decontaminate, substrings"


class _DedupKinds:
    """The registered dedup kinds (dedup/kinds.py) as the `dedup` command's choices, read when
    argparse checks or shows them: building the parser imports no kind (its positional has a
    metavar, so argparse does not list the choices when the argument is added)."""

    @staticmethod
    def _names() -> list[str]:
        from dolma_prep.dedup import kinds

        try:
            return kinds.available()
        except InputError as e:  # a module of DOLMA_PREP_DEDUP_MODULES is missing: one line, not a traceback
            print(f"error: {e}", file=sys.stderr)
            raise SystemExit(EXIT_USER) from None

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())


DEDUP_KINDS = _DedupKinds()


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Write attributes/NAME/<same subpath> beside documents/, one line per "
                                          "document: [[0, len(text), 1]] on documents to remove and [] on the rest "
                                          "(exact, minhash), [start, end, score] spans (paragraphs, decontaminate), "
                                          "[start, end, 1] on every repeated substring of at least --min-length bytes "
                                          "or tokens (substrings).")
    p.add_argument("kind", choices=DEDUP_KINDS, metavar="kind", help="a registered dedup kind: %(choices)s")
    p.add_argument("--documents", nargs="+", required=True, help="document files or globs (<dataset>/documents/...)")
    p.add_argument("--attribute", required=True, help="attribute name (folder and key)")
    p.add_argument("--threshold", type=float, help="similarity / overlap threshold of the kind")
    p.add_argument("--eval-sets", nargs="+", help="decontaminate: evaluation sets (JSONL/parquet files or globs)")
    p.add_argument("--min-length", type=int, help="substrings: mark every substring of at least this many units "
                                                  "that occurs more than once (default 100)")
    p.add_argument("--unit", choices=["bytes", "tokens"], help="substrings: UTF-8 bytes (default) or tokens of the "
                                                               "bundled OLMo tokenizer")
    p.add_argument("--params", help='JSON of further parameters, e.g. {"bands": 9, "rows": 13}')
    p.add_argument("--against", metavar="INDEX", help="exact, minhash, paragraphs: an index (`dolma-prep index build`); "
                                                      "also mark duplicates of indexed documents (exact, minhash: "
                                                      "with the indexed id). "
                                                      "decontaminate: an evaluation registry (`index build --kinds "
                                                      "ngram`), INDEX@V for its versions 1..V")
    p.add_argument("--work-dir", "--scratch", dest="work_dir",
                   help="folder or URL for intermediate tables; every node must reach it "
                        "(default: <dataset>/_work/dedup/NAME)")
    add_ray_args(p)
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from dolma_prep.dedup import kinds

    from ...core.runtime import init_ray
    from ..mixfile import check_name, dedup_options
    from ..stages.tag import attributes_beside

    check_name(args.attribute, "--attribute")  # it becomes a folder name beside the documents
    kind = kinds.get(args.kind)
    paths = expand(args.documents)
    pairs = [(p, attributes_beside(p, args.attribute)) for p in paths]
    params = json.loads(args.params) if args.params else {}
    if args.threshold is not None:
        params["threshold"] = args.threshold
    if args.eval_sets:
        params["eval_sets"] = args.eval_sets
    if args.against:  # an index, or an evaluation registry (decontaminate), as the kind's record reads it
        if kind.index is None:
            able = [k.name for k in kinds.all_kinds() if k.index is not None]
            raise InputError(f"dedup {args.kind}: --against is supported for {', '.join(able[:-1])} and {able[-1]}")
        params = kind.index.use(args.against, params)  # before starting Ray: a wrong index, version or parameter
    if args.min_length is not None:
        params["min_length"] = args.min_length
    if args.unit is not None:
        params["unit"] = args.unit
    lacking = kind.cli_check(params) if kind.cli_check else None  # e.g. decontaminate without evaluation sets
    if lacking:
        raise InputError(f"dedup {args.kind} {lacking}")
    params = dedup_options(args.kind, params, "--params")  # unknown keys and bad values named, exit 2
    first = pairs[0][0]
    dataset_root = first[: first.rfind("/documents/")] if "/documents/" in first else "."
    work = args.work_dir or io.join(dataset_root, "_work", "dedup", args.attribute)
    init_ray(args.workers, args.ray_address)
    from ..stages.dedup import runner

    fn = runner(args.kind)
    stats = fn(pairs, args.attribute, work, **params)
    print(json.dumps({k: v for k, v in stats.items() if k != "per_shard"}, indent=1, default=str))
    return EXIT_OK
