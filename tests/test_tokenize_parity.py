"""Parity with the real tools, run from their own virtual environments as subprocesses.

- Tokens: every document's ids in our arrays (found through our .csv.gz indexes, matched by
  source file and id) equal those `dolma tokens` (dolma 1.2.1, .peer-venvs/dolma, built by
  scripts/setup_peer_dolma.sh) writes for the same files, tokenizer file and special ids.
- Reader: OLMo's own MemMapDataset and IterableDataset (PyPI ai2-olmo, .peer-venvs/olmo, built by
  scripts/setup_peer_olmo.sh) return the same instances, document boundaries and global order
  from our arrays as training/data.py does, at sequence lengths 2048 and 4096.

A missing peer venv skips these tests, unless DOLMA_PREP_REQUIRE_PEERS is set (then they fail).
"""
from __future__ import annotations

import csv
import gzip
import hashlib
import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, SAMPLE, TOKENIZER, run_cli, write_docs
from tokenizers import Tokenizer, models, normalizers, pre_tokenizers

pytestmark = pytest.mark.peer

PEERS = REPO / ".peer-venvs"
DOLMA_VENV = Path(os.environ.get("PEER_DOLMA_VENV", PEERS / "dolma"))
OLMO_VENV = Path(os.environ.get("PEER_OLMO_VENV", PEERS / "olmo"))
EOS, PAD = 50279, 1


def _peer(venv: Path, exe: str, script: str) -> Path:
    path = venv / "bin" / exe
    if not (path.exists() and (venv / ".dolma-prep-ready").exists()):
        msg = f"peer venv {venv} is missing or incomplete; build it with {script}"
        if os.environ.get("DOLMA_PREP_REQUIRE_PEERS"):
            pytest.fail(msg + " (DOLMA_PREP_REQUIRE_PEERS is set)")
        pytest.skip(msg)
    return path


def _dolma() -> Path:
    return _peer(DOLMA_VENV, "dolma", "scripts/setup_peer_dolma.sh")


def _olmo_python() -> Path:
    return _peer(OLMO_VENV, "python", "scripts/setup_peer_olmo.sh")


def run_dolma_tokens(docs: list[Path], dest: Path, tokenizer: Path, bos: int | None = None,
                     eos: int = EOS, processes: int = 2) -> None:
    cmd = [str(_dolma()), "tokens", "--documents", *map(str, docs), "--destination", str(dest),
           "--tokenizer.name_or_path", str(tokenizer), "--tokenizer.eos_token_id", str(eos),
           "--tokenizer.pad_token_id", str(PAD), "--processes", str(processes), "--seed", "0", "--dtype", "uint16"]
    if bos is not None:
        cmd += ["--tokenizer.bos_token_id", str(bos)]
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, f"dolma tokens exited {proc.returncode}\n{proc.stderr[-3000:]}"


def read_token_docs(folder: Path, dtype=np.uint16) -> dict[tuple[str, str], tuple[list[int], int]]:
    """{(src, id): (token ids, loc)} over every part file of a folder, through the indexes."""
    out: dict[tuple[str, str], tuple[list[int], int]] = {}
    for npy in sorted(folder.glob("*.npy")):
        arr = np.fromfile(npy, dtype=dtype)
        with gzip.open(str(npy)[:-4] + ".csv.gz", "rt", encoding="utf-8", newline="") as f:
            rows = list(csv.reader(f))
        assert not rows or int(rows[-1][1]) == len(arr), f"{npy}: index and array disagree"
        for start, end, doc_id, src, loc in rows:
            key = (os.path.realpath(src.removeprefix("file://")), doc_id)
            assert key not in out, f"{key} written twice"
            out[key] = (arr[int(start):int(end)].tolist(), int(loc))
    return out


def read_rejects(folder: Path) -> list[dict]:
    return [json.loads(line) for p in sorted(folder.glob("rejects/**/*.jsonl")) for line in p.read_text().splitlines()]


def compare(ours: dict, theirs: dict, allowed_only_ours=(), allowed_empty_theirs=()) -> None:
    only_theirs = set(theirs) - set(ours)
    only_ours = set(ours) - set(theirs)
    empty_theirs = {k for k in only_theirs if not theirs[k][0]}
    assert only_theirs == empty_theirs, f"documents dolma wrote and we did not: {sorted(only_theirs)[:5]}"
    assert {k[1] for k in empty_theirs} == set(allowed_empty_theirs)
    assert {k[1] for k in only_ours} == set(allowed_only_ours), f"documents only we wrote: {sorted(only_ours)[:5]}"
    bad = [k for k in set(ours) & set(theirs) if ours[k] != theirs[k]]
    assert not bad, (f"{len(bad)} of {len(set(ours) & set(theirs))} documents differ, e.g. {bad[0]}:\n"
                     f"ours   {ours[bad[0]][0][:40]} loc {ours[bad[0]][1]}\ndolma  {theirs[bad[0]][0][:40]} "
                     f"loc {theirs[bad[0]][1]}")


SAMPLE_FILES = sorted(SAMPLE.glob("*/000[01].jsonl.gz"))


@pytest.fixture(scope="module")
def our_sample_tokens(tmp_path_factory):
    """Our arrays for the bundled sample, the largest rolled at 50,000 tokens (rolling exercised,
    and files too short for one 4096-token instance)."""
    ours = tmp_path_factory.mktemp("parity") / "ours"
    run_cli("tokenize", "--documents", *map(str, SAMPLE_FILES), "--output", str(ours), "--workers", "2",
            "--max-tokens-per-file", "50000", "-q", check=True, timeout=900)
    return ours


def test_sample_tokens_equal_dolma_tokens(tmp_path):
    _dolma()
    run_cli("tokenize", "--documents", *map(str, SAMPLE_FILES), "--output", str(tmp_path / "ours"), "--workers", "2",
            "-q", check=True, timeout=900)
    run_dolma_tokens(SAMPLE_FILES, tmp_path / "dolma", TOKENIZER)
    ours, theirs = read_token_docs(tmp_path / "ours"), read_token_docs(tmp_path / "dolma")
    assert len(SAMPLE_FILES) == 34 and len(ours) > 900
    compare(ours, theirs)


EDGE_DOCS = [
    {"id": "nul", "text": "a\u0000b"},
    {"id": "whitespace-only", "text": "  \n\t \u00a0"},
    {"id": "eos-only", "text": "<|endoftext|>"},
    {"id": "eos-at-end", "text": "hello <|endoftext|>"},
    {"id": "eos-at-start", "text": "<|endoftext|> hi"},
    {"id": "pad-inside", "text": "pad <|padding|> and |||IP_ADDRESS|||"},
    {"id": "line-separators", "text": "line\u2028sep\u0085x\u2029y"},
    {"id": "unicode-space-strip", "text": "\u00a0\u3000 text \u2003\n"},
    {"id": "nfc", "text": "e\u0301 cafe\u0301 \ufb01"},
    {"id": "carriage-returns", "text": "a\rb\r\nc\n\n\n"},
    {"id": "astral", "text": "\U0001F600 ok \U00010348"},
    {"id": "surrogate-pair-escape", "text": "x\U0001F600y"},
    {"id": "spaces-runs", "text": "a" + " " * 40 + "b\t\t\tc"},
    {"id": "comma,quote\"id", "text": "an id that needs csv quoting"},
    {"id": "single-char", "text": "x"},
]


@pytest.mark.parametrize("bos", [None, EOS], ids=["eos", "bos=eos"])
def test_edge_cases_equal_dolma_tokens(tmp_path, bos):
    _dolma()
    docs = [{**d, "source": "edge"} for d in EDGE_DOCS]
    docs.append({"id": 7, "source": "edge", "text": "an integer id"})
    src = write_docs(tmp_path / "in" / "edge.jsonl.gz", docs,
                     raw_lines=[b'{"id": "lone-surrogate", "source": "edge", "text": "a\\udc00b"}\n', b"\n",
                                b'{"id": "after-blank", "source": "edge", "text": "after a blank line"}\n'])
    args = ["--bos-token-id", str(bos)] if bos is not None else []
    proc = run_cli("tokenize", "--documents", str(src), "--output", str(tmp_path / "ours"), "--workers", "1", "-q",
                   *args)
    assert proc.returncode == 3, proc.stderr  # the blank line is rejected; the lone surrogate is read as U+FFFD
    run_dolma_tokens([src], tmp_path / "dolma", TOKENIZER, bos=bos, processes=1)
    # dolma's msgspec decoder wants a string id and drops the integer one; we accept integer ids.
    # dolma writes no tokens for the lone-surrogate document (its tokenizer cannot take a lone
    # surrogate); ours tokenizes it with U+FFFD in its place (README, deviation 5)
    compare(read_token_docs(tmp_path / "ours"), read_token_docs(tmp_path / "dolma"),
            allowed_only_ours={"7", "lone-surrogate"})
    reasons = sorted(r["reason"] for r in read_rejects(tmp_path / "ours"))
    assert reasons == ["empty line"]


def test_document_tokenizing_to_nothing(tmp_path):
    """dolma writes a zero-length row (no EOS) for it; we set it aside as a counted bad record."""
    _dolma()
    vocab = {f"w{i}": i for i in range(400)}
    vocab["[UNK]"] = 400
    tok = Tokenizer(models.WordLevel(vocab, unk_token="[UNK]"))
    tok.normalizer = normalizers.Replace("~", "")
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    tok.save(str(tmp_path / "tok.json"))
    src = write_docs(tmp_path / "in" / "a.jsonl.gz", [{"id": "a", "source": "s", "text": "w1 w2"},
                                                      {"id": "vanishes", "source": "s", "text": "~ ~~"},
                                                      {"id": "b", "source": "s", "text": "w3 ~w4"}])
    proc = run_cli("tokenize", "--documents", str(src), "--output", str(tmp_path / "ours"), "--tokenizer",
                   str(tmp_path / "tok.json"), "--eos-token-id", "399", "--workers", "1", "-q")
    assert proc.returncode == 3
    assert "a.jsonl.gz:2: text of 4 characters (after strip) tokenizes to no tokens" in proc.stderr
    run_dolma_tokens([src], tmp_path / "dolma", tmp_path / "tok.json", eos=399, processes=1)
    compare(read_token_docs(tmp_path / "ours"), read_token_docs(tmp_path / "dolma"),
            allowed_empty_theirs={"vanishes"})


# ---------------------------------------------------------------------------------------------
# reader parity: OLMo's MemMapDataset vs training/data.py on our arrays

OLMO_DUMP = r"""
import hashlib, json, sys
import numpy as np
from olmo.data.memmap_dataset import MemMapDataset
from olmo.data.iterable_dataset import IterableDataset
spec = json.load(open(sys.argv[1]))
out = {}
for seq_len in spec["seq_lens"]:
    ds = MemMapDataset(*spec["paths"], chunk_size=seq_len, memmap_dtype=np.uint16, generate_doc_lengths=True,
                       eos_token_id=spec["eos"], include_instance_metadata=False)
    items = [ds[i] for i in range(len(ds))]
    orders = {}
    for world in (1, 2, 3):
        it = IterableDataset(ds, world * 4, seed=spec["seed"], epoch=1, shuffle=True, drop_last=True,
                             world_size=world, rank=0, fs_local_rank=0, work_dir=None)
        orders[str(world)] = it.get_global_indices().tolist()
    out[str(seq_len)] = {
        "offsets": [list(o) for o in ds.offsets],
        "hashes": [hashlib.sha256(x["input_ids"].numpy().astype("<i8").tobytes()).hexdigest() for x in items],
        "doc_lens": [x["doc_lens"].tolist() for x in items],
        "orders": orders,
    }
json.dump(out, open(sys.argv[2], "w"))
"""


def test_olmo_reads_our_arrays_like_training_data(tmp_path, request):
    from dolma_prep.training.data import MemMapDataset, TokenFile, global_indices

    py = _olmo_python()
    ours = request.getfixturevalue("our_sample_tokens")
    paths = sorted(ours.glob("part-*.npy"))
    assert len(paths) > len(SAMPLE_FILES)  # the largest rolled at 50,000 tokens
    spec = {"paths": [str(p) for p in paths], "seq_lens": [2048, 4096], "eos": EOS, "seed": 6198}
    (tmp_path / "spec.json").write_text(json.dumps(spec))
    (tmp_path / "dump.py").write_text(OLMO_DUMP)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    proc = subprocess.run([str(py), str(tmp_path / "dump.py"), str(tmp_path / "spec.json"), str(tmp_path / "out.json")],
                          capture_output=True, text=True, timeout=600, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    olmo = json.loads((tmp_path / "out.json").read_text())

    arrays = {p: np.fromfile(p, dtype=np.uint16) for p in paths}
    ends = {}
    for p in paths:
        with gzip.open(str(p)[:-4] + ".csv.gz", "rt", newline="") as f:
            ends[p] = np.array([int(r[1]) for r in csv.reader(f)])
    for seq_len in (2048, 4096):
        got = olmo[str(seq_len)]
        ds = MemMapDataset([TokenFile(p, "uint16") for p in paths], seq_len)
        assert len(ds) == len(got["hashes"]) > 150
        counts = [len(arrays[p]) // seq_len for p in paths]
        assert [b - a for a, b in got["offsets"]] == counts  # floor(n / seq_len) per file, remainder dropped
        assert any(len(arrays[p]) % seq_len for p in paths) and (seq_len < 4096 or 0 in counts)  # files too short too
        for i in range(len(ds)):
            ids = ds[i]["input_ids"]
            assert ids.dtype == np.int64 and len(ids) == seq_len
            assert hashlib.sha256(ids.astype("<i8").tobytes()).hexdigest() == got["hashes"][i], f"instance {i}"
            # OLMo's document lengths (split at EOS) are our index's document boundaries
            f, local = ds.locate(i)
            a = local * seq_len
            e = ends[paths[f]]
            inside = e[(e > a) & (e <= a + seq_len)] - a - 1
            bounds = np.concatenate([[-1], inside, [] if seq_len - 1 in inside else [seq_len - 1]])
            assert np.diff(bounds).tolist() == got["doc_lens"][i], f"instance {i}: document boundaries differ"
        for world, order in got["orders"].items():
            assert global_indices(len(ds), int(world), 6198, 1).tolist() == order, f"world size {world}"
