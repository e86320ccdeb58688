"""The `dolma-prep` command line. Thin: parse arguments, call one entry function, report.

Exit codes: 0 success; 1 an internal error (a bug: traceback shown); 2 a user error (bad mix
file, missing input, unwritable output: a one-line message, no traceback); 3 the run finished
but some input records were rejected (counted in the manifest, written under rejects/);
4 `stats` found outputs that disagree with the manifest.
"""
from __future__ import annotations

import argparse
import json
import sys

from .io import InputError

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_REJECTS, EXIT_INCONSISTENT = 0, 1, 2, 3, 4


def _cmd_run(args: argparse.Namespace) -> int:
    from .mixfile import load_mix
    from .run import run
    from .stats import compute, render

    mix = load_mix(args.mix, data_root=args.data_root, output=args.output)
    if args.scale is not None:
        try:
            mix.scale = "auto" if args.scale == "auto" else float(args.scale)
        except ValueError:
            raise InputError(f"--scale must be a number or 'auto', got {args.scale!r}") from None
    manifest = run(mix, workers=args.workers, ray_address=args.ray_address, progress=not args.quiet, force=args.force)
    if not args.quiet:
        render(compute(mix.output))
        print(f"finished in {manifest['_elapsed_s']:.1f}s; outputs in {mix.output}")
    if manifest["rejected"]:
        print(f"warning: {manifest['rejected']} bad input records were rejected; "
              f"reasons and lines are in {mix.output}/rejects/", file=sys.stderr)
        return EXIT_REJECTS
    return EXIT_OK


def _cmd_plan(args: argparse.Namespace) -> int:
    from .mixfile import load_mix
    from .plan import plan

    mix = load_mix(args.mix)
    try:
        result = plan(mix)
    except ValueError as e:
        raise InputError(f"{args.mix}: {e}") from None
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{mix.name}: planned tokens per source (from the mix file, before reading data)")
    for col in ("source", "available (B)", "proportion", "planned (B)", "share"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, r in result["sources"].items():
        fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
        table.add_row(name, fmt(r["tokens_available"] and r["tokens_available"] / 1e9, "{:,.3f}"),
                      fmt(r["proportion"], "{:.4f}"), fmt(r["planned_tokens"] and r["planned_tokens"] / 1e9, "{:,.2f}"),
                      fmt(r["share"] and 100 * r["share"], "{:.2f}%"))
    table.add_row("[bold]total", "", "", f"[bold]{result['total_tokens'] / 1e9:,.2f}", "100.00%")
    Console().print(table)
    return EXIT_OK


def _cmd_stats(args: argparse.Namespace) -> int:
    from .stats import compute, render

    result = compute(args.output)
    if args.json:
        print(json.dumps(result, indent=1, sort_keys=True))
    else:
        render(result)
    return EXIT_INCONSISTENT if result["errors"] else EXIT_OK


def _expand(patterns: list[str]) -> list[str]:
    from . import io

    paths = io.expand_globs("", patterns) if patterns else []
    if not paths:
        raise InputError(f"--documents {' '.join(patterns)} matched no document files")
    return paths


def _cmd_tag(args: argparse.Namespace) -> int:
    from dolma_prep.taggers import registry

    from .runtime import init_ray, make_progress
    from .stages.tag import tag_documents

    registry.load_modules(args.tagger_modules or [])
    names = [t.strip() for t in args.taggers.split(",") if t.strip()]
    unknown = [n for n in names if n not in registry.available()]
    if unknown:
        raise InputError(f"unknown tagger(s) {', '.join(unknown)}; known: {', '.join(registry.available())}")
    options = json.loads(args.options) if args.options else {}
    specs = [(n, options.get(n, {})) for n in names]
    paths = _expand(args.documents)
    init_ray(args.workers, args.ray_address)
    with make_progress(not args.quiet) as prog:
        totals = tag_documents(paths, specs, args.experiment, args.tagger_modules or [], prog)
    print(f"tagged {totals['documents']:,} documents in {totals['files'] - totals['skipped']} files "
          f"({totals['skipped']} already done)")
    for ex in totals["examples"][:20]:
        print(f"rejected: {ex}", file=sys.stderr)
    return EXIT_REJECTS if totals["rejected"] else EXIT_OK


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="dolma-prep",
        description="Curate Dolma-style documents into OLMo-ready token arrays, on Ray.",
        epilog="Run `dolma-prep COMMAND --help` for the options of each command.")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    r = sub.add_parser("run", help="run a mix file end to end: tag, dedup, select, tokenize",
                       description="Run every stage of a mix file on Ray and write tokens/<source>/part-*.npy, "
                                   "their .csv.gz indexes and manifest.json under the output folder. "
                                   "A rerun of the same mix resumes where the last one stopped.")
    r.add_argument("mix", help="the mix file (YAML), e.g. mixes/anneal.yaml")
    r.add_argument("--data-root", help="folder or URL (s3://...) the sources' globs are relative to "
                                       "(default: the mix file's data_root, else the bundled sample)")
    r.add_argument("--output", "-o", help="output folder or URL (default: the mix file's output, else out/<name>)")
    r.add_argument("--workers", "-w", type=int, help="local Ray worker processes (default: all cores)")
    r.add_argument("--ray-address", help="join an existing Ray cluster at this address instead of starting one")
    r.add_argument("--scale", help="multiply the token targets by this factor, or 'auto': the largest scale <= 1 "
                                   "the data can deliver with the planned shares (default: the mix file's scale)")
    r.add_argument("--force", action="store_true", help="discard an output folder holding a run of another config")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary table")
    r.set_defaults(fn=_cmd_run)

    pl = sub.add_parser("plan", help="tokens each source contributes, computed from the mix file alone",
                        description="Compute, before any data is read, the tokens each source contributes: "
                                    "tokens_available x proportion (or the source's token target), scaled to the "
                                    "mix's total_tokens budget when it has one.")
    pl.add_argument("mix", help="the mix file (YAML)")
    pl.add_argument("--json", action="store_true", help='print {"sources": {NAME: {"planned_tokens", "share"}}, "total_tokens"}')
    pl.set_defaults(fn=_cmd_plan)

    t = sub.add_parser("tag", help="tag documents, writing dolma attribute files beside them",
                       description="Run taggers over documents and write <dataset>/attributes/EXP/<same path> "
                                   "exactly as `dolma tag` does (keys EXP__TAGGER__FIELD, spans [start, end, score]).")
    t.add_argument("--documents", nargs="+", required=True, help="document files or globs (<dataset>/documents/...)")
    t.add_argument("--taggers", required=True, help="comma-separated tagger names, e.g. gopher_v1,c4_v1")
    t.add_argument("--experiment", required=True, help="attribute folder and key prefix")
    t.add_argument("--tagger-modules", nargs="*", help="Python files or modules registering extra taggers")
    t.add_argument("--options", help='JSON of per-tagger options, e.g. {"ft_lang_id_en_doc_v2": {"model_path": "lid.bin"}}')
    t.add_argument("--workers", "-w", type=int, help="local Ray worker processes (default: all cores)")
    t.add_argument("--ray-address", help="join an existing Ray cluster")
    t.add_argument("--quiet", "-q", action="store_true")
    t.set_defaults(fn=_cmd_tag)

    s = sub.add_parser("stats", help="documents and tokens per source of a finished run",
                       description="Count documents and tokens per source from the run's indexes, cross-checked "
                                   "against the array sizes and the manifest (exit 4 on any disagreement).")
    s.add_argument("output", help="the output folder of a `dolma-prep run`")
    s.add_argument("--json", action="store_true", help="print JSON instead of a table")
    s.set_defaults(fn=_cmd_stats)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return EXIT_USER
    except Exception as e:  # a user error raised inside a Ray task arrives wrapped
        cause = getattr(e, "cause", None)
        if isinstance(cause, InputError):
            print(f"error: {cause}", file=sys.stderr)
            return EXIT_USER
        raise
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
