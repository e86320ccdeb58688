"""The key of a document for exact dedup and its hash, shared by the dedup (exact.py) and its
index (index_exact.py), so that both hash a document alike and neither imports the other's run."""
from __future__ import annotations

from typing import Any

import numpy as np
import xxhash

from dolma_prep.core import io


def key_of(doc: dict, key: str) -> str | None:
    """The document's `key`: "text" or a dotted field such as "metadata.url" (as a string), or None."""
    cur: Any = doc
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur if isinstance(cur, str) else (None if cur is None else str(cur))


def key_hashes(doc_path: str, key: str) -> tuple[np.ndarray, np.ndarray]:
    """128-bit xxh3 of each document's key, as (n, 2) uint64, and the documents' 1-based lines
    (documents without the key are left out)."""
    hashes, lines = [], []
    for line, doc in io.iter_documents(doc_path):
        if doc is None:
            continue
        k = key_of(doc, key)
        if k is None:
            continue
        hashes.append(xxhash.xxh3_128_digest(k.encode("utf-8", "surrogatepass")))
        lines.append(line)
    h = np.frombuffer(b"".join(hashes), dtype=np.uint64).reshape(-1, 2) if hashes else np.zeros((0, 2), np.uint64)
    return h, np.asarray(lines, dtype=np.int64)
