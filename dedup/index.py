"""A persistent, incremental dedup index beside a released corpus.

`build(index, documents, kinds)` writes version 1; `add(index, documents)` writes the next
version without touching the files of earlier ones; `info(index)` reads the manifest. A dedup
run `--against INDEX` (exact: index_exact.py; minhash.py; paragraphs.py) marks new documents
(paragraphs) that duplicate indexed ones (exact, minhash: with the indexed id and version) as
well as each other, reading the index by key range.

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

import hashlib
import io as _bytesio
import json

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from dolma_prep.core import io
from dolma_prep.core.runtime import default_workers, run_tasks, summarise

from . import components

FORMAT = "dolma-prep-index/2"
# format 1 differs only in how paragraph n-gram keys were hashed (before the vectorised keys of
# paragraphs.py): its indexes without paragraph keys are read as they are
OLD_FORMATS = ("dolma-prep-index/1",)
KINDS = ("exact", "minhash", "paragraphs", "ngram")
DOC_KINDS = ("exact", "minhash", "paragraphs")  # kinds whose matches name an indexed document (ids kept)
MANIFEST = "index.json"
# rows per part file of a sorted table (16 B per row: ~64 MB)
PART_ROWS = 4 << 20


class IndexInputError(io.InputError):
    """A user error about an index (missing, mismatched parameters, changed corpus)."""


def manifest_path(index: str) -> str:
    return io.join(index, MANIFEST)


def read_manifest(index: str) -> dict:
    path = manifest_path(index)
    if not io.exists(path):
        raise IndexInputError(f"{index}: no dedup index here ({MANIFEST} not found); create one with "
                          "`dolma-prep index build --documents ... --output INDEX`")
    m = io.read_json(path)
    if m.get("format") in OLD_FORMATS and "paragraphs" in m.get("kinds", {}):
        raise IndexInputError(f"{path}: format {m.get('format')!r} holds paragraph keys hashed the old way; "
                              f"rebuild the index with this version (`dolma-prep index build`), format {FORMAT!r}")
    if m.get("format") != FORMAT and m.get("format") not in OLD_FORMATS:
        raise IndexInputError(f"{path}: format {m.get('format')!r}, expected {FORMAT!r}")
    return m


def write_table(path: str, table: pa.Table) -> dict:
    """Write a sorted table (8192-row groups) and return its sha256 and size."""
    buf = _bytesio.BytesIO()
    pq.write_table(table, buf, compression="zstd", row_group_size=components.ROW_GROUP)
    data = buf.getvalue()
    io.write_bytes_atomic(path, data)
    return {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def sha256_of(path: str) -> str:
    h = hashlib.sha256()
    with io.open_random(path) as f:
        while chunk := f.read(1 << 22):
            h.update(chunk)
    return h.hexdigest()


# ---------------------------------------------------------------------------------- build tasks


def _docs_task(g: int, doc_path: str, out: str) -> dict:
    """The ids of one indexed file, one row per line (null for a line that is not a document)."""
    ids = []
    for _, doc in io.iter_documents(doc_path):
        ids.append(None if doc is None else io.json_value(doc["id"]))
    entry = write_table(io.join(out, "docs", f"f{g:06d}.parquet"), pa.table({"id": pa.array(ids, pa.string())}))
    return {"g": g, "lines": len(ids), "documents": sum(i is not None for i in ids),
            "file": f"docs/f{g:06d}.parquet", **entry}


def _paragraph_keys_task(g: int, doc_path: str, work: str, params: dict) -> dict:
    """The distinct paragraph n-gram keys of one file (as the paragraph deduper makes them), as a
    sorted run."""
    from . import paragraphs

    p = {**paragraphs.DEFAULTS, **params, "bloom_partitions": 1}
    tmp = io.join(work, "tmp", str(g))
    paragraphs._stage_keys(0, doc_path, tmp, p)
    keys = np.unique(io.load_npy(io.join(tmp, "keys-0-0.npy")))
    io.rmtree(tmp)
    io.write_parquet(io.join(work, "runs", f"run-{g}.parquet"), pa.table({"key": pa.array(keys, pa.uint64())}),
                     compression="none", row_group_size=components.ROW_GROUP)
    return {"keys": int(len(keys))}


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
                workers: int) -> tuple[list[dict], dict]:
    """Write one kind's sorted table for `files` [(g, path)]; return its parts and statistics."""
    if kind == "ngram":
        from .registry import ngram_task as _ngram_task

        (r,) = run_tasks("index:ngram", _ngram_task, [([path for _, path in files], version_dir, params)])
        return r["parts"], {"ngram": summarise([r])}
    if kind == "paragraphs":
        res = run_tasks("index:paragraph-keys", _paragraph_keys_task, [(g, path, work, params) for g, path in files],
                        max_in_flight=workers)
        rows = sum(r["keys"] for r in res)
        runs, key, columns, first_only = io.join(work, "runs", "run-*.parquet"), "key", ["key"], True
    elif kind == "minhash":
        from . import minhash

        p = minhash.plan(minhash.check_params(dict(params)), workers)
        res = run_tasks("index:minhash-signatures", minhash._stage_signatures,
                        [(g, path, work, p) for g, path in files], max_in_flight=workers)
        rows = sum(r["signed"] for r in res) * p["bands"]
        runs, key, columns, first_only = io.join(work, "rows", "run-*.parquet"), "key", ["key", "ref"], False
    elif kind == "exact":
        from . import index_exact

        res = run_tasks("index:exact-hashes", index_exact.hash_task,
                        [(g, path, io.join(work, "exact"), params["key"]) for g, path in files],
                        max_in_flight=workers)
        rows = sum(r["keys"] for r in res)
        runs, key, columns, first_only = io.join(work, "exact", "run-*.parquet"), "h0", ["h0", "h1", "ref"], True
    ranges = _ranges(rows, workers)
    out = run_tasks(f"index:{kind}-compact", _compact_task,
                    [(i, lo, hi, runs, key, columns, first_only, io.join(version_dir, kind, f"part-{i:05d}.parquet"))
                     for i, lo, hi in ranges], max_in_flight=workers)
    parts = [{"file": f"{kind}/part-{i:05d}.parquet", **{k: r[k] for k in ("rows", "lo", "hi", "sha256", "bytes")}}
             for (i, _, _), r in zip(ranges, out) if r["rows"]]
    return parts, {"hash": summarise(res), "compact": summarise(out)}


def default_params(kind: str, params: dict | None) -> dict:
    params = dict(params or {})
    if kind == "minhash":
        from . import minhash

        unknown = set(params) - set(minhash.SIGNATURE_PARAMS)
        if unknown:
            raise IndexInputError(f"index minhash: unknown parameters {sorted(unknown)}; an index keeps "
                                  f"{', '.join(minhash.SIGNATURE_PARAMS)}")
        p = minhash.check_params({k: params.get(k, minhash.DEFAULTS[k]) for k in minhash.SIGNATURE_PARAMS})
        return {k: p[k] for k in minhash.SIGNATURE_PARAMS}
    if kind == "ngram":
        unknown = set(params) - {"ngram", "text_field"}
        if unknown:
            raise IndexInputError(f"index ngram: unknown parameters {sorted(unknown)}; a registry keeps ngram, "
                                  "text_field")
        return {"ngram": int(params.get("ngram", 13)), "text_field": params.get("text_field", "text")}
    if kind == "paragraphs":
        from . import paragraphs

        unknown = set(params) - set(paragraphs.KEY_PARAMS)
        if unknown:
            raise IndexInputError(f"index paragraphs: unknown parameters {sorted(unknown)}; an index keeps "
                                  f"{', '.join(paragraphs.KEY_PARAMS)}")
        return {k: params.get(k, paragraphs.DEFAULTS[k]) for k in paragraphs.KEY_PARAMS}
    if kind == "exact":
        unknown = set(params) - {"key"}
        if unknown:
            raise IndexInputError(f"index exact: unknown parameters {sorted(unknown)}; an index keeps key")
        return {"key": params.get("key", "text")}
    raise IndexInputError(f"index: unknown kind {kind!r}; known: {', '.join(KINDS)}")


def _write_version(index: str, manifest: dict, documents: list[str], workers: int | None) -> dict:
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
    with_ids = any(k in DOC_KINDS for k in manifest["kinds"])
    docs = run_tasks("index:docs", _docs_task, [(g, path, version_dir) for g, path in files],
                     max_in_flight=workers) if with_ids else [{"lines": None, "documents": 0, "bytes": 0} for _ in files]
    tables, stages = {}, {"docs": summarise(docs if with_ids else [])}
    for kind, params in manifest["kinds"].items():
        tables[kind], stages[kind] = _build_kind(kind, files, params, version_dir, io.join(work, kind), workers)
    io.rmtree(io.join(index, "_work"))
    version = {
        "version": number,
        "dir": name,
        "files": [{"g": g, "path": path, "lines": d["lines"], "documents": d["documents"], "size": io.file_size(path),
                   **({"ids": {"file": d["file"], "sha256": d["sha256"], "bytes": d["bytes"]}} if with_ids else {})}
                  for (g, path), d in zip(files, docs)],
        "tables": tables,
        "documents": sum(d["documents"] for d in docs),
    }
    if "ngram" in tables:  # what the evaluation registry's version holds
        version["eval"] = next(t["eval"] for t in tables["ngram"] if "eval" in t)
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


# ---------------------------------------------------------------------------------- dedup against


def open_against(index: str, kind: str, explicit: dict, signature_params: tuple) -> dict:
    """What a dedup run of `kind` needs of INDEX (small: paths, ranges, parameters). Parameters
    given explicitly that differ from the index's are refused."""
    m = read_manifest(index)
    if kind not in m["kinds"]:
        raise IndexInputError(f"{index}: the index has no {kind} tables (it holds {', '.join(m['kinds'])}); "
                          f"add them with a new `index build --kinds {kind}`")
    own = m["kinds"][kind]
    differ = [f"{k}={explicit[k]!r} (index: {own[k]!r})" for k in signature_params
              if explicit.get(k) is not None and explicit[k] != own[k]]
    if differ:
        raise IndexInputError(f"dedup {kind} --against {index}: parameters differ from the index's: {', '.join(differ)}. "
                          f"The index was built with {', '.join(f'{k}={v!r}' for k, v in own.items())}; drop these "
                          "parameters (the index's are used) or build an index with them")
    tables, documents, ids = [], [], []
    for v in m["versions"]:
        for t in v["tables"][kind]:
            tables.append((io.join(index, v["dir"], t["file"]), t["lo"], t["hi"]))
        for f in v["files"]:
            documents.append(f["path"])
            ids.append((io.join(index, v["dir"], f["ids"]["file"]), v["version"]))
    return {"root": index, "params": dict(own), "base_shard": len(documents), "tables": tables,
            "rows": sum(t["rows"] for v in m["versions"] for t in v["tables"][kind]), "documents": documents,
            "ids": ids, "versions": [v["version"] for v in m["versions"]]}


def check_against(index: str, kind: str, explicit: dict) -> None:
    """Refuse a missing index or parameters that differ from the index's (no Ray needed)."""
    if kind == "minhash":
        from .minhash import SIGNATURE_PARAMS as names
    elif kind == "paragraphs":
        from .paragraphs import KEY_PARAMS as names
    else:
        names = ("key",)
    open_against(index, kind, explicit, names)


def _read_ids(path: str, lines: list[int]) -> dict[int, str | None]:
    """The ids at `lines` (0-based rows) of a docs file, reading only their row groups."""
    pf = io.parquet_file(path)
    groups = sorted({ln // components.ROW_GROUP for ln in lines})
    out = {}
    for g in groups:
        col = pf.read_row_group(g, columns=["id"]).column("id").to_pylist()
        for ln in lines:
            if ln // components.ROW_GROUP == g:
                out[ln] = col[ln - g * components.ROW_GROUP]
    return out


def lookup_ids(index: dict, refs: list[int]) -> dict[int, tuple[str, int]]:
    """{ref: (id as JSON, version)} for indexed document references."""
    by_file: dict[int, list[int]] = {}
    for r in refs:
        by_file.setdefault(r >> 32, []).append(r & 0xFFFFFFFF)
    out = {}
    for g, lines in by_file.items():
        path, version = index["ids"][g]
        for ln, id_js in _read_ids(path, lines).items():
            out[g << 32 | ln] = (id_js, version)
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
