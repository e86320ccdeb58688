"""MinHash-LSH fuzzy document dedup on Ray, with distributed clustering.

Stages (each a set of Ray tasks; only file names and small stats travel through Ray):

1. signatures, per shard: normalise text (lower case, punctuation removed, white space
   collapsed), word n-gram shingles (default 5), xxh64 of each shingle, `num_perm` min-hashes
   computed with numpy in batches; each band of `rows` values is hashed to one 64-bit bucket
   key that also encodes the band number. Rows (key, doc_ref) are sorted by key and written
   to parquet; doc_ref = shard_index << 32 | line. With `verify="exact"` the document's
   sorted, distinct 32-bit shingle hashes are also kept (4 bytes per shingle, on disk).
2. buckets, per key range: P tasks, task p reading rows with key in its range from every run
   file (parquet row-group statistics skip the rest). Rows are sorted by (key, doc_ref); every
   member of a bucket gets an edge to the bucket's smallest doc_ref (a star: O(n) edges).
   Edges are deduplicated and, with `verify="exact"`, kept only when the exact Jaccard
   similarity of the two shingle sets is >= `threshold`.
3. components: `components.connected_components`, alternating large-star / small-star
   rounds over P edge partitions.
4. attributes, per shard: read the (node, root) rows of the shard's doc_ref range; every
   document that is not the smallest doc_ref of its component gets [[0, len(text), 1]].

P, and the batch sizes, come from `memory_budget_mb`, so a worker's memory does not grow with
the corpus. Results depend only on the input, the parameters and the seed.

Min-hash permutations (`signatures.py`): `hash_family="multiply_shift"` (default) or
`"mersenne"` (datasketch/datatrove's formula, about 2.5x slower).

LSH S-curve: a pair with Jaccard s becomes a candidate with probability 1 - (1 - s**r)**b.
The default b=9, r=13 (117 permutations; what datasketch picks for threshold 0.8 and 128
permutations) gives 0.40 at s=0.8, 0.69 at 0.85, 0.93 at 0.9, 0.998 at 0.95; its 50% point
is s=0.82. For high recall at 0.8 use more, shorter bands (e.g. 14 x 8: 0.92 at 0.8, or 20 x 6: 0.998) with
verification to remove the extra candidates.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from dolma_prep.pipeline import io
from dolma_prep.pipeline.runtime import default_workers, run_tasks, summarise

from . import components
from .signatures import band_keys, permutations, shingle_hashes, signatures
from .text import normalized_word_bytes

# worker memory per (key, ref) row in a bucket task (arrays, sort, allocator slack; measured)
_ROW_BYTES_IN_REDUCE = 160
# a bucket task's rows may take this fraction of the usable budget: small enough that a
# worker's peak is set by the fixed per-task costs, not by the corpus
_PARTITION_SHARE = 16


class _Batch:
    def __init__(self):
        self.refs: list[int] = []
        self.parts: list[np.ndarray] = []
        self.count = 0

    def add(self, ref: int, sh: np.ndarray) -> None:
        self.refs.append(ref)
        self.parts.append(sh)
        self.count += len(sh)


def _stage_signatures(shard_index: int, doc_path: str, work: str, p: dict) -> dict:
    a, b = permutations(p["num_perm"], p["seed"], p["hash_family"])
    bands, rows, n = p["bands"], p["rows"], p["ngram"]
    verify = p["verify"] == "exact"
    ids: list[str] = []
    lengths: list[int] = []
    shingle_counts: list[int] = []
    store = io.AtomicWriter(io.join(work, "shingles", f"{shard_index}.u32")) if verify else None
    runs = 0
    batch = _Batch()
    docs_signed = 0
    total_shingles = 0

    def flush() -> None:
        nonlocal runs, batch, docs_signed
        if not batch.refs:
            return
        offsets = np.zeros(len(batch.parts) + 1, dtype=np.int64)
        np.cumsum([len(x) for x in batch.parts], out=offsets[1:])
        sig = signatures(np.concatenate(batch.parts), offsets, a, b, p["hash_family"])
        keys = band_keys(sig, bands, rows).ravel()
        refs = np.repeat(np.asarray(batch.refs, dtype=np.uint64), bands)
        order = np.argsort(keys, kind="stable")
        table = pa.table({"key": pa.array(keys[order], pa.uint64()), "ref": pa.array(refs[order], pa.uint64())})
        io.write_parquet(io.join(work, "rows", f"run-{shard_index}-{runs}.parquet"), table, compression="none",
                         row_group_size=components.ROW_GROUP)
        docs_signed += len(batch.refs)
        runs += 1
        batch = _Batch()

    base = shard_index << 32
    for line, (_, doc) in enumerate(io.iter_documents(doc_path)):
        if doc is None:
            ids.append("null")
            lengths.append(-1)
            shingle_counts.append(0)
            continue
        text = doc["text"]
        ids.append(io.json_value(doc["id"]))
        lengths.append(len(text))
        sh = shingle_hashes(normalized_word_bytes(text), n)
        total_shingles += len(sh)
        if store is not None:
            small = np.unique(sh.astype(np.uint32))  # low 32 bits, sorted, distinct
            store.write(small.tobytes())
            shingle_counts.append(len(small))
        else:
            shingle_counts.append(0)
        if len(sh):
            batch.add(base | line, sh)
            if batch.count >= p["batch_shingles"]:
                flush()
    flush()
    if store is not None:
        store.commit()
        offsets = np.zeros(len(shingle_counts) + 1, dtype=np.int64)
        np.cumsum(shingle_counts, out=offsets[1:])
        io.save_npy(io.join(work, "shingles", f"{shard_index}.offsets.npy"), offsets)
    io.save_npy(io.join(work, "meta", f"lengths-{shard_index}.npy"), np.asarray(lengths, dtype=np.int64))
    io.write_text_atomic(io.join(work, "meta", f"ids-{shard_index}.txt"), "\n".join(ids))
    return {
        "lines": len(ids),
        "invalid": lengths.count(-1),
        "signed": docs_signed,
        "shingles": total_shingles,
    }


class _ShingleStore:
    """Per-shard shingle sets, read with positioned reads (range requests on object storage;
    a memory map would count its read-ahead pages in the worker's resident memory)."""

    def __init__(self, directory: str):
        self.directory = directory
        self.files: dict[int, tuple[int, np.ndarray]] = {}

    def get(self, ref: int) -> np.ndarray:
        shard, line = ref >> 32, ref & 0xFFFFFFFF
        if shard not in self.files:
            f = io.open_random(io.join(self.directory, f"{shard}.u32"))
            offsets = io.load_npy(io.join(self.directory, f"{shard}.offsets.npy"), mmap=True)
            self.files[shard] = (f, offsets)
        f, offsets = self.files[shard]
        a, b = int(offsets[line]), int(offsets[line + 1])
        f.seek(a * 4)
        return np.frombuffer(f.read((b - a) * 4), dtype=np.uint32)

    def close(self) -> None:
        for f, _ in self.files.values():
            f.close()
        self.files.clear()


def jaccard(x: np.ndarray, y: np.ndarray) -> float:
    if len(x) == 0 and len(y) == 0:
        return 1.0
    inter = len(np.intersect1d(x, y, assume_unique=True))
    return inter / (len(x) + len(y) - inter)


def _stage_buckets(p_index: int, lo: int, hi: int | None, work: str, partitions: int, p: dict) -> dict:
    keys, refs = [], []
    for f in io.glob(io.join(work, "rows", "run-*.parquet")):
        r = components.read_sorted_range(f, "key", lo, hi, ["key", "ref"])
        if len(r["key"]):
            keys.append(r["key"])
            refs.append(r["ref"])
    key = np.concatenate(keys) if keys else np.empty(0, np.uint64)
    ref = np.concatenate(refs) if refs else np.empty(0, np.uint64)
    del keys, refs
    n_rows = len(key)
    order = np.lexsort((ref, key))
    key = key[order]
    ref = ref[order]
    del order
    first, starts = components._groups(key)
    head = ref[first]
    member = ref != head
    child, parent = ref[member], head[member]
    sizes = np.diff(np.append(starts, len(key)))
    del key, ref, first, head
    child, parent = components._sorted_unique(child, parent)
    candidates = len(child)
    if p["verify"] == "exact" and candidates:
        store = _ShingleStore(io.join(work, "shingles"))
        threshold = p["threshold"]
        ok = np.fromiter(
            (jaccard(store.get(int(c)), store.get(int(q))) >= threshold for c, q in zip(child, parent)),
            dtype=bool,
            count=candidates,
        )
        child, parent = child[ok], parent[ok]
        store.close()
    components.write_partitioned(
        np.concatenate([child, parent]), np.concatenate([parent, child]), io.join(work, "cc-first"), p_index, partitions
    )
    return {
        "rows": int(n_rows),
        "buckets_shared": int(np.count_nonzero(sizes > 1)),
        "largest_bucket": int(sizes.max()) if len(sizes) else 0,
        "candidate_pairs": int(candidates),
        "edges": int(len(child)),
    }


def _stage_write(shard_index: int, out_path: str, work: str, result_dir: str, attribute: str) -> dict:
    lengths = io.load_npy(io.join(work, "meta", f"lengths-{shard_index}.npy"))
    ids = io.read_text(io.join(work, "meta", f"ids-{shard_index}.txt")).split("\n") if len(lengths) else []
    lo = shard_index << 32
    node, _root = components.read_members(result_dir, lo, lo + (1 << 32))
    removed = set((node - np.uint64(lo)).astype(np.int64).tolist())
    name_js = json.dumps(attribute, ensure_ascii=False)
    with io.AtomicWriter(out_path) as out:
        for line, id_js in enumerate(ids):
            spans = f"[[0,{int(lengths[line])},1]]" if line in removed else "[]"
            out.write_text(io.attribute_line(id_js, name_js, spans))
    return {"removed": len(removed)}


def _write_clusters(result_dir: str, path: str, shards: list[tuple[str, str]]) -> None:
    """Optional: every duplicate with the document it was kept for, as one parquet file.

    Columns shard, line (the duplicate) and root_shard, root_line (the kept document, the
    smallest reference of the component). Its size is that of the duplicates, read one
    component partition at a time."""
    tables = []
    for f in io.glob(io.join(result_dir, "part-*.parquet")):
        t = io.read_parquet(f)
        node, root = t.column("node").to_numpy(), t.column("root").to_numpy()
        tables.append(
            pa.table(
                {
                    "shard": (node >> np.uint64(32)).astype(np.int64),
                    "line": (node & np.uint64(0xFFFFFFFF)).astype(np.int64),
                    "root_shard": (root >> np.uint64(32)).astype(np.int64),
                    "root_line": (root & np.uint64(0xFFFFFFFF)).astype(np.int64),
                }
            )
        )
    table = pa.concat_tables(tables) if tables else pa.table(
        {c: pa.array([], pa.int64()) for c in ("shard", "line", "root_shard", "root_line")}
    )
    table = table.sort_by([("shard", "ascending"), ("line", "ascending")])
    io.write_parquet(path, table)


DEFAULTS = dict(
    ngram=5,
    num_perm=None,
    bands=9,
    rows=13,
    threshold=0.8,
    verify="exact",
    seed=1,
    hash_family="multiply_shift",
    memory_budget_mb=1024,
    partitions=None,
    clusters_path=None,
)


def plan(p: dict, workers: int) -> dict:
    """Batch sizes from the memory budget (the partition count needs the row count, later)."""
    budget = int(p["memory_budget_mb"]) << 20
    usable = max(32 << 20, budget - (192 << 20))  # a Ray worker with numpy/pyarrow loaded
    # signature batch: 8 B shingle + 8 B doc index + chunked permutation buffers
    p["batch_shingles"] = int(max(1 << 16, min(1 << 24, usable // 4 // 24)))
    p["usable_bytes"] = usable
    return p


def run_minhash(
    shards: list[tuple[str, str]],
    attribute: str,
    work_dir: str,
    *,
    workers: int | None = None,
    keep_work: bool = False,
    **params,
) -> dict:
    """MinHash-LSH document dedup over `shards` [(documents_path, attributes_path), ...].

    Parameters: ngram=5 (word shingles), bands=9, rows=13, num_perm=None (bands*rows; more is
    allowed and ignored by the bands), threshold=0.8 (Jaccard, used by verification),
    verify="exact" ("none": LSH candidates are duplicates), seed=1,
    hash_family="multiply_shift" | "mersenne", memory_budget_mb=1024 (per worker),
    partitions=None (bucket/edge partitions; default from the budget),
    clusters_path=None (write every duplicate and the document it was kept for, parquet).
    """
    unknown = set(params) - set(DEFAULTS)
    if unknown:
        raise TypeError(f"run_minhash: unknown parameters {sorted(unknown)}; known: {sorted(DEFAULTS)}")
    p = {**DEFAULTS, **params}
    p["num_perm"] = int(p["num_perm"] or p["bands"] * p["rows"])
    if p["num_perm"] < p["bands"] * p["rows"]:
        raise ValueError(f"num_perm={p['num_perm']} < bands*rows={p['bands'] * p['rows']}")
    if p["verify"] not in ("exact", "none", None):
        raise ValueError(f"verify must be 'exact' or 'none', got {p['verify']!r}")
    p["verify"] = p["verify"] or "none"
    workers = workers or default_workers()
    plan(p, workers)
    if len(shards) >= 1 << 31:
        raise ValueError("too many shards for 32-bit shard references")
    work = io.join(work_dir, "minhash")
    io.rmtree(work)

    sig = run_tasks("minhash:signatures", _stage_signatures, [(i, d, work, p) for i, (d, _) in enumerate(shards)],
                    max_in_flight=workers)
    total_rows = sum(r["signed"] for r in sig) * p["bands"]
    rows_per_partition = max(1, p["usable_bytes"] // _PARTITION_SHARE // _ROW_BYTES_IN_REDUCE)
    # never from the worker count: the partitions shape the statistics (a pair is counted once per
    # partition it appears in), and a run must give the same manifest on any cluster
    parts = p["partitions"] or max(1, -(-total_rows // rows_per_partition))
    step = (1 << 64) // parts
    ranges = [(i, i * step, None if i == parts - 1 else (i + 1) * step) for i in range(parts)]
    buckets = run_tasks("minhash:buckets", _stage_buckets, [(i, lo, hi, work, parts, p) for i, lo, hi in ranges],
                        max_in_flight=workers)
    io.rmtree(io.join(work, "rows"))
    io.rmtree(io.join(work, "shingles"))
    cc = components.connected_components(io.join(work, "cc-first"), io.join(work, "cc"), parts, workers)
    io.rmtree(io.join(work, "cc-first"))
    out = run_tasks("minhash:write", _stage_write,
                    [(i, o, work, cc["result_dir"], attribute) for i, (_, o) in enumerate(shards)], max_in_flight=workers)
    if p["clusters_path"]:
        _write_clusters(cc["result_dir"], p["clusters_path"], shards)
    removed = sum(r["removed"] for r in out)
    if removed != cc["members"]:
        raise RuntimeError(f"minhash: wrote {removed} removals but the components hold {cc['members']}")
    if not keep_work:
        io.rmtree(work)
    stages = {
        "signatures": summarise(sig),
        "buckets": summarise(buckets),
        "components": cc["stage"],
        "write": summarise(out),
    }
    return {
        "kind": "minhash",
        "shards": len(shards),
        "documents": sum(r["lines"] - r["invalid"] for r in sig),
        "invalid_lines": sum(r["invalid"] for r in sig),
        "documents_signed": sum(r["signed"] for r in sig),
        "shingles": sum(r["shingles"] for r in sig),
        "partitions": parts,
        "bucket_rows": total_rows,
        "candidate_pairs": sum(r["candidate_pairs"] for r in buckets),
        "verified_pairs": sum(r["edges"] for r in buckets),
        "largest_bucket": max((r["largest_bucket"] for r in buckets), default=0),
        "clusters": cc["clusters"],
        "largest_cluster": cc["largest_cluster"],
        "cc_rounds": cc["rounds"],
        "duplicates": removed,
        "params": {k: p[k] for k in DEFAULTS} | {"num_perm": p["num_perm"]},
        "peak_worker_rss_mb": max(s["peak_worker_rss_mb"] for s in stages.values()),
        "stages": stages,
    }
