"""Reading a persistent dedup index (layout: index.py): what the kinds need of it to dedup new
documents `--against` it, and the file helpers the builder shares.

The kinds read the store (`open_against`: tables, ranges, parameters; `lookup_ids`: the id and
version of an indexed document) and never the builder; the builder (index.py) calls the kinds'
public index builds through their records (`kinds.IndexSpec`). So imports go one way:
index.py -> the kinds -> index_store.py -> kinds.py.
"""
from __future__ import annotations

import hashlib
import io as _bytesio

import pyarrow as pa
import pyarrow.parquet as pq

from dolma_prep.core import io

from . import components, kinds

FORMAT = "dolma-prep-index/2"
# older formats still read: a kind whose tables changed since says so in its IndexSpec.outdated
# (format 1 differs only in how paragraph n-gram keys were hashed)
OLD_FORMATS = ("dolma-prep-index/1",)
MANIFEST = "index.json"


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
    fmt = m.get("format")
    if fmt != FORMAT and fmt not in OLD_FORMATS:
        raise IndexInputError(f"{path}: format {fmt!r}, expected {FORMAT!r}")
    for name in m.get("kinds", {}):
        spec = kinds.index_spec(name)
        why = spec.outdated.get(fmt) if spec is not None else None
        if why:
            raise IndexInputError(f"{path}: format {fmt!r} holds {why}; rebuild the index with this version "
                                  f"(`dolma-prep index build`), format {FORMAT!r}")
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


def use_against(index: str, kind: str, params: dict, signature_params: tuple) -> dict:
    """`params` of a run of `kind` against INDEX, checked now (a missing index, or parameters that
    differ from the index's), before Ray starts: what `dolma-prep dedup KIND --against` runs."""
    open_against(index, kind, params, signature_params)
    return {**params, "against": index}


def read_ids(path: str, lines: list[int]) -> dict[int, str | None]:
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
        for ln, id_js in read_ids(path, lines).items():
            out[g << 32 | ln] = (id_js, version)
    return out


# the keys beside the attribute of a document that duplicates an indexed one
MATCHED_ATTRIBUTES = ("matched_id", "matched_version")


def matched_attributes(length: int, matched_id_js: str, version: int) -> dict[str, str]:
    """The extra attributes of a document that duplicates an indexed one:
    `<attribute>__matched_id` [[0, len, ID]] and `<attribute>__matched_version` [[0, len, V]]."""
    return {"matched_id": f"[[0,{length},{matched_id_js}]]", "matched_version": f"[[0,{length},{version}]]"}
