"""`dolma-prep tokenize`: documents into OLMo-ready memmaps and their indexes, like `dolma tokens`."""
from __future__ import annotations

import argparse
import os
import sys

from ...core import io
from ...core.io import InputError
from .common import EXIT_OK, EXIT_REJECTS, expand, workers

NAME = "tokenize"
HELP = "tokenize documents into OLMo-ready memmaps, like `dolma tokens`"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Write OUTPUT/part-<i>-<k:05d>.npy (raw token ids, no header) and .csv.gz "
                                          "indexes (start,end,id,src,loc) for the given document files, one i per "
                                          "input file.")
    p.add_argument("--documents", nargs="+", required=True, help="document files or globs")
    p.add_argument("--output", required=True, help="output folder (local or URL)")
    p.add_argument("--tokenizer", help="tokenizer.json path or hub id (default: the bundled OLMo 1.7 tokenizer)")
    p.add_argument("--eos-token-id", type=int, default=50279)
    p.add_argument("--bos-token-id", type=int, default=None)
    p.add_argument("--pad-token-id", type=int, default=1)
    p.add_argument("--dtype", choices=["auto", "uint16", "uint32"], default="auto")
    p.add_argument("--max-tokens-per-file", type=int, default=512 * 1024 * 1024)
    p.add_argument("--seed", type=int, default=0, help="seed of the document-order shuffle")
    p.add_argument("--workers", "-w", type=workers)
    p.add_argument("--ray-address")
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ...core.runtime import Shard, fingerprint, init_ray, input_identity, make_progress, map_shards
    from ...core.tokens import choose_dtype
    from ..mixfile import BUNDLED_TOKENIZER, TokenizerConfig
    from ..stages.tokenize import load_tokenizer, run_command_shard

    tcfg = TokenizerConfig(path=args.tokenizer or BUNDLED_TOKENIZER, eos_token_id=args.eos_token_id,
                           bos_token_id=args.bos_token_id, pad_token_id=args.pad_token_id, dtype=args.dtype,
                           max_tokens_per_file=args.max_tokens_per_file)
    try:
        tok = load_tokenizer(tcfg.path)
    except Exception as e:  # noqa: BLE001 (file missing, hub unreachable, bad JSON)
        raise InputError(f"cannot load tokenizer {tcfg.path!r}: {e}") from None
    choose_dtype(tok.get_vocab_size(with_added_tokens=True), tcfg.dtype)  # refuse a too-small dtype early
    paths = expand(args.documents)
    # a done marker counts only for the same input file and the same tokenizer settings and seed
    shards = [Shard("", i, p, f"{i:06d}", ident=input_identity(p)) for i, p in enumerate(paths)]
    out = args.output if io.is_remote(args.output) else os.path.abspath(args.output)
    init_ray(args.workers, args.ray_address)
    ctx = {"output": out, "tokenizer": tcfg.model_dump(), "seed": args.seed}
    with make_progress(not args.quiet) as prog:
        res = map_shards("tokenize", run_command_shard, shards, ctx, prog,
                         upstream=fingerprint(ctx["tokenizer"], ctx["seed"]))
    tokens = sum(r["tokens"] for r in res.values())
    docs = sum(r["documents_out"] for r in res.values())
    empty = sum(r["empty"] for r in res.values())
    rejected = sum(r["rejected"] for r in res.values())
    print(f"{docs:,} documents, {tokens:,} tokens in {sum(len(r['files']) for r in res.values())} files under {out}; "
          f"{empty:,} empty documents skipped")
    for r in res.values():
        for ex in r["reject_examples"]:
            print(f"rejected: {ex}", file=sys.stderr)
    return EXIT_REJECTS if rejected else EXIT_OK
