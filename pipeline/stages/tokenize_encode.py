"""Reading and encoding for the tokenize and count steps: one documents file -> blocks of
encoded documents (`Encoded`: counts, rejects, ids, lines, token ids and lengths).

A reader thread decompresses and parses (zlib releases the GIL) into blocks of at most BLOCK
documents or BLOCK_CHARS characters (the unit of the shuffle, bounding memory per task); each
text is stripped, empty ones counted and skipped. The caller's thread encodes a block at a
time with `encoder.encode_docs` (`encode_batch_fast`, Rust, GIL released) into one flat id
array per block. A non-empty text that tokenizes to no ids is set aside as a bad record.
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from typing import Any

import numpy as np

from ...core import io
from ...core.io import InputError, Record
from ...core.tokens import choose_dtype
from ..encoder import Encoder, encode_docs, load_encoder
from ..threads import END, Failure, producer, queue_get

BLOCK = 4096  # documents per shuffle block: bounds memory per task (with BLOCK_CHARS)
BLOCK_CHARS = 1 << 25  # ... and at most this many characters of text per block
PREVIEW = io.MAX_REJECT_PREVIEW


def check_special_ids(dtype: np.dtype, eos: int | None, bos: int | None) -> None:
    """EOS/BOS ids must be representable in the arrays (a silent wrap-around would corrupt them)."""
    top = int(np.iinfo(dtype).max)
    for name, value in (("eos_token_id", eos), ("bos_token_id", bos)):
        if value is not None and not 0 <= value <= top:
            raise InputError(f"{name} {value} does not fit dtype {dtype.name} (ids 0..{top:,})")


class _Block:
    """Up to BLOCK consecutive documents of one file: what the reader hands to the encoder."""

    __slots__ = ("texts", "ids", "locs", "documents_in", "empty", "bad", "chars")

    def __init__(self) -> None:
        self.texts: list[str] = []  # stripped, non-empty
        self.ids: list[Any] = []
        self.locs: list[int] = []
        self.documents_in = 0
        self.empty = 0
        self.bad: list[Record] = []
        self.chars = 0


def read_blocks(path: str) -> Iterator[_Block]:
    """The documents of one file in blocks of at most BLOCK documents or BLOCK_CHARS characters."""
    block = _Block()
    for rec in io.read_documents(path):
        if not rec.ok:
            block.bad.append(rec)
            continue
        block.documents_in += 1
        text = rec.doc["text"].strip()
        if not text:
            block.empty += 1
            continue
        block.texts.append(text)
        block.ids.append(rec.doc["id"])
        block.locs.append(rec.line)
        block.chars += len(text)
        if len(block.texts) >= BLOCK or block.chars >= BLOCK_CHARS:
            yield block
            block = _Block()
    if block.documents_in or block.bad:
        yield block


class Encoded:
    """One block of one documents file, encoded: what sampling and writing consume. `flat` is
    None for a block with no text to encode (only bad records or empty documents)."""

    __slots__ = ("flat", "lens", "ids", "locs", "documents_in", "empty", "rejects")

    def __init__(self, documents_in: int, empty: int, rejects: list, ids: list, locs: list,
                 flat: np.ndarray | None = None, lens: np.ndarray | None = None):
        self.documents_in, self.empty, self.rejects = documents_in, empty, rejects  # rejects: (path, line, reason, raw)
        self.ids, self.locs, self.flat, self.lens = ids, locs, flat, lens


def engine_stats(enc: Encoder) -> dict:
    return {"engine": enc.label, "engine_note": enc.note, "reference_documents": 0}


def encode_file(doc_path: str, tcfg, stats: dict) -> Iterator[Encoded]:
    """Read and encode one documents file, a block at a time: a reader thread decompresses and
    parses (zlib releases the GIL) while the caller's thread encodes. Sets `stats` at once
    (engine, dtype; refusing a dtype that cannot hold the vocabulary or the special ids); the
    blocks come from the returned generator, which counts the documents the fast engine handed
    to the reference engine. Close the generator (or exhaust it) to stop the reader."""
    enc = load_encoder(tcfg.path)
    dtype = choose_dtype(enc.reference.get_vocab_size(with_added_tokens=True), tcfg.dtype)
    check_special_ids(dtype, tcfg.eos_token_id, tcfg.bos_token_id)
    stats.update(engine_stats(enc))
    stats["dtype"] = dtype.name
    return _encode_blocks(doc_path, enc, dtype, tcfg.eos_token_id, tcfg.bos_token_id, stats)


def _encode_blocks(doc_path: str, enc: Encoder, dtype: np.dtype, eos: int | None, bos: int | None,
                   stats: dict) -> Iterator[Encoded]:
    top = int(np.iinfo(dtype).max)
    stop = threading.Event()
    read_q: queue.Queue = queue.Queue(maxsize=2)
    reader = threading.Thread(target=producer, args=(lambda: read_blocks(doc_path), read_q, stop), daemon=True,
                              name="tokenize-read")
    reader.start()
    try:
        while True:
            block = queue_get(read_q, stop)
            if block is END:
                break
            if isinstance(block, Failure):
                raise block.exc
            rejects = [(r.path, r.line, r.error, r.raw) for r in block.bad]
            if not block.texts:
                yield Encoded(block.documents_in, block.empty, rejects, block.ids, block.locs)
                continue
            flat, lens, errors, n_ref = encode_docs(enc, block.texts, eos, bos)
            stats["reference_documents"] += n_ref
            if len(flat) and int(flat.max()) > top:
                j = int(np.searchsorted(np.cumsum(lens), int(np.argmax(flat > top)), side="right"))
                raise InputError(f"{doc_path}:{block.locs[j]}: the tokenizer produced id {int(flat.max())}, "
                                 f"beyond dtype {dtype.name} (its vocabulary size was misreported?)")
            for j in np.flatnonzero(lens == 0).tolist():
                reason = errors.get(j) or (f"text of {len(block.texts[j]):,} characters (after strip) tokenizes to "
                                           "no tokens; document skipped")
                rejects.append((doc_path, block.locs[j], reason, block.texts[j][:PREVIEW]))
            yield Encoded(block.documents_in, block.empty, rejects, block.ids, block.locs, flat, lens)
    finally:
        stop.set()
        reader.join()
