"""Stored ids (tokenize once), the count step's ids for the tokenize step.

The count step of a token-target run encodes every kept document and keeps what the tokenize
step needs under the run's work storage, `_work/ids/<rel>.ids` (the ids of every block, raw, in
the output dtype) and `_work/ids/<rel>.blocks.jsonl.gz` (a header line, then one line per
block: its counts, rejects, document ids, lines and lengths). The tokenize step replays these
blocks through the same sampling and shuffle, so its output is the bytes that encoding again
would give; where they are missing or stale (work storage cleared, the kept file rewritten) it
reads and encodes again.
"""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator

import numpy as np
import xxhash

from ...core import io
from ...core.io import InputError
from ...core.runtime import Shard
from .common import kept_path, mix_of
from .tokenize_encode import Encoded

STORED_VERSION = 1


def stored_paths(work: str, rel: str) -> tuple[str, str]:
    base = io.join(work, "ids", rel)
    return base + ".ids", base + ".blocks.jsonl.gz"


def store_blocks(blocks: Iterator[Encoded], ids_path: str, meta_path: str, header: dict,
                 on_block: Callable[[Encoded], None] | None = None) -> None:
    """Write encoded blocks to work storage (ids first, then the block table: a table present
    means its ids are complete)."""
    ids_w = io.AtomicWriter(ids_path)
    meta_w = io.AtomicWriter(meta_path)
    try:
        dtype = np.dtype(header["dtype"])
        lines = [json.dumps({"version": STORED_VERSION, **header}, sort_keys=True)]
        for e in blocks:
            if e.flat is not None:
                ids_w.write(e.flat.astype(dtype.newbyteorder("<"), copy=False).tobytes())
            lines.append(json.dumps({"documents_in": e.documents_in, "empty": e.empty,
                                     "rejects": [list(r) for r in e.rejects], "ids": e.ids, "locs": e.locs,
                                     "lens": None if e.lens is None else e.lens.tolist()}))
            if on_block is not None:
                on_block(e)
            if len(lines) >= 64:
                meta_w.write(("\n".join(lines) + "\n").encode("ascii"))
                lines = []
        if lines:
            meta_w.write(("\n".join(lines) + "\n").encode("ascii"))
        ids_w.commit()
        meta_w.commit()
    except BaseException:
        for w in (ids_w, meta_w):
            try:
                w.abort()
            except Exception:  # noqa: BLE001 (best effort; a rerun sweeps temporaries)
                pass
        raise


def stored_header(meta_path: str) -> dict | None:
    """The header of a stored block table, or None when there is none (or of another format)."""
    if not io.exists(meta_path):
        return None
    with io.open_binary(meta_path) as f:
        head = json.loads(f.readline())
    return head if head.get("version") == STORED_VERSION else None


def stored_blocks(ids_path: str, meta_path: str) -> Iterator[Encoded]:
    with io.open_binary(meta_path) as meta, io.open_binary(ids_path) as raw:
        head = json.loads(meta.readline())
        dtype = np.dtype(head["dtype"]).newbyteorder("<")
        for line in meta:
            b = json.loads(line)
            rejects = [tuple(r) for r in b["rejects"]]
            if b["lens"] is None:
                yield Encoded(b["documents_in"], b["empty"], rejects, b["ids"], b["locs"])
                continue
            lens = np.asarray(b["lens"], dtype=np.int64)
            n = int(lens.sum())
            data = raw.read(n * dtype.itemsize)
            if len(data) != n * dtype.itemsize:
                raise InputError(f"{ids_path}: ends early ({len(data)} of {n * dtype.itemsize} bytes of a block); "
                                 "delete it to encode again")
            yield Encoded(b["documents_in"], b["empty"], rejects, b["ids"], b["locs"],
                          np.frombuffer(data, dtype=dtype), lens)


def source_key(doc_path: str, tcfg) -> dict:
    """What stored ids were made from: the documents file (size and xxh3 of its bytes, read
    without decompressing: cheap next to encoding) and the tokenizer settings. Stored ids whose
    key differs from the current one are not used (`usable_store`)."""
    h = xxhash.xxh3_64()
    with io.open_random(doc_path) as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            h.update(chunk)
    return {"kept_bytes": io.file_size(doc_path), "kept_xxh3": h.hexdigest(),
            "tokenizer_config": {k: getattr(tcfg, k) for k in ("path", "eos_token_id", "bos_token_id", "dtype")}}


def usable_store(ctx: dict, shard: Shard) -> tuple[str, str] | None:
    """The count step's stored ids of this shard, if present and made from the kept file as it
    is now with the mix's tokenizer settings (`source_key`), else None."""
    if not ctx.get("work"):
        return None
    ids_path, meta_path = stored_paths(ctx["work"], shard.rel)
    head = stored_header(meta_path)
    if head is None or not io.exists(ids_path):
        return None
    key = source_key(kept_path(ctx, shard), mix_of(ctx).tokenizer)
    if any(head.get(k) != v for k, v in key.items()):
        return None
    return ids_path, meta_path
