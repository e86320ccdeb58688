"""A persistent, incremental dedup index beside a released corpus: the builder.

`build(index, documents, kinds)` writes version 1; `add(index, documents)` writes the next
version without touching the files of earlier ones; `info(index)` reads the manifest. Each
kind's table comes from its record (`kinds.IndexSpec`: its parameters, its public index build,
which leaves sorted runs that this module compacts into key-range parts, or parts of its own).
A dedup run `--against INDEX` (exact: index_exact.py; minhash.py; paragraphs.py) reads the
index through index_store.py, never through this module, and marks new documents (paragraphs)
that duplicate indexed ones (exact, minhash: with the indexed id and version) as well as each
other, reading the index by key range.

Layout (any fsspec storage)::

    INDEX/index.json                  the manifest (the only file ever replaced, atomically)
    INDEX/v0001/docs/f000000.parquet  the ids of indexed file 0, one row per line (row = line)
    INDEX/v0001/exact/part-00000.parquet    (h0, h1, ref) sorted by h0; first of each hash
    INDEX/v0001/minhash/part-00000.parquet  (key, ref) LSH band keys sorted by key
    INDEX/v0001/paragraphs/part-00000.parquet  (key) distinct paragraph n-gram keys, sorted
    INDEX/v0001/ngram/eval-*.npy      an evaluation registry's table (registry.py)

A document is ref = g << 32 | position, where g numbers the indexed files across all versions
(version 1's files first) and position counts every line from 0. New documents deduped against
the index get g >= the index's file count, so "first" (the kept document) is always an indexed
one when a cluster holds one, and the result equals a joint dedup of the indexed files followed
by the new ones, restricted to the new ones. Sorted tables are split by key range into parts
of bounded size, each with 8192-row groups, and read by range: a task's memory depends on its
key range, not on the size of the index. The manifest records every file's sha256, rows and
key range, the parameters of each kind and the corpus each version covers (paths, lines,
sizes). MinHash verification re-reads indexed documents from the recorded paths (and checks
their ids), so the released corpus must stay where it was indexed.
"""

from __future__ import annotations

import json

import numpy as np
import pyarrow as pa

from dolma_prep.core import io
from dolma_prep.core.runtime import default_workers, run_tasks, summarise

from . import components
from .index_store import FORMAT, IndexInputError, manifest_path, read_manifest, sha256_of, write_table
from .kinds import IndexParts, index_spec, index_specs

# rows per part file of a sorted table (16 B per row: ~64 MB)
PART_ROWS = 4 << 20


# ---------------------------------------------------------------------------------- build tasks


def _docs_task(g: int, doc_path: str, out: str) -> dict:
    """The ids of one indexed file, one row per line (null for a line that is not a document)."""
    ids = []
    for _, doc in io.iter_documents(doc_path):
        ids.append(None if doc is None else io.json_value(doc["id"]))
    entry = write_table(io.join(out, "docs", f"f{g:06d}.parquet"), pa.table({"id": pa.array(ids, pa.string())}))
    return {"g": g, "lines": len(ids), "documents": sum(i is not None for i in ids),
            "file": f"docs/f{g:06d}.parquet", **entry}


def _compact_task(i: int, lo: int, hi: int | None, runs_glob: str, key: str, columns: list[str], first_only: bool,
                  out_path: str) -> dict:
    """One key range of sorted runs -> one part file, sorted by (key columns, ref)."""
    parts = {c: [] for c in columns}
    for f in io.glob(runs_glob):
        r = components.read_sorted_range(f, key, lo, hi, columns)
        for c in columns:
            parts[c].append(r[c])
    cols = {c: (np.concatenate(v) if v else np.empty(0, np.uint64)) for c, v in parts.items()}
    if not len(cols[key]):
        return {"rows": 0}
    order = np.lexsort(tuple(cols[c] for c in reversed(columns)))  # by columns in order, ref last
    cols = {c: v[order] for c, v in cols.items()}
    if first_only:  # exact: the first document of each hash is enough to match against
        hk = [c for c in columns if c != "ref"]
        keep = np.ones(len(order), bool)
        keep[1:] = np.any([cols[c][1:] != cols[c][:-1] for c in hk], axis=0)
        cols = {c: v[keep] for c, v in cols.items()}
    entry = write_table(out_path, pa.table({c: pa.array(v, pa.uint64()) for c, v in cols.items()}))
    return {"rows": int(len(cols[key])), "lo": int(cols[key][0]), "hi": int(cols[key][-1]), **entry}


def _ranges(total_rows: int, workers: int) -> list[tuple[int, int, int | None]]:
    parts = max(1, -(-total_rows // PART_ROWS))
    step = (1 << 64) // parts
    return [(i, i * step, None if i == parts - 1 else (i + 1) * step) for i in range(parts)]


def _build_kind(kind: str, files: list[tuple[int, str]], params: dict, version_dir: str, work: str,
                workers: int) -> tuple[list[dict], dict, dict]:
    """Write one kind's table for `files` [(g, path)]: the kind's own index build (its record's
    IndexSpec), then, for sorted runs, the compaction into key-range parts. Returns the parts,
    the statistics and what the version records beside them."""
    built = index_spec(kind).build(files, params, version_dir, work, workers)
    if isinstance(built, IndexParts):
        return built.parts, built.stages, built.version
    ranges = _ranges(built.rows, workers)
    calls = [(i, lo, hi, built.glob, built.key, built.columns, built.first_only,
              io.join(version_dir, kind, f"part-{i:05d}.parquet")) for i, lo, hi in ranges]
    out = run_tasks(f"index:{kind}-compact", _compact_task, calls, max_in_flight=workers)
    parts = [{"file": f"{kind}/part-{i:05d}.parquet", **{k: r[k] for k in ("rows", "lo", "hi", "sha256", "bytes")}}
             for (i, _, _), r in zip(ranges, out) if r["rows"]]
    return parts, {"hash": summarise(built.tasks), "compact": summarise(out)}, {}


def default_params(kind: str, params: dict | None) -> dict:
    """The parameters an index of `kind` records, from those given (the kind's defaults for the
    rest); unknown kinds and parameters are refused."""
    spec = index_spec(kind)
    if spec is None:
        raise IndexInputError(f"index: unknown kind {kind!r}; known: {', '.join(s.name for s in index_specs())}")
    params = dict(params or {})
    unknown = set(params) - set(spec.keeps)
    if unknown:
        raise IndexInputError(f"index {kind}: unknown parameters {sorted(unknown)}; "
                              f"{'an index' if spec.documents else 'a registry'} keeps {', '.join(spec.keeps)}")
    return spec.params(params)


def _write_version(index: str, manifest: dict, documents: list[str], workers: int | None) -> dict:
    unknown = [k for k in manifest["kinds"] if index_spec(k) is None]
    if unknown:  # e.g. a user's kind whose module is not loaded (DOLMA_PREP_DEDUP_MODULES)
        raise IndexInputError(f"{index}: holds {', '.join(unknown)} tables, no registered dedup kind builds them; "
                              f"known: {', '.join(s.name for s in index_specs())}")
    workers = workers or default_workers()
    number = len(manifest["versions"]) + 1
    name = f"v{number:04d}"
    version_dir = io.join(index, name)
    if io.exists(version_dir):  # a version a killed run left behind, never in the manifest
        io.rmtree(version_dir)
    first_g = sum(len(v["files"]) for v in manifest["versions"])
    files = [(first_g + i, path) for i, path in enumerate(documents)]
    work = io.join(index, "_work", name)
    io.rmtree(work)
    with_ids = any(index_spec(k).documents for k in manifest["kinds"])  # matches name indexed documents
    docs = run_tasks("index:docs", _docs_task, [(g, path, version_dir) for g, path in files],
                     max_in_flight=workers) if with_ids else [{"lines": None, "documents": 0, "bytes": 0} for _ in files]
    tables, stages, recorded = {}, {"docs": summarise(docs if with_ids else [])}, {}
    for kind, params in manifest["kinds"].items():
        tables[kind], stages[kind], extra = _build_kind(kind, files, params, version_dir, io.join(work, kind), workers)
        recorded.update(extra)
    io.rmtree(io.join(index, "_work"))
    version = {
        "version": number,
        "dir": name,
        "files": [{"g": g, "path": path, "lines": d["lines"], "documents": d["documents"], "size": io.file_size(path),
                   **({"ids": {"file": d["file"], "sha256": d["sha256"], "bytes": d["bytes"]}} if with_ids else {})}
                  for (g, path), d in zip(files, docs)],
        "tables": tables,
        "documents": sum(d["documents"] for d in docs),
        **recorded,  # e.g. what an evaluation registry's version holds (`eval`)
    }
    manifest["versions"].append(version)
    io.write_text_atomic(manifest_path(index), json.dumps(manifest, indent=1, sort_keys=True))
    return {"version": number, "documents": version["documents"], "files": len(files),
            "rows": {k: sum(t["rows"] for t in v) for k, v in tables.items()},
            "bytes": sum(t["bytes"] for v in tables.values() for t in v) + sum(d["bytes"] for d in docs),
            "peak_worker_rss_mb": max([stages["docs"]["peak_worker_rss_mb"]] + [
                s["peak_worker_rss_mb"] for k in tables for s in stages[k].values()]),
            "stages": stages}


def build(index: str, documents: list[str], kinds: dict[str, dict], workers: int | None = None) -> dict:
    """Create INDEX with version 1 over `documents`; `kinds` maps each kind to its parameters."""
    if io.exists(manifest_path(index)):
        raise IndexInputError(f"{index}: an index already exists here; add a release with `dolma-prep index add`")
    if not kinds:
        raise IndexInputError("index build: no kinds given")
    manifest = {"format": FORMAT, "kinds": {k: default_params(k, p) for k, p in kinds.items()}, "versions": []}
    return _write_version(index, manifest, documents, workers)


def add(index: str, documents: list[str], workers: int | None = None) -> dict:
    """Append `documents` as the next version; files of earlier versions are not touched."""
    manifest = read_manifest(index)
    known = {f["path"] for v in manifest["versions"] for f in v["files"]}
    again = [d for d in documents if d in known]
    if again:
        raise IndexInputError(f"{index}: {again[0]} is already indexed ({len(again)} file(s) given again)")
    return _write_version(index, manifest, documents, workers)


def info(index: str, verify: bool = False) -> dict:
    """Versions, sizes and parameters; with `verify`, every file's checksum is recomputed."""
    m = read_manifest(index)
    versions = []
    bad = []
    for v in m["versions"]:
        entries = [f["ids"] for f in v["files"] if "ids" in f] + [t for ts in v["tables"].values() for t in ts]
        if verify:
            for e in entries:
                path = io.join(index, v["dir"], e["file"])
                if not io.exists(path) or sha256_of(path) != e["sha256"]:
                    bad.append(path)
        versions.append({"version": v["version"], "files": len(v["files"]), "documents": v["documents"],
                         **({"eval": v["eval"]} if "eval" in v else {}),
                         "rows": {k: sum(t["rows"] for t in ts) for k, ts in v["tables"].items()},
                         "bytes": sum(e["bytes"] for e in entries),
                         "corpus": [f["path"] for f in v["files"]]})
    out = {"index": index, "format": m["format"], "kinds": m["kinds"], "versions": versions,
           "documents": sum(v["documents"] for v in versions), "bytes": sum(v["bytes"] for v in versions)}
    if verify:
        out["checksum_errors"] = bad
    return out


def render_info(out: dict) -> str:
    """`index info` as text: parameters, then one line per version."""
    lines = [f"index {out['index']} ({out['format']}): {len(out['versions'])} version(s), "
             f"{out['documents']:,} documents, {out['bytes']:,} bytes"]
    for kind, params in out["kinds"].items():
        lines.append(f"  {kind}: " + ", ".join(f"{k}={v}" for k, v in params.items()))
    for v in out["versions"]:
        rows = ", ".join(f"{k} {n:,} rows" for k, n in v["rows"].items())
        lines.append(f"  v{v['version']}: {v['files']} files, {v['documents']:,} documents, {rows}, {v['bytes']:,} bytes")
    for path in out.get("checksum_errors", []):
        lines.append(f"  checksum mismatch or missing: {path}")
    return "\n".join(lines)
