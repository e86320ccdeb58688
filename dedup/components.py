"""Distributed connected components over edge partitions (alternating large-star / small-star).

Kiveris, Lattanzi, Mirrokni, Rastogi, Vassilvitskii, "Connected Components in MapReduce and
Beyond" (SoCC 2014). Nodes are 64-bit document references; an edge is stored as records
(key, nbr) in parquet files, hash-partitioned by `key` into P partitions. Each step is P Ray
tasks; task p reads the files addressed to partition p (one per writer), groups by key with a
sort, and writes its output already partitioned for the next step, so no process ever holds
more than one partition's edges:

- large-star at v: m = min(N(v) + {v}); emit (u, m) for every neighbour u > v;
- small-star at v (only neighbours u < v are sent to v): m = min(N(v) + {v});
  emit (u, m) for every u in N(v) + {v}, u != m.

The rounds stop when a large-star and the following small-star both changed nothing: then
every node with a larger neighbour is the minimum of its neighbourhood and every node has at
most one smaller neighbour, i.e. each component is a star around its minimum node. A final
pass writes (node, root) for every non-root node, sorted by node, so that readers can fetch a
range of nodes (one shard's documents) with parquet row-group statistics. The result does not
depend on P or on the number of workers: components and their minima are unique.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dolma_prep.core import io
from dolma_prep.core.runtime import run_tasks, summarise

from .text import fmix64

_SALT = np.uint64(0x6A09E667F3BCC909)
ROW_GROUP = 1 << 13  # rows per row group of sorted files: the unit a range read decodes


def node_partition(nodes: np.ndarray, partitions: int) -> np.ndarray:
    return (fmix64(np.asarray(nodes, dtype=np.uint64) ^ _SALT) % np.uint64(partitions)).astype(np.int64)


def write_partitioned(key: np.ndarray, nbr: np.ndarray, out_dir: str, writer: int, partitions: int) -> int:
    """Write records (key, nbr) as out_dir/part-<writer>-<p>.parquet for each non-empty p."""
    if len(key) == 0:
        return 0
    part = node_partition(key, partitions)
    order = np.argsort(part, kind="stable")
    part, key, nbr = part[order], key[order], nbr[order]
    bounds = np.searchsorted(part, np.arange(partitions + 1))
    for p in range(partitions):
        lo, hi = bounds[p], bounds[p + 1]
        if lo == hi:
            continue
        table = pa.table({"key": pa.array(key[lo:hi], pa.uint64()), "nbr": pa.array(nbr[lo:hi], pa.uint64())})
        io.write_parquet(io.join(out_dir, f"part-{writer}-{p}.parquet"), table, compression="none")
    return int(len(key))


def read_partition(in_dir: str, p: int) -> tuple[np.ndarray, np.ndarray]:
    files = io.glob(io.join(in_dir, f"part-*-{p}.parquet"))
    if not files:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    tables = [io.read_parquet(f, use_threads=False) for f in files]
    key = np.concatenate([t.column("key").to_numpy() for t in tables]).astype(np.uint64, copy=False)
    nbr = np.concatenate([t.column("nbr").to_numpy() for t in tables]).astype(np.uint64, copy=False)
    return key, nbr


def sorted_unique(key: np.ndarray, nbr: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    order = np.lexsort((nbr, key))
    key, nbr = key[order], nbr[order]
    if len(key) > 1:
        keep = np.concatenate([[True], (key[1:] != key[:-1]) | (nbr[1:] != nbr[:-1])])
        key, nbr = key[keep], nbr[keep]
    return key, nbr


def key_groups(key: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start index of each row's group and the group starts, for key-sorted rows."""
    starts = np.flatnonzero(np.concatenate([[True], key[1:] != key[:-1]])) if len(key) else np.empty(0, np.int64)
    counts = np.diff(np.append(starts, len(key)))
    return np.repeat(starts, counts), starts


def _large_star(p: int, in_dir: str, out_dir: str, partitions: int) -> dict:
    key, nbr = sorted_unique(*read_partition(in_dir, p))
    first, _ = key_groups(key)
    m = np.minimum(nbr[first], key) if len(key) else key  # min of neighbourhood and self
    up = nbr > key
    changes = int(np.count_nonzero(up & (m != key)))
    hi, lo = nbr[up], m[up]
    # small-star sends every edge to its larger endpoint: key = hi, nbr = lo
    write_partitioned(hi, lo, out_dir, p, partitions)
    return {"records": int(len(key)), "changes": changes}


def _small_star(p: int, in_dir: str, out_dir: str, partitions: int) -> dict:
    key, nbr = sorted_unique(*read_partition(in_dir, p))  # all nbr < key
    first, starts = key_groups(key)
    m = nbr[first] if len(key) else key  # smallest neighbour (all neighbours are smaller)
    counts = np.diff(np.append(starts, len(key)))
    changes = int(np.count_nonzero(counts > 1))
    # edges (u, m) for u in N(v) with u != m, plus (v, m) once per group
    other = nbr != m
    a = np.concatenate([nbr[other], key[starts]])
    b = np.concatenate([m[other], m[starts]])
    # large-star needs both directions
    write_partitioned(np.concatenate([a, b]), np.concatenate([b, a]), out_dir, p, partitions)
    return {"records": int(len(key)), "changes": changes}


def _extract(p: int, in_dir: str, out_dir: str) -> dict:
    key, nbr = sorted_unique(*read_partition(in_dir, p))
    down = nbr < key  # converged: each non-root node has exactly one smaller neighbour, its root
    node, root = key[down], nbr[down]
    if len(np.unique(node)) != len(node):
        raise RuntimeError(f"connected components: partition {p} did not converge to stars")
    is_root_row = ~down
    roots, sizes = np.unique(key[is_root_row], return_counts=True)
    table = pa.table({"node": pa.array(node, pa.uint64()), "root": pa.array(root, pa.uint64())})
    io.write_parquet(io.join(out_dir, f"part-{p}.parquet"), table, compression="none", row_group_size=ROW_GROUP)
    return {
        "members": int(len(node)),
        "clusters": int(len(roots)),
        "largest_cluster": int(sizes.max() + 1) if len(sizes) else 0,
    }


def connected_components(first_dir: str, work: str, partitions: int, workers: int | None, max_rounds: int = 100) -> dict:
    """Components of the graph whose records (both directions) are in `first_dir`.

    Returns stats and `result_dir`, holding part-<p>.parquet files of (node, root) for every
    node that is not the minimum of its component, sorted by node.
    """
    current = first_dir
    stages = []
    for rnd in range(max_rounds):
        small_in = io.join(work, f"round-{rnd}-small")
        large = run_tasks(f"components:large-star-{rnd}", _large_star,
                          [(p, current, small_in, partitions) for p in range(partitions)], max_in_flight=workers)
        nxt = io.join(work, f"round-{rnd + 1}-large")
        small = run_tasks(f"components:small-star-{rnd}", _small_star,
                          [(p, small_in, nxt, partitions) for p in range(partitions)], max_in_flight=workers)
        stages += large + small
        changes = sum(r["changes"] for r in large) + sum(r["changes"] for r in small)
        io.rmtree(small_in)
        if current != first_dir:
            io.rmtree(current)
        current = nxt
        if changes == 0:
            break
    else:
        raise RuntimeError(f"connected components did not converge in {max_rounds} rounds")
    result_dir = io.join(work, "components")
    ext = run_tasks("components:extract", _extract, [(p, current, result_dir) for p in range(partitions)],
                    max_in_flight=workers)
    io.rmtree(current)
    return {
        "rounds": rnd + 1,
        "members": sum(r["members"] for r in ext),
        "clusters": sum(r["clusters"] for r in ext),
        "largest_cluster": max((r["largest_cluster"] for r in ext), default=0),
        "result_dir": result_dir,
        "stage": summarise(stages + ext),
    }


def read_sorted_range(path: str, column: str, lo: int, hi: int | None, columns: list[str]) -> dict:
    """Rows with lo <= column < hi of a parquet file sorted by `column` (uint64).

    Only the row groups whose statistics overlap the range are decoded, then sliced exactly
    with a binary search; nothing else of the file is read."""
    if hi is not None and hi >= 1 << 64:
        hi = None
    with io.open_random(path) as f:
        return _read_sorted_range(pq.ParquetFile(f), column, lo, hi, columns)


def _read_sorted_range(pf, column: str, lo: int, hi: int | None, columns: list[str]) -> dict:
    meta = pf.metadata
    ci = meta.schema.names.index(column)
    groups = []
    for g in range(meta.num_row_groups):
        st = meta.row_group(g).column(ci).statistics
        if st is None or not st.has_min_max:
            groups.append(g)
        elif st.max >= lo and (hi is None or st.min < hi):
            groups.append(g)
    if not groups:
        return {c: np.empty(0, np.uint64) for c in columns}
    t = pf.read_row_groups(groups, columns=columns, use_threads=False)
    arrays = {c: t.column(c).to_numpy().astype(np.uint64, copy=False) for c in columns}
    key = arrays[column]
    a = int(np.searchsorted(key, np.uint64(lo), "left"))
    b = len(key) if hi is None else int(np.searchsorted(key, np.uint64(hi), "left"))
    return {c: v[a:b].copy() for c, v in arrays.items()}


def read_members(result_dir: str, lo: int, hi: int) -> tuple[np.ndarray, np.ndarray]:
    """(node, root) for lo <= node < hi, from every result partition."""
    nodes, roots = [], []
    for f in io.glob(io.join(result_dir, "part-*.parquet")):
        r = read_sorted_range(f, "node", lo, hi, ["node", "root"])
        if len(r["node"]):
            nodes.append(r["node"])
            roots.append(r["root"])
    if not nodes:
        return np.empty(0, np.uint64), np.empty(0, np.uint64)
    node, root = np.concatenate(nodes), np.concatenate(roots)
    order = np.argsort(node)
    return node[order], root[order]

