"""The bad-input suite: every kind of broken input gets a precise message naming file and
line, is counted and written to a rejects file with its reason, and the rest of the run
completes with exit code 3 (records rejected)."""
import gzip
import json
import random
import shutil
from pathlib import Path

import pytest
import zstandard
from conftest import read_gz_jsonl, run_cli

pytestmark = pytest.mark.slow  # one pipeline run on a local Ray, then reruns

GOOD = [{"id": f"g{i}", "source": "x", "text": f"A perfectly fine document number {i}, long enough to keep."} for i in range(3)]


def _lines(docs):
    return b"".join(json.dumps(d).encode() + b"\n" for d in docs)


def _gz(path: Path, data: bytes):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(data, mtime=0))


# kind -> (file name, bytes writer, expected rejects [(line, reason prefix)], documents kept)
def build(root: Path) -> dict:
    cases = {}

    def case(kind, name, data, rejects, kept, raw=False):
        path = root / kind / name
        path.parent.mkdir(parents=True, exist_ok=True)
        data = data.replace(b"perfectly fine", kind.encode())  # unique texts: exact dedup keeps them
        if raw:
            path.write_bytes(data)
        elif name.endswith(".gz"):
            _gz(path, data)
        elif name.endswith(".zst"):
            path.write_bytes(zstandard.ZstdCompressor().compress(data))
        else:
            path.write_bytes(data)
        cases[kind] = (path, rejects, kept)

    rnd = random.Random(1)
    big = [{"id": f"t{i}", "source": "x", "text": "".join(rnd.choice("abcdefgh ") for _ in range(3000))} for i in range(100)]
    blob = gzip.compress(_lines(big), mtime=0)
    case("truncated_gzip", "a.jsonl.gz", blob[: len(blob) // 2], [(None, "corrupt or truncated file")], None, raw=True)
    case("corrupt_zstd", "a.jsonl.zst", b"\x28\xb5\x2f\xfd" + b"\x00garbage" * 20, [(1, "corrupt or truncated file")], 0, raw=True)
    case("invalid_utf8", "a.jsonl.gz", _lines(GOOD[:1]) + b'{"id": "u", "source": "x", "text": "bad \xff byte"}\n' + _lines(GOOD[1:]),
         [(2, "invalid UTF-8")], 3)
    case("non_json", "a.jsonl.gz", _lines(GOOD[:2]) + b"this is not json\n" + _lines(GOOD[2:]), [(3, "not valid JSON")], 3)
    case("missing_id", "a.jsonl.gz", _lines(GOOD) + b'{"source": "x", "text": "no id here at all"}\n', [(4, "missing field 'id'")], 3)
    case("missing_text", "a.jsonl.gz", b'{"id": "m", "source": "x"}\n' + _lines(GOOD), [(1, "missing field 'text'")], 3)
    case("missing_source", "a.jsonl.gz", _lines(GOOD) + b'{"id": "m", "text": "no source field here"}\n',
         [(4, "missing field 'source'")], 3)
    case("text_not_string", "a.jsonl.gz", _lines(GOOD) + b'{"id": "n", "source": "x", "text": ["a", "list"]}\n',
         [(4, "field 'text' must be a string, found list")], 3)
    case("duplicate_ids", "a.jsonl.gz", _lines(GOOD) + _lines(GOOD[:1]), [(4, "duplicate id 'g0' within the file")], 3)
    case("empty_file", "a.jsonl", b"", [], 0)
    case("zero_byte_gz", "a.jsonl.gz", b"", [], 0, raw=True)
    case("nul_chars", "a.jsonl.gz", _lines(GOOD + [{"id": "z", "source": "x", "text": "nul \u0000 inside a document text"}]), [], 4)
    case("crlf", "a.jsonl.gz", _lines(GOOD).replace(b"\n", b"\r\n"), [], 3)
    case("bom", "a.jsonl", "\ufeff".encode() + _lines(GOOD), [], 3)
    # not rejected: read with U+FFFD in its place (README, deviation 5)
    case("lone_surrogate", "a.jsonl.gz", _lines(GOOD) + b'{"id": "s", "source": "x", "text": "half \\ud83d pair"}\n',
         [], 4)
    case("huge_document", "a.jsonl.gz", _lines(GOOD + [{"id": "huge", "source": "x",
                                                         "text": ("All work and no play makes Jack a dull boy. " * 1_200_000)}]), [], 4)
    return cases


@pytest.fixture(scope="module")
def bad_run(tmp_path_factory):
    base = tmp_path_factory.mktemp("bad")
    root = base / "documents"
    cases = build(root)
    lines = ["name: bad", "seed: 1", f"data_root: {root}", "taggers: [char_length_v1]", "dedup:", "  exact: {}", "sources:"]
    for kind, (_path, _, _) in cases.items():
        lines.append(f"  - {{name: {kind}, documents: ['{kind}/*']}}")
    (base / "mix.yaml").write_text("\n".join(lines) + "\n")
    out = base / "out"
    proc = run_cli("run", str(base / "mix.yaml"), "--output", str(out), "--workers", "2", "-q")
    return cases, out, proc


def test_at_least_15_kinds(bad_run):
    assert len(bad_run[0]) >= 15


def test_run_completes_with_exit_code_3_and_no_traceback(bad_run):
    cases, out, proc = bad_run
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    expected = sum(len(r) for _, r, _ in cases.values())
    assert f"{expected} bad input records were rejected" in proc.stderr
    assert json.loads((out / "manifest.json").read_text())["rejected"] == expected


@pytest.mark.parametrize("kind", ["truncated_gzip", "corrupt_zstd", "invalid_utf8", "non_json", "missing_id", "missing_text",
                                  "missing_source", "text_not_string", "duplicate_ids", "empty_file", "zero_byte_gz",
                                  "nul_chars", "crlf", "bom", "lone_surrogate", "huge_document"])
def test_each_kind(bad_run, kind):
    cases, out, _ = bad_run
    path, rejects, kept = cases[kind]
    rel = path.relative_to(path.parents[1])
    stem = str(rel).removesuffix(".gz").removesuffix(".zst")
    rej_file = out / "rejects" / "read" / (stem if stem.endswith(".jsonl") else stem + ".jsonl")
    got = [json.loads(line) for line in rej_file.read_text().splitlines()] if rej_file.exists() else []
    assert len(got) == len(rejects), got
    for r, (line, reason) in zip(got, rejects):
        assert r["file"] == str(path) and r["reason"].startswith(reason), r
        if line is not None:
            assert r["line"] == line
    m = json.loads((out / "manifest.json").read_text())["sources"][kind]
    if kept is not None:
        assert m["stages"]["read"]["documents"] == kept
        assert m["documents"] == kept  # every valid document made it to the token arrays
    else:  # truncated: the lines before the break are kept
        assert 0 < m["documents"] < 100


def test_misaligned_attribute_file_is_detected(bad_run, tmp_path):
    _, out, _ = bad_run
    copy = tmp_path / "out"
    shutil.copytree(out, copy)
    attr = copy / "attributes" / "dolma_prep" / "non_json" / "a.jsonl.gz"
    rows = read_gz_jsonl(attr)
    rows[0], rows[1] = rows[1], rows[0]
    _gz(attr, b"".join(json.dumps(r).encode() + b"\n" for r in rows))
    # as if the tag step had written it so (a rerun re-derives a file whose size differs from
    # what its marker recorded, which would repair the misalignment before select sees it)
    marker = copy / "_state" / "tag" / "non_json" / "a.jsonl.gz.json"
    m = json.loads(marker.read_text())
    m["_outputs"]["attributes/dolma_prep/non_json/a.jsonl.gz"] = attr.stat().st_size
    marker.write_text(json.dumps(m))
    for stage in ("select", "count", "tokenize"):
        shutil.rmtree(copy / "_state" / stage, ignore_errors=True)
    proc = run_cli("run", str(out.parent / "mix.yaml"), "--output", str(copy), "--workers", "1", "-q")
    assert proc.returncode == 3
    rej = [json.loads(line) for line in (copy / "rejects" / "select" / "non_json" / "a.jsonl").read_text().splitlines()]
    assert [r["line"] for r in rej] == [1, 2]
    assert all("misaligned" in r["reason"] and "a.jsonl.gz:" in r["reason"] for r in rej)
