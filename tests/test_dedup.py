"""Unit tests of the dedup building blocks (no Ray)."""

from __future__ import annotations

import gzip
import json
import os
import random
from pathlib import Path

import numpy as np
import pytest

from dolma_prep.core.io import AtomicWriter, iter_documents, parse_document
from dolma_prep.dedup.paragraphs import _stride_keep
from dolma_prep.dedup.signatures import band_keys, permutations, shingle_hashes, signatures
from dolma_prep.dedup.text import (
    _WORD_BOUNDARY,
    WHITE_SPACE,
    dolma_tokens,
    normalized_word_bytes,
    normalized_words,
    paragraph_spans,
    window_hashes,
)


def _full_uax29(text):
    return [s for s in _WORD_BOUNDARY.split(text) if s and s.strip(WHITE_SPACE)]


def test_dolma_tokens_match_dolma_rust_unit_test():
    # src/wimbd/tokens.rs: test_tokenize_and_ngrams
    s = "You can follow any responses to this entry through the RSS 2.0 feed"
    assert dolma_tokens(s) == [
        "You", "can", "follow", "any", "responses", "to", "this", "entry", "through", "the", "RSS", "2.0", "feed",
    ]


def test_dolma_tokens_punctuation_and_unicode():
    assert dolma_tokens("Hello, world... don't 3,000.5 a_b") == [
        "Hello", ",", "world", ".", ".", ".", "don't", "3,000.5", "a_b",
    ]
    assert dolma_tokens("日本語 été\u3000x") == ["日", "本", "語", "été", "x"]
    assert dolma_tokens(" \t\n ") == []


def test_ascii_fast_path_equals_full_word_boundary_rules():
    rng = random.Random(0)
    alphabet = "abcXYZ019_ .,:;'\"-!?()[]\t\n\r\x0b\x0c\x1c$%&*+/<=>@\\^`{|}~"
    for _ in range(3000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 30)))
        assert dolma_tokens(s) == _full_uax29(s), repr(s)


def test_paragraph_spans_follow_dolma_offsets():
    assert [(a, b) for a, b, _ in paragraph_spans("a\nb", "\n")] == [(0, 2), (2, 3)]
    # dolma does not count the separator once offset >= byte length - 1
    assert [(a, b) for a, b, _ in paragraph_spans("a\n", "\n")] == [(0, 1), (1, 1)]
    # character offsets compared with a byte length: the quirk shows with non-ASCII text
    assert [(a, b) for a, b, _ in paragraph_spans("é\n", "\n")] == [(0, 2), (2, 2)]


def _dolma_stride_loop(n_windows: int, stride: int) -> list[bool]:
    """Port of the window selection loop of dolma 1.2.1 deduper.rs."""
    out, last = [], 0
    for start in range(n_windows):
        if last == 0 or start - last >= stride:
            last = start
            out.append(True)
        else:
            out.append(False)
    return out


@pytest.mark.parametrize("stride", [0, 1, 2, 3, 5])
def test_stride_rule_matches_dolma_loop(stride):
    got = _stride_keep(np.arange(40), stride).tolist()
    assert got == _dolma_stride_loop(40, stride)


def test_partition_uses_top_bits():
    from dolma_prep.dedup.paragraphs import partition_of

    keys = np.array([0, 1 << 61, 1 << 62, (1 << 64) - 1], dtype=np.uint64)
    assert partition_of(keys, 4).tolist() == [0, 0, 1, 3]
    assert partition_of(keys, 1).tolist() == [0, 0, 0, 0]


@pytest.mark.parametrize("rounds", [1, 4])
def test_seen_marks_exactly_the_keys_that_occurred_before_in_corpus_order(tmp_path, rounds):
    from dolma_prep.core import io as pio
    from dolma_prep.dedup.paragraphs import _stage_seen

    rng = np.random.default_rng(0)
    pool = rng.integers(0, 2**64 - 1, 3000, dtype=np.uint64)
    shards = [pool[rng.integers(0, len(pool), n)] for n in (2500, 0, 4000, 1)]
    for s, keys in enumerate(shards):
        pio.save_npy(str(tmp_path / f"keys-{s}-0.npy"), keys)
    r = _stage_seen(0, len(shards), str(tmp_path), rounds)
    known, total = set(), 0
    for s, keys in enumerate(shards):
        want = []
        for k in keys.tolist():
            want.append(k in known)
            known.add(k)
        got = np.unpackbits(pio.load_npy(str(tmp_path / f"flags-{s}-0.npy")), count=len(keys)).astype(bool)
        assert got.tolist() == want
        total += sum(want)
    assert r["seen"] == total > 3000


def test_window_hashes_equal_windows_equal_keys():
    t = np.array([5, 6, 7, 5, 6, 7, 8], dtype=np.uint64)
    w = window_hashes(t, 3)
    assert len(w) == 5 and w[0] == w[3] and len(set(w.tolist())) == 4
    assert len(window_hashes(t[:2], 3)) == 0


def test_normalisation():
    text = "Hello,  World!\n\tIt's — “quoted” Ünïcode; x"
    assert normalized_words(text) == ["hello", "world", "it", "s", "quoted", "ünïcode", "x"]
    assert normalized_word_bytes(text) == [w.encode() for w in normalized_words(text)]
    ascii_text = "A-b c.d (E) f$g"
    assert normalized_word_bytes(ascii_text) == [w.encode() for w in normalized_words(ascii_text)]


def test_shingles_are_xxh64_of_joined_words():
    import xxhash

    words = [b"the", b"quick", b"brown", b"fox", b"jumps", b"over"]
    sh = shingle_hashes(words, 5)
    assert sh.tolist() == [
        xxhash.xxh64_intdigest(b"the quick brown fox jumps"),
        xxhash.xxh64_intdigest(b"quick brown fox jumps over"),
    ]
    assert shingle_hashes(words[:2], 5).tolist() == [xxhash.xxh64_intdigest(b"the quick")]
    assert len(shingle_hashes([], 5)) == 0


@pytest.mark.parametrize("family", ["multiply_shift", "mersenne"])
def test_minhash_estimates_jaccard(family):
    rng = np.random.default_rng(1)
    a, b = permutations(256, 7, family)
    errors = []
    for target in (0.3, 0.5, 0.8, 0.95):
        base = rng.integers(0, 2**63, 2000, dtype=np.uint64)
        # |A & B| / |A | B| = target with |A| = |B| = 2000
        inter = int(round(2 * 2000 * target / (1 + target)))
        other = np.concatenate([base[:inter], rng.integers(0, 2**63, 2000 - inter, dtype=np.uint64)])
        sig = signatures(np.concatenate([base, other]), np.array([0, 2000, 4000]), a, b, family)
        errors.append(abs((sig[0] == sig[1]).mean() - inter / (4000 - inter)))
    assert max(errors) < 0.1 and np.mean(errors) < 0.05


def test_signatures_batch_equals_per_document():
    rng = np.random.default_rng(2)
    a, b = permutations(117, 1, "multiply_shift")
    docs = [rng.integers(0, 2**63, n, dtype=np.uint64) for n in (1, 5000, 0, 3, 2049)]
    offsets = np.cumsum([0] + [len(d) for d in docs])
    sig = signatures(np.concatenate(docs), offsets, a, b, "multiply_shift")
    for i, d in enumerate(docs):
        if len(d):
            expect = (d[:, None] * a[None, :] + b[None, :]).min(axis=0)
            assert (sig[i] == expect).all()
        else:
            assert (sig[i] == np.iinfo(np.uint64).max).all()


def test_band_keys_depend_on_band_and_values():
    sig = np.zeros((2, 6), dtype=np.uint64)
    sig[1, 3] = 9
    keys = band_keys(sig, 2, 3)
    assert keys[0, 0] == keys[1, 0]  # same first band
    assert keys[0, 1] != keys[1, 1]  # second band differs
    assert keys[0, 0] != keys[0, 1]  # equal values in two bands are two buckets


def test_invalid_lines_are_reported_in_place(tmp_path):
    path = tmp_path / "d.jsonl.gz"
    lines = [
        b'\xef\xbb\xbf{"id": "a", "text": "x", "source": "s"}',  # byte-order mark tolerated
        b"not json",
        b'{"id": "b", "source": "s"}',
        b'{"text": "no id", "source": "s"}',
        b"[1, 2]",
        b'{"id": 7, "text": "", "source": "s"}',
        b"\xff\xfe",
        b'{"id": "c", "text": "no source"}',
        b'{"id": true, "text": "bool id", "source": "s"}',
        b'{"id": "d", "text": "lone \\ud800 surrogate", "source": "s"}',
        b'{"id": "a", "text": "repeated id", "source": "s"}',
        b"",
        b'{"id": "e", "text": "last", "source": "s"}',
    ]
    with gzip.open(path, "wb") as f:
        f.write(b"\n".join(lines) + b"\n")
    docs = [(d["id"], d["text"]) if d else None for _, d in iter_documents(str(path))]
    assert docs == [("a", "x"), None, None, None, None, (7, ""), None, None, None, ("d", "lone \ufffd surrogate"), None,
                    None, ("e", "last")]  # a lone surrogate is replaced, not rejected (README, deviation 5)
    assert not parse_document(b'{"id": null, "text": "t", "source": "s"}', "f", 1).ok


def test_truncated_stream_stops_where_it_breaks(tmp_path):
    """Dedup sees the documents before the break, aligned by line; the reading stage (tag or
    select, through the same reader) reports the break as a rejected record."""
    path = tmp_path / "t.jsonl.gz"
    data = gzip.compress(b"".join(b'{"id": "%d", "text": "x", "source": "s"}\n' % i for i in range(1000)))
    path.write_bytes(data[: len(data) // 2])
    got = list(iter_documents(str(path)))
    assert 0 < len(got) < 1000
    assert [line for line, _ in got] == list(range(1, len(got) + 1))
    assert all(d is not None and d["id"] == str(i) for i, (_, d) in enumerate(got))


def test_atomic_writer_is_deterministic_and_leaves_no_temp(tmp_path):
    out = []
    for name in ("one.jsonl.gz", "two.jsonl.gz"):
        path = tmp_path / name
        with AtomicWriter(str(path)) as w:
            w.write_text('{"id":"a"}\n')
        out.append(path.read_bytes())
    assert out[0] == out[1]
    assert sorted(os.listdir(tmp_path)) == ["one.jsonl.gz", "two.jsonl.gz"]
    with pytest.raises(RuntimeError):
        with AtomicWriter(str(tmp_path / "three.jsonl.gz")) as w:
            w.write_text("x")
            raise RuntimeError("boom")
    assert sorted(os.listdir(tmp_path)) == ["one.jsonl.gz", "two.jsonl.gz"]


def _vector_tokens(s):
    from dolma_prep.dedup.text import TABLE_END, char_classes, token_bounds

    cp = np.frombuffer(s.encode("utf-32-le"), dtype=np.uint32)
    starts, ends = token_bounds(char_classes()[np.minimum(cp, TABLE_END)])
    return [s[a:b] for a, b in zip(starts, ends)]


def test_vectorised_ascii_tokens_equal_full_word_boundary_rules():
    rng = random.Random(1)
    alphabet = "abcXYZ019_ .,:;'\"-!?()[]\t\n\r\x0b\x0c\x1c\x00\x7f$%&*+/<=>@\\^`{|}~"
    cases = ["", "a", ".", "a.b", "1,000.5", "a.1", "1.a", "a..b", "don't", "'a'", "a:b:c", "x_1.y", " \t "]
    cases += ["".join(rng.choice(alphabet) for _ in range(rng.randint(0, 40))) for _ in range(4000)]
    for s in cases:
        assert _vector_tokens(s) == _full_uax29(s), repr(s)


def test_vectorised_tokens_of_text_without_slow_characters_equal_full_rules():
    from dolma_prep.dedup.text import SLOW, TABLE_END, char_classes

    classes = char_classes()
    # letters of several scripts, non-ASCII digits, middle marks (’ · ．), other punctuation,
    # ideographs, non-ASCII white space; then characters that need the full rules
    simple = "abZ09_.,:;' éßДжλالعربية日本中文’‘“”—…·٣０．＿\xa0\u3000\u2028\u2009\x85ŉ𝐀😀"
    slow = "\u0301\u200d\u05d0アｱ🇫\u00ad"
    assert all(classes[ord(c)] & SLOW == 0 for c in simple)
    assert all(classes[min(ord(c), TABLE_END)] & SLOW for c in slow + "\U00030000")
    rng = random.Random(2)
    for _ in range(6000):
        s = "".join(rng.choice(simple) for _ in range(rng.randint(0, 30)))
        assert _vector_tokens(s) == _full_uax29(s), repr(s)
    # every Word_Break class in the table agrees with the full rules between two letters/digits
    for c in map(chr, range(0x20, 0x3000)):
        if classes[ord(c)] & SLOW or 0xD800 <= ord(c) < 0xE000:
            continue
        for s in (f"a{c}b", f"1{c}2", f"{c}{c}", f"x {c}"):
            assert _vector_tokens(s) == _full_uax29(s), repr(s)


def _reference_keys(docs: str, p):
    """Paragraph dedup's table and keys computed paragraph by paragraph, the plain way."""
    from dolma_prep.dedup.paragraphs import _WHOLE_SEED
    from dolma_prep.dedup.text import str_hashes

    table, keys = [], []
    for line, (_, doc) in enumerate(iter_documents(docs)):
        text = doc["text"] if doc else None
        if not text:
            continue
        for start, end, par in paragraph_spans(text, p["paragraph_separator"]):
            if len(par) < p["min_length"] or (p["skip_empty"] and not par.strip(WHITE_SPACE)):
                continue
            tokens = dolma_tokens(par)
            if p["min_words"] > 0 and len(tokens) < p["min_words"]:
                continue
            windows = window_hashes(str_hashes(tokens), p["ngram_length"])
            kept = [w for i, w in enumerate(windows) if i == 0 or (i - 1) % p["stride"] == 0]  # dolma's stride rule
            if len(kept) < 2 and not p["skip_short_paragraphs"]:
                kept.append(str_hashes([par], _WHOLE_SEED)[0])
            table.append((line, start, end))
            keys.extend(int(k) for k in kept)
    return table, keys


ADVERSARIAL = [
    "Plain ASCII paragraph one with enough words to make several windows of thirteen tokens each, ok.\nShort.\n",
    "CRLF lines\r\nsecond line\r\n\r\nthird",
    "café au lait, naïve résumé — “quoted” text’s here\nand an ASCII paragraph after it",
    "日本語のテキスト。中文文本。\n한국어 텍스트\nعربي النص من اليمين إلى اليسار",
    "emoji 👩‍👩‍👧 family 🇫🇷 flag\ncombining e\u0301 marks\u0308",
    "lone \ud800 surrogate\nand \udfff another",
    "\xa0\u3000\n   \n\t\n\n",  # blank paragraphs, one of non-ASCII white space
    "\u202f\u202f\nx\u202fy z\n\u202f",  # U+202F: White_Space that joins words (ExtendNumLet)
    "Ελληνικά κείμενο, русский текст — “quotes” and don’t… ٣٤٥ ０．５ ·x·y",
    "é\n",  # the end-of-text quirk with a multi-byte character
    "",
    "NUL\x00inside\x00text and \x1c separators",
    "x" * 5000 + "\n" + "ab " * 2000,
    "a\n\nb\n\n\nc d e f\n\n",
    "|||IP_ADDRESS||| <|endoftext|> 3,000.5 don't a_b e.g. U.S.A.",
]


@pytest.mark.parametrize(
    "overrides",
    [
        {},
        {"ngram_length": 3, "stride": 3, "min_length": 5, "min_words": 2},
        {"ngram_length": 2, "skip_empty": False, "skip_short_paragraphs": True},
        {"ngram_length": 4, "paragraph_separator": "\n\n"},
        {"ngram_length": 3, "paragraph_separator": "e"},
    ],
)
def test_vectorised_paragraph_keys_equal_paragraph_by_paragraph(tmp_path, monkeypatch, overrides):
    from dolma_prep.core import io as pio
    from dolma_prep.dedup import paragraphs

    docs = list(ADVERSARIAL)
    for f in sorted((Path(__file__).resolve().parents[1] / "sample" / "documents").glob("*/*.jsonl.gz"))[:6]:
        with gzip.open(f, "rt", encoding="utf-8") as fh:
            docs += [json.loads(x)["text"] for x in fh][:40]
    src = tmp_path / "docs.jsonl"
    src.write_text("".join(json.dumps({"id": str(i), "text": t, "source": "s"}) + "\n" for i, t in enumerate(docs)))
    p = {**paragraphs.DEFAULTS, "bloom_partitions": 1, **overrides}
    monkeypatch.setattr(paragraphs, "_CHARS_PER_BATCH", 3000)  # many batches, documents across them
    r = paragraphs._stage_keys(0, str(src), str(tmp_path / "w"), p)
    meta = pio.load_npz(str(tmp_path / "w" / "paragraphs-0.npz"))
    got_table = list(zip(meta["line"].tolist(), meta["start"].tolist(), meta["end"].tolist()))
    got_keys = pio.load_npy(str(tmp_path / "w" / "keys-0-0.npy")).tolist()
    table, keys = _reference_keys(str(src), p)
    assert r["paragraphs"] == len(table) > 50
    assert got_table == table
    assert got_keys == keys
    assert len(set(keys)) > 10_000  # real, varied keys (not a constant hash)


def test_span_hashes_do_not_depend_on_the_batch_or_the_path():
    from dolma_prep.dedup.text import span_hashes, str_hashes

    words = ["the", "cat", "x" * 70, "é", "日本", "a_b"]
    alone = [int(str_hashes([w])[0]) for w in words]
    assert [int(h) for h in str_hashes(words)] == alone  # precomputed terms and mixed ones agree
    assert len(set(alone)) == len(alone)
    assert str_hashes(["ab"])[0] != str_hashes(["ba"])[0] and str_hashes(["a"])[0] != str_hashes(["a"], seed=1)[0]
    cp = np.frombuffer(b"xx the yy", dtype=np.uint8)
    assert int(span_hashes(cp, [3], [3])[0]) == alone[0]
