"""`dolma-prep mix-search`: better source proportions for a mix, with small proxies trained on a pool run."""
from __future__ import annotations

import argparse
import os

from ...core.io import InputError
from .common import EXIT_OK, add_ray_args

NAME = "mix-search"
HELP = "search for a better mix: train small proxies on candidate mixtures of a pool run"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        NAME, help=HELP,
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
    p.add_argument("mix", help="the mix file whose proportions to search")
    p.add_argument("--pool", required=True, metavar="RUN_OUTPUT",
                   help="output folder of a `dolma-prep run` of MIX (manifest.json + tokens/<source>/)")
    p.add_argument("--output", "-o", help="search folder (default out/mix-search/<mix file stem>)")
    p.add_argument("--proxies", type=int, default=16, help="candidate mixtures, one proxy each, base included "
                                                           "(default 16)")
    p.add_argument("--proxy-config", default="tiny",
                   help="training config of the proxies: a bundled name or a YAML file (default tiny); any "
                        "config works, e.g. a GPU one with --gpus-per-proxy 1")
    p.add_argument("--proxy-set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a field of the proxy config, e.g. model.max_sequence_length=128 (repeatable)")
    p.add_argument("--proxy-vocab", type=int, default=2048,
                   help="ids of the pool the proxies keep (the most frequent); the rest share one bucket id. "
                        "0: the full vocabulary (default 2048)")
    p.add_argument("--tokens-per-proxy", type=int, default=250_000, help="training tokens per proxy (default 250,000)")
    p.add_argument("--objective", default="eval",
                   help="comma-separated weighted streams: eval (mean over the evaluation sets, the default), "
                        "sources (mean over the sources' held-out text), eval:NAME, source:NAME, each with an "
                        "optional =WEIGHT, e.g. 'eval=1,source:wiki=0.5'")
    p.add_argument("--metric", choices=["loss", "bpb"], default="loss",
                   help="loss (nats per token) or bpb (bits per UTF-8 byte), both over the full vocabulary")
    p.add_argument("--min-share", type=float, default=0.0, help="lowest share of any source (default 0)")
    p.add_argument("--max-share", type=float, default=1.0, help="highest share of any source (default 1)")
    p.add_argument("--share-bounds", action="append", metavar="SOURCE=LOW:HIGH",
                   help="bounds of one source's share, e.g. wiki=0.02:0.3 (repeatable)")
    p.add_argument("--max-repetition", type=float, default=4.0,
                   help="how many times a proxy may see a source's tokens at most (default 4)")
    p.add_argument("--concentration", type=float,
                   help="Dirichlet concentration of the candidates around the base shares: larger stays closer "
                        "(default: the number of sources)")
    p.add_argument("--regression", choices=["additive", "loglinear", "gbm"], default="additive",
                   help="additive: each objective stream's loss fitted on its own (a source's held-out text: "
                        "power law in its own share plus linear transfer) and summed (default); loglinear: log "
                        "objective linear in the shares, ridge; gbm: scikit-learn gradient boosting (needs more "
                        "proxies)")
    p.add_argument("--folds", type=int, default=4, help="cross-validation folds of the held-out check (default 4)")
    p.add_argument("--samples", type=int, default=20_000, help="mixtures the regression scores to solve (default 20,000)")
    p.add_argument("--top", type=int, default=20, help="the proposal averages this many best-predicted samples "
                                                      "(default 20)")
    p.add_argument("--holdout", type=float, default=0.1,
                   help="fraction of each source's documents held out for evaluation, never trained on (default 0.1)")
    p.add_argument("--eval-sets", nargs="+", metavar="FILE",
                   help="JSONL(.gz) files with a 'text' per line (default: the bundled mixes/eval-sets/*.jsonl.gz)")
    p.add_argument("--eval-tokens", type=int, default=16_384, help="tokens scored per evaluation stream (default 16,384)")
    p.add_argument("--verify-seeds", type=int, default=1,
                   help="fresh-seed retrainings of the proposal, the base and the best proxy's mixture (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of candidates, proxies, folds and verification")
    p.add_argument("--proxy-seeds", choices=["common", "independent"], default="common",
                   help="common: every proxy trains with one seed (same init and data order), so proxies differ "
                        "by their mixture only (default); independent: a seed per proxy")
    p.add_argument("--cpus-per-proxy", type=float, default=1, help="CPUs (and torch threads) per proxy task (default 1)")
    p.add_argument("--gpus-per-proxy", type=float, default=0, help="GPUs per proxy task; > 0 trains on cuda")
    p.add_argument("--write-mix", metavar="PATH", help="where to write the proposed mix file "
                                                       "(default OUTPUT/<name>-search.yaml)")
    p.add_argument("--html", metavar="PATH", help="where to write the report (default OUTPUT/report.html)")
    add_ray_args(p)
    p.add_argument("--quiet", "-q", action="store_true")
    p.set_defaults(fn=main)
    return p


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


def main(args: argparse.Namespace) -> int:
    from ..mix_search import SearchOptions, search

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
