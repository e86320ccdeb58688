"""Exact dedup with an index: the hashes of indexed documents, and dedup of new ones against them.

Keys are hashed as exact.py hashes them (exact_keys.py: 128-bit xxh3 of the text or of a field). Rows
(h0, h1, ref) are written as runs sorted by h0 and read by h0 range, so a task holds one
range of the index and of the new documents, whatever the size of the index.

`run_exact_against` (what `run_exact(..., against=INDEX)` runs):
1. hash, one task per new shard: sorted runs of (h0, h1, ref), ref = (base + shard) << 32 | pos;
2. match, one task per h0 range: the new rows of the range and the index rows whose h0 occurs
   among them; sorted by (h0, h1, ref), every row after the first of its hash is a duplicate of
   the first (an indexed document whenever the index holds the hash); writes (ref, first)
   sorted by ref;
3. write, one task per new shard: its range of duplicates, the attribute lines, and for a
   document matching an indexed one `<attribute>__matched_id` and `__matched_version`.
The marked documents are those a joint exact dedup of the indexed files followed by the new
ones marks among the new ones.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from dolma_prep.core import io
from dolma_prep.core.runtime import default_workers, run_tasks, summarise

from . import components
from .exact_keys import key_hashes
from .index_store import lookup_ids, matched_attributes, open_against
from .kinds import SortedRuns

# rows a match task may hold (h0, h1, ref and the sort: ~100 B a row -> ~200 MB)
ROWS_PER_TASK = 2 << 20


def hash_task(g: int, doc_path: str, out_dir: str, key: str) -> dict:
    h, lines = key_hashes(doc_path, key)
    ref = (np.uint64(g) << np.uint64(32)) | (lines - 1).astype(np.uint64)
    order = np.lexsort((ref, h[:, 1], h[:, 0]))
    table = pa.table({"h0": pa.array(h[order, 0], pa.uint64()), "h1": pa.array(h[order, 1], pa.uint64()),
                      "ref": pa.array(ref[order], pa.uint64())})
    io.write_parquet(io.join(out_dir, f"run-{g}.parquet"), table, compression="none", row_group_size=components.ROW_GROUP)
    return {"keys": len(ref)}


def index_runs(files: list[tuple[int, str]], params: dict, version_dir: str, work: str, workers: int) -> SortedRuns:
    """`index build --kinds exact`: the sorted (h0, h1, ref) runs of `files` [(g, path)]; the
    index keeps the first row of each hash."""
    res = run_tasks("index:exact-hashes", hash_task,
                    [(g, path, io.join(work, "exact"), params["key"]) for g, path in files], max_in_flight=workers)
    return SortedRuns(io.join(work, "exact", "run-*.parquet"), "h0", ["h0", "h1", "ref"], True,
                      sum(r["keys"] for r in res), res)


def _match_task(i: int, lo: int, hi: int | None, work: str, tables: tuple, first_new: int) -> dict:
    cols = {"h0": [], "h1": [], "ref": []}
    for f in io.glob(io.join(work, "runs", "run-*.parquet")):
        r = components.read_sorted_range(f, "h0", lo, hi, ["h0", "h1", "ref"])
        for c in cols:
            cols[c].append(r[c])
    index_rows = 0
    new_h0 = np.unique(np.concatenate(cols["h0"])) if cols["h0"] else np.empty(0, np.uint64)
    if len(new_h0):
        for f, flo, fhi in tables:
            if fhi < lo or (hi is not None and flo >= hi):
                continue
            r = components.read_sorted_range(f, "h0", lo, hi, ["h0", "h1", "ref"])
            index_rows += len(r["h0"])
            hit = np.isin(r["h0"], new_h0)
            for c in cols:
                cols[c].append(r[c][hit])
    h0, h1, ref = (np.concatenate(cols[c]) if cols[c] else np.empty(0, np.uint64) for c in ("h0", "h1", "ref"))
    rows = len(h0)
    order = np.lexsort((ref, h1, h0))
    h0, h1, ref = h0[order], h1[order], ref[order]
    new_group = np.ones(len(h0), bool)
    new_group[1:] = (h0[1:] != h0[:-1]) | (h1[1:] != h1[:-1])
    first = ref[np.maximum.accumulate(np.where(new_group, np.arange(len(h0)), 0))] if len(h0) else ref
    dup = ~new_group & (ref >= np.uint64(first_new))
    node, root = ref[dup], first[dup]
    order = np.argsort(node)
    table = pa.table({"node": pa.array(node[order], pa.uint64()), "root": pa.array(root[order], pa.uint64())})
    io.write_parquet(io.join(work, "dups", f"part-{i}.parquet"), table, compression="none",
                     row_group_size=components.ROW_GROUP)
    return {"rows": int(rows), "index_rows_read": int(index_rows), "duplicates": int(len(node)),
            "matched_indexed": int(np.count_nonzero(root < np.uint64(first_new)))}


def _write_task(g: int, doc_path: str, attr_path: str, attribute: str, work: str, index: dict) -> dict:
    lo = g << 32
    node, root = components.read_members(io.join(work, "dups"), lo, lo + (1 << 32))
    dups = dict(zip((node - np.uint64(lo)).astype(np.int64).tolist(), root.tolist()))
    found = lookup_ids(index, [r for r in dups.values() if r < index["first_new"]])
    n = removed = matched = 0
    with io.AttributeWriter(attr_path, attribute) as w:
        for line, doc in io.iter_documents(doc_path):
            n += doc is not None
            r = None if doc is None else dups.get(line - 1)
            if r is None:
                w.document(doc)
                continue
            removed += 1
            matched += r in found
            w.document(doc, io.whole_span(doc["text"]),
                       matched_attributes(len(doc["text"]), *found[r]) if r in found else None)
    return {"documents": n, "duplicates": removed, "matched_indexed": matched}


def run_exact_against(shards: list[tuple[str, str]], attribute: str, work_dir: str, key: str, against: str,
                      workers: int | None = None) -> dict:
    index = open_against(against, "exact", {"key": key}, ("key",))
    workers = workers or default_workers()
    base = index["base_shard"]
    first_new = base << 32
    work = io.join(work_dir, "exact")
    io.rmtree(work)
    a = run_tasks("exact:hash", hash_task, [(base + i, d, io.join(work, "runs"), key) for i, (d, _) in enumerate(shards)],
                  max_in_flight=workers)
    new_rows = sum(r["keys"] for r in a)
    parts = max(1, -(-(new_rows + index["rows"]) // ROWS_PER_TASK))  # never from the worker count (statistics)
    step = (1 << 64) // parts
    ranges = [(i, i * step, None if i == parts - 1 else (i + 1) * step) for i in range(parts)]
    b = run_tasks("exact:match", _match_task, [(i, lo, hi, work, tuple(index["tables"]), first_new)
                                               for i, lo, hi in ranges], max_in_flight=workers)
    ctx = {**index, "first_new": first_new}
    c = run_tasks("exact:write", _write_task, [(base + i, d, o, attribute, work, ctx) for i, (d, o) in enumerate(shards)],
                  max_in_flight=workers)
    io.rmtree(work)
    return {"documents": sum(s["documents"] for s in c), "duplicates": sum(r["duplicates"] for r in b),
            "matched_indexed": sum(s["matched_indexed"] for s in c), "index_versions": index["versions"],
            "index_rows_read": sum(r["index_rows_read"] for r in b),
            "max_rows_per_match_task": max((r["rows"] for r in b), default=0),
            "per_shard": [{"documents": s["documents"], "duplicates": s["duplicates"]} for s in c],
            "partitions": parts, "peak_worker_rss_mb": max(summarise(x)["peak_worker_rss_mb"] for x in (a, b, c)),
            "stages": {"hash": summarise(a), "match": summarise(b), "write": summarise(c)}}
