"""Lone UTF-16 surrogates (a `\\ud800`..`\\udfff` escape without its pair, possible in JSON
input): the document reader replaces each with U+FFFD in every string of the document, as
dolma's reader accepts such documents and UTF-8 cannot hold them (README, deviation 5)."""
import gzip
import json

from dolma_prep.core import io
from dolma_prep.pipeline.stages import tag

FFFD = "\N{REPLACEMENT CHARACTER}"
GRIN = "\N{GRINNING FACE}"  # U+1F600, the pair \ud83d\ude00

# raw JSON line -> the document the reader must give, written without the code under test
CASES = [
    (rb'{"id": "high", "source": "s", "text": "a\ud800b"}', {"id": "high", "source": "s", "text": "a" + FFFD + "b"}),
    (rb'{"id": "low", "source": "s", "text": "a\udc00b"}', {"id": "low", "source": "s", "text": "a" + FFFD + "b"}),
    (rb'{"id": "upper", "source": "s", "text": "\uDBFFx\uDFFF"}', {"id": "upper", "source": "s", "text": FFFD + "x" + FFFD}),
    (rb'{"id": "pair", "source": "s", "text": "a\ud83d\ude00b"}', {"id": "pair", "source": "s", "text": "a" + GRIN + "b"}),
    (rb'{"id": "PAIR", "source": "s", "text": "\uD83D\uDE00"}', {"id": "PAIR", "source": "s", "text": GRIN}),
    (rb'{"id": "reversed", "source": "s", "text": "\ude00\ud83d"}', {"id": "reversed", "source": "s", "text": FFFD + FFFD}),
    (rb'{"id": "high-then-a", "source": "s", "text": "\ud800\u0041"}', {"id": "high-then-a", "source": "s", "text": FFFD + "A"}),
    (rb'{"id": "pair-and-lone", "source": "s", "text": "\ud83d\ude00\ud83d"}',
     {"id": "pair-and-lone", "source": "s", "text": GRIN + FFFD}),
    (rb'{"id": "meta", "source": "s\udfff", "text": "fine", "metadata": {"url": "http://x/\ud800", "k\udc01": ["\udbff", 1]}}',
     {"id": "meta", "source": "s" + FFFD, "text": "fine", "metadata": {"url": "http://x/" + FFFD, "k" + FFFD: [FFFD, 1]}}),
    (rb'{"id": "id-\ud800", "source": "s", "text": "the id holds one"}', {"id": "id-" + FFFD, "source": "s", "text": "the id holds one"}),
    (rb'{"id": "escaped-backslash", "source": "s", "text": "\\ud800 is text"}',
     {"id": "escaped-backslash", "source": "s", "text": "\\" + "ud800 is text"}),
    (rb'{"id": "hangul", "source": "s", "text": "\ud55c"}', {"id": "hangul", "source": "s", "text": "\N{HANGUL SYLLABLE HAN}"}),
]


def test_lone_surrogates_become_u_fffd_in_every_string():
    for n, (raw, want) in enumerate(CASES, start=1):
        rec = io.parse_document(raw + b"\n", "f", n)
        assert rec.ok, (raw, rec.error)
        assert rec.doc == want, raw
        assert rec == io.parse_document_checked(raw + b"\n", "f", n), raw  # fast path == full check
        io.dumps(rec.doc).encode("utf-8")  # writable as UTF-8 downstream (raises if not)
        assert len(rec.doc["text"]) == len(want["text"])  # one for one: offsets hold


def test_encoded_surrogates_are_still_invalid_utf8():
    rec = io.parse_document(b'{"id": "x", "source": "s", "text": "\xed\xa0\x80"}\n', "f", 1)
    assert not rec.ok and rec.error.startswith("invalid UTF-8")


def test_a_decoded_record_is_cleaned_too():
    rec = io.validate_document({"id": "x", "source": "s", "text": "a\ud800", "metadata": {"m": ["\udc00"]}}, "f", 1)
    assert rec.ok and rec.doc == {"id": "x", "source": "s", "text": "a" + FFFD, "metadata": {"m": [FFFD]}}


def test_read_documents_on_jsonl_gz_rejects_nothing(tmp_path):
    path = tmp_path / "a.jsonl.gz"
    path.write_bytes(gzip.compress(b"".join(raw + b"\n" for raw, _ in CASES)))
    recs = list(io.read_documents(str(path)))
    assert [r.error for r in recs] == [None] * len(CASES)
    assert [r.doc for r in recs] == [want for _, want in CASES]
    assert [r.line for r in recs] == list(range(1, len(CASES) + 1))


def test_tag_stage_tags_them_without_a_reject(tmp_path):
    src = tmp_path / "ds" / "documents" / "a.jsonl.gz"
    src.parent.mkdir(parents=True)
    src.write_bytes(gzip.compress(b"".join(raw + b"\n" for raw, _ in CASES)))
    attr = tag.attributes_beside(str(src), "exp")
    (tmp_path / "ds" / "attributes" / "exp").mkdir(parents=True)
    stats = tag._tag_one(str(src), attr, [("char_length_v1", {})], "exp", [])
    assert stats["rejected"] == 0 and stats["documents_in"] == len(CASES) and stats["tagger_errors"] == 0
    with gzip.open(attr, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    assert [r["id"] for r in rows] == [want["id"] for _, want in CASES]
    lengths = [r["attributes"]["exp__char_length_v1__length"][0][2] for r in rows]
    assert lengths == [len(want["text"]) for _, want in CASES]


def test_deep_records_never_raise():
    for depth, ok in ((50, True), (990, None), (100_000, False)):  # 990: accepted or rejected by stack depth
        raw = b'{"id": "deep", "source": "s", "text": "\\ud800", "m": ' + b"[" * depth + b"]" * depth + b"}\n"
        rec = io.parse_document(raw, "f", 1)
        assert rec == io.parse_document_checked(raw, "f", 1)
        if rec.ok:
            assert rec.doc["text"] == FFFD
        else:
            assert rec.error in ("nested too deeply to replace lone UTF-16 surrogates", "not valid JSON: nested too deeply")
        assert ok is None or rec.ok == ok, depth
