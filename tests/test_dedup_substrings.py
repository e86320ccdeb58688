"""Exact-substring dedup (suffix arrays) against a brute-force search: every substring of >= K
units that occurs twice in the corpus is found in all its occurrences, nothing else is marked.
The brute force counts every K-window of every document in a Python dict (the definition,
independent of suffix arrays and fingerprints)."""
from __future__ import annotations

import glob
import gzip
import json
import os
import random
from collections import Counter

import numpy as np
import pytest

ray = pytest.importorskip("ray")

from dolma_prep.core.io import InputError  # noqa: E402
from dolma_prep.dedup import substrings_merge as merge  # noqa: E402
from dolma_prep.dedup.substrings import run_substrings  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample", "documents")
TOKENIZER = os.path.join(ROOT, "pipeline", "resources", "allenai_gpt-neox-olmo-dolma-v1_5.json")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]  # conftest: a local Ray


# ----------------------------------------------------------------------------- helpers
def write_shard(path, docs, raw_lines=()):
    """docs: [(id, text)]; raw_lines: [(position, raw line)] inserted as they are (bad input)."""
    lines = [json.dumps({"id": i, "text": t, "source": "t"}, ensure_ascii=False) for i, t in docs]
    for pos, raw in raw_lines:
        lines.insert(pos, raw)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return str(path)


def read_attr(path, name="dup"):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        rows = [json.loads(line) for line in f]
    for r in rows:
        assert set(r) == {"id", "attributes"} and set(r["attributes"]) == {name}
    return [(r["id"], r["attributes"][name]) for r in rows]


def runs(flags):
    """Maximal runs of True as [start, end)."""
    out, start = [], None
    for i, f in enumerate(list(flags) + [False]):
        if f and start is None:
            start = i
        elif not f and start is not None:
            out.append((start, i))
            start = None
    return out


def brute_force_bytes(texts, k):
    """Per text: spans [start, end, 1] (characters) of the characters whose UTF-8 bytes all lie
    in some K-byte window that occurs at least twice in the corpus."""
    units = [t.encode("utf-8") for t in texts]
    count = Counter(u[i:i + k] for u in units for i in range(len(u) - k + 1))
    out = []
    for t, u in zip(texts, units):
        cov = [False] * len(u)
        for i in range(len(u) - k + 1):
            if count[u[i:i + k]] >= 2:
                cov[i:i + k] = [True] * k
        chars, b = [], 0
        for ch in t:
            n = len(ch.encode("utf-8"))
            chars.append(all(cov[b:b + n]))
            b += n
        out.append([[s, e, 1] for s, e in runs(chars)])
    return out


def brute_force_tokens(texts, k):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(TOKENIZER)
    encs = [tok.encode(t, add_special_tokens=False) for t in texts]
    ids = [tuple(e.ids) for e in encs]
    count = Counter(x[i:i + k] for x in ids for i in range(len(x) - k + 1))
    out = []
    for e, x in zip(encs, ids):
        cov = [False] * len(x)
        for i in range(len(x) - k + 1):
            if count[x[i:i + k]] >= 2:
                cov[i:i + k] = [True] * k
        out.append([[e.offsets[a][0], e.offsets[b - 1][1], 1] for a, b in runs(cov)])
    return out


def run_and_read(tmp_path, shards_docs, k, **params):
    """Write each shard's docs, run, return [[spans per line] per shard] and the stats."""
    pairs = []
    for i, docs in enumerate(shards_docs):
        d = write_shard(tmp_path / "documents" / f"{i:03d}.jsonl.gz", docs)
        pairs.append((d, str(tmp_path / "attributes" / f"{i:03d}.jsonl.gz")))
    stats = run_substrings(pairs, "dup", str(tmp_path / "work"), min_length=k, **params)
    got = []
    for (_, o), docs in zip(pairs, shards_docs):
        rows = read_attr(o)
        assert [r[0] for r in rows] == [i for i, _ in docs]
        got.append([r[1] for r in rows])
    return got, stats


def split_like(flat, shards_docs):
    out, i = [], 0
    for docs in shards_docs:
        out.append(flat[i:i + len(docs)])
        i += len(docs)
    return out


# ----------------------------------------------------------------------------- hand-made cases
def test_hand_computed_spans(tmp_path):
    """Expected values worked out by hand (K = 8 bytes)."""
    docs = [[("a", "xxABCDEFGHyy"), ("b", "zzABCDEFGHww"), ("c", "short"), ("d", "")],
            [("e", "qqqq0123456789qqqq0123456789"),  # one 14-char substring twice, touching: one span
             ("f", "é中ABCDEFGH中é")]]  # bytes 5..13 are ABCDEFGH: characters 2..10
    got, stats = run_and_read(tmp_path, docs, 8, part_size=1 << 20)
    assert got == [[[[2, 10, 1]], [[2, 10, 1]], [], []],
                   [[[0, 28, 1]], [[2, 10, 1]]]]
    assert stats["parts"] == 1 and stats["documents"] == 6
    assert stats["documents_with_duplicates"] == 4


@pytest.mark.parametrize("part_size,verify", [(1 << 20, "fingerprints"), (16, "fingerprints"), (5, "units")])
def test_brute_force_edge_cases(tmp_path, part_size, verify):
    """Multi-byte UTF-8 (2-, 3- and 4-byte characters, a duplicate that starts inside a
    character), documents shorter than K, a substring repeated inside one document (also
    overlapping itself), empty texts, invalid lines; one part and many parts."""
    k = 9
    shards_docs = [
        [("1", "The licence text, verbatim."), ("2", "ab"), ("3", ""), ("4", "日本語のテキスト日本語のテキスト")],
        [("5", "prefix The licence text, verbatim. suffix"), ("6", "abababababababab"),
         ("7", "😀😀😀 emoji 😀😀😀"), ("8", "x日本語のテキ")],
        [("9", "no repeats here at all, really"), ("10", "中日本語のテキスト中"), ("11", "ﬁ😀😀 emoji 😀x")],
    ]
    expect = split_like(brute_force_bytes([t for docs in shards_docs for _, t in docs], k), shards_docs)
    assert sum(bool(s) for sh in expect for s in sh) >= 6  # the case is not trivial
    got, stats = run_and_read(tmp_path, shards_docs, k, part_size=part_size, verify=verify)
    assert got == expect
    if part_size < 100:
        assert stats["parts"] > 1 and stats["cross_part_windows"] > 0


def test_invalid_lines_get_empty_spans(tmp_path):
    d = write_shard(tmp_path / "documents" / "0.jsonl.gz", [("a", "0123456789abc"), ("b", "0123456789xyz")],
                    raw_lines=[(1, "not json"), (3, json.dumps({"id": "c", "text": 5, "source": "t"}))])
    o = str(tmp_path / "attributes" / "0.jsonl.gz")
    stats = run_substrings([(d, o)], "dup", str(tmp_path / "work"), min_length=10)
    assert read_attr(o) == [("a", [[0, 10, 1]]), (None, []), ("b", [[0, 10, 1]]), (None, [])]
    assert stats["invalid_lines"] == 2 and stats["documents"] == 2


@pytest.mark.parametrize("part_size,buckets,verify", [(1 << 20, None, "fingerprints"), (97, None, "fingerprints"),
                                                      (97, 3, "units"), (401, 1, "units")])
def test_brute_force_random_corpus(tmp_path, part_size, buckets, verify):
    """Random texts over a small alphabet (with multi-byte letters): many repeats of every
    length around K, within and across documents and parts."""
    rng = random.Random(3)
    alphabet = "ab é中😀\n"
    shards_docs = [[(f"{s}-{i}", "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 60))))
                    for i in range(12)] for s in range(4)]
    k = 11
    expect = split_like(brute_force_bytes([t for docs in shards_docs for _, t in docs], k), shards_docs)
    assert sum(len(s) for sh in expect for s in sh) > 20
    got, stats = run_and_read(tmp_path, shards_docs, k, part_size=part_size, buckets=buckets, verify=verify)
    assert got == expect


def test_same_bytes_at_one_and_two_workers(tmp_path):
    rng = random.Random(11)
    docs = [(str(i), "".join(rng.choice("abé") for _ in range(rng.randint(0, 80)))) for i in range(60)]
    outs = []
    for w in (1, 2):
        pairs = []
        for s in range(3):
            d = write_shard(tmp_path / "documents" / f"{s}.jsonl.gz", docs[20 * s:20 * (s + 1)])
            pairs.append((d, str(tmp_path / f"w{w}" / f"{s}.jsonl.gz")))
        run_substrings(pairs, "dup", str(tmp_path / f"work{w}"), min_length=12, part_size=300, workers=w)
        outs.append([open(o, "rb").read() for _, o in pairs])
    assert outs[0] == outs[1]
    assert sum(gzip.decompress(f).count(b"[[") for f in outs[0]) > 10


def test_brute_force_tokens(tmp_path):
    from tokenizers import Tokenizer

    # the offsets that both sides use are character offsets (not UTF-8 byte offsets)
    t = " naïve café 日本 😀"
    assert Tokenizer.from_file(TOKENIZER).encode(t, add_special_tokens=False).offsets[-1][1] == len(t) != len(t.encode())
    rng = random.Random(5)
    words = [" the", " 日本", " café", "\n", " 😀", "naïve"]
    shards_docs = [[(f"{s}-{i}", "".join(rng.choice(words) for _ in range(rng.randint(0, 30)))) for i in range(10)]
                   for s in range(3)]
    k = 5
    expect = split_like(brute_force_tokens([t for docs in shards_docs for _, t in docs], k), shards_docs)
    assert sum(len(s) for sh in expect for s in sh) > 10
    for part_size in (1 << 20, 53):
        got, stats = run_and_read(tmp_path / str(part_size), shards_docs, k, unit="tokens", part_size=part_size)
        assert got == expect
        assert stats["unit"] == "tokens" and (stats["parts"] > 1) == (part_size == 53)


def test_verification_rejects_fingerprint_collisions(tmp_path):
    """Two parts whose distinct windows share a fingerprint (a forced collision) are candidates
    but not duplicates with verify="units": round 5 compares the units and confirms only the
    real match."""
    work = str(tmp_path)
    from dolma_prep.core import io

    def records(fp2, pos):
        r = np.zeros(len(pos), merge.FP_RECORD)
        r["fp"], r["fp2"], r["pos"] = 7, fp2, pos
        return r.tobytes()

    # part 0: windows w0 (at 0), w1 (at 1); part 1: windows w0 (at 0), w2 (at 1); all fp = (7, 9)
    # part 2: one window with fp (7, 8): same first half, not a candidate
    for p in range(2):
        io.write_bytes_atomic(os.path.join(work, f"fp-{p}-0.bin"), records([9, 9], [0, 1]))
    io.write_bytes_atomic(os.path.join(work, "fp-2-0.bin"), records([8], [0]))
    res = merge.stage_candidates(0, work, 3, "units")
    assert res == {"cross_part_keys": 1, "candidate_windows": 4}
    assert io.load_npy(os.path.join(work, "cand-0-2.npy")).tolist() == []
    w = {0: [b"ABCD", b"ABCE"], 1: [b"ABCD", b"ZZZZ"]}
    for p in range(2):
        io.save_npz(os.path.join(work, f"win-{p}-0.npz"), rep=np.array([0, 1]),
                    win=np.frombuffer(b"".join(w[p]), np.uint8).reshape(2, 4))
    res = merge.stage_verify(0, work, 2)  # parts 0 and 1 only: part 2 had no candidate
    assert res == {"confirmed_windows": 2, "fingerprint_collisions": 2}
    for p in range(2):
        assert io.load_npy(os.path.join(work, f"conf-0-{p}.npy")).tolist() == [0]


def test_fingerprints_equal_for_equal_windows(tmp_path):
    """The fingerprint records of round 2: equal windows <-> equal 128-bit fingerprints (on a
    4-letter text every 40-unit window here is distinct or an exact repeat), each record in the
    bucket its first half names, every marked position written once."""
    from dolma_prep.core import io

    rng = np.random.default_rng(0)
    seq = rng.integers(0, 4, size=(1 << 21) + 300).astype(np.uint8)  # crosses chunk boundaries
    seq[5000:5100] = seq[(1 << 20) - 50:(1 << 20) + 50]  # a repeat across a chunk boundary
    k = 40
    is_rep = np.zeros(len(seq), bool)
    is_rep[rng.integers(0, len(seq) - k, size=5000)] = True
    is_rep[[5000, (1 << 20) - 50, 5010, (1 << 20) - 40]] = True
    merge.write_fingerprints(seq, is_rep, k, 3, str(tmp_path), 0)
    by_fp, by_win, seen = {}, {}, []
    for b in range(3):
        recs = np.frombuffer(io.read_bytes(str(tmp_path / f"fp-0-{b}.bin")), merge.FP_RECORD)
        assert (merge.bucket_of(recs["fp"].copy(), 3) == b).all()
        for f, f2, p in zip(recs["fp"].tolist(), recs["fp2"].tolist(), recs["pos"].tolist()):
            win = seq[p:p + k].tobytes()
            assert by_fp.setdefault((f, f2), win) == win
            assert by_win.setdefault(win, (f, f2)) == (f, f2)
            seen.append(p)
    assert sorted(seen) == np.flatnonzero(is_rep).tolist()
    assert len({f for f, _ in by_fp}) == len(by_fp)  # no collision of the first half either


def test_bad_parameters(tmp_path):
    d = write_shard(tmp_path / "d.jsonl.gz", [("a", "x")])
    pairs = [(d, str(tmp_path / "a.jsonl.gz"))]
    # the same typed options as a mix file's `dedup: {substrings: ...}` (pipeline/mixfile.py)
    for bad, where in [(dict(unit="words"), r"unit: Input should be 'bytes' or 'tokens'; found 'words'"),
                       (dict(min_length=0), r"min_length: Input should be greater than or equal to 1; found 0"),
                       (dict(buckets=0), r"buckets: Input should be greater than or equal to 1; found 0"),
                       (dict(verify="bytes"), r"verify: Input should be 'fingerprints' or 'units'; found 'bytes'"),
                       (dict(threshold=0.5), r"threshold: unknown key \(typo\?\).* known keys: attribute, min_length")]:
        with pytest.raises(InputError, match=r"run_substrings: invalid options \(1 error\)\n  - " + where):
            run_substrings(pairs, "dup", str(tmp_path / "w"), **bad)
    assert not (tmp_path / "w").exists()  # refused before any work


# ----------------------------------------------------------------------------- bundled sample
PLANTED = ("Redistribution of this page is permitted under the Example Licence, version 3 - "
           "naïve café 日本語 text 😀 included - provided this notice stays intact and unaltered. ")


def planted_sample(dst):
    """A copy of three sources of the bundled sample with PLANTED inserted in 3 documents (at the
    start, middle and end of the text), in different shards."""
    plants = {}
    for src in ("c4", "wiki", "pes2o"):
        for f in sorted(glob.glob(os.path.join(SAMPLE, src, "*.jsonl.gz"))):
            docs = [json.loads(line) for line in gzip.open(f, "rt", encoding="utf-8")]
            rel = os.path.relpath(f, SAMPLE)
            if rel in ("c4/0000.jsonl.gz", "wiki/0001.jsonl.gz", "pes2o/0000.jsonl.gz"):
                j = {"c4": 3, "wiki": 4, "pes2o": 0}[src]
                t = docs[j]["text"]
                at = {"c4": 0, "wiki": len(t) // 2, "pes2o": len(t)}[src]
                docs[j]["text"] = t[:at] + PLANTED + t[at:]
                plants[docs[j]["id"]] = (at, at + len(PLANTED))
            out = os.path.join(dst, rel)
            os.makedirs(os.path.dirname(out), exist_ok=True)
            with gzip.open(out, "wt", encoding="utf-8") as g:
                g.write("".join(json.dumps(d, ensure_ascii=False) + "\n" for d in docs))
    return plants


def test_planted_spans_in_sample_and_brute_force(tmp_path):
    plants = planted_sample(tmp_path / "documents")
    files = sorted(glob.glob(str(tmp_path / "documents" / "*" / "*.jsonl.gz")))
    pairs = [(f, f.replace("/documents/", "/attributes/")) for f in files]
    k = 50
    stats = run_substrings(pairs, "dup", str(tmp_path / "work"), min_length=k, part_size=150_000, workers=2)
    assert stats["parts"] > 3
    texts, ids, got = [], [], []
    for d, o in pairs:
        docs = [json.loads(line) for line in gzip.open(d, "rt", encoding="utf-8")]
        rows = read_attr(o)
        assert [r[0] for r in rows] == [x["id"] for x in docs]
        texts += [x["text"] for x in docs]
        ids += [x["id"] for x in docs]
        got += [r[1] for r in rows]
    for doc_id, (a, e) in plants.items():
        spans = got[ids.index(doc_id)]
        assert any(s <= a and e <= t for s, t, _ in spans), (doc_id, spans)
    assert got == brute_force_bytes(texts, k)
    assert stats["duplicate_span_chars"] == sum(e - s for spans in got for s, e, _ in spans)


# ----------------------------------------------------------------------------- command line and mix file
def test_cli_dedup_substrings(tmp_path):
    from conftest import run_cli

    docs = [("a", "xxABCDEFGHIJyy"), ("b", "short"), ("c", "zzABCDEFGHIJww")]
    d = write_shard(tmp_path / "ds" / "documents" / "s" / "0000.jsonl.gz", docs)
    proc = run_cli("dedup", "substrings", "--documents", str(tmp_path / "ds" / "documents" / "*" / "*.jsonl.gz"),
                   "--attribute", "dup", "--min-length", "10", "--workers", "1", check=True)
    assert json.loads(proc.stdout)["duplicate_spans"] == 2
    assert read_attr(d.replace("/documents/", "/attributes/dup/")) == [("a", [[2, 12, 1]]), ("b", []),
                                                                        ("c", [[2, 12, 1]])]
    bad = run_cli("dedup", "substrings", "--documents", d, "--attribute", "dup", "--min-length", "0", "--workers", "1")
    assert bad.returncode == 2 and "min_length: Input should be greater than or equal to 1; found 0" in bad.stderr  # the typed options


def test_mix_file_substrings_span_replacement_and_stats(tmp_path):
    from conftest import run_cli

    plants = planted_sample(tmp_path / "data")
    mix = tmp_path / "mix.yaml"
    mix.write_text(f"""name: substr
seed: 1
data_root: {tmp_path / 'data'}
dedup:
  substrings: {{min_length: 50, part_size: 150000}}
span_replacement:
  - {{attribute: duplicate_substring_spans, replacement: ""}}
sources:
  - {{name: c4, documents: ['c4/*.jsonl.gz']}}
  - {{name: wiki, documents: ['wiki/*.jsonl.gz']}}
  - {{name: pes2o, documents: ['pes2o/*.jsonl.gz']}}
""")
    out = tmp_path / "out"
    run_cli("run", str(mix), "--output", str(out), "--workers", "2", "-q", check=True)
    removed = Counter()
    seen_plants = 0
    for src in ("c4", "wiki", "pes2o"):
        for f in sorted(glob.glob(str(out / "kept" / src / "*.jsonl.gz"))):
            orig = {d["id"]: d["text"] for d in map(json.loads, gzip.open(f.replace(str(out / "kept"),
                                                                                str(tmp_path / "data")), "rt"))}
            for d in map(json.loads, gzip.open(f, "rt", encoding="utf-8")):
                assert PLANTED.strip() not in d["text"]
                removed[src] += len(orig[d["id"]]) - len(d["text"])
                seen_plants += d["id"] in plants
    assert seen_plants == 3 and all(removed[s] >= len(PLANTED) for s in ("c4", "wiki", "pes2o"))
    stats = json.loads(run_cli("stats", str(out), "--json", check=True).stdout)
    for src in ("c4", "wiki", "pes2o"):
        row = next(r for r in stats["sources"][src]["funnel"] if r["stage"] == "filtered")
        assert row["chars_replaced"] == removed[src]
        assert row["chars_replaced_by"] == {"duplicate_substring_spans": removed[src]}
    assert stats["dedup"]["substrings"]["parts"] > 1
    text = run_cli("stats", str(out), check=True).stdout
    assert f"span replacement: {removed['wiki']:,} chars (duplicate_substring_spans: {removed['wiki']:,})" in text
    run_cli("report", str(out), "--html", str(tmp_path / "report.html"), check=True)
    html = (tmp_path / "report.html").read_text(encoding="utf-8")
    assert f"span replacement: {removed['c4']:,} chars (duplicate_substring_spans: {removed['c4']:,})" in html
