"""The `dolma-prep` command line. Thin: parse arguments, call one entry function, report.

Exit codes: 0 success; 1 an internal error (a bug: traceback shown); 2 a user error (bad mix
file, missing input, unwritable output: a one-line message, no traceback); 3 the run finished
but some input records were rejected (counted in the manifest, written under rejects/) or a
tagger failed on some documents (counted per source in the manifest's steps.tag);
4 `stats` found outputs that disagree with the manifest.
"""
from __future__ import annotations

import argparse
import json
import os
import sys

from ..core.io import InputError

EXIT_OK, EXIT_BUG, EXIT_USER, EXIT_REJECTS, EXIT_INCONSISTENT = 0, 1, 2, 3, 4
# a source written more times over than this (proportion) needs --yes: a typo (1000 for 1.0) would
# fill a disk; OLMo's mixes repeat a source at most a few times
MAX_REPEATS_WITHOUT_YES = 10


def _cmd_run(args: argparse.Namespace) -> int:
    from .mixfile import check_scale, check_workers, load_mix
    from .run import run
    from .stats import compute, render

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
    from .preflight import preflight

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
    from .outcome import examine

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
    from .manifest import step_entry

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


def _cmd_plan(args: argparse.Namespace) -> int:
    from .mixfile import load_mix
    from .plan import plan

    mix = load_mix(args.mix, data_root=getattr(args, "data_root", None))
    if args.measure:
        from .plan import measure

        for name, n in measure(mix, args.workers).items():
            next(s for s in mix.sources if s.name == name).tokens_available = float(n)
    if args.cost or args.deadline:
        from .cost import estimate, load_rates, parse_duration, render

        hours = parse_duration(args.deadline) if args.deadline else None
        try:
            bill = estimate(mix, load_rates(args.rates), hours)
        except ValueError as e:
            raise InputError(f"{args.mix}: {e}") from None
        if args.json:
            print(json.dumps(bill, indent=1))
        else:
            render(bill)
        return EXIT_OK
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

    result = compute(args.output, verify=not args.quick)
    summaries = []
    if args.attribute:
        from . import attrstats

        log = {"auto": None, "log": True, "linear": False}[args.bin_scale]
        summaries = [attrstats.attribute_summary(args.output, key, args.value, bins=args.bins, log=log,
                                                 status=args.status, sources=args.source)
                     for key in args.attribute]
    if args.json:
        if summaries:
            result["attributes"] = {s["key"]: s for s in summaries}
        print(json.dumps(result, indent=1, sort_keys=True))
    elif summaries:
        from . import attrstats

        for s in summaries:
            attrstats.render(s, histograms=not args.no_histogram)
        for e in result["errors"]:
            print(f"error: {e}", file=sys.stderr)
    else:
        render(result, funnels=not args.no_funnel)
    return EXIT_INCONSISTENT if result["errors"] else EXIT_OK


def _cmd_report(args: argparse.Namespace) -> int:
    from ..core import io
    from .report import write

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


def _cmd_show(args: argparse.Namespace) -> int:
    from .show import explain, render

    if args.n < 1:
        raise InputError(f"-n must be at least 1, got {args.n}")
    result = explain(args.output, args.source, dropped=args.dropped, n=args.n, reason=args.reason,
                     doc_id=args.id, chars=args.chars)
    if args.json:
        print(json.dumps(result, indent=1, ensure_ascii=False))
    else:
        render(result)
    return EXIT_OK


def _expand(patterns: list[str]) -> list[str]:
    from ..core import io

    paths = io.expand_globs("", patterns) if patterns else []
    if not paths:
        raise InputError(f"--documents {' '.join(patterns)} matched no document files")
    return paths


def _cmd_tag(args: argparse.Namespace) -> int:
    from dolma_prep.taggers import registry

    from ..core.runtime import init_ray, make_progress
    from .mixfile import check_name
    from .stages.tag import tag_documents

    check_name(args.experiment, "--experiment")  # it becomes a folder name beside the documents
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
    if totals["rejected_earlier"]:
        print(f"{totals['rejected_earlier']:,} bad records of files tagged by an earlier run are still set aside "
              "(<attributes file>.rejects.jsonl)", file=sys.stderr)
    for p in totals["empty_files"]:
        print(f"warning: {p} holds no documents", file=sys.stderr)
    if totals["tagger_errors"]:
        print(f"taggers raised on {totals['tagger_errors']:,} document(s): those documents lack the failing "
              "tagger's fields (details in the Ray worker logs)", file=sys.stderr)
    return EXIT_REJECTS if totals["rejected"] or totals["tagger_errors"] else EXIT_OK


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


def _cmd_dedup(args: argparse.Namespace) -> int:
    from dolma_prep.dedup import kinds

    from ..core import io
    from ..core.runtime import init_ray
    from .mixfile import check_name
    from .stages.tag import attributes_beside

    check_name(args.attribute, "--attribute")  # it becomes a folder name beside the documents
    kind = kinds.get(args.kind)
    paths = _expand(args.documents)
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
    from .mixfile import dedup_options

    params = dedup_options(args.kind, params, "--params")  # unknown keys and bad values named, exit 2
    first = pairs[0][0]
    dataset_root = first[: first.rfind("/documents/")] if "/documents/" in first else "."
    work = args.work_dir or io.join(dataset_root, "_work", "dedup", args.attribute)
    init_ray(args.workers, args.ray_address)
    from .stages.dedup import runner

    fn = runner(args.kind)
    stats = fn(pairs, args.attribute, work, **params)
    print(json.dumps({k: v for k, v in stats.items() if k != "per_shard"}, indent=1, default=str))
    return EXIT_OK


def _cmd_index(args: argparse.Namespace) -> int:
    from dolma_prep.dedup import index

    from ..core.runtime import init_ray

    if args.action == "info":
        out = index.info(args.index, verify=args.verify)
        if args.json:
            print(json.dumps(out, indent=1))
        else:
            print(index.render_info(out))
        return EXIT_INCONSISTENT if out.get("checksum_errors") else EXIT_OK
    paths = _expand(args.documents)
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


def _cmd_train_classifier(args: argparse.Namespace) -> int:
    from dolma_prep.taggers.train_classifier import train_classifier

    try:
        train_classifier(args.config)
    except (ValueError, FileNotFoundError, KeyError) as e:
        raise InputError(f"{args.config}: {e}") from None
    return EXIT_OK


def _cmd_tokenize(args: argparse.Namespace) -> int:
    from ..core import io
    from ..core.runtime import Shard, init_ray, make_progress, map_shards
    from .mixfile import BUNDLED_TOKENIZER, TokenizerConfig
    from .stages.tokenize import choose_dtype, load_tokenizer, run_command_shard

    tcfg = TokenizerConfig(path=args.tokenizer or BUNDLED_TOKENIZER, eos_token_id=args.eos_token_id,
                           bos_token_id=args.bos_token_id, pad_token_id=args.pad_token_id, dtype=args.dtype,
                           max_tokens_per_file=args.max_tokens_per_file)
    try:
        tok = load_tokenizer(tcfg.path)
    except Exception as e:  # noqa: BLE001 (file missing, hub unreachable, bad JSON)
        raise InputError(f"cannot load tokenizer {tcfg.path!r}: {e}") from None
    choose_dtype(tok.get_vocab_size(with_added_tokens=True), tcfg.dtype)  # refuse a too-small dtype early
    paths = _expand(args.documents)
    shards = [Shard("", i, p, f"{i:06d}") for i, p in enumerate(paths)]
    out = args.output if io.is_remote(args.output) else __import__("os").path.abspath(args.output)
    init_ray(args.workers, args.ray_address)
    ctx = {"output": out, "tokenizer": tcfg.model_dump(), "seed": args.seed}
    with make_progress(not args.quiet) as prog:
        res = map_shards("tokenize", run_command_shard, shards, ctx, prog)
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


def _cmd_decode(args: argparse.Namespace) -> int:
    from .mixfile import BUNDLED_TOKENIZER
    from .stages.tokenize import decode

    row, text = decode(args.file, args.doc, args.tokenizer or BUNDLED_TOKENIZER)
    if args.json:
        print(json.dumps({**row, "text": text}, ensure_ascii=False))
    else:
        print(f"# id={row['id']} tokens={row['tokens']} src={row['src']}:{row['loc']}", file=sys.stderr)
        print(text)
    return EXIT_OK


def _parse_bounds(items: list[str]) -> dict[str, tuple[float, float]]:
    out = {}
    for item in items or []:
        name, sep, rng = item.partition("=")
        lo, sep2, hi = rng.partition(":")
        try:
            if not sep or not sep2:
                raise ValueError
            out[name.strip()] = (float(lo) if lo else 0.0, float(hi) if hi else 1.0)
        except ValueError:
            raise InputError(f"--share-bounds {item!r}: expected SOURCE=LOW:HIGH, e.g. wiki=0.02:0.3") from None
    return out


def _cmd_mix_search(args: argparse.Namespace) -> int:
    from .mix_search import SearchOptions, search

    name = os.path.splitext(os.path.basename(args.mix))[0]
    opts = SearchOptions(
        output=args.output or os.path.join("out", "mix-search", name), proxies=args.proxies,
        proxy_config=args.proxy_config, proxy_set=args.proxy_set, proxy_vocab=args.proxy_vocab,
        tokens_per_proxy=args.tokens_per_proxy, objective=args.objective, metric=args.metric,
        min_share=args.min_share, max_share=args.max_share, share_bounds=_parse_bounds(args.share_bounds),
        max_repetition=args.max_repetition, concentration=args.concentration, regression=args.regression,
        folds=args.folds, samples=args.samples, top=args.top, holdout=args.holdout, eval_sets=args.eval_sets or [],
        eval_tokens=args.eval_tokens, verify_seeds=args.verify_seeds, seed=args.seed,
        proxy_seeds=args.proxy_seeds, cpus_per_proxy=args.cpus_per_proxy, gpus_per_proxy=args.gpus_per_proxy, write_mix=args.write_mix,
        html=args.html)
    try:
        s = search(args.mix, args.pool, opts, workers=args.workers, ray_address=args.ray_address,
                   progress=not args.quiet)
    except (ValueError, FileNotFoundError) as e:  # training config and data errors name their source
        raise InputError(str(e)) from None
    reg, prop = s["regression"], s["proposal"]
    print(f"{len(s['proxies'])} proxies; {reg['kind']} regression, out-of-fold Spearman {reg['spearman_oof']:.3f}")
    print(f"predicted objective: proposed {prop['predicted']:.4f}, base {prop['base_predicted']:.4f}; "
          f"best proxy measured {prop['best_proxy_objective']:.4f}")
    for kind, r in s["verdict"].items():
        spread = f" +- {r['std']:.4f}" if r["std"] is not None else ""
        print(f"verified {kind}: {r['mean']:.4f}{spread} (n={r['n']})")
    print("shares: " + ", ".join(f"{n} {b:.3f}->{p:.3f}" for n, b, p in zip(s["sources"], s["base_shares"],
                                                                           prop["shares"])))
    print(f"wrote {s['mix_file']} and {s['report']} in {s['wall_s']:.0f} s")
    return EXIT_OK


def _workers(value: str) -> int:
    try:
        n = int(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number of worker processes, got {value!r}") from None
    if n < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {n}")
    return n


def _add_ray_args(p: argparse.ArgumentParser) -> None:
    """--workers / --ray-address, shared by every command that runs on Ray."""
    p.add_argument("--workers", "-w", type=_workers, help="local Ray worker processes (default: all cores)")
    p.add_argument("--ray-address", help="join an existing Ray cluster at this address instead of starting one")


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
    r.add_argument("--workers", "-w", type=_workers, help="local Ray worker processes (default: all cores)")
    r.add_argument("--ray-address", help="join an existing Ray cluster at this address instead of starting one")
    r.add_argument("--scale", help="multiply the token targets by this factor, or 'auto': the largest scale <= 1 "
                                   "the data can deliver with the planned shares (default: the mix file's scale)")
    r.add_argument("--tagger-modules", nargs="*", help="Python files or modules registering extra taggers "
                                                       "(never from the mix file: mix files cannot load code)")
    r.add_argument("--scratch", help="folder or URL for intermediate tables (dedup shuffles, token counts); every "
                                     "node must reach it. Default: <output>/_work")
    r.add_argument("--max-tagger-error-rate", type=float, default=0.0,
                   help="fraction of documents a tagger may fail on before the run exits 3 (default 0: any failure)")
    r.add_argument("--max-rule-error-rate", type=float, default=0.0,
                   help="fraction of a source's documents a filter rule may raise on (a jq type error, error(...): "
                        "counted per rule, as no match) before the run exits 3 (default 0: any error)")
    r.add_argument("--allow-empty", nargs="*", metavar="SOURCE",
                   help="let these sources (no names: every source) end with 0 tokens, or lose over 99%% of their "
                        "documents to one filter rule, without failing the run (exit 3 otherwise)")
    r.add_argument("--yes", action="store_true", help=f"run even if a source is written more than "
                                                      f"{MAX_REPEATS_WITHOUT_YES} times over (proportion)")
    r.add_argument("--force", action="store_true", help="discard an output folder holding a run of another config")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bars or summary table")
    r.set_defaults(fn=_cmd_run)

    pl = sub.add_parser("plan", help="tokens each source contributes, computed from the mix file alone",
                        description="Compute, before any data is read, the tokens each source contributes: "
                                    "tokens_available x proportion (or the source's token target), scaled to the "
                                    "mix's total_tokens budget when it has one.")
    pl.add_argument("mix", help="the mix file (YAML)")
    pl.add_argument("--json", action="store_true", help='print {"sources": {NAME: {"planned_tokens", "share"}}, "total_tokens"}')
    pl.add_argument("--measure", action="store_true",
                    help="count each source's tokens in the data (on Ray) instead of using tokens_available")
    pl.add_argument("--data-root", help="with --measure: where the sources' globs point")
    pl.add_argument("--workers", "-w", type=int, help="with --measure: local Ray workers")
    pl.add_argument("--cost", action="store_true",
                    help="the bill at full scale: CPU-hours per stage and source, bytes read and written, dedup "
                         "scratch, GPU-hours to train (model and inputs: docs/COST.md)")
    pl.add_argument("--rates", help="with --cost: per-core rates (default: benchmarks/rates.json)")
    pl.add_argument("--deadline", help="with --cost: wall time to finish in (7d, 36h, 90m): cores, nodes and GPUs needed")
    pl.set_defaults(fn=_cmd_plan)

    t = sub.add_parser("tag", help="tag documents, writing dolma attribute files beside them",
                       description="Run taggers over documents and write <dataset>/attributes/EXP/<same path> "
                                   "exactly as `dolma tag` does (keys EXP__TAGGER__FIELD, spans [start, end, score]).")
    t.add_argument("--documents", nargs="+", required=True, help="document files or globs (<dataset>/documents/...)")
    t.add_argument("--taggers", required=True, help="comma-separated tagger names, e.g. gopher_v1,c4_v1")
    t.add_argument("--experiment", required=True, help="attribute folder and key prefix")
    t.add_argument("--tagger-modules", nargs="*", help="Python files or modules registering extra taggers")
    t.add_argument("--options", help='JSON of per-tagger options, e.g. {"ft_lang_id_en_doc_v2": {"model_path": "lid.bin"}}')
    _add_ray_args(t)
    t.add_argument("--quiet", "-q", action="store_true")
    t.set_defaults(fn=_cmd_tag)

    dd = sub.add_parser("dedup", help="deduplicate documents: exact, paragraphs, minhash, decontaminate, substrings",
                        description="Write attributes/NAME/<same subpath> beside documents/, one line per document: "
                                    "[[0, len(text), 1]] on documents to remove and [] on the rest (exact, minhash), "
                                    "[start, end, score] spans (paragraphs, decontaminate), [start, end, 1] on every repeated substring "
                                    "of at least --min-length bytes or tokens (substrings).")
    dd.add_argument("kind", choices=DEDUP_KINDS, metavar="kind", help="a registered dedup kind: %(choices)s")
    dd.add_argument("--documents", nargs="+", required=True, help="document files or globs (<dataset>/documents/...)")
    dd.add_argument("--attribute", required=True, help="attribute name (folder and key)")
    dd.add_argument("--threshold", type=float, help="similarity / overlap threshold of the kind")
    dd.add_argument("--eval-sets", nargs="+", help="decontaminate: evaluation sets (JSONL/parquet files or globs)")
    dd.add_argument("--min-length", type=int, help="substrings: mark every substring of at least this many units "
                                                   "that occurs more than once (default 100)")
    dd.add_argument("--unit", choices=["bytes", "tokens"], help="substrings: UTF-8 bytes (default) or tokens of the "
                                                                "bundled OLMo tokenizer")
    dd.add_argument("--params", help='JSON of further parameters, e.g. {"bands": 9, "rows": 13}')
    dd.add_argument("--against", metavar="INDEX", help="exact, minhash, paragraphs: an index (`dolma-prep index build`); "
                                                       "also mark duplicates of indexed documents (exact, minhash: "
                                                       "with the indexed id). "
                                                       "decontaminate: an evaluation registry (`index build --kinds "
                                                       "ngram`), INDEX@V for its versions 1..V")
    dd.add_argument("--work-dir", "--scratch", dest="work_dir",
                    help="folder or URL for intermediate tables; every node must reach it "
                         "(default: <dataset>/_work/dedup/NAME)")
    _add_ray_args(dd)
    dd.set_defaults(fn=_cmd_dedup)

    ix = sub.add_parser("index", help="a persistent dedup index beside a released corpus: build, add, info",
                        description="Keep the hashes of a released corpus so that later releases are deduplicated "
                                    "against it (`dedup KIND --against INDEX`) without recomputing it. Each `add` "
                                    "writes a new immutable version; earlier files are never rewritten.")
    ixs = ix.add_subparsers(dest="action", required=True, metavar="ACTION")
    ib = ixs.add_parser("build", help="create INDEX (version 1) over documents")
    ib.add_argument("--documents", nargs="+", required=True, help="document files or globs")
    ib.add_argument("--kinds", default="exact,minhash",
                    help="comma-separated: exact, minhash (default: both), paragraphs, or ngram (an evaluation registry for "
                         "decontaminate: --documents are evaluation sets)")
    ib.add_argument("--output", required=True, metavar="INDEX", help="folder or URL of the new index")
    ib.add_argument("--params", help='JSON per kind, e.g. {"minhash": {"bands": 16, "rows": 7}, "exact": {"key": "text"}}')
    _add_ray_args(ib)
    ia = ixs.add_parser("add", help="append documents as the next version of INDEX")
    ia.add_argument("index", metavar="INDEX")
    ia.add_argument("--documents", nargs="+", required=True, help="document files or globs of the new release")
    _add_ray_args(ia)
    ii = ixs.add_parser("info", help="versions, sizes and parameters of INDEX")
    ii.add_argument("index", metavar="INDEX")
    ii.add_argument("--json", action="store_true")
    ii.add_argument("--verify", action="store_true", help="recompute every file's sha256 (exit 4 on a mismatch)")
    for q in (ib, ia, ii):
        q.set_defaults(fn=_cmd_index)

    tc = sub.add_parser("train-classifier", help="train a fastText classifier (quality, toxicity) from labelled sources",
                        description="Train a fastText classifier from the labelled sources a YAML config declares, "
                                    "evaluate it on a held-out split (precision/recall/F1 per label), save the .bin "
                                    "and a JSON card of how it was trained. Reproducible with the config's seed.")
    tc.add_argument("config", help="YAML config (see tests/fixtures/taggers/train_quality_sample.yaml)")
    tc.set_defaults(fn=_cmd_train_classifier)

    k = sub.add_parser("tokenize", help="tokenize documents into OLMo-ready memmaps, like `dolma tokens`",
                       description="Write OUTPUT/part-<i>-<k:05d>.npy (raw token ids, no header) and .csv.gz indexes "
                                   "(start,end,id,src,loc) for the given document files, one i per input file.")
    k.add_argument("--documents", nargs="+", required=True, help="document files or globs")
    k.add_argument("--output", required=True, help="output folder (local or URL)")
    k.add_argument("--tokenizer", help="tokenizer.json path or hub id (default: the bundled OLMo 1.7 tokenizer)")
    k.add_argument("--eos-token-id", type=int, default=50279)
    k.add_argument("--bos-token-id", type=int, default=None)
    k.add_argument("--pad-token-id", type=int, default=1)
    k.add_argument("--dtype", choices=["auto", "uint16", "uint32"], default="auto")
    k.add_argument("--max-tokens-per-file", type=int, default=512 * 1024 * 1024)
    k.add_argument("--seed", type=int, default=0, help="seed of the document-order shuffle")
    k.add_argument("--workers", "-w", type=int)
    k.add_argument("--ray-address")
    k.add_argument("--quiet", "-q", action="store_true")
    k.set_defaults(fn=_cmd_tokenize)

    d = sub.add_parser("decode", help="print one tokenized document back as text, via its index")
    d.add_argument("file", help="a part-*.npy file (its .csv.gz index must be beside it)")
    d.add_argument("--doc", type=int, required=True, help="0-based row of the index")
    d.add_argument("--tokenizer", help="tokenizer.json (default: the bundled OLMo 1.7 tokenizer)")
    d.add_argument("--json", action="store_true")
    d.set_defaults(fn=_cmd_decode)

    sub.add_parser("train", add_help=False,
                   help="train the bundled OLMo model on a run's arrays (`dolma-prep train --help`)")
    sub.add_parser("export-hf", add_help=False,
                   help="export a training checkpoint to Hugging Face format (`dolma-prep export-hf --help`)")

    s = sub.add_parser("stats", help="documents and tokens per source and stage of a finished run",
                       description="Documents, characters and tokens per source in and out of every stage (read, "
                                   "tagged, deduplicated by kind, filtered by rule, sampled, tokenized), planned vs "
                                   "achieved tokens and shares, recounted from the run's indexes, array sizes, "
                                   "attribute files, dropped/ and rejects/ and cross-checked against the manifest "
                                   "(exit 4 on any disagreement). Tokens before selection are estimates, marked ~. "
                                   "With --attribute, quantiles and a histogram of an attribute per source.")
    s.add_argument("output", help="the output folder of a `dolma-prep run`")
    s.add_argument("--json", action="store_true", help="print JSON instead of tables")
    s.add_argument("--no-funnel", action="store_true", help="only the per-source summary table, no stage tables")
    s.add_argument("--quick", action="store_true", help="check only the indexes and array sizes, not attribute, "
                                                        "dropped and rejects files or the sampling replay")
    s.add_argument("--attribute", "-a", action="append", metavar="KEY",
                   help="an attribute key, e.g. anneal__char_length_v1__length: print its distribution per source "
                        "(repeatable)")
    s.add_argument("--value", choices=["score", "count", "coverage"], default="score",
                   help="per document: the first span's score (default), the number of spans, or the characters "
                        "the spans cover")
    s.add_argument("--status", choices=["all", "kept", "dropped"], default="all",
                   help="documents to include: all read documents (default), or those kept / dropped by select")
    s.add_argument("--source", action="append", metavar="NAME", help="only this source (repeatable)")
    s.add_argument("--bins", type=int, default=20, help="histogram bins (default 20)")
    s.add_argument("--bin-scale", choices=["auto", "log", "linear"], default="auto",
                   help="histogram bins: log-spaced for positive values spanning 100x or more (auto), or forced")
    s.add_argument("--no-histogram", action="store_true", help="quantiles only")
    s.set_defaults(fn=_cmd_stats)

    rp = sub.add_parser("report", help="write a self-contained HTML report of a finished run",
                        description="Write one HTML file (inline SVG charts, no network needed) with tokens per "
                                    "source planned vs achieved, the funnel per stage, each source's document fates "
                                    "and histograms of the main attributes; exit 4 if the outputs disagree with the "
                                    "manifest (the report lists the disagreements).")
    rp.add_argument("output", help="the output folder of a `dolma-prep run`")
    rp.add_argument("--html", metavar="PATH", help="the HTML file to write (default OUTPUT/report.html)")
    rp.add_argument("--attribute", "-a", action="append", metavar="KEY[:MODE]",
                    help="attribute to plot, MODE score|count|coverage (repeatable; default: the main tagger "
                         "attributes)")
    rp.add_argument("--max-attributes", type=int, default=6, help="attributes plotted when none is named (default 6)")
    rp.add_argument("--bins", type=int, default=30, help="histogram bins (default 30)")
    rp.set_defaults(fn=_cmd_report)

    sh = sub.add_parser("show", help="sample documents of a source with the rule that kept or removed them",
                        description="Print sample documents of one source, kept (in the token arrays) or, with "
                                    "--dropped, removed by a rule (dropped/ gives the reason, replayed here) or by "
                                    "sampling (u = unit_hash(seed, source, id) against the source's rule copies = "
                                    "whole + [u < threshold]), each with its attributes and text.")
    sh.add_argument("output", help="the output folder of a `dolma-prep run`")
    sh.add_argument("--source", required=True, help="the source, as named in the mix file")
    sh.add_argument("--dropped", action="store_true", help="documents not in the token arrays: removed by a rule, "
                                                           "not drawn by sampling, or rejected as bad input")
    sh.add_argument("-n", type=int, default=5, help="how many documents (default 5), spread over the deciding rules")
    sh.add_argument("--reason", help="only documents whose reason contains this text (e.g. exact_duplicates, "
                                     "min_text_length, sampling); implies --dropped")
    sh.add_argument("--id", help="explain this one document, whatever happened to it")
    sh.add_argument("--chars", type=int, default=300, help="characters of text to print (default 300)")
    sh.add_argument("--json", action="store_true", help="print JSON instead of panels")
    sh.set_defaults(fn=_cmd_show)

    ms = sub.add_parser(
        "mix-search", help="search for a better mix: train small proxies on candidate mixtures of a pool run",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Find better source proportions for MIX, with the bundled trainer in the loop. POOL is a finished "
                    "`dolma-prep run` of the mix (its per-source token arrays); every candidate mixture is drawn from "
                    "it at read time, so the pipeline never reruns.\n\n"
                    "1. candidates: the base mix and seeded Dirichlet draws around its shares, within the bounds "
                    "(--min-share/--max-share/--share-bounds, and --max-repetition at --tokens-per-proxy);\n"
                    "2. one proxy per candidate, trained as a Ray task (cheap: a reduced vocabulary of "
                    "--proxy-vocab ids, rare ids bucketed; scores stay honest full-vocabulary code lengths) and "
                    "scored on held-out documents of every source and on the evaluation sets' texts;\n"
                    "3. a regression from shares to the objective, checked on held-out proxies (out-of-fold "
                    "Spearman), and the best mixture it predicts within the bounds;\n"
                    "4. the proposal, the base and the best proxy's mixture retrained with fresh seeds;\n"
                    "5. OUTPUT/<name>-search.yaml (the proposal as a mix file) and OUTPUT/report.html.\n\n"
                    "Resumable: a finished proxy (its result OUTPUT/_state/proxy/<key>.json) is never retrained; "
                    "rerun the same command after an interruption.")
    ms.add_argument("mix", help="the mix file whose proportions to search")
    ms.add_argument("--pool", required=True, metavar="RUN_OUTPUT",
                    help="output folder of a `dolma-prep run` of MIX (manifest.json + tokens/<source>/)")
    ms.add_argument("--output", "-o", help="search folder (default out/mix-search/<mix file stem>)")
    ms.add_argument("--proxies", type=int, default=16, help="candidate mixtures, one proxy each, base included "
                                                            "(default 16)")
    ms.add_argument("--proxy-config", default="tiny",
                    help="training config of the proxies: a bundled name or a YAML file (default tiny); any "
                         "config works, e.g. a GPU one with --gpus-per-proxy 1")
    ms.add_argument("--proxy-set", action="append", default=[], metavar="KEY=VALUE",
                    help="override a field of the proxy config, e.g. model.max_sequence_length=128 (repeatable)")
    ms.add_argument("--proxy-vocab", type=int, default=2048,
                    help="ids of the pool the proxies keep (the most frequent); the rest share one bucket id. "
                         "0: the full vocabulary (default 2048)")
    ms.add_argument("--tokens-per-proxy", type=int, default=250_000, help="training tokens per proxy (default 250,000)")
    ms.add_argument("--objective", default="eval",
                    help="comma-separated weighted streams: eval (mean over the evaluation sets, the default), "
                         "sources (mean over the sources' held-out text), eval:NAME, source:NAME, each with an "
                         "optional =WEIGHT, e.g. 'eval=1,source:wiki=0.5'")
    ms.add_argument("--metric", choices=["loss", "bpb"], default="loss",
                    help="loss (nats per token) or bpb (bits per UTF-8 byte), both over the full vocabulary")
    ms.add_argument("--min-share", type=float, default=0.0, help="lowest share of any source (default 0)")
    ms.add_argument("--max-share", type=float, default=1.0, help="highest share of any source (default 1)")
    ms.add_argument("--share-bounds", action="append", metavar="SOURCE=LOW:HIGH",
                    help="bounds of one source's share, e.g. wiki=0.02:0.3 (repeatable)")
    ms.add_argument("--max-repetition", type=float, default=4.0,
                    help="how many times a proxy may see a source's tokens at most (default 4)")
    ms.add_argument("--concentration", type=float,
                    help="Dirichlet concentration of the candidates around the base shares: larger stays closer "
                         "(default: the number of sources)")
    ms.add_argument("--regression", choices=["additive", "loglinear", "gbm"], default="additive",
                    help="additive: each objective stream's loss fitted on its own (a source's held-out text: "
                         "power law in its own share plus linear transfer) and summed (default); loglinear: log "
                         "objective linear in the shares, ridge; gbm: scikit-learn gradient boosting (needs more "
                         "proxies)")
    ms.add_argument("--folds", type=int, default=4, help="cross-validation folds of the held-out check (default 4)")
    ms.add_argument("--samples", type=int, default=20_000, help="mixtures the regression scores to solve (default 20,000)")
    ms.add_argument("--top", type=int, default=20, help="the proposal averages this many best-predicted samples "
                                                       "(default 20)")
    ms.add_argument("--holdout", type=float, default=0.1,
                    help="fraction of each source's documents held out for evaluation, never trained on (default 0.1)")
    ms.add_argument("--eval-sets", nargs="+", metavar="FILE",
                    help="JSONL(.gz) files with a 'text' per line (default: the bundled mixes/eval-sets/*.jsonl.gz)")
    ms.add_argument("--eval-tokens", type=int, default=16_384, help="tokens scored per evaluation stream (default 16,384)")
    ms.add_argument("--verify-seeds", type=int, default=1,
                    help="fresh-seed retrainings of the proposal, the base and the best proxy's mixture (default 1)")
    ms.add_argument("--seed", type=int, default=0, help="seed of candidates, proxies, folds and verification")
    ms.add_argument("--proxy-seeds", choices=["common", "independent"], default="common",
                    help="common: every proxy trains with one seed (same init and data order), so proxies differ "
                         "by their mixture only (default); independent: a seed per proxy")
    ms.add_argument("--cpus-per-proxy", type=float, default=1, help="CPUs (and torch threads) per proxy task (default 1)")
    ms.add_argument("--gpus-per-proxy", type=float, default=0, help="GPUs per proxy task; > 0 trains on cuda")
    ms.add_argument("--write-mix", metavar="PATH", help="where to write the proposed mix file "
                                                        "(default OUTPUT/<name>-search.yaml)")
    ms.add_argument("--html", metavar="PATH", help="where to write the report (default OUTPUT/report.html)")
    _add_ray_args(ms)
    ms.add_argument("--quiet", "-q", action="store_true")
    ms.set_defaults(fn=_cmd_mix_search)
    return p


TRAINING_COMMANDS = ("train", "export-hf")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] in TRAINING_COMMANDS:  # the trainer owns its arguments
        from dolma_prep.training.cli import main as training_main

        return training_main(argv)
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except BrokenPipeError:  # `dolma-prep ... | head`: the reader left; say nothing more
        try:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        except OSError:
            pass
        return EXIT_OK
    except Exception as e:
        # a user error raised inside a Ray task arrives wrapped (a RayTaskError that is also an
        # instance of the original class, whose str() is the worker's traceback): show its own line
        cause = getattr(e, "cause", None)
        err = cause if isinstance(cause, InputError) else e
        if isinstance(err, InputError):
            print(f"error: {err}", file=sys.stderr)
            return EXIT_USER
        raise
    except KeyboardInterrupt:
        print("interrupted; rerun the same command to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
