"""`dolma-prep mix-search MIX --pool RUN_OUTPUT`: from a mix file to a better mix, by proxies.

The pool is one finished `dolma-prep run` of the mix (per-source token arrays and a manifest).
Every candidate mixture is drawn from it at read time (training/mixture.py), so the pipeline
runs once. The search, step by step (every step deterministic for a pool, options and seed):

1. base shares: the mix file's planned shares (`plan`), or, when it gives no sizes, the pool's
   tokens per source. Bounds per source: --min-share/--max-share/--share-bounds, and the
   repetition limit: share x tokens per proxy <= max repetition x the source's training tokens.
2. candidates: the base mix, then Dirichlet draws (alpha = concentration x base shares, seeded)
   projected onto the bounds (the nearest mixture inside them).
3. preparation (`<output>/prep/`): the proxies' reduced vocabulary (training/proxy.py), the
   held-out documents of every source (a seeded hash sets `--holdout` of each source's
   documents aside; they are never trained on) and the evaluation sets' texts (default: the
   bundled mixes/eval-sets), tokenized, up to --eval-tokens per stream.
4. proxies: one training run per candidate as a Ray task (`runtime.run_tasks`, 1 CPU or
   --gpus-per-proxy), scored on every stream (loss and bits per byte). A finished proxy's
   result is its done marker `<output>/_state/proxy/<key>.json`; the key hashes everything that
   decides the result, so a rerun (or a killed search) never retrains a finished proxy.
5. objective: the weighted sum of --metric over the streams that --objective names (default
   `eval`: the mean over the evaluation sets).
6. regression from shares to objective: `additive` (default: each stream's loss fitted on its
   own, a source's held-out text as a power law in its own share plus linear transfer, and
   summed with the objective's weights; see `Additive`), `loglinear` (log objective = a + b .
   shares, ridge, its strength by leave-one-out; RegMix's linear model) or `gbm`
   (scikit-learn gradient boosting). Checked by K-fold cross-validation: each proxy is
   predicted by a regression fitted without it; Spearman of predicted vs measured is reported.
7. proposal: the mean of the --top best of --samples mixtures drawn like the candidates (so it
   stays where proxies were trained: a trust region), by the regression fitted on all proxies.
8. verification: the proposal, the base and the best proxy's mixture trained again with fresh
   seeds (--verify-seeds each); then the proposal is written as a mix file (same sources, new
   proportions, a comment header saying how it was found) and an HTML report (mix_report.py).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field

import numpy as np

from ..core import io
from ..core.io import InputError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BUNDLED_EVAL_SETS = os.path.join(REPO, "mixes", "eval-sets")
REGRESSIONS = ("additive", "loglinear", "gbm")
METRICS = ("loss", "bpb")
PROXY_SEEDS = ("common", "independent")


@dataclass
class SearchOptions:
    output: str
    proxies: int = 16
    proxy_config: str = "tiny"
    proxy_set: list[str] = field(default_factory=list)
    proxy_vocab: int = 2048
    tokens_per_proxy: int = 250_000
    objective: str = "eval"
    metric: str = "loss"
    min_share: float = 0.0
    max_share: float = 1.0
    share_bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    max_repetition: float = 4.0
    concentration: float | None = None  # default: the number of sources
    regression: str = "additive"
    folds: int = 4
    samples: int = 20_000
    top: int = 20
    holdout: float = 0.1
    holdout_seed: int = 0
    eval_sets: list[str] = field(default_factory=list)  # default: the bundled mixes/eval-sets
    eval_tokens: int = 16_384
    verify_seeds: int = 1
    seed: int = 0
    proxy_seeds: str = "common"  # common: one init/data-order seed for every proxy; independent: one each
    cpus_per_proxy: float = 1
    gpus_per_proxy: float = 0
    write_mix: str | None = None
    html: str | None = None


def _hash(obj) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:12]


def _seed(*parts) -> int:
    return int(_hash(parts), 16) % (2**31 - 1)


# ---------------------------------------------------------------------------------------------
# the pool, the base mix, the bounds


def load_pool(pool: str, mix, mix_path: str) -> tuple[list, dict[str, int]]:
    """The pool's token files and tokens per source; every mix source must have arrays there."""
    from dolma_prep.training.data import read_run_output

    if io.is_remote(pool):
        raise InputError(f"--pool {pool}: mix search trains on local files; copy the run output to local disk")
    try:
        files = read_run_output(pool)
    except (FileNotFoundError, ValueError) as e:
        raise InputError(f"--pool {pool}: {e}") from None
    tokens: dict[str, int] = {}
    for f in files:
        tokens[f.source] = tokens.get(f.source, 0) + f.num_tokens
    missing = [s.name for s in mix.sources if not tokens.get(s.name)]
    if missing:
        raise InputError(f"{mix_path}: source {missing[0]!r} has no token arrays in the pool {pool} "
                         f"(its manifest lists: {', '.join(sorted(tokens)) or 'nothing'}); "
                         "is --pool a run of this mix?")
    return files, tokens


def base_shares(mix, pool_tokens: dict[str, int]) -> tuple[dict[str, float], str]:
    """The mix's planned shares, or the pool's shares when the mix file gives no sizes."""
    from .plan import plan

    try:
        rows = plan(mix)["sources"]
        if all(r["share"] is not None for r in rows.values()):
            return {n: float(r["share"]) for n, r in rows.items()}, "planned by the mix file"
    except ValueError:
        pass
    total = sum(pool_tokens[s.name] for s in mix.sources)
    return {s.name: pool_tokens[s.name] / total for s in mix.sources}, "tokens per source in the pool"


def drawn_tokens(opts: SearchOptions) -> int:
    """Tokens a proxy's mixture draws: --tokens-per-proxy rounded up to whole instances of the
    proxy config's sequence length (as training/mixture.py's MixtureDataset does)."""
    from dolma_prep.training.config import load_config

    seq = load_config(opts.proxy_config, list(opts.proxy_set)).model.max_sequence_length
    return math.ceil(opts.tokens_per_proxy / seq) * seq


def bounds(names: list[str], base: np.ndarray, train_tokens: dict[str, int], opts: SearchOptions,
           mix_path: str, drawn: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Lower and upper share per source (options and the repetition limit at proxy scale: a
    share x `drawn` tokens within max repetition x the source's training tokens)."""
    drawn = drawn or opts.tokens_per_proxy
    unknown = sorted(set(opts.share_bounds) - set(names))
    if unknown:
        raise InputError(f"--share-bounds: {unknown[0]!r} is not a source of {mix_path} ({', '.join(names)})")
    lo = np.array([opts.share_bounds.get(n, (opts.min_share, opts.max_share))[0] for n in names], dtype=float)
    hi = np.array([opts.share_bounds.get(n, (opts.min_share, opts.max_share))[1] for n in names], dtype=float)
    rep = np.array([opts.max_repetition * train_tokens[n] / drawn for n in names])
    hi = np.minimum(hi, rep)
    hi[base == 0] = lo[base == 0] = 0.0  # a source the mix leaves out stays out
    for i, n in enumerate(names):
        if base[i] > rep[i] * (1 + 1e-9):
            raise InputError(
                f"{mix_path}: the base mix gives {n} {base[i]:.2%} of {opts.tokens_per_proxy:,} tokens per proxy, "
                f"{base[i] * drawn / train_tokens[n]:.1f}x its {train_tokens[n]:,} training tokens in "
                f"the pool, over --max-repetition {opts.max_repetition:g}: lower --tokens-per-proxy or raise the limit")
        if lo[i] > hi[i] + 1e-12:
            raise InputError(f"source {n}: lower bound {lo[i]:.4f} above upper bound {hi[i]:.4f} "
                             f"(options and --max-repetition {opts.max_repetition:g} at {opts.tokens_per_proxy:,} "
                             "tokens per proxy)")
    if lo.sum() > 1 + 1e-9 or hi.sum() < 1 - 1e-9:
        raise InputError(f"no mixture fits the bounds: lower bounds sum to {lo.sum():.3f}, upper bounds to "
                         f"{hi.sum():.3f} (a mixture sums to 1)")
    return lo, hi


def project(y: np.ndarray, lo: np.ndarray, hi: np.ndarray) -> np.ndarray:
    """The mixture inside [lo, hi] (summing to 1) nearest to y: clip(y + t) for the t that sums
    to 1, found by bisection (the sum is monotone in t)."""
    a, b = -1.0 - float(y.max()), 1.0 - float(y.min())
    for _ in range(100):
        t = (a + b) / 2
        if np.clip(y + t, lo, hi).sum() < 1:
            a = t
        else:
            b = t
    x = np.clip(y + b, lo, hi)
    return x / x.sum()


def draw_mixtures(rng: np.random.Generator, base: np.ndarray, lo: np.ndarray, hi: np.ndarray, n: int,
                  concentration: float) -> np.ndarray:
    """n Dirichlet draws around the base shares, projected onto the bounds."""
    live = base > 0
    alpha = np.maximum(concentration * base[live], 1e-3)
    out = np.zeros((n, len(base)))
    if n:
        out[:, live] = rng.dirichlet(alpha, size=n)
    return np.array([project(x, lo, hi) for x in out]) if n else out


# ---------------------------------------------------------------------------------------------
# objective and regression


def parse_objective(spec: str, streams: list[str]) -> dict[str, float]:
    """`eval` | `sources` | `eval:NAME` | `source:NAME`, each optionally `=WEIGHT`, comma-separated:
    weight per evaluation stream (a group's weight is shared equally by its streams)."""
    weights: dict[str, float] = {}
    for item in (p.strip() for p in spec.split(",")):
        if not item:
            continue
        name, _, w = item.partition("=")
        try:
            weight = float(w) if w else 1.0
        except ValueError:
            raise InputError(f"--objective {spec!r}: weight {w!r} of {name!r} is not a number") from None
        group = {"eval": "eval:", "sources": "source:"}.get(name)
        members = [s for s in streams if s.startswith(group)] if group else [name] if name in streams else []
        if not members:
            raise InputError(f"--objective {spec!r}: {name!r} names no evaluation stream; known: eval, sources, "
                             + ", ".join(streams))
        for m in members:
            weights[m] = weights.get(m, 0.0) + weight / len(members)
    if not weights:
        raise InputError(f"--objective {spec!r}: names nothing")
    return weights


def objective_of(result: dict, weights: dict[str, float], metric: str) -> float:
    return float(sum(w * result["metrics"][name][metric] for name, w in weights.items()))


def rankdata(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing their mean rank."""
    x = np.asarray(x, dtype=float)
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x))
    ranks[order] = np.arange(1, len(x) + 1)
    for v in np.unique(x):
        tie = x == v
        ranks[tie] = ranks[tie].mean()
    return ranks


def spearman(a, b) -> float:
    ra, rb = rankdata(a), rankdata(b)
    if ra.std() == 0 or rb.std() == 0:
        return float("nan")
    return float(np.corrcoef(ra, rb)[0, 1])


class LogLinear:
    """log(objective) = a + b . shares, ridge on the standardised shares (each source's share
    centred and divided by its spread over the proxies, so the penalty weighs every source alike
    whether its share is 1% or 30%); the ridge strength is the one of a fixed grid with the least
    leave-one-out error (closed form: residual / (1 - leverage)). `coef` is per unit of share."""

    GRID = (1e-3, 1e-2, 1e-1, 1.0, 10.0, 100.0, 1e3)  # in units of the standardised Gram matrix (diagonal n)

    def fit(self, X: np.ndarray, y: np.ndarray) -> LogLinear:
        if np.any(y <= 0):
            raise ValueError("loglinear regression needs positive objective values (losses); use --regression gbm")
        X = np.asarray(X, dtype=float)
        z = np.log(y)
        self.mean_x, self.mean_z = X.mean(0), z.mean()
        scale = X.std(0)
        scale[scale < 1e-12] = np.inf  # a share that never varies gets coefficient 0
        Xs, zc = (X - self.mean_x) / scale, z - self.mean_z
        best = None
        for lam in self.GRID:
            A = np.linalg.inv(Xs.T @ Xs + lam * np.eye(X.shape[1]))
            coef = A @ Xs.T @ zc
            lev = np.einsum("ij,jk,ik->i", Xs, A, Xs) + 1.0 / len(z)
            loo = float(np.sum(((zc - Xs @ coef) / np.maximum(1 - lev, 1e-9)) ** 2))
            if best is None or loo < best[0] - 1e-15:
                best = (loo, lam, coef)
        _, self.alpha, coef_s = best
        self.coef = coef_s / scale
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return np.exp(self.mean_z + (np.asarray(X) - self.mean_x) @ self.coef)


SHARE_EPS = 0.05  # log(share + SHARE_EPS): a source left out is not infinitely bad


class Additive:
    """The objective as the weighted sum of its streams' losses, each stream fitted on its own
    (the data-mixing-law form: a domain's loss is mostly a power law in its own share, plus
    transfer from the others). A source's held-out stream: log loss = a + b log(own share + eps)
    + c . shares; any other stream (an evaluation set): log loss = a + c . log(shares + eps).
    Each is a LogLinear (standardised ridge, strength by leave-one-out) on those features.
    Fitting the sum directly fails where the candidates surround the optimum: one source's
    loss falls as its share grows while the others' rise, the sum is flat to first order, and a
    model monotone in each share cannot rank it (out-of-fold Spearman ~0 on the shared corpus).

    `terms`: (weight, index of the stream's own source or None) per stream; fit takes the
    streams' losses (n x streams), predict returns the weighted sum."""

    def __init__(self, terms: list[tuple[float, int | None]]):
        self.terms = terms

    @staticmethod
    def features(X: np.ndarray, own: int | None) -> np.ndarray:
        X = np.atleast_2d(np.asarray(X, dtype=float))
        return np.hstack([np.log(X[:, [own]] + SHARE_EPS), X]) if own is not None else np.log(X + SHARE_EPS)

    def fit(self, X: np.ndarray, Y: np.ndarray) -> Additive:
        Y = np.asarray(Y, dtype=float)
        if Y.ndim != 2 or Y.shape[1] != len(self.terms):
            raise ValueError(f"additive regression: {len(self.terms)} streams, losses of shape {Y.shape}")
        self.models = [LogLinear().fit(self.features(X, own), Y[:, j]) for j, (_, own) in enumerate(self.terms)]
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return sum(w * m.predict(self.features(X, own)) for (w, own), m in zip(self.terms, self.models))


def additive_terms(weights: dict[str, float], names: list[str]) -> list[tuple[float, int | None]]:
    """(weight, own source index) of each objective stream, in `weights` order."""
    return [(w, names.index(k.split(":", 1)[1]) if k.startswith("source:") and k.split(":", 1)[1] in names else None)
            for k, w in weights.items()]


def targets(kind: str, results: list[dict], weights: dict[str, float], metric: str) -> np.ndarray:
    """What the regression is fitted to: the objective, or (additive) each stream's metric."""
    if kind == "additive":
        return np.array([[r["metrics"][k][metric] for k in weights] for r in results])
    return np.array([objective_of(r, weights, metric) for r in results])


class Boosted:
    """scikit-learn gradient boosting on the shares (small trees, many rounds, seeded)."""

    def __init__(self, seed: int):
        self.seed = seed

    def fit(self, X: np.ndarray, y: np.ndarray) -> Boosted:
        from sklearn.ensemble import GradientBoostingRegressor

        self.model = GradientBoostingRegressor(n_estimators=300, learning_rate=0.05, max_depth=2,
                                               min_samples_leaf=2, subsample=0.8, random_state=self.seed)
        self.model.fit(X, y)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self.model.predict(np.asarray(X))


def make_regression(kind: str, seed: int, terms: list[tuple[float, int | None]] | None = None):
    if kind == "additive":
        return Additive(terms or [])
    if kind == "loglinear":
        return LogLinear()
    if kind == "gbm":
        return Boosted(seed)
    raise InputError(f"--regression must be one of {', '.join(REGRESSIONS)}, got {kind!r}")


def cross_validate(kind: str, X: np.ndarray, y: np.ndarray, folds: int, seed: int,
                   terms: list[tuple[float, int | None]] | None = None) -> np.ndarray:
    """Out-of-fold predictions of the objective: proxy i predicted by a regression fitted on the
    other folds (`y`: the objective, or for `additive` the streams' losses, see `targets`)."""
    n = len(y)
    folds = max(2, min(folds, n))
    assign = np.empty(n, dtype=int)
    assign[np.random.Generator(np.random.PCG64(seed)).permutation(n)] = np.arange(n) % folds
    pred = np.empty(n)
    for k in range(folds):
        test = assign == k
        pred[test] = make_regression(kind, seed, terms).fit(X[~test], y[~test]).predict(X[test])
    return pred


def sensitivity(model, x: np.ndarray, delta: float = 0.05) -> np.ndarray:
    """Predicted change of the objective when `delta` of the mixture moves to each source
    (taken from all sources in proportion): negative = more of it helps."""
    f0 = float(model.predict(x[None])[0])
    moved = np.array([(1 - delta) * x + delta * np.eye(len(x))[i] for i in range(len(x))])
    return model.predict(moved) - f0


# ---------------------------------------------------------------------------------------------
# preparation: vocabulary and evaluation streams


def _read_eval_texts(path: str, tokenizer, eos: int | None, budget: int) -> np.ndarray:
    """Token ids of an evaluation set's texts (items in seeded-hash order, EOS after each), up to
    `budget` tokens."""
    from dolma_prep.training.mixture import unit_hash

    items = []
    for line, doc, err in io.read_jsonl(path):
        if err is None and isinstance(doc, dict) and isinstance(doc.get("text"), str) and doc["text"].strip():
            items.append((unit_hash(0, "eval", path.rsplit("/", 1)[-1], doc.get("id", line)), doc["text"].strip()))
    if not items:
        raise InputError(f"{path}: no items with a non-empty 'text'")
    out, total = [], 0
    for _, text in sorted(items):
        ids = tokenizer.encode(text, add_special_tokens=False).ids + ([eos] if eos is not None else [])
        out.append(np.array(ids, dtype=np.int64))
        total += len(ids)
        if total >= budget:
            break
    return np.concatenate(out)[:budget]


def _held_out_stream(files, docs, budget: int) -> np.ndarray:
    from dolma_prep.training.data import DTYPES

    out, total = [], 0
    order = np.argsort([_hash(["eval-order", i]) for i in docs.ids], kind="stable")
    for j in order.tolist():
        f = files[int(docs.file[j])]
        arr = np.memmap(f.path, dtype=DTYPES[f.dtype], mode="r")
        s, n = int(docs.start[j]), int(docs.length[j])
        out.append(np.asarray(arr[s : s + n], dtype=np.int64))
        total += n
        if total >= budget:
            break
    return np.concatenate(out)[:budget] if out else np.zeros(0, dtype=np.int64)


def prepare(mix, files, opts: SearchOptions, prep_dir: str) -> dict:
    """Reduced vocabulary, byte lengths and evaluation streams under `prep_dir`; returns a
    description (with a fingerprint of the files' contents)."""
    from dolma_prep.training.mixture import split_pool
    from dolma_prep.training.proxy import count_ids, reduced_vocabulary, token_byte_lengths

    from .stages.tokenize import load_tokenizer

    tok = load_tokenizer(mix.tokenizer.path)
    vocab = tok.get_vocab_size(with_added_tokens=True)
    eos = mix.tokenizer.eos_token_id
    train, held = split_pool(files, eos, opts.holdout, opts.holdout_seed)
    counts = count_ids(files, {n: train[n] for n in (s.name for s in mix.sources)}, vocab)
    keep = tuple(t for t in (eos, mix.tokenizer.pad_token_id) if t is not None)
    id_map, rare_logq = reduced_vocabulary(counts, opts.proxy_vocab, keep)
    streams = {}
    for s in mix.sources:
        stream = _held_out_stream(files, held[s.name], opts.eval_tokens)
        if len(stream) < 2:
            raise InputError(f"source {s.name}: --holdout {opts.holdout} sets aside no document of the pool "
                             f"({len(held[s.name].ids) + len(train[s.name].ids)} documents); raise --holdout")
        streams[f"source:{s.name}"] = stream
    sets = opts.eval_sets or sorted(io.glob(os.path.join(BUNDLED_EVAL_SETS, "*.jsonl.gz")))
    for path in sets:
        if not io.exists(path):
            raise InputError(f"--eval-sets: {path} does not exist")
        name = os.path.basename(path).split(".")[0]
        streams[f"eval:{name}"] = _read_eval_texts(path, tok, eos, opts.eval_tokens)
    io.save_npy(io.join(prep_dir, "id_map.npy"), id_map)
    io.save_npy(io.join(prep_dir, "rare_logq.npy"), rare_logq)
    io.save_npy(io.join(prep_dir, "token_bytes.npy"), token_byte_lengths(tok, vocab))
    io.save_npz(io.join(prep_dir, "eval.npz"), **streams)
    digest = hashlib.sha256()
    for arr in (id_map, rare_logq, *(streams[k] for k in sorted(streams))):
        digest.update(np.ascontiguousarray(arr).tobytes())
    info = {"fingerprint": digest.hexdigest()[:16], "vocab": vocab, "proxy_rows": int(id_map.max()) + 1,
            "bucketed_share": float(counts[id_map == opts.proxy_vocab].sum() / max(counts.sum(), 1))
            if 0 < opts.proxy_vocab < vocab else 0.0,
            "streams": {k: int(len(v)) for k, v in streams.items()}, "eval_sets": sets,
            "train_tokens": {n: train[n].tokens for n in train}, "held_out_tokens": {n: held[n].tokens for n in held}}
    io.write_json(io.join(prep_dir, "prep.json"), info)
    return info


# ---------------------------------------------------------------------------------------------
# proxies


def proxy_specs(label: str, mixtures: list[np.ndarray], seeds: list[int], names: list[str], pool: str,
                opts: SearchOptions, prep_dir: str, prep: dict, pool_fingerprint: str,
                proxies_dir: str) -> tuple[list[dict], list[str]]:
    """One training spec per mixture and its resume key (a hash of all that decides the result)."""
    specs, keys = [], []
    reduced = 0 < opts.proxy_vocab < prep["vocab"]
    for i, (x, seed) in enumerate(zip(mixtures, seeds)):
        shares = {n: round(float(v), 10) for n, v in zip(names, x) if v > 0}
        spec = {"config": opts.proxy_config, "overrides": list(opts.proxy_set), "pool": pool, "shares": shares,
                "tokens": opts.tokens_per_proxy, "seed": seed,
                "max_repetition": {n: opts.max_repetition for n in shares},
                "holdout": opts.holdout, "holdout_seed": opts.holdout_seed, "prep": prep_dir,
                "vocab": prep["proxy_rows"] if reduced else 0}
        key = f"{label}{i:02d}-" + _hash({**spec, "prep": prep["fingerprint"], "pool": pool_fingerprint})
        spec.update(save_folder=os.path.join(proxies_dir, key), threads=max(1, int(opts.cpus_per_proxy)),
                    device="cuda" if opts.gpus_per_proxy > 0 else None)
        specs.append(spec)
        keys.append(key)
    return specs, keys


def train_all(label: str, specs: list[dict], keys: list[str], output: str, opts: SearchOptions) -> list[dict]:
    from dolma_prep.training.proxy import train_proxy

    from ..core.runtime import run_tasks

    return run_tasks(label, train_proxy, [(s,) for s in specs], state=output, keys=keys,
                     num_cpus=opts.cpus_per_proxy, num_gpus=opts.gpus_per_proxy)


def proxy_seeds(opts: SearchOptions, n: int) -> list[int]:
    """The training seed of each proxy. `common` (default): one seed for all, so every proxy starts
    from the same weights, reads each source's documents in the same hashed order (a larger share
    takes a superset) and sees its batches in the same seeded order: the proxies differ by their
    mixture only (common random numbers), and the regression is not fitting seed noise.
    `independent`: a seed per proxy. Verification always uses fresh seeds of its own."""
    if opts.proxy_seeds == "common":
        return [_seed(opts.seed, "proxy")] * n
    return [_seed(opts.seed, "proxy", i) for i in range(n)]


# ---------------------------------------------------------------------------------------------
# the search


def search(mix_path: str, pool: str, opts: SearchOptions, workers: int | None = None,
           ray_address: str | None = None, progress: bool = True) -> dict:
    """Run (or resume) a search; returns the summary written to `<output>/search.json`."""
    from ..core.runtime import init_ray, make_progress
    from .mixfile import load_mix

    started = time.perf_counter()
    if opts.metric not in METRICS:
        raise InputError(f"--metric must be one of {', '.join(METRICS)}, got {opts.metric!r}")
    if opts.regression not in REGRESSIONS:
        raise InputError(f"--regression must be one of {', '.join(REGRESSIONS)}, got {opts.regression!r}")
    if opts.proxy_seeds not in PROXY_SEEDS:
        raise InputError(f"--proxy-seeds must be one of {', '.join(PROXY_SEEDS)}, got {opts.proxy_seeds!r}")
    if opts.proxies < 4:
        raise InputError(f"--proxies {opts.proxies}: the regression and its check need at least 4 proxies")
    if opts.tokens_per_proxy <= 0 or not 0 <= opts.holdout < 1 or opts.verify_seeds < 0:
        raise InputError("--tokens-per-proxy must be positive, --holdout in [0, 1), --verify-seeds >= 0")
    mix = load_mix(mix_path)
    pool = os.path.abspath(pool)
    files, pool_tokens = load_pool(pool, mix, mix_path)
    output = os.path.abspath(opts.output)
    if io.is_remote(output):
        raise InputError(f"--output {output}: mix search writes proxies to local disk")
    names = [s.name for s in mix.sources]
    base_map, base_from = base_shares(mix, pool_tokens)
    base = np.array([base_map[n] for n in names])
    prep_dir = io.join(output, "prep")
    prep = prepare(mix, files, opts, prep_dir)
    lo, hi = bounds(names, base, prep["train_tokens"], opts, mix_path, drawn_tokens(opts))
    weights = parse_objective(opts.objective, sorted(prep["streams"]))
    concentration = opts.concentration or float(len(names))
    rng = np.random.Generator(np.random.PCG64(_seed(opts.seed, "candidates")))
    candidates = np.vstack([base[None], draw_mixtures(rng, base, lo, hi, opts.proxies - 1, concentration)])
    manifest_path = os.path.join(pool, "manifest.json")
    pool_fp = hashlib.sha256(io.read_bytes(manifest_path)).hexdigest()[:16] if io.exists(manifest_path) else \
        _hash([(str(f.path), f.num_tokens) for f in files])
    proxies_dir = io.join(output, "proxies")
    seeds = proxy_seeds(opts, len(candidates))
    common = (names, pool, opts, prep_dir, prep, pool_fp, proxies_dir)
    specs, keys = proxy_specs("p", list(candidates), seeds, *common)

    init_ray(workers, ray_address)
    with make_progress(progress):
        results = train_all("proxy", specs, keys, output, opts)
        y = np.array([objective_of(r, weights, opts.metric) for r in results])
        terms = additive_terms(weights, names)
        fit_to = targets(opts.regression, results, weights, opts.metric)
        oof = cross_validate(opts.regression, candidates, fit_to, opts.folds, _seed(opts.seed, "folds"), terms)
        model = make_regression(opts.regression, _seed(opts.seed, "fit"), terms).fit(candidates, fit_to)
        pool_rng = np.random.Generator(np.random.PCG64(_seed(opts.seed, "solve")))
        samples = draw_mixtures(pool_rng, base, lo, hi, opts.samples, concentration)
        predicted = model.predict(samples)
        best_samples = np.argsort(predicted, kind="stable")[: max(1, opts.top)]
        proposal = project(samples[best_samples].mean(0), lo, hi)
        best_proxy = int(np.argmin(y))
        verify_mixes = {"proposed": proposal, "base": base, "best_proxy": candidates[best_proxy]}
        verify = {}
        if opts.verify_seeds:
            vm, vs, vk = [], [], []
            for kind, x in verify_mixes.items():
                for j in range(opts.verify_seeds):
                    vm.append(x)
                    vs.append(_seed(opts.seed, "verify", j))  # same fresh seeds for every mixture
                    vk.append(kind)
            vspecs, vkeys = proxy_specs("v", vm, vs, *common)
            vres = train_all("verify", vspecs, vkeys, output, opts)
            for kind, r, key in zip(vk, vres, vkeys):
                verify.setdefault(kind, []).append({"key": key, "objective": objective_of(r, weights, opts.metric),
                                                    "metrics": r["metrics"]})
    sens = sensitivity(model, proposal)
    summary = {
        "mix": mix_path, "pool": pool, "output": output, "options": asdict(opts), "sources": names,
        "base_from": base_from, "bounds": {"lo": lo.tolist(), "hi": hi.tolist()}, "concentration": concentration,
        "objective_weights": weights, "prep": prep,
        "proxies": [{"key": k, "shares": c.tolist(), "seed": s, "objective": float(v), "predicted_oof": float(p),
                     "metrics": r["metrics"], "seconds": r.get("_seconds"), "train_tokens_per_s": r.get("train_tokens_per_s"),
                     "mixture": r.get("mixture")}
                    for k, c, s, v, p, r in zip(keys, candidates, seeds, y, oof, results)],
        "regression": {"kind": opts.regression, "spearman_oof": spearman(oof, y),
                       "mae_oof": float(np.mean(np.abs(oof - y))), "folds": min(max(2, opts.folds), len(y)),
                       **({"coef": model.coef.tolist(), "ridge": model.alpha} if isinstance(model, LogLinear) else {}),
                       **({"ridge": {k: m.alpha for k, m in zip(weights, model.models)}}
                          if isinstance(model, Additive) else {})},
        "proposal": {"shares": proposal.tolist(), "predicted": float(model.predict(proposal[None])[0]),
                     "base_predicted": float(model.predict(base[None])[0]),
                     "best_proxy": keys[best_proxy], "best_proxy_objective": float(y[best_proxy]),
                     "sensitivity": sens.tolist()},
        "verify": verify,
        "base_shares": base.tolist(),
    }
    summary["verdict"] = verdict(summary)
    mix_out = opts.write_mix or io.join(output, f"{mix.name}-search.yaml")
    summary["mix_file"] = write_proposal(mix_path, mix, names, base, proposal, summary, mix_out)
    summary["wall_s"] = round(time.perf_counter() - started, 1)
    html_path = opts.html or io.join(output, "report.html")
    from .mix_report import write_report

    write_report(summary, html_path)
    summary["report"] = html_path
    io.write_json(io.join(output, "search.json"), summary)
    return summary


def verdict(summary: dict) -> dict:
    """Verified means per mixture and the seed noise (standard deviation over the verify seeds)."""
    out = {}
    for kind, runs in summary["verify"].items():
        vals = np.array([r["objective"] for r in runs])
        out[kind] = {"mean": float(vals.mean()), "std": float(vals.std(ddof=1)) if len(vals) > 1 else None,
                     "n": len(vals)}
    return out


# ---------------------------------------------------------------------------------------------
# the proposed mix file


PATH_KEYS = ("data_root", "output")


def _rebase(path: str, old_dir: str, new_dir: str) -> str:
    if io.is_remote(path) or os.path.isabs(path) or path.startswith("hf:"):
        return path
    return os.path.relpath(os.path.normpath(os.path.join(old_dir, path)), new_dir)


def rebase_paths(raw: dict, old_dir: str, new_dir: str) -> None:
    """Rewrite the mix file's relative paths for a file in `new_dir` (load_mix resolves them
    against the mix file's folder)."""
    fix = lambda p: _rebase(p, old_dir, new_dir)  # noqa: E731
    for k in PATH_KEYS:
        if isinstance(raw.get(k), str):
            raw[k] = fix(raw[k])
    tok = raw.get("tokenizer") or {}
    if isinstance(tok.get("path"), str) and tok["path"] != "bundled" and (tok["path"].startswith(".") or os.sep in tok["path"]):
        tok["path"] = fix(tok["path"])
    for t in raw.get("taggers") or []:
        for k, v in ((t.get("options") or {}).items() if isinstance(t, dict) else []):
            if k.endswith("_path"):
                t["options"][k] = fix(v) if isinstance(v, str) else [fix(x) if isinstance(x, str) else x for x in v]
    dedup = raw.get("dedup") or {}
    for _kind, cfg in dedup.items():
        if not isinstance(cfg, dict):
            continue
        if isinstance(cfg.get("against"), str):
            cfg["against"] = fix(cfg["against"])
        if isinstance(cfg.get("eval_index"), str):
            cfg["eval_index"] = fix(cfg["eval_index"])
        if "eval_sets" in cfg and cfg["eval_sets"] is not None:
            sets = [cfg["eval_sets"]] if isinstance(cfg["eval_sets"], str) else cfg["eval_sets"]
            cfg["eval_sets"] = [fix(e) for e in sets]
    for src in raw.get("sources") or []:
        ds = src.get("dataset") if isinstance(src, dict) else None
        if isinstance(ds, dict):
            if isinstance(ds.get("path"), str) and (ds["path"].startswith(".") or os.path.isdir(os.path.join(old_dir, ds["path"]))):
                ds["path"] = fix(ds["path"])
            if ds.get("data_files"):
                ds["data_files"] = [fix(f) for f in ds["data_files"]]


def proposed_mix(raw: dict, names: list[str], base: np.ndarray, proposal: np.ndarray) -> dict:
    """The mix with each source's size scaled by proposed / base share: `tokens` targets scale,
    otherwise `proportion` (default 1) does; the run's total is unchanged."""
    ratio = {n: (p / b if b > 0 else 0.0) for n, b, p in zip(names, base, proposal)}
    for src in raw["sources"]:
        r = ratio[src["name"]]
        if src.get("tokens") is not None:
            src["tokens"] = float(f"{src['tokens'] * r:.6g}")
        else:
            src["proportion"] = float(f"{(src.get('proportion') if src.get('proportion') is not None else 1.0) * r:.6g}")
    raw["name"] = f"{raw['name']}-search"
    return raw


def write_proposal(mix_path: str, mix, names: list[str], base: np.ndarray, proposal: np.ndarray, summary: dict,
                   dest: str) -> str:
    import yaml

    from .mixfile import load_mix

    raw = yaml.safe_load(io.read_text(mix_path))
    rebase_paths(raw, os.path.dirname(os.path.abspath(mix_path)), os.path.dirname(os.path.abspath(dest)))
    raw = proposed_mix(raw, names, base, proposal)
    reg, prop, v = summary["regression"], summary["proposal"], summary["verdict"]
    opts = summary["options"]
    shares = ", ".join(f"{n} {b:.3f}->{p:.3f}" for n, b, p in zip(names, base, proposal))
    lines = [
        f"Proposed by `dolma-prep mix-search {mix_path} --pool {summary['pool']}` (seed {opts['seed']}).",
        f"Proxies: {len(summary['proxies'])} x {opts['tokens_per_proxy']:,} tokens, config {opts['proxy_config']}"
        f"{' ' + ' '.join(opts['proxy_set']) if opts['proxy_set'] else ''}, vocabulary {summary['prep']['proxy_rows']:,} rows;"
        f" candidates: the base mix and Dirichlet draws (concentration {summary['concentration']:g}).",
        f"Objective: {opts['objective']} ({opts['metric']}), lower is better. Regression {reg['kind']}: "
        f"out-of-fold Spearman {reg['spearman_oof']:.3f} over {len(summary['proxies'])} proxies ({reg['folds']} folds).",
        f"Predicted objective: proposed {prop['predicted']:.4f}, base {prop['base_predicted']:.4f}; "
        f"best proxy measured {prop['best_proxy_objective']:.4f}.",
    ]
    if v:
        lines.append("Verified (fresh seeds): " + ", ".join(
            f"{k} {r['mean']:.4f}" + (f" +- {r['std']:.4f}" if r["std"] is not None else "") + f" (n={r['n']})"
            for k, r in v.items()) + ".")
    lines += [f"Shares (base -> proposed): {shares}.",
              f"Only the sources' sizes (proportion or tokens) and the name differ from {os.path.basename(mix_path)};"
              " its comments are not carried over. Report: report.html beside search.json."]
    wrapped = []
    for line in lines:
        while len(line) > 98:
            cut = line.rfind(" ", 0, 98)
            wrapped.append(line[:cut])
            line = "  " + line[cut + 1 :]
        wrapped.append(line)
    text = "".join(f"# {w}\n" for w in wrapped) + yaml.safe_dump(raw, sort_keys=False, default_flow_style=None,
                                                               width=120)
    io.write_text_atomic(dest, text)
    load_mix(dest)  # the proposal must load like any mix file
    return dest
