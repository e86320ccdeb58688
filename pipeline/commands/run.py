"""`dolma-prep run`: every stage of a mix file on Ray, then the outputs checked and the run's outcome judged."""
from __future__ import annotations

import argparse
import os
import sys

from ...core.io import InputError
from .common import EXIT_INCONSISTENT, EXIT_OK, EXIT_REJECTS, MAX_REPEATS_WITHOUT_YES, workers

NAME = "run"
HELP = "run a mix file end to end: tag, dedup, select, tokenize"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Run every stage of a mix file on Ray and write tokens/<source>/part-*.npy, "
                                          "their .csv.gz indexes and manifest.json under the output folder. "
                                          "A rerun of the same mix resumes where the last one stopped.")
    p.add_argument("mix", help="the mix file (YAML), e.g. mixes/anneal.yaml")
    p.add_argument("--data-root", help="folder or URL (s3://...) the sources' globs are relative to "
                                       "(default: the mix file's data_root, else the bundled sample)")
    p.add_argument("--output", "-o", help="output folder or URL (default: the mix file's output, else out/<name>)")
    p.add_argument("--workers", "-w", type=workers, help="local Ray worker processes (default: all cores)")
    p.add_argument("--ray-address", help="join an existing Ray cluster at this address instead of starting one")
    p.add_argument("--scale", help="multiply the token targets by this factor, or 'auto': the largest scale <= 1 "
                                   "the data can deliver with the planned shares (default: the mix file's scale)")
    p.add_argument("--tagger-modules", nargs="*", help="Python files or modules registering extra taggers "
                                                       "(never from the mix file: mix files cannot load code)")
    p.add_argument("--scratch", help="folder or URL for intermediate tables (dedup shuffles, token counts); every "
                                     "node must reach it. Default: <output>/_work")
    p.add_argument("--max-tagger-error-rate", type=float, default=0.0,
                   help="fraction of documents a tagger may fail on before the run exits 3 (default 0: any failure)")
    p.add_argument("--max-rule-error-rate", type=float, default=0.0,
                   help="fraction of a source's documents a filter rule may raise on (a jq type error, error(...): "
                        "counted per rule, as no match) before the run exits 3 (default 0: any error)")
    p.add_argument("--allow-empty", nargs="*", metavar="SOURCE",
                   help="let these sources (no names: every source) end with 0 tokens, or lose over 99%% of their "
                        "documents to one filter rule, without failing the run (exit 3 otherwise)")
    p.add_argument("--yes", action="store_true", help=f"run even if a source is written more than "
                                                      f"{MAX_REPEATS_WITHOUT_YES} times over (proportion)")
    p.add_argument("--force", action="store_true", help="discard an output folder holding a run of another config")
    p.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary table")
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..mixfile import check_scale, check_workers, load_mix
    from ..run import run
    from ..stats import compute
    from ..stats_render import render

    mix = load_mix(args.mix, data_root=args.data_root, output=args.output)
    if args.scale is not None:
        mix.scale = check_scale(args.scale)
    if args.workers is not None:
        check_workers(args.workers)
    if not 0 <= args.max_rule_error_rate <= 1 or not 0 <= args.max_tagger_error_rate <= 1:
        raise InputError("--max-rule-error-rate and --max-tagger-error-rate are fractions between 0 and 1")
    unknown = [n for n in (args.allow_empty or []) if n not in {s.name for s in mix.sources}]
    if unknown:
        raise InputError(f"--allow-empty names sources the mix does not have: {', '.join(unknown)}")
    big = [s.name for s in mix.sources if (s.proportion or 0) > MAX_REPEATS_WITHOUT_YES]
    if big and not args.yes:
        raise InputError(f"{args.mix}: {', '.join(big)} would be written more than {MAX_REPEATS_WITHOUT_YES} times "
                         "over (proportion); pass --yes if that is meant")
    from ..preflight import preflight

    if args.tagger_modules:  # the user's taggers must be registered for the preflight to know them
        from dolma_prep.taggers import registry

        registry.load_modules([os.path.abspath(m) if m.endswith(".py") else m for m in args.tagger_modules])
    preflight(mix, args.mix)  # models, lists, tokenizer, eval sets, globs, output: before Ray starts
    manifest = run(mix, workers=args.workers, ray_address=args.ray_address, progress=not args.quiet, force=args.force,
                   tagger_modules=args.tagger_modules or [], scratch=args.scratch)
    result = compute(mix.output)  # the arrays against their indexes and the manifest's own arithmetic
    if not args.quiet:
        render(result)
        print(f"finished in {manifest['_elapsed_s']:.1f}s; outputs in {mix.output}")
    if result["errors"]:
        for e in result["errors"]:
            print(f"error: {e}", file=sys.stderr)
        print(f"error: the outputs in {mix.output} disagree with the manifest (above); rerun the same command to "
              "re-derive damaged shards", file=sys.stderr)
        return EXIT_INCONSISTENT
    from ..outcome import examine

    findings = examine(manifest, args.allow_empty, args.max_rule_error_rate)
    for w in findings.warnings:
        print(f"warning: {w}", file=sys.stderr)
    code = EXIT_OK
    for f in findings.failures:
        print(f"error: {f}", file=sys.stderr)
        code = EXIT_REJECTS
    if manifest["rejected"]:
        print(f"warning: {manifest['rejected']} bad input records were rejected; "
              f"reasons and lines are in {mix.output}/rejects/", file=sys.stderr)
        code = EXIT_REJECTS
    for note in manifest["tokenizer"].get("engine", {}).get("notes", []):
        print(f"warning: tokenized with the reference engine (same ids, slower): {note}", file=sys.stderr)
    from ..manifest import step_entry

    tag = step_entry(manifest, "tag").get("counters", {})
    errors = sum(c.get("tagger_errors", 0) for c in tag.values())
    tagged = sum(c.get("documents_in", 0) for c in tag.values())
    if errors and errors > args.max_tagger_error_rate * tagged:
        per = ", ".join(f"{s}: {c['tagger_errors']:,}" for s, c in tag.items() if c.get("tagger_errors"))
        print(f"warning: taggers raised on {errors:,} of {tagged:,} documents ({per}); those documents lack the "
              f"failing tagger's fields (details in the Ray worker logs; --max-tagger-error-rate tolerates a known "
              f"rate)", file=sys.stderr)
        code = EXIT_REJECTS
    return code
