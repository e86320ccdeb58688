"""`dolma-prep tokenize` / `decode`: the dolma tokens format, dtype choice, bad input."""
import csv
import gzip
import json

import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers

from conftest import SAMPLE, TOKENIZER, run_cli, write_docs
from dolma_prep.pipeline.io import InputError
from dolma_prep.pipeline.stages.tokenize import choose_dtype, decode


def _index(path):
    with gzip.open(path, "rt") as f:
        return list(csv.reader(f))


def test_dtype_choice():
    assert choose_dtype(50280) == np.uint16 and choose_dtype(65536) == np.uint16
    assert choose_dtype(65537) == np.uint32
    with pytest.raises(InputError, match="cannot hold a vocabulary of 70000"):
        choose_dtype(70000, "uint16")


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


def test_bad_records_are_counted_and_the_rest_written(tmp_path):
    src = write_docs(tmp_path / "a.jsonl.gz", [{"id": "ok", "source": "s", "text": "fine"}],
                     raw_lines=[b'{"id": "sur", "source": "s", "text": "a\\udc00b"}\n',
                                b'{"id": "nul", "source": "s", "text": "a\\u0000b"}\n'])
    proc = run_cli("tokenize", "--documents", str(src), "--output", str(tmp_path / "o"), "-q")
    assert proc.returncode == 3
    assert "a.jsonl.gz:2: field 'text' holds lone UTF-16 surrogates" in proc.stderr
    rows = _index(tmp_path / "o" / "part-0-00000.csv.gz")
    assert sorted(r[2] for r in rows) == ["nul", "ok"]


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
