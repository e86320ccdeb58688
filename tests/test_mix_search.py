"""`dolma-prep mix-search`: bounds and candidates, the regression and its held-out check, honest
reduced-vocabulary scores, the proposed mix file, clear errors, and (slow) a small search end to
end: proxies trained on Ray, a runnable proposal and a report, resumed without retraining and
deterministic for a seed."""
from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from conftest import REPO, TOKENIZER, run_cli, write_mix

from dolma_prep.core.io import InputError
from dolma_prep.pipeline import mix_search as ms
from dolma_prep.pipeline.mixfile import load_mix
from dolma_prep.pipeline.plan import plan
from dolma_prep.training.data import write_run_output
from dolma_prep.training.proxy import evaluate, reduced_vocabulary, token_byte_lengths

EOS = 50279
ANNEAL = REPO / "mixes" / "anneal.yaml"


def test_projection_and_candidates_stay_inside_the_bounds():
    lo, hi = np.array([0.05, 0.0, 0.1, 0.0]), np.array([0.5, 0.3, 0.9, 0.2])
    x = ms.project(np.array([0.9, 0.5, -0.2, 0.4]), lo, hi)
    assert abs(x.sum() - 1) < 1e-9 and np.all(x >= lo - 1e-9) and np.all(x <= hi + 1e-9)
    inside = np.array([0.3, 0.2, 0.4, 0.1])
    assert np.allclose(ms.project(inside, lo, hi), inside)  # a feasible mixture is its own projection
    base = np.array([0.4, 0.1, 0.4, 0.1])
    draw = lambda s: ms.draw_mixtures(np.random.Generator(np.random.PCG64(s)), base, lo, hi, 50, 4.0)  # noqa: E731
    a, b, c = draw(1), draw(1), draw(2)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.allclose(a.sum(1), 1) and np.all(a >= lo - 1e-9) and np.all(a <= hi + 1e-9)
    assert a.std(0).min() > 0.01  # they do spread around the base


def test_bounds_apply_repetition_and_refuse_infeasible_options():
    names = ["a", "b"]
    opts = ms.SearchOptions(output="x", tokens_per_proxy=100_000, max_repetition=2.0)
    lo, hi = ms.bounds(names, np.array([0.5, 0.5]), {"a": 30_000, "b": 200_000}, opts, "m.yaml")
    assert hi.tolist() == [0.6, 1.0] and lo.tolist() == [0.0, 0.0]
    with pytest.raises(InputError, match=r"m.yaml: the base mix gives a 50.00% .* over --max-repetition 2"):
        ms.bounds(names, np.array([0.5, 0.5]), {"a": 20_000, "b": 200_000}, opts, "m.yaml")
    opts.share_bounds = {"a": (0.7, 1.0)}
    with pytest.raises(InputError, match="lower bound 0.7000 above upper bound 0.6000"):
        ms.bounds(names, np.array([0.5, 0.5]), {"a": 30_000, "b": 200_000}, opts, "m.yaml")
    opts.share_bounds = {"zz": (0.0, 1.0)}
    with pytest.raises(InputError, match="'zz' is not a source of m.yaml"):
        ms.bounds(names, np.array([0.5, 0.5]), {"a": 30_000, "b": 200_000}, opts, "m.yaml")


def test_spearman_and_objective_parsing():
    assert ms.spearman([1, 2, 3, 4], [10, 20, 30, 40]) == pytest.approx(1.0)
    assert ms.spearman([1, 2, 3, 4], [4, 3, 2, 1]) == pytest.approx(-1.0)
    assert ms.rankdata(np.array([3.0, 1.0, 3.0])).tolist() == [2.5, 1.0, 2.5]
    streams = ["eval:arc", "eval:boolq", "source:a", "source:b"]
    assert ms.parse_objective("eval", streams) == {"eval:arc": 0.5, "eval:boolq": 0.5}
    assert ms.parse_objective("sources=2,eval:arc=1", streams) == {"source:a": 1.0, "source:b": 1.0, "eval:arc": 1.0}
    with pytest.raises(InputError, match="'eval:nope' names no evaluation stream"):
        ms.parse_objective("eval:nope", streams)
    result = {"metrics": {"eval:arc": {"loss": 2.0}, "eval:boolq": {"loss": 4.0}}}
    assert ms.objective_of(result, {"eval:arc": 0.5, "eval:boolq": 0.5}, "loss") == 3.0


@pytest.mark.parametrize("kind", ["loglinear", "gbm"])
def test_regression_predicts_held_out_points(kind):
    """A known law (objective = exp(1 + w . x) plus noise): out-of-fold predictions rank the
    held-out points, and the solver moves toward the source with the most negative weight."""
    rng = np.random.Generator(np.random.PCG64(0))
    base, lo, hi = np.full(5, 0.2), np.zeros(5), np.ones(5)
    X = ms.draw_mixtures(rng, base, lo, hi, 40 if kind == "gbm" else 24, 5.0)
    w = np.array([-0.8, 0.1, 0.3, 0.0, 0.4])
    y = np.exp(1 + X @ w) * (1 + 0.005 * rng.standard_normal(len(X)))
    oof = ms.cross_validate(kind, X, y, 4, seed=1)
    assert ms.spearman(oof, y) > 0.8
    model = ms.make_regression(kind, 1).fit(X, y)
    if kind == "loglinear":
        assert np.corrcoef(model.coef, w)[0, 1] > 0.95
    assert ms.sensitivity(model, base)[0] == min(ms.sensitivity(model, base))


def test_additive_regression_ranks_a_sum_of_power_laws_around_its_optimum():
    """Each source's held-out loss a power law in its own share (with transfer from source 1);
    the objective, their mean, has its optimum among the candidates. The additive regression
    (one fit per stream, summed) ranks held-out proxies and finds the optimum; a log-linear fit of
    the sum, monotone in each share, ranks them markedly worse."""
    rng = np.random.Generator(np.random.PCG64(0))
    k = 6
    base, lo, hi = np.full(k, 1 / k), np.zeros(k), np.ones(k)
    a, b = np.array([0.3, 0.5, 0.8, 0.4, 0.6, 0.2]), np.array([0.3, 0.4, 0.25, 0.5, 0.35, 0.3])
    law = lambda X: 1.0 + a * (X + 0.05) ** (-b) * np.exp(0.3 * X[:, [1]])  # noqa: E731
    X = ms.draw_mixtures(rng, base, lo, hi, 32, 6.0)
    Y = law(X) * (1 + 0.002 * rng.standard_normal((len(X), k)))
    names = [f"s{i}" for i in range(k)]
    weights = {**{f"source:{n}": 1 / k for n in names}, "eval:x": 0.0}
    terms = ms.additive_terms(weights, names)
    assert terms[:2] == [(1 / k, 0), (1 / k, 1)] and terms[-1] == (0.0, None)
    Y = np.hstack([Y, np.ones((len(X), 1))])  # an evaluation stream, weight 0
    y = Y[:, :k].mean(1)
    additive = ms.spearman(ms.cross_validate("additive", X, Y, 4, 1, terms), y)
    loglinear = ms.spearman(ms.cross_validate("loglinear", X, y, 4, 1), y)
    assert additive > 0.95 and loglinear < additive - 0.15
    model = ms.make_regression("additive", 0, terms).fit(X, Y)
    samples = ms.draw_mixtures(rng, base, lo, hi, 20_000, 6.0)
    proposal = samples[np.argsort(model.predict(samples))[:20]].mean(0)
    true = law(samples).mean(1)
    assert law(proposal[None]).mean() < true.min() + 0.005 < law(base[None]).mean()
    with pytest.raises(ValueError, match="7 streams"):
        model.fit(X, Y[:, :3])


def test_loglinear_ridge_is_standardised_per_source():
    """The ridge penalty weighs each source by its spread, not its raw share: scaling one
    source's shares by a constant (its coefficient by the inverse) leaves every prediction and
    the chosen strength unchanged, and a share that never varies gets coefficient 0."""
    rng = np.random.Generator(np.random.PCG64(3))
    base = np.array([0.02, 0.28, 0.3, 0.4, 0.0])
    hi = np.array([1.0, 1, 1, 1, 0])  # as `bounds` sets them: a source the base leaves out stays out
    X = ms.draw_mixtures(rng, base, np.zeros(5), hi, 20, 10.0)
    assert np.all(X[:, 4] == 0) and X[:, 0].std() < 0.05  # a small source, and one left out
    y = np.exp(2 + X @ np.array([-6.0, 0.0, 0.2, 0.1, 0.0])) * (1 + 0.002 * rng.standard_normal(len(X)))
    a = ms.LogLinear().fit(X, y)
    c = np.array([10.0, 1, 1, 1, 1])
    b = ms.LogLinear().fit(X * c, y)
    test = ms.draw_mixtures(rng, base, np.zeros(5), hi, 8, 10.0)
    assert np.allclose(a.predict(test), b.predict(test * c), rtol=1e-9) and a.alpha == b.alpha
    assert a.coef[4] == 0.0 and np.all(np.isfinite(a.coef))
    assert a.coef[0] == min(a.coef) < -2  # the small source's strong effect is found, not shrunk away
    assert ms.spearman(ms.cross_validate("loglinear", X, y, 4, seed=1), y) > 0.8


def test_proxies_share_one_seed_unless_asked_otherwise():
    """Common random numbers: every proxy of a search trains with the same seed (same init, same
    document and batch order), so proxies differ by their mixture only; `independent` gives a
    seed each; both depend on --seed."""
    common = ms.proxy_seeds(ms.SearchOptions(output="x", seed=3), 5)
    assert len(set(common)) == 1 and common[0] != ms.proxy_seeds(ms.SearchOptions(output="x", seed=4), 1)[0]
    indep = ms.proxy_seeds(ms.SearchOptions(output="x", seed=3, proxy_seeds="independent"), 5)
    assert len(set(indep)) == 5


def test_reduced_vocabulary_scores_are_a_proper_full_vocabulary_distribution():
    import torch

    rng = np.random.Generator(np.random.PCG64(1))
    counts = rng.integers(0, 50, size=300)
    id_map, rare_logq = reduced_vocabulary(counts, 40, keep=(299,))
    k = 40
    assert id_map[299] == 0 and (id_map < k).sum() == 40 and id_map.max() == k
    kept_counts = counts[(id_map < k) & (np.arange(300) != 299)]
    assert kept_counts.min() >= counts[id_map == k].max()  # the most frequent ids are the kept ones
    assert np.exp(rare_logq[id_map == k]).sum() == pytest.approx(1.0)  # q(. | bucket) sums to 1
    # any model output over k + 1 rows then gives a distribution over all 300 ids
    logp = torch.log_softmax(torch.randn(k + 1, dtype=torch.float64), -1).numpy()
    full = np.exp(logp[id_map] + rare_logq)
    assert full.sum() == pytest.approx(1.0)

    class Fixed(torch.nn.Module):  # a "model" whose prediction is always logp
        def forward(self, x):
            return torch.from_numpy(logp).float().expand(*x.shape, k + 1)

    stream = rng.integers(0, 300, size=200)
    nbytes = np.full(300, 2)
    out = evaluate(Fixed(), stream, id_map, rare_logq, nbytes, seq_len=50)
    scored = np.concatenate([stream[s + 1 : s + 50] for s in range(0, 199, 50)])
    expected = -np.log(full[scored]).mean()
    assert out["tokens"] == len(scored) and out["loss"] == pytest.approx(expected, rel=1e-5)
    assert out["bpb"] == pytest.approx(expected * len(scored) / np.log(2) / (2 * len(scored)), rel=1e-5)


def test_token_bytes_add_up_to_the_text():
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    lengths = token_byte_lengths(tok, tok.get_vocab_size(with_added_tokens=True))
    assert lengths[EOS] == 0
    for text in ["Hello, world!", "naïve café — 東京 🚀", "def f(x):\n    return x  # ok"]:
        ids = tok.encode(text, add_special_tokens=False).ids
        assert lengths[ids].sum() == len(text.encode("utf-8"))


def test_proposed_mix_file_loads_and_plans_the_proposed_shares(tmp_path):
    mix = load_mix(str(ANNEAL))
    names = [s.name for s in mix.sources]
    base_map, base_from = ms.base_shares(mix, {n: 1 for n in names})
    assert base_from == "planned by the mix file"
    base = np.array([base_map[n] for n in names])
    proposal = ms.project(base * np.linspace(0.5, 1.5, len(base)), np.zeros(len(base)), np.ones(len(base)))
    summary = {"pool": "pool", "options": {"seed": 3, "tokens_per_proxy": 1000, "proxy_config": "tiny",
                                           "proxy_set": [], "objective": "eval", "metric": "loss"},
               "proxies": [{}] * 5, "prep": {"proxy_rows": 2049}, "concentration": 12.0,
               "regression": {"kind": "loglinear", "spearman_oof": 0.9, "folds": 4},
               "proposal": {"predicted": 4.0, "base_predicted": 4.2, "best_proxy_objective": 4.1},
               "verdict": {"proposed": {"mean": 4.0, "std": None, "n": 1}}}
    dest = tmp_path / "elsewhere" / "anneal-search.yaml"
    ms.write_proposal(str(ANNEAL), mix, names, base, proposal, summary, str(dest))
    text = dest.read_text()
    assert text.startswith("# Proposed by `dolma-prep mix-search") and "Spearman 0.900" in text
    new = load_mix(str(dest))
    assert new.name == "anneal-search" and new.data_root == mix.data_root  # relative paths rebased
    assert new.total_tokens == mix.total_tokens and [s.name for s in new.sources] == names
    shares = plan(new)["sources"]
    for n, p in zip(names, proposal):
        assert shares[n]["share"] == pytest.approx(p, rel=1e-4)
    raw = yaml.safe_load(text)
    assert raw["taggers"] == ["char_length_v1"] and raw["dedup"]["exact"]["key"] == "text"


def _pool(folder: Path, sources=("c4", "flan", "reddit")) -> Path:
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    arrays = {}
    for s in sources:
        ids: list[int] = []
        with gzip.open(REPO / "sample" / "documents" / s / "0000.jsonl.gz", "rt") as f:
            for line in f:
                ids += tok.encode(json.loads(line)["text"].strip()).ids + [EOS]
        arrays[s] = [np.array(ids)]
    return write_run_output(folder, arrays)


def test_mix_and_pool_mismatch_is_a_clear_error(tmp_path, capsys):
    from dolma_prep.pipeline.cli import main

    pool = _pool(tmp_path / "pool", ("c4", "flan"))
    mix = write_mix(tmp_path / "m.yaml", ["c4", "flan", "reddit"])
    assert main(["mix-search", str(mix), "--pool", str(pool), "--output", str(tmp_path / "s")]) == 2
    err = capsys.readouterr().err
    assert f"{mix}: source 'reddit' has no token arrays in the pool {pool}" in err
    assert "lists: c4, flan" in err and "Traceback" not in err
    assert main(["mix-search", str(mix), "--pool", str(tmp_path / "nowhere")]) == 2
    err = capsys.readouterr().err
    assert "--pool" in err and "nowhere" in err and "no token arrays" in err


SMALL = ["--proxies", "4", "--tokens-per-proxy", "6144", "--proxy-vocab", "512", "--eval-tokens", "1024",
         "--proxy-set", "model.max_sequence_length=32", "--proxy-set", "global_batch_size=8",
         "--proxy-set", "micro_batch_size=8", "--samples", "500", "--top", "5", "--holdout", "0.2",
         "--workers", "2", "--quiet"]


@pytest.mark.slow
def test_small_search_end_to_end_resumes_and_is_deterministic(tmp_path):
    pool = _pool(tmp_path / "pool")
    mix = write_mix(tmp_path / "m.yaml", ["c4", "flan", "reddit"])
    out = tmp_path / "search"
    proc = run_cli("mix-search", str(mix), "--pool", str(pool), "--output", str(out), *SMALL, "--seed", "3")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    s = json.loads((out / "search.json").read_text())
    assert len(s["proxies"]) == 4 and s["base_from"] == "tokens per source in the pool"
    assert len({p["seed"] for p in s["proxies"]}) == 1  # common random numbers across proxies
    assert np.allclose(s["proxies"][0]["shares"], s["base_shares"])  # the base mix is a candidate
    for p in s["proxies"]:
        assert abs(sum(p["shares"]) - 1) < 1e-9
        assert sorted(p["metrics"]) == ["eval:arc_challenge", "eval:arc_easy", "eval:boolq",
                                        "source:c4", "source:flan", "source:reddit"]
        m = p["metrics"]["eval:boolq"]
        assert 0 < m["bpb"] < 10 and m["tokens"] > 900
        assert p["objective"] == pytest.approx(np.mean([p["metrics"][k]["loss"] for k in p["metrics"]
                                                        if k.startswith("eval:")]))
    assert -1 <= s["regression"]["spearman_oof"] <= 1
    assert set(s["verify"]) == {"proposed", "base", "best_proxy"}
    proposal = np.array(s["proposal"]["shares"])
    assert abs(proposal.sum() - 1) < 1e-9 and np.all(proposal <= np.array(s["bounds"]["hi"]) + 1e-9)
    # the proposal is a runnable mix file with the proposed shares of the pool's tokens
    new = load_mix(s["mix_file"])
    assert [x.name for x in new.sources] == ["c4", "flan", "reddit"] and new.data_root == load_mix(str(mix)).data_root
    html = (out / "report.html").read_text()
    assert html.count('class="point"') == 4 and "sensitivity" in html and "<script" not in html
    # resume and determinism: the finished proxies are not trained again (their result files are
    # untouched), and one whose result is deleted is trained again to exactly the same scores
    markers = sorted((out / "_state").rglob("*.json"))
    assert len(markers) == 7
    redo = out / "_state" / "proxy" / (s["proxies"][2]["key"] + ".json")
    before = {m: m.stat().st_mtime_ns for m in markers if m != redo}
    redo.unlink()
    proc = run_cli("mix-search", str(mix), "--pool", str(pool), "--output", str(out), *SMALL, "--seed", "3")
    assert proc.returncode == 0, proc.stderr
    assert {m: m.stat().st_mtime_ns for m in markers if m != redo} == before and redo.exists()
    again = json.loads((out / "search.json").read_text())
    assert again["proxies"][2]["metrics"] == s["proxies"][2]["metrics"]
    assert again["proposal"] == s["proposal"] and again["verify"] == s["verify"]
    assert Path(again["mix_file"]).read_text() == Path(s["mix_file"]).read_text()
