"""Mix search on the shared sample corpus (issue 20): does the proxy regression rank held-out
proxies, and does the proposed mix beat the base mix and the best proxy beyond seed noise?

1. the pool: `dolma-prep run mixes/anneal.yaml --data-root DATA_ROOT --scale 1 --output POOL`,
   unless POOL already holds a manifest. DATA_ROOT defaults to the full shared corpus
   (../shared/sample-corpus/documents, ~8M tokens over the mix's 12 sources; `--scale 1` keeps
   every document, so the smallest sources, flan and reddit, hold ~36k tokens each instead of
   the ~10k of sample/demo). `--data-root sample/demo` gives the old, much smaller pool;
2. `dolma-prep mix-search mixes/anneal.yaml --pool POOL --verify-seeds 3 --objective sources
   --holdout 0.4 --eval-tokens 32768 --proxies 64 --concentration 3 ...` (defaults otherwise: tiny proxies with a
   2,048-id vocabulary, 250,000 tokens each, one common seed, the additive regression; the
   objective is each source's held-out text: the default `eval` objective rewards flan, whose
   sample prompts come from the evaluation sets;
   holdout 0.4 and 32k tokens give every source a held-out stream of 14-33k tokens, the same
   for every proxy), timed as a whole; extra arguments after `--` override these;
3. from OUTPUT/search.json: Spearman of out-of-fold predicted vs measured objective over the
   proxies (target >= 0.8), and the same check for the other objectives the proxies were
   scored on (sources, eval, per stream: refitted here from the proxies' metrics, no training);
   the verified objective (mean of 3 fresh seeds) of the proposal, the base mix and the best
   proxy's mixture; seed noise = standard deviation of the base over its 3 seeds; whether
   proposal < base and proposal < best proxy by more than 2 x that noise.

Prints a summary and a RESULTS.md row, writes OUTPUT/benchmark.json. Rerunning resumes (finished
proxies are reused): delete OUTPUT for a timed run.

    python benchmarks/mix_search.py [--data-root DIR] [--pool DIR] [--output DIR] [--workers 2] [--fresh]
        [-- extra mix-search args]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.join(HERE, "_data", "mix_search")
SHARED_CORPUS = os.path.join(os.path.dirname(REPO), "shared", "sample-corpus", "documents")
# --concentration 3 (the CLI's default is the number of sources, 12): wider candidates spread the
# proxies' objectives (std 0.070 vs 0.043) well past one mixture's seed noise (0.030), which the
# held-out check needs (Spearman 0.808 vs 0.654 at 12, 2026-12-07)
DEFAULTS = ["--objective", "sources", "--holdout", "0.4", "--eval-tokens", "32768", "--proxies", "64",
            "--concentration", "3"]
CLI = [sys.executable, "-m", "dolma_prep.pipeline.cli"]
if sys.path and os.path.abspath(sys.path[0] or ".") == HERE:
    sys.path.pop(0)  # benchmarks/tokenize.py would shadow the standard library's tokenize (numpy.ma needs it)


def run(args: list[str]) -> float:
    print("$ dolma-prep " + " ".join(args), flush=True)
    start = time.perf_counter()
    proc = subprocess.run([*CLI, *args], cwd=REPO)
    if proc.returncode not in (0, 3):  # 3: the run finished with rejected records
        raise SystemExit(f"dolma-prep {args[0]} exited {proc.returncode}")
    return time.perf_counter() - start


def oof_by_objective(s: dict) -> dict[str, float]:
    """Out-of-fold Spearman of the search's regression for other objectives of the same proxies:
    `sources`, `eval` and each stream alone (refitted from the stored metrics; nothing retrained)."""
    import numpy as np

    from dolma_prep.pipeline import mix_search as ms

    o = s["options"]
    X = np.array([p_["shares"] for p_ in s["proxies"]])
    streams = sorted(s["prep"]["streams"])
    out = {}
    for spec in ["sources", "eval", *streams]:
        w = ms.parse_objective(spec, streams)
        y = np.array([ms.objective_of(p_, w, o["metric"]) for p_ in s["proxies"]])
        fit_to = ms.targets(o["regression"], s["proxies"], w, o["metric"])
        oof = ms.cross_validate(o["regression"], X, fit_to, o["folds"], ms._seed(o["seed"], "folds"),
                                ms.additive_terms(w, s["sources"]))
        out[spec] = round(ms.spearman(oof, y), 3)
    return out


def paired(s: dict) -> dict:
    """Verification trains every mixture with the same fresh seeds, so the comparison is paired:
    per seed, proposed - base and proposed - best proxy; their mean and standard deviation
    (seed noise of a difference, usually well under that of one mixture's objective)."""
    import numpy as np

    v = {k: np.array([r["objective"] for r in runs]) for k, runs in s["verify"].items()}
    out = {}
    for other in ("base", "best_proxy"):
        if "proposed" in v and other in v and len(v[other]) == len(v["proposed"]) > 1:
            d = v["proposed"] - v[other]
            out[f"paired_proposed_minus_{other}"] = {"mean": float(d.mean()), "std": float(d.std(ddof=1)),
                                                     "per_seed": [round(float(x), 4) for x in d]}
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data-root", default=SHARED_CORPUS, help="documents the pool is built from (default: the "
                   "shared sample corpus; sample/demo for the bundled one)")
    p.add_argument("--pool", default=os.path.join(DATA, "pool-full"), help="run output of the anneal mix over "
                   "DATA_ROOT (built when it holds no manifest)")
    p.add_argument("--output", default=os.path.join(DATA, "search"), help="mix-search folder")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--verify-seeds", type=int, default=3)
    p.add_argument("--fresh", action="store_true", help="delete OUTPUT first (a timed run trains every proxy)")
    p.add_argument("extra", nargs="*", help="further mix-search arguments (after --)")
    a = p.parse_args()
    load_before = os.getloadavg()
    pool_s = None
    if not os.path.exists(os.path.join(a.pool, "manifest.json")):
        pool_s = run(["run", "mixes/anneal.yaml", "--data-root", a.data_root, "--scale", "1", "--output", a.pool,
                      "--quiet", "--workers", str(a.workers)])
    if a.fresh:
        shutil.rmtree(a.output, ignore_errors=True)
    wall = run(["mix-search", "mixes/anneal.yaml", "--pool", a.pool, "--output", a.output, "--workers", str(a.workers),
                "--verify-seeds", str(a.verify_seeds), *DEFAULTS, *a.extra])
    load_after = os.getloadavg()
    s = json.load(open(os.path.join(a.output, "search.json")))
    v, reg, prop = s["verdict"], s["regression"], s["proposal"]
    noise = v["base"]["std"] if v.get("base", {}).get("std") is not None else float("nan")
    proposed, base, best = v["proposed"]["mean"], v["base"]["mean"], v["best_proxy"]["mean"]
    out = {
        "date": time.strftime("%Y-%m-%d %H:%M"), "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "workers": a.workers, "pool_run_s": pool_s, "search_wall_s": round(wall, 1), "search_wall_reported_s": s["wall_s"],
        "proxies": len(s["proxies"]), "tokens_per_proxy": s["options"]["tokens_per_proxy"],
        "spearman_oof": reg["spearman_oof"], "mae_oof": reg["mae_oof"],
        "verified_proposed": proposed, "verified_base": base, "verified_best_proxy": best, "base_seed_std": noise,
        "proposed_beats_base_beyond_noise": proposed < base - 2 * noise,
        "proposed_beats_best_proxy_beyond_noise": proposed < best - 2 * noise,
        **paired(s),
        "predicted_proposed": prop["predicted"], "best_proxy_measured_own_seed": prop["best_proxy_objective"],
        "shares": dict(zip(s["sources"], (round(x, 4) for x in prop["shares"]))),
        "base_shares": dict(zip(s["sources"], (round(x, 4) for x in s["base_shares"]))),
        "objective": s["options"]["objective"], "proxy_seeds": s["options"].get("proxy_seeds", "independent"),
        "held_out_tokens": s["prep"]["streams"], "spearman_oof_by_objective": oof_by_objective(s),
        "proxy_tokens_per_s": [p_["train_tokens_per_s"] for p_ in s["proxies"]],
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in load_after],
    }
    with open(os.path.join(a.output, "benchmark.json"), "w") as f:
        json.dump(out, f, indent=1)
    print(json.dumps({k: v_ for k, v_ in out.items() if k != "proxy_tokens_per_s"}, indent=1))
    print(f"\n| {out['date']} | {out['proxies']} x {out['tokens_per_proxy']:,} | {reg['spearman_oof']:.3f} | "
          f"{proposed:.4f} | {base:.4f} | {best:.4f} | {noise:.4f} | {wall / 60:.1f} min | "
          f"{load_before[0]:.2f} / {load_after[0]:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
