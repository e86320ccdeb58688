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

import numpy as np
import pyarrow as pa
from pydantic import Field

from dolma_prep.core import io
from dolma_prep.core.runtime import run_tasks, summarise

from .exact_keys import key_hashes
from .index_exact import index_runs, run_exact_against
from .index_store import MATCHED_ATTRIBUTES, use_against
from .kinds import DedupKind, DedupOptions, IndexSpec, register

PARTITION_BYTES = 1 << 30  # of input files per reduce partition: ~1M documents, ~30 MB of rows in its task


class ExactOptions(DedupOptions):
    """Exact dedup (`run_exact`)."""

    attribute: str = "exact_duplicates"
    key: str = "text"  # "text" or a dotted field such as "metadata.url"
    partitions: int | None = Field(default=None, ge=1)  # default: one per GiB of input files, 1..256
    against: str | None = None  # an index (`dolma-prep index build`): also duplicates of indexed documents

    def extra_attributes(self) -> tuple[str, ...]:
        return MATCHED_ATTRIBUTES if self.against else ()


def _map(shard_idx: int, doc_path: str, work_dir: str, key: str, partitions: int) -> dict:
    h, lines_a = key_hashes(doc_path, key)
    part = (h[:, 0] % partitions).astype(np.int64) if len(h) else np.zeros(0, np.int64)
    for p in range(partitions):
        sel = part == p
        table = pa.table({"h0": h[sel, 0], "h1": h[sel, 1], "shard": np.full(int(sel.sum()), shard_idx, np.int32),
                          "line": lines_a[sel]})
        io.write_parquet(io.join(work_dir, "keys", f"p{p:05d}", f"s{shard_idx:06d}.parquet"), table)
    return {"keys": len(lines_a)}


def _reduce(p: int, work_dir: str, n_shards: int) -> dict:
    folder = io.join(work_dir, "keys", f"p{p:05d}")
    tables = [io.read_parquet(io.join(folder, f"s{i:06d}.parquet")) for i in range(n_shards)]
    t = pa.concat_tables(tables)
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
    io.write_parquet(io.join(work_dir, "dups", f"p{p:05d}.parquet"), t)
    return {"duplicates": t.num_rows}


def _write(shard_idx: int, doc_path: str, attr_path: str, attribute: str, work_dir: str, partitions: int) -> dict:
    dup_lines: set[int] = set()
    for p in range(partitions):
        t = io.read_parquet(io.join(work_dir, "dups", f"p{p:05d}.parquet"), filters=[("shard", "=", shard_idx)])
        dup_lines.update(t["line"].to_pylist())
    n = removed = 0
    with io.AttributeWriter(attr_path, attribute) as w:
        for line, doc in io.iter_documents(doc_path):
            dup = doc is not None and line in dup_lines
            n += doc is not None
            removed += dup
            w.document(doc, io.whole_span(doc["text"]) if dup else "[]")
    return {"documents": n, "duplicates": removed}


def run_exact(shards: list[tuple[str, str]], attribute: str, work_dir: str, key: str = "text",
              partitions: int | None = None, against: str | None = None, workers: int | None = None) -> dict:
    """Mark exact duplicates (by `key`) across `shards` [(documents_path, attributes_path)].
    With `against` (an index built by `dolma-prep index build`), also those of indexed
    documents, recording the indexed document's id (index_exact.py)."""
    if against:
        return run_exact_against(shards, attribute, work_dir, key, against, workers=workers)
    # from the input's size, never from the worker count (the manifest records it): one partition
    # per PARTITION_BYTES of input files, so a small corpus is not cut into shards x shards files
    partitions = partitions or max(1, min(256, -(-io.total_size([d for d, _ in shards]) // PARTITION_BYTES)))
    work = io.join(work_dir, "exact")
    io.rmtree(work)
    a = run_tasks("exact:map", _map, [(i, d, work, key, partitions) for i, (d, _) in enumerate(shards)])
    b = run_tasks("exact:reduce", _reduce, [(p, work, len(shards)) for p in range(partitions)])
    c = run_tasks("exact:write", _write, [(i, d, o, attribute, work, partitions) for i, (d, o) in enumerate(shards)])
    io.rmtree(work)
    return {"documents": sum(s["documents"] for s in c), "duplicates": sum(r["duplicates"] for r in b),
            "per_shard": [{"documents": s["documents"], "duplicates": s["duplicates"]} for s in c],
            "partitions": partitions, "stages": {"map": summarise(a), "reduce": summarise(b), "write": summarise(c)}}


INDEX_KEEPS = ("key",)  # what an index's hashes depend on


def index_params(given: dict) -> dict:
    return {"key": given.get("key", ExactOptions.model_fields["key"].default)}


register(DedupKind("exact", ExactOptions, run_exact, level="document",
                   index=IndexSpec("exact", INDEX_KEEPS, index_params, index_runs,
                                   lambda index, params: use_against(index, "exact", params, INDEX_KEEPS))))
