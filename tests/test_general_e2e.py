"""mixes/general.yaml (OLMo-7B-0424's stage-1 rules, mixes/SOURCES.md) end to end on the bundled
sample, with the sample quality model (`make models`) trained in a fixture and the eval sets in
mixes/eval-sets standing in for Paloma. Every document's fate is recomputed here from the
attribute files the run wrote, with the thresholds the path names state, and compared with what
the run kept and dropped; per source, achieved tokens are recounted against the plan."""
import gzip
import json

import pytest
import yaml
from conftest import REPO, SAMPLE, TOKENIZER, read_gz_jsonl, run_cli

CC_LIKE = {"c4", "cc_en_head", "cc_en_middle", "cc_en_tail"}  # dd_ngram_dp_030-qc_cc_en_bin_001


@pytest.fixture(scope="module")
def general_run(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("general")
    cfg = yaml.safe_load((REPO / "mixes" / "classifiers" / "quality_sample.yaml").read_text())
    cfg["root"], cfg["output"] = str(SAMPLE), str(tmp / "quality.bin")
    (tmp / "quality.yaml").write_text(yaml.safe_dump(cfg))
    run_cli("train-classifier", str(tmp / "quality.yaml"), check=True)
    mix = yaml.safe_load((REPO / "mixes" / "general.yaml").read_text())
    mix["data_root"] = str(SAMPLE)
    for t in mix["taggers"]:
        if isinstance(t, dict) and "model_path" in t.get("options", {}):
            t["options"]["model_path"] = str(tmp / "quality.bin")
        if isinstance(t, dict) and "tokenizer_path" in t.get("options", {}):
            t["options"]["tokenizer_path"] = str(TOKENIZER)
    mix["dedup"]["decontaminate"]["eval_sets"] = [str(REPO / "mixes" / "eval-sets" / "*.jsonl.gz")]
    (tmp / "general.yaml").write_text(yaml.safe_dump(mix, sort_keys=False))
    out = tmp / "out"
    proc = run_cli("run", str(tmp / "general.yaml"), "--output", str(out), "--workers", "2", "-q", timeout=1200)
    assert proc.returncode == 0, proc.stderr
    return mix, out


def _docs_with_attributes(out, source):
    """(document, merged attributes) for every input document of a source, in file order."""
    rows = []
    for f in sorted((SAMPLE / source).glob("*.jsonl.gz")):
        docs = read_gz_jsonl(f)
        merged = [{} for _ in docs]
        for folder in sorted((out / "attributes").iterdir()):
            attrs = read_gz_jsonl(folder / source / f.name)
            assert [a["id"] for a in attrs] == [d["id"] for d in docs]
            for m, a in zip(merged, attrs):
                m.update(a["attributes"])
        rows += list(zip(docs, merged))
    return rows


def _expected_reasons(source, doc, a):
    """Every rule of general.yaml that drops this document, from its attributes (SOURCES.md section 2)."""
    reasons = set()
    if a.get("paloma_paragraphs"):
        reasons.add("paloma")
    q = (a.get("cc_multi_bin__cc_multi_bin__hq") or [[0, 0, None]])[0][-1]
    if source in CC_LIKE:
        spans = a.get("dedupe_para_ngrams_13_1") or []
        frac = sum(s[2] * (s[1] - s[0]) for s in spans) / max(len(doc["text"]), 1)
        if spans and frac > 0.3:
            reasons.add("dd_ngram_dp_030")
        if q is None or q <= 0.01:
            reasons.add("quality")
    if source == "falcon":
        if q is None or q <= 0.01:
            reasons.add("quality")
        rep = a.get("general__tokenizer_repetitions_v2r2__doc_max_score_repetition")
        if rep and rep[0][-1] > 10:
            reasons.add("rep")
        pii = a.get("general__pii_regex_with_counts_v2__doc_count")
        if pii and pii[0][-1] > 5:
            reasons.add("pii")
    return reasons


def _reason_rule(reason):
    if reason == "dedup: paloma_paragraphs":
        return "paloma"
    if reason.startswith("include:"):  # the only include rule is dd_ngram_dp_030's
        return "dd_ngram_dp_030"
    for key, rule in (("cc_multi_bin", "quality"), ("repetition", "rep"), ("pii_regex", "pii"),
                      ("min_text_length", "min_text_length")):
        if key in reason:
            return rule
    raise AssertionError(f"unexpected reason {reason!r}")


def _delete_spans(text, spans):
    out, pos = [], 0
    for s, e in sorted((int(s), int(e)) for s, e, score in spans if score >= 0.8):
        s = max(s, pos)
        if e > s:
            out.append(text[pos:s])
            pos = e
    return "".join(out) + text[pos:]


@pytest.mark.slow
def test_general_mix_end_to_end_every_rule_removes_what_its_attribute_says(general_run):
    from tokenizers import Tokenizer

    mix, out = general_run
    manifest = json.loads((out / "manifest.json").read_text())
    tok = Tokenizer.from_file(str(TOKENIZER))
    fired = {}
    for src in mix["sources"]:
        name = src["name"]
        rows = _docs_with_attributes(out, name)
        dropped = {}
        for f in sorted((out / "dropped" / name).glob("*.gz")):
            for d in read_gz_jsonl(f):
                dropped[d["id"]] = d["reason"]
        kept = {d["id"]: d for f in sorted((out / "kept" / name).glob("*.gz")) for d in read_gz_jsonl(f)}
        for doc, a in rows:
            expected = _expected_reasons(name, doc, a)
            if doc["id"] in dropped:
                rule = _reason_rule(dropped[doc["id"]])
                if rule == "min_text_length":  # what is left after span deletion is too short
                    left = _delete_spans(doc["text"], a.get("dedupe_para_ngrams_13_1") or []) \
                        if name in CC_LIKE else doc["text"]
                    assert len(left.strip()) < (25 if name in CC_LIKE else 1), (name, doc["id"])
                else:
                    assert rule in expected, (name, doc["id"], dropped[doc["id"]], expected)
                fired[rule] = fired.get(rule, 0) + 1
                continue
            assert not expected, (name, doc["id"], expected)
            text = doc["text"]
            if name in CC_LIKE:  # span deletion of duplicate paragraphs (score >= 0.8)
                text = _delete_spans(text, a.get("dedupe_para_ngrams_13_1") or [])
                assert len(text.strip()) >= 25
            assert kept[doc["id"]]["text"] == text, (name, doc["id"])
        assert len(kept) + len(dropped) == len(rows), name
        # planned vs achieved: proportion x the tokens of the kept documents (wiki: every document twice)
        kept_tokens = sum(len(e.ids) + 1 for e in tok.encode_batch(
            [d["text"].strip() for d in kept.values() if d["text"].strip()], add_special_tokens=False))
        s = manifest["sources"][name]
        assert s["tokens"] == round(src["proportion"] * kept_tokens), name
        assert s["documents"] == round(src["proportion"] * len(kept)), name
    # the rules that the bundled sample triggers: Paloma stand-in on flan's prompts (95 of 120
    # share a 13-gram with arc/boolq, tests/fixtures/dedup/README.md), quality and paragraph dedup on CC
    assert fired.get("paloma", 0) >= 95
    assert fired.get("quality", 0) > 0 and fired.get("dd_ngram_dp_030", 0) > 0
    flan_dropped = sum(1 for f in (out / "dropped" / "flan").glob("*.gz") for _ in gzip.open(f))
    assert flan_dropped >= 95


def test_eval_sets_resolve_against_the_mix_file(tmp_path):
    """The mixes name their eval sets relative to themselves (mixfile.load_mix resolves them)."""
    from dolma_prep.pipeline.mixfile import load_mix

    for name in ("general.yaml", "general-card.yaml"):
        mix = load_mix(str(REPO / "mixes" / name))
        assert mix.dedup.decontaminate.eval_sets == [str(REPO / "mixes" / "eval-sets" / "*.jsonl.gz")]
        assert mix.dedup.decontaminate.attribute == "paloma_paragraphs"
    (tmp_path / "m.yaml").write_text("name: m\ndedup:\n  decontaminate: {eval_sets: [e/a.jsonl, 'hf:x@validation', /abs/b.jsonl]}\n"
                                     "sources: [{name: a, documents: ['a/*']}]\n")
    mix = load_mix(str(tmp_path / "m.yaml"))
    assert mix.dedup.decontaminate.eval_sets == [str(tmp_path / "e" / "a.jsonl"), "hf:x@validation", "/abs/b.jsonl"]
