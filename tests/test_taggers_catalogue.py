"""The rest of the tagger catalogue, on hand-checked inputs: Adblock Plus lists (`*_abp_v1`),
paragraph and sentence variants, `dclm-oh-eli5`. Parity with dolma 1.2.1 is in
tests/test_taggers_parity_catalogue.py; the transformer tagger in tests/test_taggers_transformer.py."""
from __future__ import annotations

import gzip
import random
import time

import pytest
from conftest import SAMPLE, read_gz_jsonl

from dolma_prep.taggers import registry
from dolma_prep.taggers.registry import Document

NEW = ["abp_blocklist_v1", "oisd_small_abp_v1", "oisd_big_abp_v1", "oisd_nsfw_abp_v1", "brave_core_abp_v1",
       "brave_nsfw_abp_v1", "dclm-oh-eli5", "jigsaw_hatespeech_sentence_v2", "jigsaw_nsfw_sencence_v2",
       "cld2_paragraph_v2", "cld2_en_paragraph_v2", "cld2_en_paragraph_with_doc_score_v2", "ft_lang_id_paragraph_v1",
       "ft_lang_id_en_paragraph_v2", "ft_lang_id_en_paragraph_with_doc_score_v2", "char_length_with_paragraphs_v1",
       "whitespace_tokenizer_with_paragraphs_v1", "not_alphanum_paragraph_v1", "hf_classifier_v1"]


def test_new_taggers_are_registered():
    assert set(NEW) <= set(registry.available())


def _names_in(markdown: str) -> set[str]:
    """Backticked names in a markdown text, with `a_{x,y}_b` expanded."""
    import itertools
    import re

    names = set()
    for tok in re.findall(r"`([^`\s]+)`", markdown):
        parts = re.split(r"\{([^}]*)\}", tok)  # literal, choices, literal, ...
        options = [[p] if i % 2 == 0 else p.split(",") for i, p in enumerate(parts)]
        names.update("".join(c) for c in itertools.product(*options))
    return names


def test_readmes_name_every_registered_tagger():
    from pathlib import Path

    repo = Path(__file__).resolve().parents[1]
    documented = _names_in((repo / "taggers" / "README.md").read_text())
    assert set(registry.available()) - documented == set()
    top = _names_in((repo / "README.md").read_text())
    assert set(NEW) <= top, set(NEW) - top  # the top README lists the catalogue added here


# ------------------------------------------------------------------------------------- adblock
RULES = """! comment ||comment.example^
||ads.example.com^
@@||ads.example.com/allowed/
||tracker.net^$third-party
||first.example^$~third-party
||with-domain.example^$domain=example.com
||img.cdn.com^$image
||site.org/path^
|http://anchored.org/
/banner[0-9]+/
"""


def _blocked(tagger, url: str) -> bool:
    out = tagger.predict(Document("d", "some text", "s", {"url": url}))
    assert out in ({}, {"url": [[0, 9, 1.0]]})
    return bool(out)


@pytest.fixture
def abp(tmp_path):
    path = tmp_path / "list.txt"
    path.write_text(RULES)
    return registry.get("oisd_small_abp_v1", blocklist_path=str(path))


@pytest.mark.parametrize("url, blocked", [
    ("https://ads.example.com/x?y=1", True),         # || anchors the host; scheme and query are dropped
    ("http://sub.ads.example.com/", True),           # || covers subdomains
    ("HTTP://ADS.EXAMPLE.COM/X", True),              # URLs are lowercased first
    ("ads.example.com/no-scheme", True),
    ("http://ads.example.com:8080/p", True),
    ("http://ads.example.company/", False),          # ^ needs a separator after the host
    ("http://notads.example.com/", False),           # || matches whole labels only
    ("http://ads.example.com/allowed/z", False),     # @@ exception
    ("http://tracker.net/a", True),                  # no source page counts as third-party (dolma's engine)
    ("http://first.example/a", False),               # ... so first-party-only rules never match
    ("http://with-domain.example/", False),          # $domain= needs a source page
    ("http://img.cdn.com/a.png", False),             # a request of no type never matches $image
    ("http://site.org/path", True),
    ("http://site.org/path/x", True),
    ("http://site.org/pathology", False),
    ("https://anchored.org/page", True),             # dolma checks http://host/path whatever the scheme
    ("https://anchored.org/", False),                # ... without the trailing slash (the URL key drops it)
    ("http://x.org/banner12/", True),                # regex rule
    ("http://x.org/banner/", False),
    ("http://comment.example/", False),              # `!` lines are comments
    ("", False),
    ("http://a b/", False),                          # urllib3 2 cannot parse it: no field
    ("http://localhost:8080/x", False),              # key `localhost:8080/x` reads as a scheme: dolma raises
])
def test_adblock_rules(abp, url, blocked):
    assert _blocked(abp, url) is blocked


def test_adblock_reads_several_gzipped_lists_and_needs_one(tmp_path):
    with gzip.open(tmp_path / "a.txt.gz", "wt") as f:
        f.write("||one.example^\n")
    (tmp_path / "b.txt").write_text("||two.example^\n@@||one.example/ok\n")
    t = registry.get("brave_core_abp_v1", blocklist_path=[str(tmp_path / "a.txt.gz"), str(tmp_path / "b.txt")])
    assert _blocked(t, "http://one.example/x") and _blocked(t, "http://two.example/")
    assert not _blocked(t, "http://one.example/ok") and not _blocked(t, "http://three.example/")
    assert not t.predict(Document("d", "t", "s", {}))  # no metadata.url
    with pytest.raises(ValueError, match="needs a local Adblock Plus list"):
        registry.get("brave_nsfw_abp_v1")
    with pytest.raises(ValueError, match="does not exist"):
        registry.get("brave_nsfw_abp_v1", blocklist_path=str(tmp_path / "missing.txt"))


# ---------------------------------------------------------------------------------- paragraphs
def test_char_length_with_paragraphs():
    text = "ab\n\ncd e\nf"  # paragraphs "ab\n", "\n" (blank, dropped), "cd e\n", "f"
    out = registry.get("char_length_with_paragraphs_v1").predict(Document("d", text))
    assert out == {"paragraph": [[0, 3, 3.0], [4, 9, 5.0], [9, 10, 1.0]], "document": [[0, 10, 10.0]]}
    assert registry.get("char_length_with_paragraphs_v1").predict(Document("d", "")) == {"document": [[0, 0, 0.0]]}


def test_whitespace_tokenizer_with_paragraphs():
    # "Hello, world!\n": Hello , world ! = 4 tokens -> 5 pieces; "foo\n": 1 token -> 2; document = the sum
    out = registry.get("whitespace_tokenizer_with_paragraphs_v1").predict(Document("d", "Hello, world!\n \nfoo\n"))
    assert out == {"paragraph": [[0, 14, 5.0], [16, 20, 2.0]], "document": [[0, 20, 7.0]]}


def test_not_alphanum_paragraph():
    t = registry.get("not_alphanum_paragraph_v1")
    text = "!!! ???\nabc\n\u2600 \U0001f600 ...\n--\u00e9--\n"
    # paragraph 1: punctuation; 2: letters; 3: emoji + punctuation; 4: a non-ASCII letter is not
    # alphanumeric for [a-zA-Z0-9] but not punctuation either
    assert t.predict(Document("d", text)) == {"all_punct": [[0, 8, 1.0], [12, 20, 1.0]]}
    assert t.predict(Document("d", "plain words\n")) == {"all_punct": [[0, 12, 0.0]]}


def test_not_alphanum_pattern_equals_dolmas_and_is_linear():
    import regex

    ours = registry.get("not_alphanum_paragraph_v1")._all_punct
    dolmas = regex.compile(r"^([[:punct:]]|\s|[\U0001f300-\U0001f64f\U0001f680-\U0001f6ff\u2600-\u26ff\u2700-\u27bf]+)+$")
    alphabet = ["!", ".", "-", " ", "\n", "\t", "\u2600", "\U0001f600", "\u2764", "\u00e9", "\u4e2d", "a", "\u00bf",
                "$", "+", "\u2014", "\U0001f680", "\U0001f910"]
    rng = random.Random(3)
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 9)))
        assert bool(ours.search(s)) == bool(dolmas.search(s)), repr(s)
    start = time.perf_counter()
    assert not ours.search("\U0001f600" * 5000 + "\u4e2d")
    assert time.perf_counter() - start < 1.0


def test_cld2_paragraph_doc_score_is_the_length_weighted_english_share():
    en = "The committee published its annual report on water quality in the region this week.\n"
    fr = "Le comité a publié cette semaine son rapport annuel sur la qualité de l'eau dans la région.\n"
    text = en + "\n" + fr
    out = registry.get("cld2_en_paragraph_with_doc_score_v2").predict(Document("d", text))
    assert [s[:2] for s in out["en"]] == [[0, len(en)], [len(en) + 1, len(text)]]
    (p_en, p_fr) = [s[2] for s in out["en"]]
    assert p_en > 0.9 and p_fr == 0.0
    assert [s[2] for s in out["not_en"]] == [1 - p_en, 1.0]
    assert out["doc_en"] == [[0, len(text), len(en) * p_en / len(text)]]
    assert out["doc_not_en"] == [[0, len(text), 1 - len(en) * p_en / len(text)]]
    assert list(out) == ["en", "not_en", "doc_en", "doc_not_en"]
    assert registry.get("cld2_en_paragraph_with_doc_score_v2").predict(Document("d", "")) == \
        {"doc_en": [[0, 0, 0.0]], "doc_not_en": [[0, 0, 0.0]]}
    langs = registry.get("cld2_paragraph_v2").predict(Document("d", text))
    assert langs["en"][0][:2] == [0, len(en)] and langs["fr"][0][:2] == [len(en) + 1, len(text)]


# ----------------------------------------------------------------------------------- sentences
def test_sentences_are_blingfire_character_offsets():
    from dolma_prep.taggers.sentences import sentences

    text = "Hello there.  How are you today? I'm fine.\nNew line é ü."
    spans = sentences(text)
    assert [text[s:e] for s, e in spans] == ["Hello there.", "How are you today?", "I'm fine.", "New line é ü."]
    assert sentences("") == []
    # non-ASCII text: offsets count characters, not UTF-8 bytes
    text = "Über die Straße gehen wir. Then we rest. Done."
    assert [text[s:e] for s, e in sentences(text)] == ["Über die Straße gehen wir.", "Then we rest.", "Done."]
    # a lone surrogate (dolma raises) is split like U+FFFD
    text = "Über die Straße. Then \ud800 we rest."
    assert sentences(text) == sentences(text.replace("\ud800", "\ufffd")) == [(0, 16), (17, len(text))]


# ------------------------------------------------------------------- fastText (trained here)
@pytest.fixture(scope="module")
def models(tmp_path_factory):
    from dolma_prep.taggers.train_classifier import train_fasttext

    d = tmp_path_factory.mktemp("catalogue_models")
    docs = [x for p in sorted(SAMPLE.glob("*/*.jsonl.gz")) for x in read_gz_jsonl(p)]
    p = {"dim": 8, "bucket": 5000, "epoch": 10}
    train_fasttext([("hq" if x["source"] in ("stackexchange", "wiki") else "cc", " ".join(x["text"].split()[:200]))
                    for x in docs if x["source"] in ("stackexchange", "wiki", "cc_en_head", "cc_en_tail")],
                   str(d / "dclm.bin"), 1, p)
    train_fasttext([("toxic" if x["source"] == "reddit" else "non_toxic", " ".join(x["text"].split()[:200]))
                    for x in docs if x["source"] in ("reddit", "wiki", "pes2o")], str(d / "tox.bin"), 1, p)
    return d, docs


@pytest.mark.slow
def test_dclm_score_is_the_probability_of_hq(models):
    import fasttext

    d, docs = models
    tagger = registry.get("dclm-oh-eli5", model_path=str(d / "dclm.bin"))
    ref = fasttext.load_model(str(d / "dclm.bin"))
    scores = {}
    # dolma's input: the stripped text's lines (str.splitlines: also \r, \v, U+2028, ...) joined by spaces
    cases = [(x, " ".join(x["text"].strip().splitlines())) for x in docs[::7]]
    cases.append(({"id": "ws", "text": "  line one\r\nline two\u2028three\x0bfour  ", "source": "x"},
                  "line one line two three four"))
    for x, model_input in cases:
        out = tagger.predict(Document(x["id"], x["text"]))
        assert list(out) == ["score"]
        (s, e, score), = out["score"]
        assert (s, e) == (0, len(x["text"]))
        labels, probs = ref.predict(model_input, k=-1)
        p_hq = dict(zip(labels, probs))["__label__hq"]
        # 1 - P(cc) when cc wins: fastText reports exp(log(p + 1e-5)), so the two differ by ~2e-5
        assert abs(score - p_hq) < 5e-5, (x["id"], score, p_hq)
        scores.setdefault(x["source"], []).append(score)
    mean = {k: sum(v) / len(v) for k, v in scores.items()}
    assert min(mean["wiki"], mean["stackexchange"]) > max(mean["cc_en_head"], mean["cc_en_tail"]), mean


@pytest.mark.slow
def test_jigsaw_sentence_scores_each_sentence_like_the_document_tagger(models):
    d, docs = models
    sent = registry.get("jigsaw_hatespeech_sentence_v2", model_path=str(d / "tox.bin"))
    whole = registry.get("jigsaw_hatespeech_document_v2", model_path=str(d / "tox.bin"))
    text = "You are all idiots and I hate this thread.\nThe committee met on Tuesday. It approved the budget!"
    out = sent.predict(Document("d", text))
    assert list(out) == ["__label__toxic", "__label__non_toxic"]
    bounds = [(0, 42), (43, 72), (73, len(text))]
    for label in out:
        assert [tuple(s[:2]) for s in out[label]] == bounds
    for s, e in bounds:
        ref = whole.predict(Document("x", text[s:e]))
        for label in out:
            assert [x[2] for x in out[label] if x[0] == s] == [ref[label][0][2]]
    assert sent.predict(Document("d", "")) == {}
    reddit = [x for x in docs if x["source"] == "reddit"][:5]
    assert all(sent.predict(Document(x["id"], x["text"])) for x in reddit)


@pytest.mark.slow
def test_a_mix_file_runs_the_new_taggers_and_filters_on_them(tmp_path):
    """From a mix file (list path relative to it), through tag and select on Ray."""
    from conftest import run_cli

    (tmp_path / "lists").mkdir()
    (tmp_path / "lists" / "rules.txt").write_text("! wiki articles starting with Ac\n||en.wikipedia.org/wiki/ac\n")
    mix = tmp_path / "abp.yaml"
    mix.write_text(f"name: abp\ndata_root: {SAMPLE}\nexperiment: m\ntaggers:\n"
                   "  - {name: oisd_small_abp_v1, options: {blocklist_path: lists/rules.txt}}\n"
                   "  - {name: char_length_with_paragraphs_v1}\n"
                   "filters:\n  exclude: ['.attributes.m__oisd_small_abp_v1__url']\n"
                   "sources:\n  - {name: wiki, documents: ['wiki/*.jsonl.gz']}\n")
    out = tmp_path / "out"
    proc = run_cli("run", str(mix), "--output", str(out), "--workers", "1", "-q")
    assert proc.returncode == 0, proc.stderr[-3000:]
    docs = [d for p in sorted((SAMPLE / "wiki").glob("*.jsonl.gz")) for d in read_gz_jsonl(p)]
    expected = {d["id"] for d in docs if d["metadata"]["url"].lower().startswith("https://en.wikipedia.org/wiki/ac")}
    assert len(expected) == 3
    dropped = {r["id"] for p in out.glob("dropped/*/*.jsonl.gz") for r in read_gz_jsonl(p)}
    kept = {d["id"] for p in out.glob("kept/*/*.jsonl.gz") for d in read_gz_jsonl(p)}
    assert dropped == expected and kept == {d["id"] for d in docs} - expected
    attrs = [a for p in sorted(out.glob("attributes/m/wiki/*.jsonl.gz")) for a in read_gz_jsonl(p)]
    assert len(attrs) == len(docs)
    for a, d in zip(attrs, docs):
        assert a["attributes"]["m__char_length_with_paragraphs_v1__document"] == [[0, len(d["text"]), len(d["text"])]]
