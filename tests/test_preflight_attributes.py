"""Preflight: every attribute a filter rule or span replacement reads must be one the mix's
taggers or dedup kinds write. A misspelt key is null to jq (`null < 50` is true), so without
this check one transposed letter drops every document and the run exits 0 with 0 tokens."""
import glob
import gzip
import json
import os
import sys

import pytest
from conftest import SAMPLE, TOKENIZER, run_cli, write_mix

from dolma_prep.core.io import InputError
from dolma_prep.pipeline.attributes_known import known_attributes, rule_attributes, tagger_fields
from dolma_prep.pipeline.mixfile import REPO, load_mix
from dolma_prep.pipeline.preflight import attribute_problems, preflight
from dolma_prep.taggers import registry

WIKI = "  - {name: wiki, documents: ['wiki/*.jsonl.gz']}\n"


def _mix(tmp_path, body: str, sources: str = WIKI, experiment: str = "t"):
    p = tmp_path / "mix.yaml"
    p.write_text(f"name: t\ndata_root: {SAMPLE}\noutput: {tmp_path / 'out'}\nexperiment: {experiment}\n{body}"
                 f"sources:\n{sources}")
    return str(p), load_mix(str(p))


def _anneal_with_typo(tmp_path):
    """mixes/anneal.yaml with the issue's transposition, beside a copy of its data root."""
    src = os.path.join(REPO, "mixes", "anneal.yaml")
    text = open(src, encoding="utf-8").read()
    typo = text.replace(".attributes.anneal__char_length_v1__length[0][2] < 50",
                        ".attributes.anneal__char_length_v1__lenght[0][2] < 50")
    assert typo != text
    p = tmp_path / "anneal.yaml"
    p.write_text(typo.replace("data_root: ../sample/documents", f"data_root: {SAMPLE}"))
    return str(p), load_mix(str(p), output=str(tmp_path / "out"))


# (case, mix body, sources, where, the unknown key, the suggestion)
REFUSED = [
    ("anneal transposition", None, None, "filters.exclude[0]",
     "anneal__char_length_v1__lenght", "anneal__char_length_v1__length"),
    ("bracket form", "taggers: [char_length_v1]\n",
     "  - {name: wiki, documents: ['wiki/*.jsonl.gz'], filters: {include: ['.attributes[\"t__char_length_v1__lenth\"][0][2] > 10']}}\n",
     "sources[0] (wiki).filters.include[0]", "t__char_length_v1__lenth", "t__char_length_v1__length"),
    ("jq quoted field", "taggers: [char_length_v1]\nfilters: {exclude: ['.attributes.\"t__char_lenght_v1__length\" | length > 5']}\n",
     WIKI, "filters.exclude[0]", "t__char_lenght_v1__length", "t__char_length_v1__length"),
    ("jsonpath filter", "taggers: [gopher_v1]\n",
     "  - {name: books, documents: ['books/*.jsonl.gz']}\n"
     "  - {name: wiki, documents: ['wiki/*.jsonl.gz'], filters: {exclude: ['.attributes.t__gopher_v1__word_count[0][2] < 5',"
     " '$.attributes[?(@.t__gopher_v1__word_cont && @.t__gopher_v1__word_cont[0] && @.t__gopher_v1__word_cont[0][2] >= 50)]']}}\n",
     "sources[1] (wiki).filters.exclude[1]", "t__gopher_v1__word_cont", "t__gopher_v1__word_count"),
    ("jsonpath dotted", "taggers: [c4_v1]\nfilters: {include: ['$.attributes.t__c4_v1__line_cuont']}\n", WIKI,
     "filters.include[0]", "t__c4_v1__line_cuont", "t__c4_v1__line_count"),
    ("dedup attribute", "dedup:\n  exact: {}\nfilters: {exclude: ['(.attributes.exact_duplicate | length) > 0']}\n", WIKI,
     "filters.exclude[0]", "exact_duplicate", "exact_duplicates"),
    ("renamed dedup attribute", "dedup:\n  paragraphs: {attribute: dedupe_para_ngrams_13_1}\n"
     "filters: {exclude: ['.attributes.bff_duplicate_paragraph_spans | length > 0']}\n", WIKI,
     "filters.exclude[0]", "bff_duplicate_paragraph_spans", None),
    ("span replacement", "dedup:\n  paragraphs: {}\n",
     "  - {name: wiki, documents: ['wiki/*.jsonl.gz'], span_replacement: [{attribute: bff_duplicate_paragraph_span}]}\n",
     "sources[0] (wiki).span_replacement[0].attribute", "bff_duplicate_paragraph_span", "bff_duplicate_paragraph_spans"),
    ("mix-level span replacement", "taggers: [pii_regex_v2]\nspan_replacement: [{attribute: t__pii_regex_v2__EMAIL_ADRESS}]\n",
     WIKI, "span_replacement[0].attribute", "t__pii_regex_v2__EMAIL_ADRESS", "t__pii_regex_v2__EMAIL_ADDRESS"),
    ("classifier tagger name", "taggers: [{name: cc_multi_bin, experiment: cc_multi_bin, options: {model_path: q.bin}}]\n"
     "filters: {include: ['(.attributes.cc_multi_bin__cc_mutli_bin__hq[0][-1]) > 0.01']}\n", WIKI,
     "filters.include[0]", "cc_multi_bin__cc_mutli_bin__hq", "cc_multi_bin__cc_multi_bin__hq"),
    ("classifier field separator", "taggers: [{name: cc_multi_bin, experiment: cc_multi_bin, options: {model_path: q.bin}}]\n"
     "filters: {include: ['(.attributes.cc_multi_bin__cc_multi_bin_hq[0][-1]) > 0.01']}\n", WIKI,
     "filters.include[0]", "cc_multi_bin__cc_multi_bin_hq",
     "a key under 'cc_multi_bin__cc_multi_bin__' (tagger cc_multi_bin (experiment cc_multi_bin), whose fields its model "
     "decides)"),
    ("experiment of the tagger", "taggers: [{name: char_length_v1, experiment: lengths}]\n"
     "filters: {exclude: ['.attributes.t__char_length_v1__length[0][2] < 50']}\n", WIKI,
     "filters.exclude[0]", "t__char_length_v1__length", "lengths__char_length_v1__length"),
    ("matched_id needs against", "dedup:\n  exact: {}\nfilters: {exclude: ['.attributes.exact_duplicates__matched_id']}\n",
     WIKI, "filters.exclude[0]", "exact_duplicates__matched_id", "exact_duplicates"),
]


@pytest.mark.parametrize("case,body,sources,where,key,suggestion", REFUSED, ids=[c[0] for c in REFUSED])
def test_an_unknown_attribute_is_one_line_with_where_key_and_suggestion(tmp_path, case, body, sources, where, key,
                                                                         suggestion):
    path, mix = _anneal_with_typo(tmp_path) if body is None else _mix(tmp_path, body, sources)
    problems = attribute_problems(mix, path)
    assert len(problems) == 1, problems
    line = problems[0]
    assert line.startswith(f"{path}: {where}: attribute {key!r} is written by none of this mix's taggers and dedup kinds")
    if suggestion:
        assert f"did you mean {suggestion if suggestion.startswith('a key under') else repr(suggestion)}?" in line
    else:
        assert "did you mean" not in line and "this mix writes dedupe_para_ngrams_13_1." in line
    assert line.endswith("Fix the name, or add the tagger (own taggers: --tagger-modules) or dedup kind that writes it")
    effect = "no span would ever be replaced" if "span_replacement" in where else "the rule reads null there"
    assert effect in line


def test_the_anneal_typo_fails_the_whole_preflight(tmp_path):
    """preflight() raises one InputError holding the line (model and path checks pass here)."""
    path, mix = _anneal_with_typo(tmp_path)
    with pytest.raises(InputError) as e:
        preflight(mix, path)
    assert str(e.value).splitlines() == attribute_problems(mix, path)
    assert "did you mean 'anneal__char_length_v1__length'?" in str(e.value)


def test_every_unknown_key_of_every_rule_is_reported_once_per_place(tmp_path):
    path, mix = _mix(tmp_path, (
        "taggers: [char_length_v1, gopher_v1]\n"
        "filters:\n  exclude:\n    - '.attributes.t__char_length_v1__length[0][2] < 50'\n"
        "    - '(.attributes.t__gopher_v1__wrod_count | length == 0) or (.attributes.t__gopher_v1__wrod_count[0][2] < 5)'\n"
        "    - '.attributes.nope_a or .attributes.t__char_length_v1__lenght'\n"),
        WIKI + "  - {name: books, documents: ['books/*.jsonl.gz'], filters: {include: ['.attributes.nope_a']}}\n")
    problems = attribute_problems(mix, path)
    assert [p.split(" is written")[0] for p in problems] == [
        f"{path}: filters.exclude[1]: attribute 't__gopher_v1__wrod_count'",
        f"{path}: filters.exclude[2]: attribute 'nope_a'",
        f"{path}: filters.exclude[2]: attribute 't__char_length_v1__lenght'",
        f"{path}: sources[1] (books).filters.include[0]: attribute 'nope_a'",
    ]
    # without a close key, the message lists what the mix writes
    assert "this mix writes t__char_length_v1__length, t__gopher_v1__character_count," in problems[1]


def test_every_bundled_mix_passes():
    mixes = sorted(glob.glob(os.path.join(REPO, "mixes", "*.yaml")))
    assert len(mixes) >= 4
    for path in mixes:
        assert attribute_problems(load_mix(path), path) == [], path


PASSES = [
    ("classifier prefix, any field", "taggers: [{name: cc_multi_bin, experiment: cc_multi_bin, options: {model_path: q.bin}}]\n"
     "filters: {include: ['(.attributes.cc_multi_bin__cc_multi_bin__hq[0][-1]) > 0.01',"
     " '.attributes.cc_multi_bin__cc_multi_bin__any_label_at_all']}\n"),
    ("fastText labels keep __label__", "taggers: [{name: jigsaw_hatespeech_document_v2, options: {model_path: t.bin}}]\n"
     "filters: {exclude: ['.attributes.t__jigsaw_hatespeech_document_v2____label__toxic[0][2] > 0.4']}\n"),
    ("identifier-safe tagger name", "taggers: [{name: dolma17-quality, options: {model_path: q.bin}}]\n"
     "filters: {include: ['.attributes.t__dolma17_quality__hq[0][2] > 0.5']}\n"),
    ("language per field", "taggers: [cld2_doc_v2]\nfilters: {include: ['$.attributes[?(@.t__cld2_doc_v2__fr)]']}\n"),
    ("whole attributes", "filters: {include: ['.attributes | keys | length > 0', '$.attributes.`keys`', '.attributes[]']}\n"),
    ("not the top-level attributes", "filters: {exclude: ['.metadata.attributes.anything', '.text | length < 10']}\n"),
    ("every dedup kind's default", "dedup:\n  exact: {}\n  paragraphs: {}\n  minhash: {}\n  substrings: {}\n"
     "  decontaminate: {eval_sets: [e.jsonl]}\n"
     "filters: {exclude: ['.attributes.exact_duplicates', '.attributes.minhash_duplicates',"
     " '.attributes.decontamination_spans', '.attributes[\"duplicate_substring_spans\"]',"
     " '$.attributes.bff_duplicate_paragraph_spans']}\n"
     "span_replacement: [{attribute: duplicate_substring_spans}]\n"),
    ("against an index", "dedup:\n  minhash: {against: idx}\n"
     "filters: {exclude: ['.attributes.minhash_duplicates__matched_id', '.attributes.minhash_duplicates__matched_version']}\n"),
    ("an unknown tagger is reported elsewhere", "taggers: [char_lenght_v1]\n"
     "filters: {exclude: ['.attributes.t__char_lenght_v1__length[0][2] < 5']}\n"),
    ("pipe, has and optional", "taggers: [pii_regex_with_counts_v2]\n"
     "filters: {exclude: ['.attributes | has(\"t__pii_regex_with_counts_v2__doc_count\")',"
     " '.attributes | .t__pii_regex_with_counts_v2__EMAIL_ADDRESS | length > 0',"
     " '(.attributes?.t__pii_regex_with_counts_v2__doc_count[0][2] // 0) > 5']}\n"),
]


@pytest.mark.parametrize("case,body", PASSES, ids=[c[0] for c in PASSES])
def test_keys_the_run_writes_pass(tmp_path, case, body):
    path, mix = _mix(tmp_path, body)
    assert attribute_problems(mix, path) == []


def test_taggers_of_the_users_own_modules(tmp_path, monkeypatch):
    """--tagger-modules taggers are in the registry by the time the preflight runs. Without a
    declaration their fields are unknown (prefix only); with one they are checked; a subclass
    that overrides predict does not inherit its parent's declaration."""
    module = tmp_path / "own_taggers.py"
    module.write_text(
        "from dolma_prep.taggers.registry import Tagger, register\n"
        "from dolma_prep.taggers.length import CharLength\n"
        "@register('pa_vowels_v1')\nclass Vowels(Tagger):\n"
        "    def predict(self, doc):\n        return {'vowels': [[0, len(doc.text), 1.0]]}\n"
        "@register('pa_declared_v1')\nclass Declared(Tagger):\n    output_fields = ('one', 'two')\n"
        "    def predict(self, doc):\n        return {'one': [[0, 1, 1.0]]}\n"
        "@register('pa_longer_v1')\nclass Longer(CharLength):\n"
        "    def predict(self, doc):\n        return {'chars': [[0, len(doc.text), 1.0]]}\n")
    registry.available()
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))  # this test's taggers stay in this test
    monkeypatch.setitem(sys.modules, "dolma_prep_user_taggers_own_taggers", None)  # imported afresh, removed after
    registry.load_modules([str(module)])
    path, mix = _mix(tmp_path, "taggers: [pa_vowels_v1, pa_declared_v1, pa_longer_v1]\n"
                               "filters: {exclude: ['.attributes.t__pa_vowels_v1__vowels[0][2] < 5',"
                               " '.attributes.t__pa_longer_v1__chars[0][2] < 5', '.attributes.t__pa_declared_v1__two',"
                               " '.attributes.t__pa_declared_v1__three', '.attributes.t__pa_vowel_v1__vowels']}\n")
    assert tagger_fields(registry._REGISTRY["pa_longer_v1"]) is None
    assert tagger_fields(registry._REGISTRY["char_length_v1"]) == ("length",)
    problems = attribute_problems(mix, path)
    assert [p.split(" is written")[0] for p in problems] == [
        f"{path}: filters.exclude[3]: attribute 't__pa_declared_v1__three'",
        f"{path}: filters.exclude[4]: attribute 't__pa_vowel_v1__vowels'"]
    assert "did you mean 't__pa_vowels_v1__vowels'?" in problems[1]


def test_hf_classifier_fields_come_from_its_config(tmp_path):
    """hf_classifier_v1 writes `score` (+ `int_score` with the option) for a regression model and
    one field per id2label entry for a classifier: read from config.json, without torch."""
    reg, cls = tmp_path / "reg", tmp_path / "cls"
    for d, cfg in ((reg, {"id2label": {"0": "LABEL_0"}, "problem_type": "regression"}),
                   (cls, {"id2label": {"0": "High", "1": "Low-ish"}})):
        d.mkdir()
        (d / "config.json").write_text(json.dumps(cfg))
    rule = "filters: {exclude: ['.attributes.t__hf_classifier_v1__int_score[0][2] < 3']}\n"
    path, mix = _mix(tmp_path, f"taggers: [{{name: hf_classifier_v1, options: {{model_path: {reg}}}}}]\n{rule}")
    (line,) = attribute_problems(mix, path)
    assert "attribute 't__hf_classifier_v1__int_score'" in line and "did you mean 't__hf_classifier_v1__score'?" in line
    path, mix = _mix(tmp_path, f"taggers: [{{name: hf_classifier_v1, options: {{model_path: {reg}, int_score: true}}}}]\n{rule}")
    assert attribute_problems(mix, path) == []
    path, mix = _mix(tmp_path, f"taggers: [{{name: hf_classifier_v1, options: {{model_path: {cls}}}}}]\n"
                               "filters: {exclude: ['.attributes.t__hf_classifier_v1__Low_ish[0][2] > 0.5',"
                               " '.attributes.t__hf_classifier_v1__Hihg[0][2] < 0.5']}\n")
    (line,) = attribute_problems(mix, path)
    assert "attribute 't__hf_classifier_v1__Hihg'" in line and "did you mean 't__hf_classifier_v1__High'?" in line
    # no config to read: any field under the prefix
    path, mix = _mix(tmp_path, "taggers: [{name: hf_classifier_v1, options: {model_path: nowhere}}]\n" + rule)
    assert attribute_problems(mix, path) == []


RULES = [
    (".attributes.a__b__c[0][2] < 50", ["a__b__c"]),
    ('.attributes["a-b.c"][0][2] > 0.5', ["a-b.c"]),
    ('.attributes.["x"]', ["x"]),
    ('.attributes."q.k" | length', ["q.k"]),
    ('.attributes | has("h")', ["h"]),
    (".attributes | .p[0]", ["p"]),
    (".attributes?.o", ["o"]),
    ("(.attributes.d | length == 0) or ((.attributes.d | map(.[2]) | add) > 1)", ["d"]),
    ("[.attributes.a, .attributes.b] | add", ["a", "b"]),
    ("$.attributes[?(@.k && @.k[0] && @.k[0][2] >= 0.5)]", ["k"]),
    ("$.attributes[?(@['s q'][0][2] > 1 && @.n[?(@ > 1)] && @.m)]", ["s q", "n", "m"]),
    ("$.attributes['u', \"v\"]", ["u", "v"]),
    ("$.attributes.x-y[0]", ["x-y"]),
    ("$[?(@.attributes.deep > 1)]", ["deep"]),
    ("$..attributes.rec", ["rec"]),
    (".attributes | keys", []),
    (".attributes[]", []),
    ("$.attributes.`keys`", []),
    (".metadata.attributes.no", []),
    ("$doc.attributes.no", []),
    ('.text | test("x")', []),
]


@pytest.mark.parametrize("rule,keys", RULES, ids=[r for r, _ in RULES])
def test_rule_attributes(rule, keys):
    assert rule_attributes(rule) == keys


def test_known_attributes_name_keys_as_the_tag_stage_does(tmp_path):
    path, mix = _mix(tmp_path, "taggers: [char_length_v1, {name: dolma17-quality, options: {model_path: q.bin}}]\n"
                               "dedup:\n  exact: {attribute: dups}\n", experiment="my-exp")
    known = known_attributes(mix)
    assert known.keys == {"my_exp__char_length_v1__length": "tagger char_length_v1 (experiment my-exp)",
                          "dups": "dedup.exact"}
    assert known.prefixes == {"my_exp__dolma17_quality__": "tagger dolma17-quality (experiment my-exp)"}


@pytest.mark.slow  # trains a tiny fastText model for the ft_lang_id taggers
def test_declared_fields_cover_what_every_tagger_writes(tmp_path):
    """Each tagger's declared fields are a superset of what it writes on the bundled sample and
    on texts made to trigger its rarer fields: a declaration that misses a field would refuse a
    correct rule."""
    from dolma_prep.taggers.train_classifier import train_fasttext

    docs = []
    for f in sorted(SAMPLE.glob("*/*.jsonl.gz")):
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            for i, line in enumerate(fh):
                d = json.loads(line)
                if i < 15:
                    docs.append(registry.Document(str(d["id"]), d["text"], d.get("source", ""), d.get("metadata") or {}))
    docs += [registry.Document("e", ""), registry.Document("r", "a b c a b c a b c a b c\n\n* x\u2026\n- y\n"),
             registry.Document("p", "mail foo@bar.com or 555-123-4567 at 10.0.0.1 {lorem ipsum} javascript", "",
                               {"url": "http://example.com/x", "ext": "py"})]
    lid = tmp_path / "lid.bin"
    train_fasttext([("en" if i % 2 else "fr", " ".join(d.text.lower().split()[:50])) for i, d in enumerate(docs[:60])],
                   str(lid), 1, {"dim": 8, "bucket": 2000, "epoch": 2})
    block = tmp_path / "block.txt"
    block.write_text("example.com\n||example.com^\n")
    checked = []
    for name in registry.available():
        cls = registry._REGISTRY[name]
        if cls.__module__.startswith("dolma_prep_user_taggers_") or tagger_fields(cls) is None:
            continue
        options = {}
        params = cls.__init__.__code__.co_varnames
        if "blocklist_path" in params:
            options["blocklist_path"] = str(block)
        if "tokenizer_path" in params:
            options["tokenizer_path"] = str(TOKENIZER)
        if "model_path" in params:
            options["model_path"] = str(lid)
        written = set()
        for res in registry.get(name, **options).predict_batch(docs):
            written |= set(res)
        assert written <= set(tagger_fields(cls, options)), (name, written - set(tagger_fields(cls, options)))
        checked.append(name)
    assert {"char_length_v1", "gopher_v1", "c4_v1", "pii_regex_with_counts_v2", "ft_lang_id_en_doc_v2",
            "cld2_en_paragraph_with_doc_score_v2", "url_blocklist_v1", "oisd_small_abp_v1"} <= set(checked)


def test_cli_run_with_the_typo_exits_2_before_anything_is_written(tmp_path):
    mix = write_mix(tmp_path / "typo.yaml", ["wiki"],
                    extra="filters:\n  exclude: ['.attributes.t__char_length_v1__lenght[0][2] < 50']")
    out = tmp_path / "out"
    proc = run_cli("run", str(mix), "--output", str(out), "-q", "--workers", "1", timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert (f"error: {mix}: filters.exclude[0]: attribute 't__char_length_v1__lenght' is written by none of this "
            "mix's taggers and dedup kinds") in proc.stderr
    assert "did you mean 't__char_length_v1__length'?" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists() or not any(out.iterdir())
