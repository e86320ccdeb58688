"""`dolma-prep plan MIX --cost`: the bill at full scale, and the rates it is computed from."""
import json

import pytest
from conftest import REPO, run_cli

RATES = REPO / "benchmarks" / "rates.json"


def test_rates_are_the_figures_in_results_md():
    """Each measured rate re-derived from the raw figures benchmarks/RESULTS.md reports."""
    r = json.loads(RATES.read_text())
    corpus_bytes = 35_348_245  # the 6,242-document sample corpus, text bytes (shared sample-corpus SOURCES.md)
    results = (REPO / "benchmarks" / "RESULTS.md").read_text()
    for cited in ("| gopher_v1 | 32.7 | 2.9 |", "| c4_v1 | 10.5 | 1.5 |", "| pii_regex_with_counts_v2 | 8.8 | 0.5 |",
                  "| cld2_en_doc_v2 | 1.5 | 1.4 |", "8.5 s with 2 workers", "19 s on 2 workers",
                  "| dolma-prep 14x8, exact verify | 17.6 |", "0.569 [0.538-0.588]", "0.296 [0.268-0.349]",
                  "| 1 | 227.2 s |", "212.1 MB of text, 78.6 MB gzip, 61.8 M tokens"):
        assert cited in results, cited
    assert r["taggers"]["gopher_v1"]["value"] == pytest.approx(corpus_bytes / 2.9, rel=1e-6)
    assert r["taggers"]["c4_v1"]["value"] == pytest.approx(corpus_bytes / 1.5, rel=1e-6)
    assert r["taggers"]["pii_regex_with_counts_v2"]["value"] == pytest.approx(corpus_bytes / 0.5, rel=1e-6)
    assert r["taggers"]["cld2_en_doc_v2"]["value"] == pytest.approx(corpus_bytes / 1.4, rel=1e-6)
    assert r["dedup"]["paragraphs"]["value"] == pytest.approx(212_089_470 / 18.6, rel=1e-6)  # issue 14, e2e input
    assert r["dedup"]["decontaminate"]["value"] == pytest.approx(corpus_bytes / (19 * 2), rel=1e-6)
    assert r["dedup"]["minhash"]["value"] == pytest.approx(corpus_bytes / (17.6 * 2), rel=1e-6)
    assert r["tokenize_tokens_per_cpu_second"]["value"] == 0.569e6
    remainder = 227.2 - 61.8e6 / 0.569e6  # e2e on 1 worker minus its tokenization
    assert r["dedup"]["exact"]["value"] == pytest.approx(213.2e6 / remainder, rel=1e-4)
    assert r["corpus"]["bytes_per_token"]["value"] == pytest.approx(212.1 / 61.8, rel=1e-3)
    assert r["corpus"]["gzip_ratio"]["value"] == pytest.approx(78.6 / 212.1, rel=1e-3)
    # tokens per document: the data card's tokens (B) / documents (M) (docs/REFERENCE.md section 1)
    card = {"falcon": (456.4, 664.0), "c4": (138.4, 249.9), "books": (5.3, 0.0556), "wiki": (3.7, 6.2),
            "cc_en_head": (1195.5, 875.2), "arxiv": (28.0, 1.5)}
    for name, (tokens_b, docs_m) in card.items():
        assert r["corpus"]["tokens_per_document"]["sources"][name] == round(1000 * tokens_b / docs_m), name
    for section in (r["taggers"], r["dedup"], r["scratch"], r["outputs"]):
        for key, node in section.items():
            assert node["provenance"], key


def _write_rates(path):
    """Round numbers, so that every figure of the bill can be worked out by hand."""
    rates = json.loads(RATES.read_text())
    rates["corpus"] = {"bytes_per_token": {"value": 4}, "gzip_ratio": {"value": 0.5},
                       "tokens_per_document": {"default": 1000, "sources": {"a": 500}}}
    rates["taggers"] = {"char_length_v1": {"value": 2e6}, "default": {"value": 1e6, "provenance": "x"}}
    rates["dedup"]["paragraphs"] = {"value": 4e6}
    rates["select"] = {"value": 8e6}
    rates["tokenize_tokens_per_cpu_second"] = {"value": 1e6}
    rates["training"] = {"tokens_per_gpu_second": {"value": 1e4, "provenance": "p"}, "model": "m"}
    rates["cluster"] = {"cores_per_node": {"value": 10}}
    path.write_text(json.dumps(rates))
    return path


def test_cost_by_hand(tmp_path):
    mix = tmp_path / "m.yaml"
    mix.write_text("name: m\ntaggers: [char_length_v1, gopher_v1_unmeasured]\n"
                   "dedup:\n  paragraphs: {}\nsources:\n"
                   "  - {name: a, documents: ['a/*'], tokens_available: 3.6e12, proportion: 0.5}\n"
                   "  - {name: b, documents: ['b/*'], tokens_available: 1.8e12, proportion: 2.0}\n")
    rates = _write_rates(tmp_path / "rates.json")
    proc = run_cli("plan", str(mix), "--cost", "--json", "--rates", str(rates), "--deadline", "10d")
    assert proc.returncode == 0, proc.stderr
    bill = json.loads(proc.stdout)
    a, b = bill["sources"]["a"], bill["sources"]["b"]
    # a: 3.6e12 tokens x 4 B = 14.4e12 text bytes; planned 1.8e12 tokens
    assert a["cpu_hours"]["tag"] == pytest.approx((14.4e12 / 2e6 + 14.4e12 / 1e6) / 3600)   # 6,000 h
    assert a["cpu_hours"]["dedup:paragraphs"] == pytest.approx(14.4e12 / 4e6 / 3600)         # 1,000 h
    assert a["cpu_hours"]["select"] == pytest.approx(14.4e12 / 8e6 / 3600)                   # 500 h
    assert a["cpu_hours"]["tokenize"] == pytest.approx(1.8e12 / 1e6 / 3600)                  # 500 h
    assert a["cpu_hours_total"] == pytest.approx(8000)
    assert a["documents"] == pytest.approx(3.6e12 / 500)
    assert a["scratch_bytes"] == pytest.approx(3.6e12 * 10)           # paragraphs: 10 B per input token
    # reads: tag, paragraphs and select each read the gzip input (7.2e12), tokenize the kept 1.8e12 tokens
    assert a["bytes_read"] == pytest.approx(3 * 7.2e12 + 1.8e12 * 4 * 0.5)
    # b: 7.2e12 text bytes, planned 3.6e12 tokens (every document twice): tokenize charged 3.6e12
    assert b["cpu_hours"]["tokenize"] == pytest.approx(1000)
    assert b["cpu_hours_total"] == pytest.approx(3000 + 500 + 250 + 1000)
    assert bill["cpu_hours"] == pytest.approx(8000 + 4750)
    assert bill["training"]["gpu_hours"] == pytest.approx((1.8e12 + 3.6e12) / 1e4 / 3600)     # 150,000
    assert bill["deadline"] == {"hours": 240.0, "cores": 54, "nodes": 6, "cores_per_node": 10.0,
                                "gpus_to_train": 625}
    assert any("gopher_v1_unmeasured" in x for x in bill["assumptions"])


def test_cost_of_the_general_mix_and_errors():
    proc = run_cli("plan", str(REPO / "mixes" / "general.yaml"), "--cost", "--deadline", "7d")
    assert proc.returncode == 0, proc.stderr
    assert "GPU-hours" in proc.stdout and "nodes of" in proc.stdout and "cc_en_tail" in proc.stdout
    bill = json.loads(run_cli("plan", str(REPO / "mixes" / "general.yaml"), "--cost", "--json", check=True).stdout)
    assert bill["total_planned_tokens"] == pytest.approx(1819.467e9)
    assert set(bill["stages_cpu_hours"]) == {"tag", "dedup:paragraphs", "dedup:decontaminate", "select", "tokenize"}
    assert bill["stages_cpu_hours"]["tokenize"] == pytest.approx(1819.467e9 / 0.569e6 / 3600, rel=1e-9)
    assert sum(s["cpu_hours_total"] for s in bill["sources"].values()) == pytest.approx(bill["cpu_hours"])
    bad = run_cli("plan", str(REPO / "mixes" / "general.yaml"), "--cost", "--deadline", "soon")
    assert bad.returncode == 2 and "--deadline 'soon'" in bad.stderr


def test_a_token_target_mix_is_charged_one_tokenization(tmp_path):
    """Token targets: the count step encodes the kept documents once and stores the ids; the
    tokenize step writes from them. The bill charges one tokenization, in count, and the stored
    ids' bytes (written once, read once)."""
    mix = tmp_path / "t.yaml"
    mix.write_text("name: t\ntaggers: [char_length_v1]\nsources:\n"
                   "  - {name: a, documents: ['a/*'], tokens_available: 3.6e12, tokens: 1.8e12}\n"
                   "  - {name: b, documents: ['b/*'], tokens_available: 1.0e12, tokens: 2.0e12}\n")
    rates = _write_rates(tmp_path / "rates.json")
    bill = json.loads(run_cli("plan", str(mix), "--cost", "--json", "--rates", str(rates), check=True).stdout)
    a, b = bill["sources"]["a"], bill["sources"]["b"]
    # a: 1.8e12 tokens kept (downsampled), encoded once at 1e6 tokens per CPU-second
    assert a["cpu_hours"]["count"] == pytest.approx(1.8e12 / 1e6 / 3600)                    # 500 h
    assert a["cpu_hours"]["tokenize"] == 0.0
    assert a["cpu_hours_total"] == pytest.approx(14.4e12 / 2e6 / 3600 + 14.4e12 / 8e6 / 3600 + 500)
    # reads: tag and select read the gzip input, count the kept gzip, tokenize the stored ids (2 B each)
    assert a["bytes_read"] == pytest.approx(2 * 7.2e12 + 1.8e12 * 4 * 0.5 + 1.8e12 * 2)
    # b: every document twice (2e12 planned of 1e12): encoded once, the copies cost no tokenization
    assert b["cpu_hours"]["count"] == pytest.approx(1.0e12 / 1e6 / 3600)
    assert bill["stages_cpu_hours"]["count"] == pytest.approx((1.8e12 + 1.0e12) / 1e6 / 3600)
    assert bill["stages_cpu_hours"]["tokenize"] == 0.0
    text = run_cli("plan", str(mix), "--cost", "--rates", str(rates), check=True).stdout
    assert "count" in text and "tokenize" in text
