"""Taggers: names, fields, spans and scores, checked against plain re-statements of dolma
1.2.1's algorithms (the `ref_*` functions below), plus bad input and the attributes writer.

The real toolkit is compared in tests/test_taggers_parity.py (needs the peer venv).
"""
from __future__ import annotations

import gzip
import json
import random
import re
import statistics
import time
from collections import Counter
from pathlib import Path

import pytest

from dolma_prep.core.io import format_score
from dolma_prep.pipeline.stages.tag import _tag_one
from dolma_prep.taggers import registry
from dolma_prep.taggers._runner import format_line
from dolma_prep.taggers.registry import Document

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "documents"
TOKENIZER = REPO / "pipeline" / "resources" / "allenai_gpt-neox-olmo-dolma-v1_5.json"

DOLMA_NAMES = [
    "gopher_v1", "c4_v1", "pii_regex_with_counts_v2", "cld2_en_doc_v2", "ft_lang_id_en_doc_v2",
    "whitespace_tokenizer_v1", "char_length_v1", "random_number_v1", "tokenizer_repetitions_v2r2",
    "code_starcoder_taggers_v2", "jigsaw_hatespeech_document_v2", "jigsaw_nsfw_document_v1", "cc_multi_bin",
    "dolma17-quality", "url_blocklist_v1", "domain_blocklist_v1", "domain_blocklist_utp_v1",
    "blocklist_project_nsfw_v1", "link_blocklist_phishing_v1",
]


def sample_docs(limit: int | None = None) -> list[dict]:
    out = []
    for path in sorted(SAMPLE.glob("*/*.jsonl.gz")):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            out += [json.loads(line) for line in f]
    return out[:limit] if limit else out


def doc(text: str, **meta) -> Document:
    return Document("d", text, "s", meta)


def random_texts(n: int, seed: int, pieces: list[str], max_len: int = 40) -> list[str]:
    rng = random.Random(seed)
    return ["".join(rng.choice(pieces) for _ in range(rng.randint(0, max_len))) for _ in range(n)]


# ------------------------------------------------------------------------------------- registry
def test_dolma_names_are_registered():
    missing = set(DOLMA_NAMES) - set(registry.available())
    assert not missing


def test_format_output_names_and_rounds_like_dolma_tag():
    out = registry.format_output("exp", "dolma17-quality", {"hq": [[0, 3, 0.123456789]], "": [[0, 1, 1]],
                                                            "__label__toxic": [[0, 3, 2]]})
    assert out == {"exp__dolma17_quality__hq": [[0, 3, 0.12346]],
                   "exp__dolma17_quality____label__toxic": [[0, 3, 2.0]]}
    assert registry.format_output("cc_multi_bin", "cc_multi_bin", {"hq": [[0, 1, 0.5]]}) == \
        {"cc_multi_bin__cc_multi_bin__hq": [[0, 1, 0.5]]}


# ---------------------------------------------------------------------------------------- gopher
def ref_gopher(text: str) -> dict[str, float]:
    """dolma 1.2.1 gopher_v1, stated plainly (Counter of word tuples)."""
    out: dict[str, float] = {}
    if not text:
        return {k: 0.0 for k in ("character_count", "word_count", "median_word_length", "symbol_to_word_ratio",
                                 "fraction_of_words_with_alpha_character", "required_word_count",
                                 "fraction_of_lines_starting_with_bullet_point", "fraction_of_lines_ending_with_ellipsis",
                                 "fraction_of_duplicate_lines", "fraction_of_characters_in_duplicate_lines")}
    words = text.split()
    chars = sum(len(w) for w in words)
    for n in range(2, 11):
        c = Counter(zip(*[words[i:] for i in range(n)]))
        if not c:
            continue
        if n <= 4:
            g, k = c.most_common(1)[0]
            out[f"fraction_of_characters_in_most_common_{n}grams"] = k * sum(map(len, g)) / max(chars, 1)
        else:
            tot = sum(k * sum(map(len, g)) for g, k in c.items())
            dup = sum(k * sum(map(len, g)) for g, k in c.items() if k > 1)
            out[f"fraction_of_characters_in_duplicate_{n}grams"] = dup / max(tot, 1)
    lines = text.split("\n")
    lc = Counter(lines)
    nw = max(len(words), 1)
    out.update({
        "character_count": len(text), "word_count": len(words),
        "median_word_length": float(statistics.median([len(w) for w in words])) if words else 0.0,
        "symbol_to_word_ratio": sum(1 for w in words if "#" in w or "\u2026" in w) / nw,
        "fraction_of_words_with_alpha_character": sum(1 for w in words if any(ch.isalpha() for ch in w)) / nw,
        "required_word_count": sum(1 for w in words if w in {"the", "be", "to", "of", "and", "that", "have", "with"}),
        "fraction_of_lines_starting_with_bullet_point": sum(1 for ln in lines if ln.startswith(("*", "-"))) / len(lines),
        "fraction_of_lines_ending_with_ellipsis": sum(1 for ln in lines if ln.endswith("\u2026")) / len(lines),
        "fraction_of_duplicate_lines": sum(k for k in lc.values() if k > 1) / len(lines),
        "fraction_of_characters_in_duplicate_lines": sum(len(ln) * k for ln, k in lc.items() if k > 1) / max(chars, 1),
    })
    return out


def _scores(result: dict) -> dict[str, float]:
    return {k: v[0][2] for k, v in result.items()}


def test_gopher_matches_reference_on_sample_and_random_text():
    tagger = registry.get("gopher_v1")
    texts = [d["text"] for d in sample_docs()[::4]]
    texts += random_texts(3000, 0, ["a", "b", "a b", " ", "\n", "#", "\u2026", "- ", "* ", "1", "the ", "\u00e9", "\u00b2"], 30)
    for text in texts:
        got = tagger.predict(doc(text))
        assert list(_scores(got)) == list(ref_gopher(text)), text[:80]  # same fields, same order
        assert _scores(got) == pytest.approx(ref_gopher(text), rel=0, abs=0), text[:80]
        assert all(s == [[0, len(text), s[0][2]]] for s in got.values())


def test_gopher_most_common_ties_go_to_the_first_seen():
    # "a a" and "bb c" both occur twice; "a a" is seen first, so 2 x 2 of the 9 word characters
    got = _scores(registry.get("gopher_v1").predict(doc("a a a bb c bb c")))
    assert got["fraction_of_characters_in_most_common_2grams"] == 2 * 2 / 9 == ref_gopher("a a a bb c bb c")[
        "fraction_of_characters_in_most_common_2grams"]


def test_gopher_v2_ignores_empty_lines():
    v1 = _scores(registry.get("gopher_v1").predict(doc("- a\n\n\n- a\n")))
    v2 = _scores(registry.get("gopher_v2").predict(doc("- a\n\n\n- a\n")))
    assert v1["fraction_of_lines_starting_with_bullet_point"] == 2 / 5
    assert v2["fraction_of_lines_starting_with_bullet_point"] == 2 / 3


# -------------------------------------------------------------------------------------------- c4
def ref_c4(text: str) -> dict:
    from dolma_prep.taggers.c4 import NAUGHTY_PHRASES, NAUGHTY_WORDS

    out: dict[str, list] = {"lines_with_no_ending_punctuation": [], "lines_with_too_few_words": []}
    flags = dict.fromkeys(["has_naughty_word", "has_javascript", "has_lorem_ipsum", "has_curly_brace"], False)
    lines = text.split("\n")
    offset = 0
    for i, raw in enumerate(lines):
        end = offset + len(raw) + (1 if i < len(lines) - 1 else 0)
        line = raw.lower().strip()
        if not line.endswith((".", "?", "!", '"')):
            out["lines_with_no_ending_punctuation"].append([offset, end, 1.0])
        words = line.split()
        if len(words) < 3:
            out["lines_with_too_few_words"].append([offset, end, 1.0])
        if any(w in NAUGHTY_WORDS for w in words) or any(p in line for p in NAUGHTY_PHRASES):
            flags["has_naughty_word"] = True
        if "javascript" in words:
            flags["has_javascript"] = True
        if "lorem ipsum" in line:
            flags["has_lorem_ipsum"] = True
        if "{" in line:
            flags["has_curly_brace"] = True
        offset = end
    out = {k: v for k, v in out.items() if v}
    out.update({k: [[0, len(text), 1.0]] for k, v in flags.items() if v})
    out["line_count"] = [[0, len(text), float(len(lines))]]
    return out


def test_c4_matches_reference_on_sample_and_random_text():
    from dolma_prep.taggers.c4 import NAUGHTY_PHRASES

    tagger = registry.get("c4_v1")
    phrases_words = sorted({w for p in NAUGHTY_PHRASES[:40] for w in p.split()})
    pieces = phrases_words + list(NAUGHTY_PHRASES[:40:4]) + [" ", " ", "\n", ".", "!", '"', "{", "JavaScript",
                                                             "Lorem Ipsum", "\u03a3", "\t", "\r"]
    texts = [d["text"] for d in sample_docs()[::2]] + random_texts(3000, 1, pieces, 25)
    hits = 0
    for text in texts:
        got = tagger.predict(doc(text))
        assert got == ref_c4(text), text[:80]
        hits += "has_naughty_word" in got
    assert hits > 100  # the phrase search was exercised both ways


# ------------------------------------------------------------------------------------------- pii
def ref_pii(text: str) -> dict:
    from dolma_prep.taggers import pii

    found = []
    for m in pii.EMAIL.finditer(text):
        parts = m.group().split("@")
        if not (parts[0].strip() == "(" or "." not in parts[1]):
            found.append(("EMAIL_ADDRESS", *m.span()))
    for kind, rx in (("PHONE_NUMBER", pii.PHONE), ("IP_ADDRESS", pii.IP)):
        for m in rx.finditer(text):
            ctx = text[max(0, m.start() - 100): m.end() + 100]
            if "isbn" in ctx or "doi" in ctx or "#" in ctx:
                continue
            if kind == "PHONE_NUMBER" and pii.URL.findall(text):
                continue
            found.append((kind, *m.span()))
    out: dict[str, list] = {}
    for kind, s, e in found:
        out.setdefault(kind, []).append([s, e, 1.0])
    n_words = len(text.split())
    out["doc"] = [[0, len(text), len(found) / n_words if n_words else -1.0]]
    out["doc_count"] = [[0, len(text), float(len(found))]]
    return out


PII_PIECES = list("ab.@,?!;:)( \n\t(0123456789-x#") + [
    "\u0663", "\u00a0", "com", "192", "255", ".1", "@b.c", " (555) 123-4567", "1.2.3.4", "\x08", "www.x.com/",
    "isbn", "doi", " john.doe@example.org ", "10.0.0.1"]


@pytest.mark.parametrize("scan", [256, 2])
def test_pii_matches_plain_finditer(monkeypatch, scan):
    from dolma_prep.taggers import pii

    monkeypatch.setattr(pii, "_SCAN", scan)  # 2 exercises the long-token code paths
    tagger = registry.get("pii_regex_with_counts_v2")
    texts = [d["text"] for d in sample_docs()[::4]] + random_texts(10000, 2 + scan, PII_PIECES, 40)
    texts += ["x" * 5000 + "@a.b.com ", " " * 3000 + " 555 123 4567", "." * 600 + "a@b.cd ", "a" * 600 + "@@x.y "]
    kinds = Counter()
    for text in texts:
        got = tagger.predict(doc(text))
        if text.split():
            assert got == ref_pii(text), repr(text[:120])
        kinds.update(k for k in got if k.isupper())
    assert min(kinds[k] for k in ("EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS")) > 100


def test_pii_fields_and_deviation_for_texts_without_words():
    t = registry.get("pii_regex_with_counts_v2")
    text = "Mail me at jane.roe@example.com or call\n (555) 123-4567 from 10.1.2.3 today"
    got = t.predict(doc(text))
    assert list(got) == ["EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS", "doc", "doc_count"]
    assert got["EMAIL_ADDRESS"] == [[10, 32, 1.0]]  # dolma's span: the space before, the space after
    assert got["doc_count"] == [[0, len(text), 3.0]] and got["doc"][0][2] == 3 / 11
    # dolma raises ZeroDivisionError here; we score -1 as its pii_regex_v2 does
    for blank in ("", "  \n "):
        assert t.predict(doc(blank)) == {"doc": [[0, len(blank), -1.0]], "doc_count": [[0, len(blank), 0.0]]}
    assert "doc_count" not in registry.get("pii_regex_v2").predict(doc(text))


def test_pii_url_regex_rewrite_accepts_what_dolmas_does():
    from dolma_prep.taggers import pii

    original = re.compile(pii.DOLMA_URL_PATTERN)  # exponential on some inputs: keep them short
    pieces = list("ab.()<> /-!,x1") + ["http://", "www.", "\x08", "co/", "(a)", "((b))"]
    found = 0
    for text in random_texts(30000, 5, pieces, 14):
        assert (original.search(text) is None) == (pii.URL.search(text) is None), repr(text)
        found += pii.URL.search(text) is not None
    assert found > 100
    t0 = time.perf_counter()
    pii.URL.search("\x08www." + "a(" * 40 + "!" * 5)  # dolma's pattern does not finish on this
    assert time.perf_counter() - t0 < 1


def test_pii_phone_url_quirk_is_kept():
    # dolma's URL regex starts with a literal backspace (a non-raw "\b"): only then are phones dropped
    t = registry.get("pii_regex_with_counts_v2")
    assert "PHONE_NUMBER" in t.predict(doc("see https://example.com/x or call 555 123 4567"))
    assert "PHONE_NUMBER" not in t.predict(doc("see \x08https://example.com/x or call 555 123 4567"))


# ----------------------------------------------------------------------------- language, lengths
def test_cld2_en_doc():
    pytest.importorskip("pycld2")
    t = registry.get("cld2_en_doc_v2")
    en = t.predict(doc("This is a perfectly ordinary English sentence about the weather and the sea. " * 5))
    assert list(en) == ["en", "not_en"] and en["en"][0][2] > 0.9
    assert en["not_en"][0][2] == pytest.approx(1 - en["en"][0][2])
    de = t.predict(doc("Dies ist ein ganz gewöhnlicher deutscher Satz über das Wetter und das Meer. " * 5))
    assert de["en"][0][2] == 0.0 and de["not_en"][0][2] == 1.0
    # control characters make pycld2 fail; the fallbacks still classify the text
    ctrl = t.predict(doc("\x00\x07 This is a perfectly ordinary English sentence about the weather. " * 5))
    assert ctrl["en"][0][2] > 0.9


def test_lengths():
    assert registry.get("char_length_v1").predict(doc("héllo")) == {"length": [[0, 5, 5.0]]}
    ws = registry.get("whitespace_tokenizer_v1")
    assert ws.predict(doc("Hello, world!! 42")) == {"length": [[0, 17, 6.0]]}  # 5 tokens + 1, as dolma
    assert ws.predict(doc("")) == {"length": [[0, 0, 1.0]]}
    import regex  # dolma's module; our ASCII fast path must count the same

    for text in random_texts(2000, 9, ["ab", " ", "\x1c", ",.", "_", "\u00e9", "\u0301", "9", "\n"], 12):
        assert ws.predict(doc(text))["length"][0][2] == len(regex.split(r"\w+|[^\w\s]+", text)), repr(text)


def test_random_number():
    t = registry.get("random_number_v1")
    scores = [t.predict(Document(str(i), "x"))["random"][0][2] for i in range(200)]
    assert all(0 <= s < 1 for s in scores) and len(set(scores)) == 200
    d1 = registry.get("random_number_v1", seed=3, deterministic=True)
    d2 = registry.get("random_number_v1", seed=3, deterministic=True)
    assert d1.predict(Document("a", "x")) == d2.predict(Document("a", "x")) != d1.predict(Document("b", "x"))
    with pytest.raises(ValueError):
        registry.get("random_number_v1", seed=0)


# --------------------------------------------------------------------------------- repetitions
def test_periodic_runs_find_repeats():
    import numpy as np

    from dolma_prep.taggers.repetitions import periodic_runs

    ids = np.array([9, 1, 2, 1, 2, 1, 2, 1, 2, 7, 5, 5, 5, 5, 5, 8], dtype=np.int64)
    runs = set(periodic_runs(ids))
    assert (1, 9, 4) in runs  # "1 2" x4
    assert (10, 15, 5) in runs  # "5" x5
    assert list(periodic_runs(np.array([1, 2, 3, 4, 5, 6], dtype=np.int64))) == []


def test_tokenizer_repetitions():
    t = registry.get("tokenizer_repetitions_v2r2", tokenizer_path=str(TOKENIZER))
    text = "Intro. " + "buy now " * 20 + "and the end."
    got = t.predict(doc(text))
    assert list(got) == ["repetition", "doc_max_score_repetition", "doc_max_length_repetition", "doc_frac_repetition"]
    (s, e, times), = got["repetition"]
    assert "buy now" in text[s:e] and times >= 19
    assert got["doc_frac_repetition"][0][2] == (e - s) / len(text)
    assert t.predict(doc("No repeats in this short sentence.")) == {}
    with pytest.raises(ValueError, match="tokenizer"):
        registry.get("tokenizer_repetitions_v2r2", tokenizer_path="/nonexistent.json")


# ------------------------------------------------------------------------------------ starcoder
def test_code_starcoder():
    pytest.importorskip("pygments")
    pytest.importorskip("bs4")
    t = registry.get("code_starcoder_taggers_v2")
    py = '"""Module doc."""\n# a comment\nx = 1  # another\n'
    got = t.predict(doc(py, ext="py", max_stars_count=7))
    assert got["num_github_stars_doc"] == [[0, len(py), 7.0]]
    assert got["code_to_comment_ratio_doc"][0][2] == len("Module doc.\n a comment another") / len(py)
    assert got["code_to_text_ratio_html_doc"][0][2] == 1.0
    js = "// hi\nvar x = 1; /* two */\n"
    assert t.predict(doc(js, ext="js"))["code_to_comment_ratio_doc"][0][2] == len("// hi/* two */") / len(js)
    other = t.predict(doc("<?xml version='1.0'?><a/>", ext="xml"))
    assert other["has_xml_template_doc"][0][2] == 1.0 and other["code_to_comment_ratio_doc"][0][2] == 0.5
    html = "<html><script>var a;</script><p>" + "words " * 30 + "</p></html>"
    assert t.predict(doc(html, ext="html"))["code_to_text_ratio_html_doc"][0][2] == len("words " * 30) / len(html)
    assert t.predict(doc("<p>short</p>", ext="html"))["code_to_text_ratio_html_doc"][0][2] == 0.0
    # dolma divides by zero on an empty source file; we give -1 (and -1 for empty HTML, as dolma)
    assert t.predict(doc("", ext="py"))["code_to_comment_ratio_doc"][0][2] == -1.0
    assert t.predict(doc("", ext="html"))["code_to_text_ratio_html_doc"][0][2] == -1.0


# ----------------------------------------------------------------------------------- blocklists
def test_blocklists(tmp_path):
    lst = tmp_path / "list.txt"
    lst.write_text("# comment\n! adblock comment\n0.0.0.0 bad.example.com\n127.0.0.1 localhost\nweb.de\n"
                   "||ads.example.net^\nwww.spam.org/path/\n")
    dom = registry.get("domain_blocklist_v1", blocklist_path=str(lst))

    def hit(tagger, url):
        return tagger.predict(doc("text", url=url)) == {"url": [[0, 4, 1.0]]}

    assert hit(dom, "https://bad.example.com/page?q=1") and hit(dom, "http://www.bad.example.com")
    assert hit(dom, "https://WEB.de/x") and hit(dom, "http://ads.example.net/") and hit(dom, "spam.org")
    assert not hit(dom, "https://good.example.com") and dom.predict(doc("t")) == {}
    # deviations (fixes): dolma's lstrip("www.") would also block eb.de; it also lists 0.0.0.0
    assert not hit(dom, "http://eb.de/") and not hit(dom, "http://0.0.0.0/")
    url = registry.get("url_blocklist_v1", blocklist_path=str(lst))
    assert hit(url, "https://www.spam.org/path") and not hit(url, "https://www.spam.org/other")
    gz = tmp_path / "list.txt.gz"
    gz.write_bytes(gzip.compress(lst.read_bytes()))
    assert hit(registry.get("blocklist_project_nsfw_v1", blocklist_path=[str(gz)]), "bad.example.com")
    with pytest.raises(ValueError, match="blocklist_path"):
        registry.get("domain_blocklist_utp_v1")


# ------------------------------------------------------------------------------ fastText taggers
@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    pytest.importorskip("fasttext")
    from dolma_prep.taggers.train_classifier import train_fasttext

    d = tmp_path_factory.mktemp("models")
    docs = sample_docs()
    params = {"dim": 8, "bucket": 5000, "epoch": 10}
    tox = [("toxic" if x["source"] == "reddit" else "non_toxic", " ".join(x["text"].split()[:100]))
           for x in docs if x["source"] in ("reddit", "wiki", "pes2o")]
    train_fasttext(tox, str(d / "tox.bin"), 1, params)
    lid = [((x.get("metadata") or {}).get("language") or "en", " ".join(x["text"].lower().split()[:100])) for x in docs]
    train_fasttext(lid, str(d / "lid.bin"), 1, params)
    qual = [("hq" if x["source"] in ("wiki", "pes2o") else "lq", " ".join(x["text"].split()[:100]))
            for x in docs if x["source"] in ("wiki", "pes2o", "cc_en_tail", "cc_en_middle")]
    train_fasttext(qual, str(d / "q.bin"), 1, params)
    return d


@pytest.mark.slow  # trains fastText models (tiny_models)
def test_fasttext_taggers_fields(tiny_models):
    text = "Some text\nover two lines"
    tox = registry.get("jigsaw_hatespeech_document_v2", model_path=str(tiny_models / "tox.bin")).predict(doc(text))
    assert list(tox) == ["__label__toxic", "__label__non_toxic"]  # the label without "non" first
    assert sum(v[0][2] for v in tox.values()) == pytest.approx(1, abs=1e-3)
    out = registry.format_output("hatespeech_nsfw_cc_v3", "jigsaw_hatespeech_document_v2", tox)
    assert "hatespeech_nsfw_cc_v3__jigsaw_hatespeech_document_v2____label__toxic" in out
    nsfw = registry.get("jigsaw_nsfw_document_v1", model_path=str(tiny_models / "tox.bin")).predict(doc(text))
    assert list(nsfw) == list(tox)
    lid = registry.get("ft_lang_id_en_doc_v2", model_path=str(tiny_models / "lid.bin")).predict(doc(text))
    assert list(lid) == ["en", "not_en"] and lid["not_en"][0][2] == pytest.approx(1 - lid["en"][0][2])
    q = registry.get("cc_multi_bin", model_path=str(tiny_models / "q.bin"))
    res = q.predict(doc(text))
    assert set(res) == {"hq", "lq"} and res[next(iter(res))][0][2] >= 0.5  # most probable first
    assert registry.format_output("cc_multi_bin", "cc_multi_bin", res)["cc_multi_bin__cc_multi_bin__hq"][0][:2] == [0, len(text)]
    assert set(q.predict(doc("")).keys()) == {"hq", "lq"}  # dolma raises on blank text
    with pytest.raises(ValueError, match="model_path"):
        registry.get("cc_multi_bin")
    with pytest.raises(ValueError, match="does not exist"):
        registry.get("jigsaw_nsfw_document_v1", model_path=str(tiny_models / "missing.bin"))


# ------------------------------------------------------------------------------------- bad input
def _all_taggers(tiny_models, tmp_path) -> dict:
    lst = tmp_path / "l.txt"
    lst.write_text("example.com\n")
    opts = {"tokenizer_repetitions_v2r2": {"tokenizer_path": str(TOKENIZER)},
            "cc_multi_bin": {"model_path": str(tiny_models / "q.bin")},
            "jigsaw_hatespeech_document_v2": {"model_path": str(tiny_models / "tox.bin")},
            "ft_lang_id_en_doc_v2": {"model_path": str(tiny_models / "lid.bin")},
            "domain_blocklist_v1": {"blocklist_path": str(lst)}}
    names = ["gopher_v1", "c4_v1", "pii_regex_with_counts_v2", "cld2_en_doc_v2", "whitespace_tokenizer_v1",
             "char_length_v1", "random_number_v1", "code_starcoder_taggers_v2", *opts]
    return {n: registry.get(n, **opts.get(n, {})) for n in names}


BAD_TEXTS = {
    "empty": "",
    "blank": " \n\t\r\n  ",
    "control": "".join(chr(c) for c in range(32)) + "\x7f\x85 text \x00 with\x1c\x1dcontrols\ud800 and a lone surrogate\udfff",
    "no_space": "x" * 200_000 + "@example.com",
}


@pytest.mark.slow  # trains fastText models (tiny_models)
@pytest.mark.parametrize("kind", sorted(BAD_TEXTS))
def test_bad_input_is_tagged(tiny_models, tmp_path, kind):
    text = BAD_TEXTS[kind]
    for ext in ("py", "html", "js"):
        for name, tagger in _all_taggers(tiny_models, tmp_path).items():
            res = tagger.predict(Document("d", text, "s", {"ext": ext, "url": "http://example.com"}))
            for fld, spans in registry.format_output("e", name, res).items():
                assert all(0 <= s <= e <= len(text) and isinstance(v, float) and v == v for s, e, v in spans), (name, fld)


def _ten_mb() -> str:
    base = "\n".join(d["text"] for d in sample_docs() if d["source"] in ("cc_en_head", "stackexchange"))
    base += "\nwrite to a.b@example.com or 555-123-4567 at 10.0.0.1 " + "y" * 5000 + " \x00\x07 \u2026\n"
    return (base * (10_000_000 // len(base) + 1))[:10_000_000]


@pytest.mark.slow  # trains fastText models (tiny_models)
def test_ten_megabyte_text_is_tagged(tiny_models, tmp_path):
    text = _ten_mb()
    taggers = _all_taggers(tiny_models, tmp_path)
    taggers.pop("tokenizer_repetitions_v2r2")  # tokenizing 10 MB takes ~20 s: see the slow test
    t0 = time.perf_counter()
    for name, tagger in taggers.items():
        res = tagger.predict(Document("d", text, "s", {"ext": "txt", "url": "http://example.com/x"}))
        assert res or name == "domain_blocklist_v1"
        assert all(e <= len(text) for spans in res.values() for _, e, _ in spans)
    assert time.perf_counter() - t0 < 90


@pytest.mark.slow
def test_ten_megabyte_text_tokenizer_repetitions():
    t = registry.get("tokenizer_repetitions_v2r2", tokenizer_path=str(TOKENIZER))
    res = t.predict(Document("d", _ten_mb()))
    assert res["doc_frac_repetition"][0][1] == 10_000_000


# ---------------------------------------------------------------------------------------- runner
def test_format_score_matches_msgspec():
    cases = {1e-05: "0.00001", 1.5e-05: "0.000015", -2.5e-05: "-0.000025", 0.00012: "0.00012", 1e16: "1e16",
             1.2345678901234568e16: "1.2345678901234568e16", 1e-07: "1e-7", 123.0: "123.0", 0.0: "0.0",
             -1.0: "-1.0", float("nan"): "null", float("inf"): "null"}
    for v, s in cases.items():
        assert format_score(v) == s
    assert format_line("x\u00e9", {"e__t__f": [[0, 2, 0.5]]}, "src") == \
        '{"id":"x\u00e9","attributes":{"e__t__f":[[0,2,0.5]]},"source":"src"}'


def tag_file(src, dst, names, experiment, options=None) -> dict:
    """One file through the product path (what `dolma-prep tag` and a run's tag stage run)."""
    return _tag_one(str(src), str(dst), [(n, (options or {}).get(n, {})) for n in names], experiment, [])


@pytest.mark.slow  # trains fastText models (tiny_models)
def test_fast_writer_equals_format_output(tiny_models, tmp_path):
    # the tag stage formats spans straight from the taggers; it must equal format_output + format_line
    from dolma_prep.taggers._runner import TaggerSet

    names = ["gopher_v1", "c4_v1", "pii_regex_with_counts_v2", "char_length_v1", "cc_multi_bin", "random_number_v1"]
    options = {"cc_multi_bin": {"model_path": str(tiny_models / "q.bin")}, "random_number_v1": {"deterministic": True}}
    docs = sample_docs()[::5] + [{"id": "z", "text": "", "source": "s"}, {"id": 7, "text": "a\u00e9b", "source": None}]
    src = tmp_path / "d.jsonl.gz"
    src.write_bytes(gzip.compress(("\n".join(json.dumps(d) for d in docs) + "\n").encode()))
    stats = tag_file(src, tmp_path / "o.jsonl.gz", names, "exp", options)
    lines = gzip.decompress((tmp_path / "o.jsonl.gz").read_bytes()).decode().splitlines()
    ts = TaggerSet(names, "exp", options)
    objs = [Document(str(d["id"]), d["text"], str(d.get("source") or ""), d.get("metadata") or {}) for d in docs]
    assert stats["rejected"] == 0 and stats["documents_in"] == len(docs)
    for d, line, attrs in zip(docs, lines, ts.tag(objs)):
        assert line == format_line(d["id"], attrs, d.get("source", "")), d["id"]
        json.loads(line)
    assert lines[-1].startswith('{"id":7,') and lines[-1].endswith(',"source":null}')


def test_tag_file_layout_and_bad_lines(tmp_path):
    docs = sample_docs(40)
    src = tmp_path / "documents" / "a" / "0000.jsonl.gz"
    src.parent.mkdir(parents=True)
    lines = [json.dumps(d) for d in docs[:20]] + ["not json", json.dumps({"id": "no-text"}), "",
                                                  json.dumps({"id": "e", "text": "", "source": "s"})]
    lines += [json.dumps(d) for d in docs[20:]]
    src.write_bytes(gzip.compress(("\n".join(lines) + "\n").encode()))
    dst = tmp_path / "attributes" / "exp" / "a" / "0000.jsonl.gz"
    stats = tag_file(src, dst, ["char_length_v1", "pii_regex_with_counts_v2"], "exp")
    out = gzip.decompress(dst.read_bytes()).decode().splitlines()
    assert len(out) == len(lines) and stats["rejected"] == 3 and stats["documents_in"] == 41
    first = json.loads(out[0])
    assert list(first) == ["id", "attributes", "source"] and first["id"] == docs[0]["id"]
    assert list(first["attributes"]) == ["exp__char_length_v1__length", "exp__pii_regex_with_counts_v2__doc",
                                         "exp__pii_regex_with_counts_v2__doc_count"]
    assert out[20] == out[21] == out[22] == '{"id":null,"attributes":{},"source":null}'
    assert json.loads(out[23])["attributes"]["exp__pii_regex_with_counts_v2__doc"] == [[0, 0, -1.0]]
    assert [json.loads(x)["id"] for x in out[24:]] == [d["id"] for d in docs[20:]]
    rejects = [json.loads(x) for x in Path(str(dst) + ".rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(" at ")[0].split(":")[0]) for r in rejects] == \
        [(21, "not valid JSON"), (22, "missing field 'text'"), (23, "empty line")]


def test_tagger_error_leaves_document_without_fields(tmp_path, monkeypatch):
    from dolma_prep.taggers.length import CharLength

    def boom(self, d):
        if d.id == "bad":
            raise RuntimeError("boom")
        return {"length": [[0, len(d.text), 1.0]]}

    monkeypatch.setattr(CharLength, "predict", boom)
    src = tmp_path / "d.jsonl"
    src.write_text("\n".join(json.dumps({"id": i, "text": "t", "source": "s"}) for i in ("a", "bad", "c")) + "\n")
    stats = tag_file(src, tmp_path / "o.jsonl", ["char_length_v1"], "e")
    out = [json.loads(x) for x in (tmp_path / "o.jsonl").read_text().splitlines()]
    assert stats["tagger_errors"] == 1 and out[1]["attributes"] == {} and out[2]["attributes"]
