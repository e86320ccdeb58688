"""`dolma-prep tokenize` / `decode`: the dolma tokens format, dtype choice, bad input, and the stage's
reading, special-token rules, writing and failure handling in-process (fast, no Ray)."""
import csv
import gzip
import json
import threading

import numpy as np
import pytest
from conftest import SAMPLE, TOKENIZER, run_cli, write_docs
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

from dolma_prep.core import io as pio
from dolma_prep.core.io import InputError
from dolma_prep.core.runtime import Shard
from dolma_prep.core.sampling import unit_hash
from dolma_prep.core.tokens import choose_dtype
from dolma_prep.pipeline.encoder import encode_block, encode_flat
from dolma_prep.pipeline.mixfile import TokenizerConfig
from dolma_prep.pipeline.sampling_rule import copies
from dolma_prep.pipeline.stages import tokenize as tk
from dolma_prep.pipeline.stages import tokenize_encode
from dolma_prep.pipeline.stages.common import Rejects
from dolma_prep.pipeline.stages.token_store import stored_paths, usable_store
from dolma_prep.pipeline.stages.tokenize import decode
from dolma_prep.pipeline.stages.tokenize_write import PartWriter


def _index(path):
    with gzip.open(path, "rt") as f:
        return list(csv.reader(f))


def test_dtype_choice():
    assert choose_dtype(50280) == np.uint16 and choose_dtype(65536) == np.uint16
    assert choose_dtype(65537) == np.uint32
    with pytest.raises(InputError, match="cannot hold a vocabulary of 70000"):
        choose_dtype(70000, "uint16")


@pytest.mark.slow  # the tokenize CLI starts a local Ray
def test_format_bos_eos_empty_and_rolling(tmp_path):
    docs = [{"id": f"d{i}", "source": "s", "text": f"  Document number {i} says hello.  "} for i in range(30)]
    docs.append({"id": "empty", "source": "s", "text": "   \n "})
    src = write_docs(tmp_path / "in" / "a.jsonl.gz", docs)
    out = tmp_path / "out"
    proc = run_cli("tokenize", "--documents", str(src), "--output", str(out), "--bos-token-id", "50279",
                   "--max-tokens-per-file", "40", "--workers", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    assert "1 empty documents skipped" in proc.stdout
    tok = Tokenizer.from_file(str(TOKENIZER))
    parts = sorted(out.glob("part-0-*.npy"))
    assert len(parts) > 3  # rolled at 40 tokens, documents never split
    seen = set()
    for p in parts:
        arr = np.fromfile(p, dtype=np.uint16)
        rows = _index(str(p)[:-4] + ".csv.gz")
        assert int(rows[-1][1]) == len(arr) and len(arr) <= 40 or len(rows) == 1
        for start, end, doc_id, s, loc in rows:
            ids = arr[int(start):int(end)].tolist()
            i = int(doc_id[1:])
            expect = tok.encode(f"Document number {i} says hello.", add_special_tokens=False).ids
            assert ids == [50279] + expect + [50279]  # BOS and EOS are the same id here: never doubled
            assert s == str(src) and int(loc) == i + 1
            seen.add(doc_id)
    assert seen == {f"d{i}" for i in range(30)}


@pytest.mark.slow  # the tokenize CLI starts a local Ray
def test_uint32_vocabulary_is_detected_and_uint16_refused(tmp_path):
    vocab = {f"w{i}": i for i in range(70000)}
    vocab["[UNK]"] = 70000
    big = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    big.pre_tokenizer = pre_tokenizers.Whitespace()
    big.save(str(tmp_path / "big.json"))
    src = write_docs(tmp_path / "a.jsonl.gz", [{"id": "1", "source": "s", "text": "w69999 w1"}])
    proc = run_cli("tokenize", "--documents", str(src), "--output", str(tmp_path / "o16"), "--tokenizer",
                   str(tmp_path / "big.json"), "--dtype", "uint16", "--eos-token-id", "0")
    assert proc.returncode == 2 and "cannot hold a vocabulary of 70001" in proc.stderr
    proc = run_cli("tokenize", "--documents", str(src), "--output", str(tmp_path / "o"), "--tokenizer",
                   str(tmp_path / "big.json"), "--eos-token-id", "0", "-q")
    assert proc.returncode == 0, proc.stderr
    assert np.fromfile(tmp_path / "o" / "part-0-00000.npy", dtype=np.uint32).tolist() == [69999, 1, 0]


@pytest.mark.slow  # the tokenize CLI starts a local Ray
def test_bad_records_are_counted_and_the_rest_written(tmp_path):
    src = write_docs(tmp_path / "a.jsonl.gz", [{"id": "ok", "source": "s", "text": "fine"}],
                     raw_lines=[b'{"id": "sur", "source": "s", "text": "a\\udc00b"}\n',  # read as "a\ufffdb"
                                b'{"id": "nul", "source": "s", "text": "a\\u0000b"}\n',
                                b'{"id": "nosrc", "text": "no source field"}\n'])
    proc = run_cli("tokenize", "--documents", str(src), "--output", str(tmp_path / "o"), "-q")
    assert proc.returncode == 3
    assert "a.jsonl.gz:4: missing field 'source'" in proc.stderr
    rows = _index(tmp_path / "o" / "part-0-00000.csv.gz")
    assert sorted(r[2] for r in rows) == ["nul", "ok", "sur"]


@pytest.mark.slow  # the tokenize CLI starts a local Ray
def test_decode_round_trips_every_source(tmp_path):
    tok = Tokenizer.from_file(str(TOKENIZER))
    files = sorted(SAMPLE.glob("*/0000.jsonl.gz"))
    out = tmp_path / "o"
    proc = run_cli("tokenize", "--documents", *map(str, files), "--output", str(out), "--workers", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    for i, f in enumerate(files):
        with gzip.open(f, "rt") as fh:
            docs = [json.loads(line) for line in fh]
        for k in range(len(_index(out / f"part-{i}-00000.csv.gz"))):
            row, text = decode(str(out / f"part-{i}-00000.npy"), k, str(TOKENIZER))
            doc = docs[row["loc"] - 1]
            assert row["id"] == doc["id"]
            assert text == tok.normalizer.normalize_str(doc["text"].strip()) + "<|endoftext|>", f.parent.name
    res = run_cli("decode", str(out / "part-0-00000.npy"), "--doc", "0", "--json", check=True)
    assert json.loads(res.stdout)["text"].endswith("<|endoftext|>")


# ---------------------------------------------------------------------------------------------
# in-process tests of the stage (no Ray): reading, dolma's special-token rules, writing, failures


def _tokenize(tmp_path, src, rule=tk.ALL, **cfg):
    tcfg = TokenizerConfig(path=str(cfg.pop("path", TOKENIZER)), **cfg)
    out = tmp_path / "out"
    rejects = Rejects({"output": str(out)}, "tokenize", Shard("", 0, str(src), "in.jsonl.gz"))
    stats = tk.tokenize_file(str(src), str(out), 0, tcfg, 3, "s", rule, str(src), rejects)
    rejects.commit()
    return out, stats, rejects


def _docs(out, dtype=np.uint16):
    """{id: (ids, loc)} through the indexes of every part file."""
    got = {}
    for p in sorted(out.glob("part-*.npy")):
        arr = np.fromfile(p, dtype=dtype)
        rows = _index(str(p)[:-4] + ".csv.gz")
        assert int(rows[-1][1]) == len(arr)
        for start, end, doc_id, _, loc in rows:
            got.setdefault(doc_id, []).append((arr[int(start):int(end)].tolist(), int(loc)))
    return got


def test_fast_reader_matches_io_read_documents(tmp_path):
    lines = [b'\xef\xbb\xbf{"id": "bom", "source": "s", "text": "with a BOM"}\n',
             b'{"id": "ok", "source": "s", "text": "plain"}\r\n', b"\n", b"   \n", b"not json\n", b"[1, 2]\n",
             b'{"id": "bom2", "source": "s", "text": "x"}\xef\xbb\xbf\n',
             b'\xef\xbb\xbf{"id": "late-bom", "source": "s", "text": "x"}\n',
             b'{"id": "nosrc", "text": "x"}\n', b'{"source": "s", "text": "x"}\n', b'{"id": "t", "source": "s"}\n',
             b'{"id": "t", "source": "s", "text": 5}\n', b'{"id": true, "source": "s", "text": "x"}\n',
             b'{"id": 1.5, "source": "s", "text": "x"}\n', b'{"id": 12, "source": "s", "text": "int id"}\n',
             b'{"id": "lone", "source": "s", "text": "a\\udc00b"}\n', b'{"id": "LONE", "source": "s", "text": "a\\uD800"}\n',
             b'{"id": "pair", "source": "s", "text": "a\\ud83d\\ude00b"}\n',
             b'{"id": "esc", "source": "s", "text": "\\\\udc00 is not an escape"}\n',
             b'{"id": "nul", "source": "s", "text": "a\\u0000b"}\n', b'{"id": "bad-utf8", "source": "s", "text": "\xff"}\n',
             b'{"id": "enc-surrogate", "source": "s", "text": "\xed\xa0\x80"}\n',
             b'{"id": "ok", "source": "s", "text": "duplicate id"}\n', b'{"id": "12", "source": "s", "text": "dup of 12"}\n',
             b'{"id": "nan", "source": "s", "text": "x", "score": NaN}\n',
             b'{"id": "last", "source": "s", "text": "no newline at the end"}']
    src = tmp_path / "a.jsonl"
    src.write_bytes(b"".join(lines))
    # the fast path of the one reader accepts exactly what the full check accepts, same records
    for n, raw in enumerate(lines, start=1):
        assert pio.parse_document(raw, "f", n) == pio.parse_document_checked(raw, "f", n), raw
    ours = [(r.line, r.doc, r.error, r.fatal) for r in pio.read_documents(str(src))]
    assert sum(1 for r in ours if r[2] is None) == 10 and len(ours) == len(lines)  # lone surrogates -> U+FFFD
    assert [r[1]["text"] for r in ours if r[1] and r[1]["id"] in ("lone", "LONE", "pair")] == ["a\ufffdb", "a\ufffd",
                                                                                       "a\U0001F600b"]
    assert [r[2] for r in ours if r[1] and str(r[1]["id"]) in ("ok", "12")] == [None, None]
    assert [r[2] for r in ours if r[0] in (23, 24)] == ["duplicate id 'ok' within the file",
                                                       "duplicate id '12' within the file"]
    gz = tmp_path / "b.jsonl.gz"
    gz.write_bytes(gzip.compress(b"".join(lines))[:-30])  # truncated: the stream breaks
    broken = list(pio.read_documents(str(gz)))
    assert broken[-1].fatal and [r.doc for r in broken[:-1]] == [r[1] for r in ours[:len(broken) - 1]]


def _dolma_reference(tok, text, eos, bos):
    """dolma 1.2.1 Tokenizer.encode(text, add_special_tokens=True), restated."""
    ids = tok.encode(text, add_special_tokens=False).ids
    if not ids:
        return ids
    if bos is not None and ids[0] != bos:
        ids.insert(0, bos)
    if eos is not None and ids[-1] != eos:
        ids.append(eos)
    return ids


@pytest.mark.parametrize("eos,bos", [(50279, None), (50279, 50279), (50279, 0), (None, 50279), (0, 1)])
def test_encode_flat_follows_dolma_special_token_rules(eos, bos):
    tok = Tokenizer.from_file(str(TOKENIZER))
    texts = ["hello", "<|endoftext|>", "x <|endoftext|>", "<|endoftext|> y", "|||IP_ADDRESS||| z", "<|padding|>",
             "a\u0000b", "w" * 5000, "e\u0301"] * 3
    flat, lens, errors = encode_flat(tok, texts, eos, bos)
    assert not errors and len(lens) == len(texts) and lens.sum() == len(flat)
    starts = np.cumsum(lens) - lens
    for t, s, n in zip(texts, starts, lens):
        assert flat[s:s + n].tolist() == _dolma_reference(tok, t, eos, bos), t
    blocks = encode_block(tok, texts, eos, bos)
    assert [b.tolist() for b in blocks] == [_dolma_reference(tok, t, eos, bos) for t in texts]


def _word_tokenizer(tmp_path, unk=True, size=400):
    vocab = {f"w{i}": i for i in range(size)}
    if unk:
        vocab["[UNK]"] = size
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]" if unk else None))
    tok.normalizer = normalizers.Replace("~", "")
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = tmp_path / ("tok.json" if unk else "tok-nounk.json")
    tok.save(str(path))
    return path


def test_empty_vanishing_and_refused_documents_are_counted_and_the_rest_written(tmp_path):
    path = _word_tokenizer(tmp_path, unk=False)
    docs = [{"id": "a", "source": "s", "text": " w1 w2 "}, {"id": "empty", "source": "s", "text": " \n "},
            {"id": "vanishes", "source": "s", "text": "~~ ~"}, {"id": "refused", "source": "s", "text": "w1 unknown"},
            {"id": "b", "source": "s", "text": "w3 ~w4~"}]
    # a lone surrogate is read as U+FFFD (README, deviation 5), which this vocabulary lacks
    src = write_docs(tmp_path / "a.jsonl.gz", docs, raw_lines=[b'{"id": "sur", "source": "s", "text": "\\udfff"}\n'])
    out, stats, rejects = _tokenize(tmp_path, src, path=path, eos_token_id=399)
    assert _docs(out) == {"a": [([1, 2, 399], 1)], "b": [([3, 4, 399], 5)]}
    assert stats["documents_in"] == 6 and stats["empty"] == 1 and stats["documents_out"] == 2
    assert stats["tokens"] == 6 == stats["tokens_unsampled"]
    reasons = {r["line"]: r["reason"] for r in rejects.items}
    assert reasons[3] == "text of 4 characters (after strip) tokenizes to no tokens; document skipped"
    assert reasons[4].startswith("the tokenizer refused the text (Exception: ") and "UNK" in reasons[4]
    assert reasons[6].startswith("the tokenizer refused the text (Exception: ") and len(reasons) == 3
    assert [r["raw"] for r in rejects.items if r["line"] in (3, 4)] == ["~~ ~", "w1 unknown"]


def test_special_ids_that_do_not_fit_the_dtype_are_refused(tmp_path):
    src = write_docs(tmp_path / "a.jsonl.gz", [{"id": "a", "source": "s", "text": "hello"}])
    with pytest.raises(InputError, match=r"eos_token_id 70000 does not fit dtype uint16 \(ids 0\.\.65,535\)"):
        _tokenize(tmp_path, src, eos_token_id=70000)
    with pytest.raises(InputError, match="bos_token_id -1 does not fit dtype uint16"):
        _tokenize(tmp_path, src, bos_token_id=-1)
    out, _, _ = _tokenize(tmp_path, src, eos_token_id=70000, dtype="uint32")
    assert _docs(out, np.uint32)["a"][0][0][-1] == 70000
    assert not list(tmp_path.rglob("*.tmp-*"))


def test_rolling_sampling_and_shuffle_in_blocks(tmp_path, monkeypatch):
    monkeypatch.setattr(tokenize_encode, "BLOCK", 7)  # several shuffle blocks
    tok = Tokenizer.from_file(str(TOKENIZER))
    docs = [{"id": f"d{i}", "source": "s", "text": "word " * (1 + i % 13)} for i in range(60)]
    src = write_docs(tmp_path / "a.jsonl.gz", docs)
    rule = {"whole": 1, "threshold": 0.5}
    out, stats, _ = _tokenize(tmp_path, src, rule, max_tokens_per_file=25)
    got = _docs(out)
    want = {d["id"]: copies(unit_hash(3, "s", d["id"]), rule) for d in docs}
    assert {k: len(v) for k, v in got.items()} == {k: n for k, n in want.items() if n}
    for i, d in enumerate(docs):
        for ids, loc in got.get(d["id"], []):
            assert ids == tok.encode(d["text"].strip()).ids + [50279] and loc == i + 1
    sizes = [len(np.fromfile(p, dtype=np.uint16)) for p in sorted(out.glob("part-0-*.npy"))]
    assert max(sizes) <= 25 and len(sizes) == len(list(out.glob("part-0-*.csv.gz"))) > 5
    assert stats["documents_out"] == sum(want.values()) and stats["documents_sampled"] == sum(1 for n in want.values() if n)
    assert stats["tokens"] == sum(sizes) and [f["tokens"] for f in stats["files"]] == sizes
    order = [r[2] for p in sorted(out.glob("part-0-*.csv.gz")) for r in _index(p)]
    assert order != sorted(order, key=lambda x: int(x[1:]))  # shuffled
    first = {p.name: p.read_bytes() for p in out.iterdir()}
    for p in out.iterdir():
        p.unlink()
    _tokenize(tmp_path, src, rule, max_tokens_per_file=25)
    assert {p.name: p.read_bytes() for p in out.iterdir()} == first  # deterministic


def test_a_document_longer_than_a_file_gets_a_file_of_its_own(tmp_path):
    docs = [{"id": "small", "source": "s", "text": "a b"}, {"id": "huge", "source": "s", "text": "word " * 100},
            {"id": "small2", "source": "s", "text": "c d"}]
    out, stats, _ = _tokenize(tmp_path, write_docs(tmp_path / "a.jsonl.gz", docs), max_tokens_per_file=10)
    per_file = [[r[2] for r in _index(p)] for p in sorted(out.glob("*.csv.gz"))]
    assert ["huge"] in per_file and sorted(sum(per_file, [])) == ["huge", "small", "small2"]


def test_a_failing_writer_stops_the_pipeline_and_leaves_no_temporaries(tmp_path, monkeypatch):
    docs = [{"id": f"d{i}", "source": "s", "text": f"document {i}"} for i in range(50)]
    src = write_docs(tmp_path / "a.jsonl.gz", docs)
    monkeypatch.setattr(tokenize_encode, "BLOCK", 5)
    real, calls = PartWriter.write_block, []

    def failing(self, *args):
        calls.append(1)
        if len(calls) == 3:
            raise OSError("disk full")
        return real(self, *args)

    monkeypatch.setattr(PartWriter, "write_block", failing)
    before = threading.active_count()
    with pytest.raises(OSError, match="disk full"):
        _tokenize(tmp_path, src, max_tokens_per_file=1000)
    assert threading.active_count() == before
    assert not [p for p in (tmp_path / "out").rglob("*") if p.is_file()]


def test_a_failing_reader_is_raised_in_the_task(tmp_path, monkeypatch):
    src = write_docs(tmp_path / "a.jsonl.gz", [{"id": "a", "source": "s", "text": "x"}])

    def boom(path):
        yield from ()
        raise RuntimeError("reader broke")

    monkeypatch.setattr(tokenize_encode, "read_blocks", boom)
    before = threading.active_count()
    with pytest.raises(RuntimeError, match="reader broke"):
        _tokenize(tmp_path, src)
    assert threading.active_count() == before


@pytest.mark.slow
def test_output_is_byte_identical_across_worker_counts(tmp_path):
    files = [str(p) for p in sorted(SAMPLE.glob("*/0000.jsonl.gz"))[:4]]
    outs = []
    for workers in ("1", "2"):
        out = tmp_path / f"w{workers}"
        run_cli("tokenize", "--documents", *files, "--output", str(out), "--workers", workers,
                "--max-tokens-per-file", "5000", "-q", check=True)
        outs.append({p.name: p.read_bytes() for p in out.glob("part-*")})
    assert outs[0] == outs[1] and len(outs[0]) > 8


def test_parquet_documents_tokenize_like_jsonl(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    docs = [{"id": f"d{i}", "source": "s", "text": f" parquet document {i} "} for i in range(20)]
    docs.append({"id": "d3", "source": "s", "text": "duplicate id"})
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "a.parquet")
    src = write_docs(tmp_path / "a.jsonl.gz", docs)
    a, sa, ra = _tokenize(tmp_path / "pq", tmp_path / "a.parquet")
    b, sb, rb = _tokenize(tmp_path / "js", src)
    assert _docs(a) == _docs(b) and len(_docs(a)) == 20
    assert [r["reason"] for r in ra.items] == [r["reason"] for r in rb.items] == ["duplicate id 'd3' within the file"]
    assert [r.line for r in pio.read_documents(str(tmp_path / "a.parquet"))] == list(range(1, 22))


# ---------------------------------------------------------------------------------------------
# tokenize once: the count step's stored ids give the bytes that encoding again gives


def _target_ctx(tmp_path, docs, raw_lines=()):
    """A token-target run's context over one kept file (written directly), with a sampling rule."""
    from dolma_prep.pipeline.mixfile import load_mix

    out = tmp_path / "out"
    kept = write_docs(out / "kept" / "s" / "0000.jsonl.gz", docs, raw_lines=list(raw_lines))
    mix = tmp_path / "mix.yaml"
    mix.write_text(f"name: once\nseed: 5\ndata_root: {tmp_path}\nexperiment: t\ntaggers: []\n"
                   "sources:\n  - {name: s, documents: ['in/*.jsonl.gz'], tokens: 300}\n")
    m = load_mix(str(mix), output=str(out))
    ctx = {"output": str(out), "work": str(out / "_work"), "mix": m.model_dump_json(),
           "sampling": {"s": {"whole": 0, "threshold": 0.6}}}
    return ctx, Shard("s", 0, str(kept), "s/0000.jsonl.gz")


def _tree(folder):
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_tokenize_from_the_count_steps_ids_equals_encoding_again(tmp_path, monkeypatch):
    from dolma_prep.pipeline.stages import count

    monkeypatch.setattr(tokenize_encode, "BLOCK", 6)  # several blocks: the shuffle is per block
    docs = [{"id": f"d{i}", "source": "s", "text": f" document {i} " + "word " * (i % 9)} for i in range(40)]
    docs[7]["text"] = "  \n "  # empty
    docs.insert(12, {"id": 99, "source": "s", "text": "an integer id"})
    bad = [b'{"id": "nosrc", "text": "no source field"}\n', b"not json\n",
           b'{"id": "late", "source": "s", "text": "after the bad lines"}\n']
    ctx, shard = _target_ctx(tmp_path, docs, bad)
    out, work = tmp_path / "out", tmp_path / "out" / "_work"
    counted = count.run_shard(shard, ctx)
    ids_path, meta_path = stored_paths(str(work), shard.rel)
    assert counted["documents_in"] == 41 and pio.exists(ids_path) and pio.exists(meta_path)
    assert counted["engine"].startswith("fastokens ") and counted["reference_documents"] == 0
    once = tk.run_shard(shard, ctx)
    assert once["encoded_by"] == "count" and not pio.exists(ids_path) and not pio.exists(meta_path)  # consumed
    first = {k: v for k, v in _tree(out).items() if not k.startswith("_work")}
    for p in list((out / "tokens").rglob("*")) + list((out / "rejects").rglob("*")):
        if p.is_file():
            p.unlink()
    again = tk.run_shard(shard, ctx)  # no stored ids now: reads and encodes, as the two-pass design did
    assert again["encoded_by"] == "tokenize"
    second = {k: v for k, v in _tree(out).items() if not k.startswith("_work")}
    assert first == second and any(k.startswith("tokens/s/part-0-") for k in first)
    drop = ("encoded_by", "_seconds")
    assert {k: v for k, v in once.items() if k not in drop} == {k: v for k, v in again.items() if k not in drop}
    assert once["rejected"] == 2 and 0 < once["documents_out"] < 41 and once["documents_in"] == 42
    # the count table the planner reads holds the lengths the arrays hold
    sizes = pio.read_parquet(count.count_path(ctx, shard))["tokens"].to_numpy()
    assert int(sizes.sum()) == once["tokens_unsampled"] and len(sizes) == 41


def test_stale_or_missing_stored_ids_are_not_used(tmp_path):
    from dolma_prep.pipeline.stages import count

    docs = [{"id": f"d{i}", "source": "s", "text": f"text {i}"} for i in range(10)]
    ctx, shard = _target_ctx(tmp_path, docs)
    count.run_shard(shard, ctx)
    assert usable_store(ctx, shard) is not None
    write_docs(tmp_path / "out" / "kept" / "s" / "0000.jsonl.gz", docs[:5])  # the kept file was rewritten
    assert usable_store(ctx, shard) is None
    assert tk.run_shard(shard, ctx)["documents_in"] == 5
    ids_path, _ = stored_paths(ctx["work"], shard.rel)
    count.run_shard(shard, ctx)
    pio.remove(ids_path)
    assert usable_store(ctx, shard) is None
    # same size, other bytes: the content key, not the size, decides
    kept = tmp_path / "out" / "kept" / "s" / "0000.jsonl.gz"
    count.run_shard(shard, ctx)
    assert usable_store(ctx, shard) is not None
    raw = bytearray(kept.read_bytes())
    raw[-9] ^= 0xFF  # one byte of the gzip trailer's CRC: same size, other content
    kept.write_bytes(bytes(raw))
    assert usable_store(ctx, shard) is None
    # other tokenizer settings (a changed mix) do not reuse ids made with the old ones
    write_docs(kept, docs[:5])
    count.run_shard(shard, ctx)
    assert usable_store(ctx, shard) is not None
    mix = json.loads(ctx["mix"])
    mix["tokenizer"]["eos_token_id"] = 0
    assert usable_store({**ctx, "mix": json.dumps(mix)}, shard) is None
