"""Exact document dedup across all shards, as a distributed hash shuffle on Ray.

1. map: each shard hashes its documents' key (the text, or a field such as `metadata.url`)
   with 128-bit xxh3 and writes (hash, shard, line) to P parquet partitions by hash.
2. reduce: partition p gathers its rows from every shard, sorts by (hash, shard, line) and
   marks every row after the first of each hash as a duplicate. Memory per task is one
   partition, so P grows with the corpus, not the memory of a worker.
3. write: each shard reads its duplicate lines back and writes an aligned dolma dedupe
   attribute file: `[[0, len(text), 1]]` on duplicates, `[]` on the rest.

The kept representative is the first occurrence in the stable (shard order, line) order, so
the result does not depend on worker count or scheduling.
"""
from __future__ import annotations

import os
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import xxhash

from ._docs import AlignedWriter, iter_docs


def _key_of(doc: dict, key: str) -> str | None:
    cur: Any = doc
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur if isinstance(cur, str) else (None if cur is None else str(cur))


def _map(shard_idx: int, doc_path: str, work_dir: str, key: str, partitions: int) -> int:
    hashes, lines = [], []
    for line, doc in iter_docs(doc_path):
        if doc is None:
            continue
        k = _key_of(doc, key)
        if k is None:
            continue
        hashes.append(xxhash.xxh3_128_digest(k.encode("utf-8", "surrogatepass")))
        lines.append(line)
    h = np.frombuffer(b"".join(hashes), dtype=np.uint64).reshape(-1, 2) if hashes else np.zeros((0, 2), np.uint64)
    part = (h[:, 0] % partitions).astype(np.int64) if len(h) else np.zeros(0, np.int64)
    lines_a = np.asarray(lines, dtype=np.int64)
    for p in range(partitions):
        sel = part == p
        table = pa.table({"h0": h[sel, 0], "h1": h[sel, 1], "shard": np.full(int(sel.sum()), shard_idx, np.int32),
                          "line": lines_a[sel]})
        out = os.path.join(work_dir, "keys", f"p{p:05d}", f"s{shard_idx:06d}.parquet")
        os.makedirs(os.path.dirname(out), exist_ok=True)
        pq.write_table(table, out + ".tmp")
        os.replace(out + ".tmp", out)
    return len(lines)


def _reduce(p: int, work_dir: str, n_shards: int) -> int:
    folder = os.path.join(work_dir, "keys", f"p{p:05d}")
    tables = [pq.read_table(os.path.join(folder, f"s{i:06d}.parquet")) for i in range(n_shards)]
    t = pa.concat_tables(tables)
    out = os.path.join(work_dir, "dups", f"p{p:05d}.parquet")
    os.makedirs(os.path.dirname(out), exist_ok=True)
    if t.num_rows:
        h0, h1 = t["h0"].to_numpy(), t["h1"].to_numpy()
        shard, line = t["shard"].to_numpy(), t["line"].to_numpy()
        order = np.lexsort((line, shard, h1, h0))
        h0, h1, shard, line = h0[order], h1[order], shard[order], line[order]
        dup = np.zeros(len(order), bool)
        dup[1:] = (h0[1:] == h0[:-1]) & (h1[1:] == h1[:-1])
        t = pa.table({"shard": shard[dup], "line": line[dup]})
    else:
        t = pa.table({"shard": pa.array([], pa.int32()), "line": pa.array([], pa.int64())})
    pq.write_table(t, out + ".tmp")
    os.replace(out + ".tmp", out)
    return t.num_rows


def _write(shard_idx: int, doc_path: str, attr_path: str, attribute: str, work_dir: str, partitions: int) -> dict:
    dup_lines: set[int] = set()
    for p in range(partitions):
        t = pq.read_table(os.path.join(work_dir, "dups", f"p{p:05d}.parquet"),
                          filters=[("shard", "=", shard_idx)])
        dup_lines.update(t["line"].to_pylist())
    n = removed = 0
    with AlignedWriter(attr_path) as w:
        for line, doc in iter_docs(doc_path):
            if doc is None:
                w.write({"id": None, "attributes": {attribute: []}})
                continue
            n += 1
            if line in dup_lines:
                removed += 1
                w.write({"id": doc.get("id"), "attributes": {attribute: [[0, len(doc.get("text") or ""), 1]]}})
            else:
                w.write({"id": doc.get("id"), "attributes": {attribute: []}})
    return {"documents": n, "duplicates": removed}


def run_exact(shards: list[tuple[str, str]], attribute: str, work_dir: str, key: str = "text",
              partitions: int | None = None) -> dict:
    """Mark exact duplicates (by `key`) across `shards` [(documents_path, attributes_path)]."""
    import ray

    partitions = partitions or max(1, min(256, len(shards)))
    os.makedirs(work_dir, exist_ok=True)
    rmap = ray.remote(num_cpus=1, max_retries=3)(_map)
    rreduce = ray.remote(num_cpus=1, max_retries=3)(_reduce)
    rwrite = ray.remote(num_cpus=1, max_retries=3)(_write)
    ray.get([rmap.remote(i, d, work_dir, key, partitions) for i, (d, _) in enumerate(shards)])
    n_dups = sum(ray.get([rreduce.remote(p, work_dir, len(shards)) for p in range(partitions)]))
    per_shard = ray.get([rwrite.remote(i, d, a, attribute, work_dir, partitions) for i, (d, a) in enumerate(shards)])
    return {"documents": sum(s["documents"] for s in per_shard), "duplicates": n_dups,
            "per_shard": per_shard, "partitions": partitions}
