"""Document I/O: formats, streaming, precise rejects, atomic writes."""
import gzip
import json
import random

import pytest
import zstandard

from dolma_prep.core import io

DOC = {"id": "a", "text": "hello", "source": "s"}


def _write(path, data: bytes):
    if str(path).endswith(".gz"):
        data = gzip.compress(data)
    elif str(path).endswith(".zst"):
        data = zstandard.ZstdCompressor().compress(data)
    path.write_bytes(data)
    return str(path)


@pytest.mark.parametrize("name", ["d.jsonl", "d.json.gz", "d.jsonl.gz", "d.jsonl.zst"])
def test_reads_every_format(tmp_path, name):
    lines = b"".join(json.dumps({**DOC, "id": str(i)}).encode() + b"\n" for i in range(3))
    recs = list(io.read_documents(_write(tmp_path / name, lines)))
    assert [r.doc["id"] for r in recs] == ["0", "1", "2"] and all(r.ok for r in recs)


@pytest.mark.parametrize("name", ["o.jsonl", "o.jsonl.gz", "o.jsonl.zst"])
def test_atomic_writer_roundtrip_and_no_temp_left(tmp_path, name):
    path = str(tmp_path / name)
    with io.AtomicWriter(path) as w:
        w.write_line(DOC)
    assert [r.doc for r in io.read_documents(path)] == [DOC]
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_writer_abort_leaves_nothing(tmp_path):
    with pytest.raises(RuntimeError):
        with io.AtomicWriter(str(tmp_path / "x.jsonl.gz")) as w:
            w.write_line(DOC)
            raise RuntimeError("boom")
    assert list(tmp_path.iterdir()) == []


def test_gzip_output_is_deterministic(tmp_path):
    for name in ("a.jsonl.gz", "b.jsonl.gz"):
        with io.AtomicWriter(str(tmp_path / name)) as w:
            w.write_line(DOC)
    assert (tmp_path / "a.jsonl.gz").read_bytes() == (tmp_path / "b.jsonl.gz").read_bytes()


@pytest.mark.parametrize("line,reason", [
    (b"{not json\n", "not valid JSON"),
    (b'{"id": "x", "source": "s"}\n', "missing field 'text'"),
    (b'{"text": "t", "source": "s"}\n', "missing field 'id'"),
    (b'{"id": "x", "text": "t"}\n', "missing field 'source'"),
    (b'{"id": "x", "text": 5, "source": "s"}\n', "field 'text' must be a string, found int"),
    (b'{"id": "x", "text": "\xff\xfe", "source": "s"}\n', "invalid UTF-8"),
    (b'[1, 2]\n', "expected a JSON object, found list"),
])
def test_bad_lines_are_rejected_with_line_numbers(tmp_path, line, reason):
    good = json.dumps(DOC).encode() + b"\n"
    path = _write(tmp_path / "d.jsonl.gz", good + line + json.dumps({**DOC, "id": "b"}).encode() + b"\n")
    recs = list(io.read_documents(path))
    assert [r.ok for r in recs] == [True, False, True]
    assert recs[1].line == 2 and reason in recs[1].error


def test_lone_surrogates_are_replaced_not_rejected(tmp_path):
    """README deviation 5; the cases in detail: tests/test_surrogates.py."""
    line = b'{"id": "x", "text": "a\\ud800b\\udc00", "source": "s"}\n'
    recs = list(io.read_documents(_write(tmp_path / "d.jsonl.gz", line)))
    assert [r.error for r in recs] == [None] and recs[0].doc["text"] == "a\ufffdb\ufffd"


def test_bom_crlf_and_nul_are_accepted(tmp_path):
    data = "\ufeff".encode() + json.dumps(DOC).encode() + b"\r\n" + json.dumps({**DOC, "id": "n", "text": "a\u0000b"}).encode() + b"\r\n"
    recs = list(io.read_documents(_write(tmp_path / "d.jsonl", data)))
    assert [r.ok for r in recs] == [True, True]
    assert recs[1].doc["text"] == "a\x00b"


def test_duplicate_ids_within_a_file(tmp_path):
    line = json.dumps(DOC).encode() + b"\n"
    recs = list(io.read_documents(_write(tmp_path / "d.jsonl", line * 2)))
    assert recs[1].error == "duplicate id 'a' within the file"


def test_truncated_gzip_keeps_lines_before_the_break(tmp_path):
    rnd = random.Random(0)
    lines = b"".join(json.dumps({**DOC, "id": str(i), "text": "".join(rnd.choice("abcdefgh ") for _ in range(2000))}).encode()
                     + b"\n" for i in range(200))
    blob = gzip.compress(lines)
    path = tmp_path / "t.jsonl.gz"
    path.write_bytes(blob[: len(blob) // 2])
    recs = list(io.read_documents(str(path)))
    assert recs[-1].fatal and "corrupt or truncated" in recs[-1].error
    good = [r for r in recs if r.ok]
    assert 0 < len(good) < 200 and good[0].doc["id"] == "0"


def test_corrupt_zstd_and_zero_byte_gz(tmp_path):
    (tmp_path / "c.jsonl.zst").write_bytes(b"\x28\xb5\x2f\xfd" + b"garbage" * 10)
    recs = list(io.read_documents(str(tmp_path / "c.jsonl.zst")))
    assert len(recs) == 1 and recs[0].fatal
    (tmp_path / "z.jsonl.gz").write_bytes(b"")
    assert list(io.read_documents(str(tmp_path / "z.jsonl.gz"))) == []


def test_streaming_reads_lazily(tmp_path):
    lines = b"".join(json.dumps({**DOC, "id": str(i)}).encode() + b"\n" for i in range(10000))
    it = io.read_documents(_write(tmp_path / "d.jsonl.gz", lines))
    first = next(it)
    assert first.doc["id"] == "0"  # a generator: nothing beyond the first block is parsed yet


def test_expand_globs_is_sorted_and_filters_suffixes(tmp_path):
    for n in ("b.jsonl.gz", "a.jsonl.gz", "notes.txt"):
        (tmp_path / "src").mkdir(exist_ok=True)
        (tmp_path / "src" / n).write_bytes(b"")
    got = io.expand_globs(str(tmp_path), ["src/*"])
    assert [p.rsplit("/", 1)[1] for p in got] == ["a.jsonl.gz", "b.jsonl.gz"]
    assert io.expand_globs(str(tmp_path), ["nothing/*.gz"]) == []
