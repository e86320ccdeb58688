"""Exact verification of MinHash candidate pairs by a second pass over the candidates' documents.

No shingle set is kept for the corpus. After the bucket stage has found the candidate pairs
(the LSH star edges), three rounds of tasks check each pair against the exact Jaccard
similarity of the two documents' shingle sets:

1. the bucket tasks write their candidate pairs (`pairs-<p>.parquet`) and the distinct
   documents in them, sorted (`nodes-<p>.parquet`), and return which shards hold candidates;
2. extract, one task per shard that holds candidates: read the shard's candidate lines (a
   range read of every `nodes-*` file), re-read the shard's documents, and store the sorted,
   distinct 32-bit shingle hashes of those documents only (`store/<shard>.u32`, with
   `store/<shard>.idx.npz`: candidate lines and offsets);
3. verify, one task per bucket partition: the Jaccard similarity of each pair from the two
   stored sets (positioned reads), keeping pairs >= threshold as edges for the components.

Scratch is 4 bytes per distinct shingle of a *candidate* document (plus 16 bytes of index per
candidate document), not of every document; the statistics report it (`verify_store_bytes`).
A shard's documents are read a second time only when it holds a candidate. Documents are
identified by ref = shard << 32 | position (0-based, every line counted), as in minhash.py.
"""

from __future__ import annotations

from collections import OrderedDict

import numpy as np
import pyarrow as pa

from dolma_prep.core import io

from . import components
from .index_store import read_ids
from .signatures import shingle_hashes
from .text import normalized_word_bytes

# open shard stores a verify task keeps (each holds its shard's candidate lines and offsets)
_OPEN_STORES = 64


def write_candidates(work: str, p_index: int, child: np.ndarray, parent: np.ndarray) -> list[int]:
    """Bucket task p: write its candidate pairs and their distinct documents; return the
    shards that hold candidates."""
    io.write_parquet(io.join(work, "pairs", f"pairs-{p_index}.parquet"),
                     pa.table({"child": pa.array(child, pa.uint64()), "parent": pa.array(parent, pa.uint64())}),
                     compression="none")
    nodes = np.unique(np.concatenate([child, parent]))
    io.write_parquet(io.join(work, "nodes", f"nodes-{p_index}.parquet"), pa.table({"node": pa.array(nodes, pa.uint64())}),
                     compression="none", row_group_size=components.ROW_GROUP)
    return np.unique(nodes >> np.uint64(32)).astype(np.int64).tolist()


def jaccard(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) == 0 and len(y) == 0:
        return 1.0
    inter = len(np.intersect1d(x, y, assume_unique=True))
    return inter / (len(x) + len(y) - inter)


def shingle_set(text: str, ngram: int) -> np.ndarray:
    """Sorted, distinct low 32 bits of the document's shingle hashes (what verification compares)."""
    return np.unique(shingle_hashes(normalized_word_bytes(text), ngram).astype(np.uint32))


def stage_extract(shard: int, doc_path: str, work: str, ngram: int, ids_path: str | None = None) -> dict:
    """Store the shingle sets of this shard's candidate documents only. For an indexed file,
    `ids_path` holds the ids it had when indexed: a document whose id changed is refused."""
    lo = shard << 32
    lines: list[np.ndarray] = []
    for f in io.glob(io.join(work, "nodes", "nodes-*.parquet")):
        r = components.read_sorted_range(f, "node", lo, lo + (1 << 32), ["node"])
        if len(r["node"]):
            lines.append((r["node"] - np.uint64(lo)).astype(np.int64))
    wanted = np.unique(np.concatenate(lines)) if lines else np.empty(0, np.int64)
    if not len(wanted):
        return {"candidate_documents": 0, "store_bytes": 0}
    want = set(wanted.tolist())
    expected = None
    if ids_path is not None:
        expected = read_ids(ids_path, sorted(want))
    found: dict[int, np.ndarray] = {}
    for pos, (_, doc) in enumerate(io.iter_documents(doc_path)):
        if pos in want:
            if doc is None:
                raise io.InputError(f"{doc_path}: line {pos + 1} is no longer a valid document; the file changed "
                                    "since its signatures were computed")
            if expected is not None and io.json_value(doc["id"]) != expected[pos]:
                raise io.InputError(f"{doc_path}: line {pos + 1} has id {io.json_value(doc['id'])}, but the index "
                                    f"recorded {expected[pos]}: the indexed corpus changed since it was indexed")
            found[pos] = shingle_set(doc["text"], ngram)
        if pos >= wanted[-1]:
            break
    missing = want - set(found)
    if missing:
        raise io.InputError(f"{doc_path}: has no line {min(missing) + 1}; the file changed since its signatures "
                            "were computed")
    sets = [found[int(x)] for x in wanted]
    offsets = np.zeros(len(sets) + 1, dtype=np.int64)
    np.cumsum([len(s) for s in sets], out=offsets[1:])
    data = np.concatenate(sets).astype(np.uint32).tobytes()
    io.write_bytes_atomic(io.join(work, "store", f"{shard}.u32"), data)
    io.save_npz(io.join(work, "store", f"{shard}.idx.npz"), lines=wanted, offsets=offsets)
    return {"candidate_documents": int(len(wanted)), "store_bytes": len(data) + 16 * len(wanted)}


class _Store:
    """Shingle sets of candidate documents, by ref, with positioned reads; at most
    `_OPEN_STORES` shards open at a time (least recently used closed first)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.open: OrderedDict[int, tuple] = OrderedDict()

    def get(self, ref: int) -> np.ndarray:
        shard, line = ref >> 32, ref & 0xFFFFFFFF
        if shard in self.open:
            self.open.move_to_end(shard)
        else:
            idx = io.load_npz(io.join(self.directory, f"{shard}.idx.npz"))
            self.open[shard] = (io.open_random(io.join(self.directory, f"{shard}.u32")), idx["lines"], idx["offsets"])
            if len(self.open) > _OPEN_STORES:
                self.open.popitem(last=False)[1][0].close()
        f, lines, offsets = self.open[shard]
        i = int(np.searchsorted(lines, line))
        if i >= len(lines) or lines[i] != line:
            raise RuntimeError(f"verify: document {shard}:{line} is not in the candidate store")
        a, b = int(offsets[i]), int(offsets[i + 1])
        f.seek(a * 4)
        return np.frombuffer(f.read((b - a) * 4), dtype=np.uint32)

    def close(self) -> None:
        for f, *_ in self.open.values():
            f.close()
        self.open.clear()


def stage_verify(p_index: int, work: str, out_dir: str, partitions: int, threshold: float) -> dict:
    """Keep the pairs of partition p whose exact Jaccard similarity is >= threshold, written as
    edges (both directions) for the connected components."""
    t = io.read_parquet(io.join(work, "pairs", f"pairs-{p_index}.parquet"))
    child = t.column("child").to_numpy().astype(np.uint64, copy=False)
    parent = t.column("parent").to_numpy().astype(np.uint64, copy=False)
    order = np.lexsort((parent, child))  # one shard after another: fewer store switches
    child, parent = child[order], parent[order]
    store = _Store(io.join(work, "store"))
    try:
        ok = np.fromiter((jaccard(store.get(int(c)), store.get(int(q))) >= threshold for c, q in zip(child, parent)),
                         dtype=bool, count=len(child))
    finally:
        store.close()
    child, parent = child[ok], parent[ok]
    components.write_partitioned(np.concatenate([child, parent]), np.concatenate([parent, child]), out_dir, p_index,
                                 partitions)
    return {"pairs": int(len(ok)), "edges": int(len(child))}
