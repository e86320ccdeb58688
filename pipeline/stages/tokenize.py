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


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    tcfg = mix.tokenizer
    tok = load_tokenizer(tcfg.path)
    dtype = choose_dtype(tok.get_vocab_size(with_added_tokens=True), tcfg.dtype)
    rule = ctx["sampling"][shard.source]
    rng = np.random.Generator(np.random.PCG64([mix.seed, xxhash.xxh32_intdigest(shard.rel.encode())]))
    kept = kept_path(ctx, shard)
    src_rel = "kept/" + shard.rel
    writer = PartWriter(io.join(ctx["output"], "tokens", shard.source), shard.index, dtype, tcfg.max_tokens_per_file)
    rejects = Rejects(ctx, "tokenize", shard)
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
            if len(ids) == 0:
                stats["empty"] += 1
                continue
            stats["tokens_unsampled"] += len(ids)
            n = copies(unit_hash(mix.seed, shard.source, doc["id"]), rule)
            if n:
                stats["documents_sampled"] += 1
            items.extend([(ids, doc["id"], loc)] * n)
        for j in rng.permutation(len(items)):
            ids, doc_id, loc = items[j]
            writer.add(ids, doc_id, src_rel, loc)
            stats["documents_out"] += 1
            stats["tokens"] += len(ids)

    block: list[tuple[int, dict]] = []
    for rec in io.read_documents(kept):
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
    files = writer.finish()
    rejects.commit()
    stats["files"] = [{"path": io.relpath(f["stem"], ctx["output"]), "tokens": f["tokens"],
                       "documents": f["documents"], "dtype": dtype.name} for f in files]
    stats.update(rejects.stats())
    return stats
