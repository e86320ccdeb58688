"""The plans of the two OLMo 1.7 recipes against the published tables, and runs meeting plans."""
import json

import pytest

from conftest import REPO, run_cli, write_mix

# Dolma 1.7 data card, "tokens used (B)" (REFERENCE.md section 1; CC as one row)
CARD_USED = {"cc": 597.75, "falcon": 456.4, "starcoder": 263.8, "c4": 69.2, "reddit": 79.9, "pes2o": 57.2,
             "arxiv": 28.0, "stackexchange": 19.6, "flan": 16.5, "cc_news": 14.3, "open_web_math": 12.6,
             "algebraic_stack": 12.6, "books": 5.3, "megawika": 4.6, "wiki": 7.4}
# annealing pool (GT) and published share of the pool (REFERENCE.md section 2)
ANNEAL = {"flan": (16.5, 15.70), "open_web_math": (12.734, 12.11), "starcoder": (11.5, 10.94),
          "reddit": (9.4, 8.94), "falcon": (9.1, 8.66), "c4": (9.0, 8.56), "algebraic_stack": (7.3, 6.94),
          "stackexchange": (7.2, 6.85), "pes2o": (6.75, 6.42), "arxiv": (6.7, 6.37), "books": (5.256, 5.00),
          "wiki": (3.689, 3.51)}


def _plan(name):
    proc = run_cli("plan", str(REPO / "mixes" / name), "--json", check=True)
    return json.loads(proc.stdout)


def test_general_plan_reproduces_the_card():
    plan = _plan("general.yaml")
    assert set(plan["sources"]) == set(CARD_USED)
    for name, used in CARD_USED.items():
        assert round(plan["sources"][name]["planned_tokens"] / 1e9, 1) == round(used, 1), name
    assert round(plan["total_tokens"] / 1e9, 1) == 1645.2


def test_anneal_plan_reproduces_the_pool_shares():
    plan = _plan("anneal.yaml")
    assert set(plan["sources"]) == set(ANNEAL)
    pool = sum(gt for gt, _ in ANNEAL.values())
    assert pool == pytest.approx(105.129)
    for name, (gt, share) in ANNEAL.items():
        s = plan["sources"][name]
        assert round(100 * s["share"], 2) == share, name
        assert s["planned_tokens"] == pytest.approx(50e9 * gt / pool, rel=1e-12)
    assert sum(s["planned_tokens"] for s in plan["sources"].values()) == pytest.approx(50e9, rel=1e-12)


@pytest.mark.slow  # starts a local Ray
def test_anneal_run_meets_the_scaled_plan_within_one_document(tmp_path):
    import polars as pl

    out = tmp_path / "out"
    proc = run_cli("run", str(REPO / "mixes" / "anneal.yaml"), "--output", str(out), "--workers", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    scale = manifest["sampling"]["scale"]
    assert manifest["sampling"]["mode"] == "tokens" and 0 < scale < 1e-5
    for name, (gt, share) in ANNEAL.items():
        s = manifest["sources"][name]
        assert s["planned_tokens"] == pytest.approx(50e9 * share / 100 * scale, rel=2e-3)
        sizes = pl.read_parquet(list((out / "_work" / "count" / name).glob("*.parquet")))["tokens"]
        assert abs(s["tokens"] - s["planned_tokens"]) <= sizes.max(), name
        assert s["shortfall_tokens"] == 0.0
    # the limiting source (largest planned/available) is taken whole
    assert min(manifest["sources"][n]["tokens"] / manifest["sources"][n]["stages"]["sampled"]["tokens_before"]
               for n in ANNEAL) < 0.5


@pytest.mark.slow  # starts a local Ray
def test_proportions_repeat_and_halve_deterministically(tmp_path):
    extra = ""
    mix = write_mix(tmp_path / "p.yaml", [], extra)
    text = mix.read_text() + ("  - {name: wiki, documents: ['wiki/*.jsonl.gz'], proportion: 2.0}\n"
                              "  - {name: reddit, documents: ['reddit/*.jsonl.gz'], proportion: 0.5}\n")
    mix.write_text(text)
    out1, out2 = tmp_path / "o1", tmp_path / "o2"
    for out, w in ((out1, "1"), (out2, "2")):
        proc = run_cli("run", str(mix), "--output", str(out), "--workers", w, "-q")
        assert proc.returncode == 0, proc.stderr
    m = json.loads((out1 / "manifest.json").read_text())
    wiki, reddit = m["sources"]["wiki"], m["sources"]["reddit"]
    assert wiki["documents"] == 2 * wiki["stages"]["selected"]["documents"]
    assert wiki["tokens"] == 2 * wiki["stages"]["sampled"]["tokens_before"]
    kept = reddit["stages"]["selected"]["documents"]
    assert 0.35 * kept < reddit["documents"] < 0.65 * kept
    # same seed, 1 vs 2 workers: identical bytes
    for f in sorted(out1.glob("tokens/*/*")):
        assert f.read_bytes() == (out2 / f.relative_to(out1)).read_bytes(), f
    assert (out1 / "manifest.json").read_bytes() == (out2 / "manifest.json").read_bytes()


@pytest.mark.slow  # starts a local Ray
def test_run_writes_an_olmo_data_section(tmp_path):
    import yaml

    mix = write_mix(tmp_path / "m.yaml", ["wiki", "flan"])
    out = tmp_path / "out"
    run_cli("run", str(mix), "--output", str(out), "-q", "--workers", "1", check=True)
    section = yaml.safe_load((out / "olmo_data.yaml").read_text())
    manifest = json.loads((out / "manifest.json").read_text())
    assert section["data"]["paths"] == [str(out / f["path"]) for f in manifest["outputs"]["tokens"]]
    assert section["data"]["memmap_dtype"] == "uint16" and section["tokenizer"]["eos_token_id"] == 50279


@pytest.mark.slow  # starts a local Ray
def test_plan_measure_counts_the_data(tmp_path):
    from tokenizers import Tokenizer

    from conftest import SAMPLE, TOKENIZER, read_gz_jsonl

    mix = tmp_path / "m.yaml"
    mix.write_text("name: m\ntotal_tokens: 1000\nsources:\n"
                   "  - {name: flan, documents: ['flan/*.jsonl.gz'], tokens_available: 1}\n"
                   "  - {name: reddit, documents: ['reddit/*.jsonl.gz'], tokens_available: 1}\n")
    proc = run_cli("plan", str(mix), "--json", "--measure", "--data-root", str(SAMPLE), "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)
    tok = Tokenizer.from_file(str(TOKENIZER))
    sizes = {}
    for src in ("flan", "reddit"):
        texts = [d["text"].strip() for f in sorted((SAMPLE / src).glob("*.jsonl.gz")) for d in read_gz_jsonl(f)]
        sizes[src] = sum(len(e.ids) + 1 for e in tok.encode_batch([t for t in texts if t], add_special_tokens=False))
        assert plan["sources"][src]["tokens_available"] == sizes[src]
    assert plan["sources"]["flan"]["share"] == pytest.approx(sizes["flan"] / (sizes["flan"] + sizes["reddit"]))
