"""Tokenize stage: kept documents -> `tokens/<source>/part-<i>-<k:05d>.npy` + `.csv.gz`.

Format (REFERENCE.md section 4, as `dolma tokens` writes it): raw memmaps of token ids (no
header), uint16 when the vocabulary fits, else uint32; each document's text is stripped,
empty ones skipped (counted), EOS appended (BOS prepended if configured; neither doubled);
a document is never split across files; files roll over at `max_tokens_per_file`. The
`.csv.gz` index beside each array has one row per document, `start,end,id,src,loc`.

Sampling happens here: a document is written `whole + [u(id) < threshold]` times, u being a
seeded hash of its id and the rule coming from `plan.py` (a proportion or a token target).
Document order within a shard is shuffled in bounded blocks with a seeded RNG, so outputs
depend only on the input, config and seed, never on the number of workers.
"""
from __future__ import annotations

import csv
import io as _io
from functools import lru_cache

import numpy as np
import xxhash
from tokenizers import Tokenizer

from .. import io
from ..io import InputError
from ..runtime import Shard
from .common import Rejects, kept_path, mix_of

BLOCK = 4096  # documents per shuffle/encode block: bounds memory per task


@lru_cache(maxsize=4)
def load_tokenizer(path: str) -> Tokenizer:
    if io.is_remote(path) or path.endswith(".json"):
        if io.is_remote(path):
            return Tokenizer.from_str(io.read_text(path))
        return Tokenizer.from_file(path)
    return Tokenizer.from_pretrained(path)  # a hub id, where a hub is reachable


def choose_dtype(vocab_size: int, requested: str = "auto") -> np.dtype:
    fits16 = vocab_size <= 65536
    if requested == "auto":
        return np.dtype(np.uint16 if fits16 else np.uint32)
    if requested == "uint16" and not fits16:
        raise InputError(f"dtype uint16 cannot hold a vocabulary of {vocab_size} ids (max 65,536); use uint32 or auto")
    return np.dtype(requested)


def unit_hash(seed: int, source: str, doc_id) -> float:
    """A document's seeded position in [0, 1): decides sampling, identical everywhere."""
    return xxhash.xxh64_intdigest(f"{seed}\x1f{source}\x1f{doc_id}".encode("utf-8", "surrogatepass")) / 2.0**64


def copies(u: float, rule: dict) -> int:
    """How many times a document with hash u is written: whole + [u < threshold]."""
    return int(rule["whole"]) + (1 if u < rule["threshold"] else 0)


class PartWriter:
    """Writes one source shard's part files, rolling at `max_tokens`."""

    def __init__(self, out_dir: str, index: int, dtype: np.dtype, max_tokens: int):
        self.out_dir, self.index, self.dtype, self.max_tokens = out_dir, index, dtype, max_tokens
        self.k = -1
        self.files: list[dict] = []
        self._open_next()

    def _open_next(self) -> None:
        self.k += 1
        stem = io.join(self.out_dir, f"part-{self.index}-{self.k:05d}")
        self.npy = io.AtomicWriter(stem + ".npy")
        self.csv = io.AtomicWriter(stem + ".csv.gz")
        self.n_tokens = 0
        self.n_docs = 0
        self.stem = stem

    def _close(self) -> None:
        self.npy.commit()
        self.csv.commit()
        self.files.append({"stem": self.stem, "tokens": self.n_tokens, "documents": self.n_docs})

    def add(self, ids: np.ndarray, doc_id, src: str, loc: int) -> None:
        if self.n_docs and self.n_tokens + len(ids) > self.max_tokens:
            self._close()
            self._open_next()
        start = self.n_tokens
        self.npy.write(ids.astype(self.dtype, copy=False).tobytes())
        buf = _io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow([start, start + len(ids), doc_id, src, loc])
        self.csv.write(buf.getvalue().encode("utf-8"))
        self.n_tokens += len(ids)
        self.n_docs += 1

    def finish(self) -> list[dict]:
        if self.n_docs:
            self._close()
        else:  # never leave an empty part file behind
            self.npy.abort()
            self.csv.abort()
        return self.files


def encode_block(tok: Tokenizer, texts: list[str], eos: int | None, bos: int | None) -> list[np.ndarray]:
    """Token ids per text, with BOS/EOS added once; texts must already be stripped."""
    out = []
    for enc in tok.encode_batch_fast(texts, add_special_tokens=False) if hasattr(tok, "encode_batch_fast") \
            else tok.encode_batch(texts, add_special_tokens=False):
        ids = enc.ids
        if bos is not None and (not ids or ids[0] != bos):
            ids = [bos] + ids
        if eos is not None and (not ids or ids[-1] != eos):
            ids = ids + [eos]
        out.append(np.asarray(ids, dtype=np.uint32))
    return out


ALL = {"whole": 1, "threshold": 0.0}  # the sampling rule that keeps every document once


def tokenize_file(doc_path: str, out_dir: str, index: int, tcfg, seed: int, source: str, rule: dict,
                  src_label: str, rejects) -> dict:
    """Tokenize one documents file into `out_dir/part-<index>-<k:05d>.npy|csv.gz`."""
    tok = load_tokenizer(tcfg.path)
    dtype = choose_dtype(tok.get_vocab_size(with_added_tokens=True), tcfg.dtype)
    rng = np.random.Generator(np.random.PCG64([seed, xxhash.xxh32_intdigest(f"{source}/{index}".encode())]))
    writer = PartWriter(out_dir, index, dtype, tcfg.max_tokens_per_file)
    stats = {"documents_in": 0, "documents_sampled": 0, "documents_out": 0, "empty": 0, "tokens": 0,
             "tokens_unsampled": 0}

    def flush(block: list[tuple[int, dict]]) -> None:
        texts = [d["text"].strip() for _, d in block]
        nonempty = [i for i, t in enumerate(texts) if t]
        stats["empty"] += len(texts) - len(nonempty)
        encoded = encode_block(tok, [texts[i] for i in nonempty], tcfg.eos_token_id, tcfg.bos_token_id)
        items = []
        for i, ids in zip(nonempty, encoded):
            loc, doc = block[i]
            stats["tokens_unsampled"] += len(ids)
            n = copies(unit_hash(seed, source, doc["id"]), rule)
            if n:
                stats["documents_sampled"] += 1
            items.extend([(ids, doc["id"], loc)] * n)
        for j in rng.permutation(len(items)):
            ids, doc_id, loc = items[j]
            writer.add(ids, doc_id, src_label, loc)
            stats["documents_out"] += 1
            stats["tokens"] += len(ids)

    block: list[tuple[int, dict]] = []
    for rec in io.read_documents(doc_path):
        if not rec.ok:
            rejects.add(rec.path, rec.line, rec.error, rec.raw)
            continue
        stats["documents_in"] += 1
        block.append((rec.line, rec.doc))
        if len(block) >= BLOCK:
            flush(block)
            block = []
    if block:
        flush(block)
    stats["files"] = writer.finish()
    stats["dtype"] = dtype.name
    return stats


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    rejects = Rejects(ctx, "tokenize", shard)
    stats = tokenize_file(kept_path(ctx, shard), io.join(ctx["output"], "tokens", shard.source), shard.index,
                          mix.tokenizer, mix.seed, shard.source, ctx["sampling"][shard.source],
                          "kept/" + shard.rel, rejects)
    rejects.commit()
    dtype = stats.pop("dtype")
    stats["files"] = [{"path": io.relpath(f["stem"], ctx["output"]), "tokens": f["tokens"],
                       "documents": f["documents"], "dtype": dtype} for f in stats["files"]]
    stats.update(rejects.stats())
    return stats


def run_command_shard(shard: Shard, ctx: dict) -> dict:
    """`dolma-prep tokenize`: one input file -> `OUTPUT/part-<i>-<k>.npy|csv.gz` (src = input path)."""
    from ..mixfile import TokenizerConfig

    tcfg = TokenizerConfig.model_validate(ctx["tokenizer"])
    rejects = Rejects(ctx, "tokenize", shard)
    stats = tokenize_file(shard.path, ctx["output"], shard.index, tcfg, ctx["seed"], "", ALL, shard.path, rejects)
    rejects.commit()
    stats.pop("dtype")
    stats["files"] = [{"path": io.relpath(f["stem"], ctx["output"]), "tokens": f["tokens"]} for f in stats["files"]]
    stats.update(rejects.stats())
    return stats


def decode(npy_path: str, doc: int, tokenizer_path: str) -> tuple[dict, str]:
    """Row `doc` (0-based) of the index beside `npy_path` and its text, decoded."""
    import gzip

    index = npy_path[: -len(".npy")] + ".csv.gz"
    with gzip.open(index, "rt", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not 0 <= doc < len(rows):
        raise InputError(f"{index} holds {len(rows)} documents; --doc {doc} is out of range")
    end_all = int(rows[-1][1])
    size = io.file_size(npy_path)
    if end_all == 0 or size % end_all:
        raise InputError(f"{npy_path}: {size} bytes do not match the {end_all} tokens of its index")
    dtype = {2: np.uint16, 4: np.uint32}.get(size // end_all)
    if dtype is None:
        raise InputError(f"{npy_path}: {size // end_all} bytes per token; expected 2 (uint16) or 4 (uint32)")
    start, end, doc_id, src, loc = rows[doc]
    ids = np.memmap(npy_path, dtype=dtype, mode="r")[int(start):int(end)]
    text = load_tokenizer(tokenizer_path).decode(ids.tolist(), skip_special_tokens=False)
    return {"start": int(start), "end": int(end), "id": doc_id, "src": src, "loc": int(loc),
            "tokens": int(end) - int(start)}, text
