"""The plans of the OLMo 1.7 recipes against the published numbers, and runs meeting plans.

Numbers and their sources: mixes/SOURCES.md (the OLMo-7B-0424 config, the annealing configs in
OLMo's history, the Dolma 1.7 data card)."""
import json

import pytest
from conftest import REPO, run_cli, write_mix

# OLMo-7B-0424's official config (configs/official-0724/OLMo-7B-0424.yaml): GT per listed path and
# how many times its files are listed (SOURCES.md section 1)
CONFIG_GT = {"books": (5.256, 1), "pes2o": (57.21, 1), "wiki": (3.689, 2), "megawika": (4.6, 1),
             "stackexchange": (19.63, 1), "arxiv": (27.97, 1), "algebraic_stack": (12.623, 1),
             "open_web_math": (12.734, 1), "flan": (16.5, 1), "cc_news": (14.3, 1), "starcoder": (263.775, 1),
             "c4": (138.4, 1), "reddit": (79.9, 1), "falcon": (547.341, 1), "cc_en_head": (178.4, 1),
             "cc_en_middle": (242.05, 1), "cc_en_tail": (191.4, 1)}
# Dolma 1.7 data card, "tokens used (B)" (docs/REFERENCE.md section 1; CC as one row)
CARD_USED = {"cc": 597.75, "falcon": 456.4, "starcoder": 263.8, "c4": 69.2, "reddit": 79.9, "pes2o": 57.2,
             "arxiv": 28.0, "stackexchange": 19.6, "flan": 16.5, "cc_news": 14.3, "open_web_math": 12.6,
             "algebraic_stack": 12.6, "books": 5.3, "megawika": 4.6, "wiki": 7.4}
# annealing pool (GT) and published share of the pool (docs/REFERENCE.md section 2)
ANNEAL = {"flan": (16.5, 15.70), "open_web_math": (12.734, 12.11), "starcoder": (11.5, 10.94),
          "reddit": (9.4, 8.94), "falcon": (9.1, 8.66), "c4": (9.0, 8.56), "algebraic_stack": (7.3, 6.94),
          "stackexchange": (7.2, 6.85), "pes2o": (6.75, 6.42), "arxiv": (6.7, 6.37), "books": (5.256, 5.00),
          "wiki": (3.689, 3.51)}


def _plan(name):
    proc = run_cli("plan", str(REPO / "mixes" / name), "--json", check=True)
    return json.loads(proc.stdout)


def test_general_plan_is_the_official_config():
    plan = _plan("general.yaml")
    assert set(plan["sources"]) == set(CONFIG_GT)
    for name, (gt, times) in CONFIG_GT.items():
        assert plan["sources"][name]["planned_tokens"] == pytest.approx(gt * times * 1e9, rel=1e-12), name
    assert plan["total_tokens"] == pytest.approx(1819.467e9, rel=1e-12)
    # stage 1 was cut at step 477,000 of 1024 x 4096 tokens: 1.0996 passes over this plan
    assert 477_000 * 1024 * 4096 / plan["total_tokens"] == pytest.approx(1.0996, abs=1e-4)
    # C4 at 100% (all 171 files), the card's 50% being its error
    assert plan["sources"]["c4"]["proportion"] == 1.0


def test_general_mix_rules_follow_the_path_names():
    """Each source's rules are those its path in the official config names (SOURCES.md section 2)."""
    import yaml

    mix = yaml.safe_load((REPO / "mixes" / "general.yaml").read_text())
    src = {s["name"]: s for s in mix["sources"]}
    cc_like = {"c4", "cc_en_head", "cc_en_middle", "cc_en_tail"}  # dd_ngram_dp_030-qc_cc_en_bin_001
    for name, s in src.items():
        f = s.get("filters") or {}
        text = " ".join(f.get("include", []) + f.get("exclude", []))
        assert ("dedupe_para_ngrams_13_1" in text and "<= 0.3" in text) == (name in cc_like), name
        assert ("cc_multi_bin__hq[0][-1] <= 0.01" in text) == (name in cc_like | {"falcon"}), name
        assert ("doc_max_score_repetition[0][-1] // 0) > 10" in text) == (name == "falcon"), name
        assert ("doc_count[0][-1] // 0) > 5" in text) == (name == "falcon"), name
        assert bool(s.get("span_replacement")) == (name in cc_like), name
    assert mix["dedup"]["decontaminate"]["attribute"] == "paloma_paragraphs"
    assert mix["dedup"]["paragraphs"]["attribute"] == "dedupe_para_ngrams_13_1"
    assert "exact" not in mix["dedup"]


def test_general_card_plan_reproduces_the_card():
    plan = _plan("general-card.yaml")
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


def test_anneal_fix_redpajama_plan():
    """v1.7-fix_redpajama-...-50B.yaml: StackExchange 7.58 and arXiv 7.01 GT, pool 105.819 GT."""
    plan = _plan("anneal-fix-redpajama.yaml")
    gts = {name: gt for name, (gt, _) in ANNEAL.items()} | {"stackexchange": 7.58, "arxiv": 7.01}
    assert sum(gts.values()) == pytest.approx(105.819)
    assert set(plan["sources"]) == set(gts)
    for name, gt in gts.items():
        assert plan["sources"][name]["planned_tokens"] == pytest.approx(50e9 * gt / 105.819, rel=1e-12), name
    assert plan["total_tokens"] == 50e9


@pytest.mark.slow  # starts a local Ray
def test_anneal_run_meets_the_scaled_plan_within_one_document(tmp_path):
    import polars as pl

    out = tmp_path / "out"
    proc = run_cli("run", str(REPO / "mixes" / "anneal.yaml"), "--output", str(out), "--workers", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    scale = manifest["sampling"]["scale"]
    assert manifest["sampling"]["mode"] == "tokens" and 0 < scale < 1e-5
    for name, (_gt, share) in ANNEAL.items():
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
    from conftest import SAMPLE, TOKENIZER, read_gz_jsonl
    from tokenizers import Tokenizer

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


@pytest.mark.slow
def test_demo_meets_every_planned_share_within_half_a_point(tmp_path):
    """`make demo`: the anneal mix over sample/demo; every source's share of the tokens within 0.5
    percentage points of the anneal config's share of the pool, and the closeness report says so."""
    import subprocess
    import sys

    out = tmp_path / "out"
    proc = run_cli("run", str(REPO / "mixes" / "anneal.yaml"), "--data-root", str(REPO / "sample" / "demo"),
                   "--output", str(out), "--workers", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    total = sum(manifest["sources"][n]["tokens"] for n in ANNEAL)
    for name, (_gt, share) in ANNEAL.items():
        achieved = 100 * manifest["sources"][name]["tokens"] / total
        assert abs(achieved - share) <= 0.5, (name, achieved, share)
        assert manifest["sources"][name]["shortfall_tokens"] == 0.0
    report = subprocess.run([sys.executable, str(REPO / "scripts" / "demo_shares.py"), str(out)],
                            capture_output=True, text=True)
    assert report.returncode == 0 and "within the goal of 0.5 pp" in report.stdout, report.stdout + report.stderr
    assert sum(1 for line in report.stdout.splitlines() if line.split()[:1] and line.split()[0] in ANNEAL) == 12
