"""MinHash-LSH fuzzy document dedup on Ray, with distributed clustering.

Stages (each a set of Ray tasks; only file names and small stats travel through Ray):

1. signatures, per shard: normalise text (lower case, punctuation removed, white space
   collapsed), word n-gram shingles (default 5), xxh64 of each shingle, `num_perm` min-hashes
   computed with numpy in batches; each band of `rows` values is hashed to one 64-bit bucket
   key that also encodes the band number. Rows (key, doc_ref) are sorted by key and written
   to parquet; doc_ref = shard_index << 32 | line. No shingle set is kept.
2. buckets, per key range: P tasks, task p reading rows with key in its range from every run
   file (parquet row-group statistics skip the rest). Rows are sorted by (key, doc_ref); every
   member of a bucket gets an edge to the bucket's smallest doc_ref (a star: O(n) edges).
   Edges are deduplicated. With an index (`against`), its rows of the same key range join in
   and only edges touching a new document are kept.
2b. with `verify="exact"` (verify.py): a second pass re-reads only the documents in candidate
   pairs, stores their shingle sets (scratch proportional to candidates) and keeps the pairs
   whose exact Jaccard similarity is >= `threshold`.
3. components: `components.connected_components`, alternating large-star / small-star
   rounds over P edge partitions.
4. attributes, per shard: read the (node, root) rows of the shard's doc_ref range; every
   document that is not the smallest doc_ref of its component gets [[0, len(text), 1]].

P, and the batch sizes, come from `memory_budget_mb`, so a worker's memory does not grow with
the corpus. Results depend only on the input, the parameters and the seed.

Min-hash permutations (`signatures.py`): `hash_family="multiply_shift"` (default) or
`"mersenne"` (datasketch/datatrove's formula, about 2.5x slower).

LSH S-curve: a pair with Jaccard s becomes a candidate with probability 1 - (1 - s**r)**b.
The default b=16, r=7 (112 permutations) gives 0.977 at s=0.8, 0.75 at 0.7, 0.37 at 0.6:
recall at the 0.8 threshold, with verification removing the extra candidates. datasketch's
choice for 0.8 and 128 permutations, 9 x 13, gives only 0.40 at s=0.8 (its 50% point is 0.82).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import pyarrow as pa
from pydantic import Field, model_validator

from dolma_prep.core import io
from dolma_prep.core.runtime import default_workers, run_tasks, summarise

from . import components, verify
from .index_store import MATCHED_ATTRIBUTES, lookup_ids, matched_attributes, open_against, use_against
from .kinds import DedupKind, DedupOptions, IndexSpec, SortedRuns, checked, register
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
    ids: list[str] = []
    lengths: list[int] = []
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
            continue
        text = doc["text"]
        ids.append(io.json_value(doc["id"]))
        lengths.append(len(text))
        sh = shingle_hashes(normalized_word_bytes(text), n)
        total_shingles += len(sh)
        if len(sh):
            batch.add(base | line, sh)
            if batch.count >= p["batch_shingles"]:
                flush()
    flush()
    io.save_npy(io.join(work, "meta", f"lengths-{shard_index}.npy"), np.asarray(lengths, dtype=np.int64))
    io.write_text_atomic(io.join(work, "meta", f"ids-{shard_index}.txt"), "\n".join(ids))
    return {
        "lines": len(ids),
        "invalid": lengths.count(-1),
        "signed": docs_signed,
        "shingles": total_shingles,
    }


def _stage_buckets(p_index: int, lo: int, hi: int | None, work: str, partitions: int, p: dict,
                   index_tables: tuple = (), first_new: int = 0) -> dict:
    """Bucket task p: the LSH star edges of the buckets whose keys lie in [lo, hi). With an
    index, its rows of the same keys join the new rows, and only edges that touch a new
    document (ref >= first_new) are kept."""
    keys, refs = [], []
    for f in io.glob(io.join(work, "rows", "run-*.parquet")):
        r = components.read_sorted_range(f, "key", lo, hi, ["key", "ref"])
        if len(r["key"]):
            keys.append(r["key"])
            refs.append(r["ref"])
    index_rows = index_hits = 0
    if index_tables and keys:
        new_keys = np.unique(np.concatenate(keys))
        for f, flo, fhi in index_tables:  # each sorted by key, covering [flo, fhi]
            if fhi < lo or (hi is not None and flo >= hi):
                continue
            r = components.read_sorted_range(f, "key", lo, hi, ["key", "ref"])
            index_rows += len(r["key"])
            hit = np.isin(r["key"], new_keys)
            index_hits += int(np.count_nonzero(hit))
            if hit.any():
                keys.append(r["key"][hit])
                refs.append(r["ref"][hit])
    key = np.concatenate(keys) if keys else np.empty(0, np.uint64)
    ref = np.concatenate(refs) if refs else np.empty(0, np.uint64)
    del keys, refs
    n_rows = len(key)
    order = np.lexsort((ref, key))
    key = key[order]
    ref = ref[order]
    del order
    first, starts = components.key_groups(key)
    head = ref[first]
    member = (ref != head) & (ref >= np.uint64(first_new))  # an edge between indexed documents is not needed
    child, parent = ref[member], head[member]
    sizes = np.diff(np.append(starts, len(key)))
    del key, ref, first, head
    child, parent = components.sorted_unique(child, parent)
    out = {
        "rows": int(n_rows),
        "rows_held": int(n_rows - index_hits + index_rows),  # new rows and every index row read
        "index_rows_read": int(index_rows),
        "buckets_shared": int(np.count_nonzero(sizes > 1)),
        "largest_bucket": int(sizes.max()) if len(sizes) else 0,
        "candidate_pairs": int(len(child)),
        "candidate_shards": [],
    }
    if p["verify"] == "exact":  # checked by a second pass over the candidates' documents (verify.py)
        out["candidate_shards"] = verify.write_candidates(work, p_index, child, parent)
    else:
        components.write_partitioned(np.concatenate([child, parent]), np.concatenate([parent, child]),
                                     io.join(work, "cc-first"), p_index, partitions)
    out["edges"] = int(len(child))
    return out


def _stage_write(shard_index: int, out_path: str, work: str, result_dir: str, attribute: str,
                 index: dict | None = None) -> dict:
    lengths = io.load_npy(io.join(work, "meta", f"lengths-{shard_index}.npy"))
    ids = io.read_text(io.join(work, "meta", f"ids-{shard_index}.txt")).split("\n") if len(lengths) else []
    lo = shard_index << 32
    node, root = components.read_members(result_dir, lo, lo + (1 << 32))
    line_of = (node - np.uint64(lo)).astype(np.int64).tolist()
    removed = set(line_of)
    matched = {}
    if index is not None:  # the kept document of a cluster holding an indexed one is indexed (smaller refs)
        indexed = root < np.uint64(index["first_new"])
        found = lookup_ids(index, root[indexed].tolist())
        matched = {ln: found[int(r)] for ln, r, i in zip(line_of, root.tolist(), indexed.tolist()) if i}
    with io.AttributeWriter(out_path, attribute) as out:
        for line, id_js in enumerate(ids):
            spans = f"[[0,{int(lengths[line])},1]]" if line in removed else "[]"
            extra = matched_attributes(int(lengths[line]), *matched[line]) if line in matched else None
            out.line(id_js, spans, extra)
    return {"removed": len(removed), "matched_indexed": len(matched)}


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


class MinHashOptions(DedupOptions):
    """MinHash-LSH document dedup (`run_minhash`)."""

    attribute: str = "minhash_duplicates"
    ngram: int = Field(default=5, ge=1)
    num_perm: int | None = Field(default=None, ge=1, description="default bands * rows")
    bands: int = Field(default=16, ge=1)
    rows: int = Field(default=7, ge=1)
    threshold: float = Field(default=0.8, ge=0, le=1)
    verify: Literal["exact", "none"] = "exact"
    seed: int = 1
    hash_family: Literal["multiply_shift", "mersenne"] = "multiply_shift"
    memory_budget_mb: int = Field(default=1024, ge=64)
    partitions: int | None = Field(default=None, ge=1)
    clusters_path: str | None = None  # a path the user chooses on purpose (anywhere); not a name under the output
    keep_work: bool = False
    against: str | None = None  # an index (`dolma-prep index build`): also duplicates of indexed documents

    @model_validator(mode="after")
    def _enough_permutations(self) -> MinHashOptions:
        if self.num_perm is not None and self.num_perm < self.bands * self.rows:
            raise ValueError(f"num_perm={self.num_perm} < bands*rows={self.bands * self.rows}")
        return self

    def extra_attributes(self) -> tuple[str, ...]:
        return MATCHED_ATTRIBUTES if self.against else ()


DEFAULTS = MinHashOptions.defaults("keep_work")
# what an index's signatures depend on: a dedup against it must use the same values
SIGNATURE_PARAMS = ("ngram", "num_perm", "bands", "rows", "seed", "hash_family")


def plan(p: dict, workers: int) -> dict:
    """Batch sizes from the memory budget (the partition count needs the row count, later)."""
    budget = int(p["memory_budget_mb"]) << 20
    usable = max(32 << 20, budget - (192 << 20))  # a Ray worker with numpy/pyarrow loaded
    # signature batch: 8 B shingle + 8 B doc index + chunked permutation buffers
    p["batch_shingles"] = int(max(1 << 16, min(1 << 24, usable // 4 // 24)))
    p["usable_bytes"] = usable
    return p


def check_params(params: dict) -> dict:
    """`params` over DEFAULTS, checked; num_perm filled in."""
    p = checked("minhash", params, DEFAULTS)
    p["num_perm"] = int(p["num_perm"] or p["bands"] * p["rows"])
    if p["num_perm"] < p["bands"] * p["rows"]:
        raise ValueError(f"num_perm={p['num_perm']} < bands*rows={p['bands'] * p['rows']}")
    if p["verify"] not in ("exact", "none", None):
        raise ValueError(f"verify must be 'exact' or 'none', got {p['verify']!r}")
    p["verify"] = p["verify"] or "none"
    return p


def partition_ranges(total_rows: int, p: dict) -> list[tuple[int, int, int | None]]:
    """(index, lo, hi) key ranges such that a bucket task's rows take at most 1/16 of the budget."""
    rows_per_partition = max(1, p["usable_bytes"] // _PARTITION_SHARE // _ROW_BYTES_IN_REDUCE)
    # never from the worker count: the partitions shape the statistics (a pair is counted once per
    # partition it appears in), and a run must give the same manifest on any cluster
    parts = p["partitions"] or max(1, -(-total_rows // rows_per_partition))
    step = (1 << 64) // parts
    return [(i, i * step, None if i == parts - 1 else (i + 1) * step) for i in range(parts)]


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

    Parameters: ngram=5 (word shingles), bands=16, rows=7, num_perm=None (bands*rows; more is
    allowed and ignored by the bands), threshold=0.8 (Jaccard, used by verification),
    verify="exact" (a second pass over the candidates' documents; "none": LSH candidates are
    duplicates), seed=1, hash_family="multiply_shift" | "mersenne", memory_budget_mb=1024
    (per worker), partitions=None (bucket/edge partitions; default from the budget),
    clusters_path=None (write every duplicate and the document it was kept for, parquet),
    against=None (an index built by `dolma-prep index build`: documents that duplicate an
    indexed one are marked too, with its id; the signature parameters come from the index).
    """
    index = None
    if params.get("against"):
        index = open_against(params["against"], "minhash", params, SIGNATURE_PARAMS)
        params = {**params, **index["params"]}
    p = check_params(params)
    workers = workers or default_workers()
    plan(p, workers)
    base = index["base_shard"] if index else 0
    if base + len(shards) >= 1 << 31:
        raise ValueError("too many shards for 32-bit shard references")
    first_new = base << 32
    work = io.join(work_dir, "minhash")
    io.rmtree(work)

    sig = run_tasks("minhash:signatures", _stage_signatures,
                    [(base + i, d, work, p) for i, (d, _) in enumerate(shards)], max_in_flight=workers)
    tables = tuple(index["tables"]) if index else ()
    total_rows = sum(r["signed"] for r in sig) * p["bands"] + (index["rows"] if index else 0)
    ranges = partition_ranges(total_rows, p)
    parts = len(ranges)
    buckets = run_tasks("minhash:buckets", _stage_buckets,
                        [(i, lo, hi, work, parts, p, tables, first_new) for i, lo, hi in ranges], max_in_flight=workers)
    io.rmtree(io.join(work, "rows"))
    extract, check = [], []
    if p["verify"] == "exact":
        cand = sorted({s for r in buckets for s in r["candidate_shards"]})

        def doc_path(s):
            return shards[s - base][0] if s >= base else index["documents"][s]

        extract = run_tasks("minhash:verify-extract", verify.stage_extract,
                            [(s, doc_path(s), work, p["ngram"], index["ids"][s][0] if index and s < base else None)
                             for s in cand], max_in_flight=workers)
        check = run_tasks("minhash:verify", verify.stage_verify,
                          [(i, work, io.join(work, "cc-first"), parts, p["threshold"]) for i in range(parts)],
                          max_in_flight=workers)
        for sub in ("pairs", "nodes", "store"):
            if not keep_work:
                io.rmtree(io.join(work, sub))
    cc = components.connected_components(io.join(work, "cc-first"), io.join(work, "cc"), parts, workers)
    io.rmtree(io.join(work, "cc-first"))
    out = run_tasks("minhash:write", _stage_write,
                    [(base + i, o, work, cc["result_dir"], attribute, index and {**index, "first_new": first_new})
                     for i, (_, o) in enumerate(shards)], max_in_flight=workers)
    if p["clusters_path"]:
        _write_clusters(cc["result_dir"], p["clusters_path"], shards)
    removed = sum(r["removed"] for r in out)
    if index is None and removed != cc["members"]:
        raise RuntimeError(f"minhash: wrote {removed} removals but the components hold {cc['members']}")
    if not keep_work:
        io.rmtree(work)
    stages = {
        "signatures": summarise(sig),
        "buckets": summarise(buckets),
        "verify_extract": summarise(extract),
        "verify": summarise(check),
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
        "max_rows_per_bucket_task": max((r["rows_held"] for r in buckets), default=0),
        "index_rows_read": sum(r["index_rows_read"] for r in buckets),
        "candidate_pairs": sum(r["candidate_pairs"] for r in buckets),
        "candidate_documents": sum(r["candidate_documents"] for r in extract),
        "verify_store_bytes": sum(r["store_bytes"] for r in extract),
        "verified_pairs": sum(r["edges"] for r in check) if check else sum(r["edges"] for r in buckets),
        "largest_bucket": max((r["largest_bucket"] for r in buckets), default=0),
        "clusters": cc["clusters"],
        "largest_cluster": cc["largest_cluster"],
        "cc_rounds": cc["rounds"],
        "duplicates": removed,
        "matched_indexed": sum(r["matched_indexed"] for r in out),
        "index_versions": index["versions"] if index else [],
        "params": {k: p[k] for k in DEFAULTS if k != "against"} | {"num_perm": p["num_perm"]},
        "peak_worker_rss_mb": max(s["peak_worker_rss_mb"] for s in stages.values()),
        "stages": stages,
    }


def index_params(given: dict) -> dict:
    """What an index's signatures depend on (SIGNATURE_PARAMS), the defaults for those not given."""
    p = check_params({k: given.get(k, DEFAULTS[k]) for k in SIGNATURE_PARAMS})
    return {k: p[k] for k in SIGNATURE_PARAMS}


def index_runs(files: list[tuple[int, str]], params: dict, version_dir: str, work: str, workers: int) -> SortedRuns:
    """`index build --kinds minhash`: the sorted (band key, ref) runs of `files` [(g, path)]."""
    p = plan(check_params(dict(params)), workers)
    res = run_tasks("index:minhash-signatures", _stage_signatures, [(g, path, work, p) for g, path in files],
                    max_in_flight=workers)
    return SortedRuns(io.join(work, "rows", "run-*.parquet"), "key", ["key", "ref"], False,
                      sum(r["signed"] for r in res) * p["bands"], res)


register(DedupKind("minhash", MinHashOptions, run_minhash, level="document",
                   index=IndexSpec("minhash", SIGNATURE_PARAMS, index_params, index_runs,
                                   lambda index, params: use_against(index, "minhash", params, SIGNATURE_PARAMS))))
