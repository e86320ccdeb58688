"""Reading a finished run's output folder: the manifest and config, the `.csv.gz` indexes, the
shards in run order, the attribute folders, and the ids or objects of JSONL outputs
(`dropped/`, `rejects/`, `attributes/`, `kept/`). Shared by `stats`, `show`, `attrstats` and
`report`; where a shard's rejects go is `stages.common.rejects_path`, the rule `Rejects`
writes by.
"""
from __future__ import annotations

import io as _io
import json
from collections import Counter

import fsspec

from ..core import io
from ..core.io import InputError
from ..core.tokens import read_index


def load_manifest(output: str) -> dict:
    path = io.join(output, "manifest.json")
    if not io.exists(path):
        raise InputError(f"{path} not found: is {output} the output folder of a finished `dolma-prep run`?")
    try:
        return json.loads(io.read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def load_config(output: str) -> dict | None:
    """The mix the run was made with (`_state/config.json`), or None when absent."""
    path = io.join(output, "_state", "config.json")
    if not io.exists(path):
        return None
    return json.loads(io.read_text(path)).get("mix")


def scan_index(path: str, copies: Counter | None = None) -> tuple[int, int, list[str]]:
    """Return (documents, tokens, errors) of one `.csv.gz` index; count (src, id) rows into
    `copies` when given."""
    errors, docs, expect = [], 0, 0
    with io.open_binary(path) as f:
        for line_no, row in enumerate(read_index(f), start=1):
            try:
                start, end = int(row[0]), int(row[1])
            except (ValueError, IndexError):
                errors.append(f"{path}:{line_no}: malformed index row {row!r}")
                continue
            if start != expect or end <= start:
                errors.append(f"{path}:{line_no}: span [{start}, {end}) does not follow the previous end {expect}")
            expect = end
            docs += 1
            if copies is not None and len(row) >= 4:
                copies[(row[3], row[2])] += 1
    return docs, expect, errors


def shards_of(manifest: dict, source: str | None = None) -> list[dict]:
    """The input shards in run order: [{"source", "rel", "index"}], `index` within its source."""
    out, seen = [], Counter()
    for inp in manifest.get("inputs", []):
        src = inp["source"]
        out.append({"source": src, "rel": inp["path"], "index": seen[src]})
        seen[src] += 1
    return [s for s in out if source is None or s["source"] == source]


def attribute_folders(output: str) -> list[str]:
    """Names of the attribute folders under OUTPUT/attributes/, sorted."""
    root = io.join(output, "attributes")
    fs = fsspec.get_fs_token_paths(root)[0]
    if not fs.exists(root):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if fs.isdir(p))


def read_bytes(path: str) -> bytes:
    with io.open_binary(path) as f:
        return f.read()


def read_ids(path: str) -> list:
    """The `id` of every line of a JSONL file (None for lines without one), read with polars."""
    import polars as pl

    raw = read_bytes(path)
    if not raw.strip():
        return []
    try:
        return pl.read_ndjson(_io.BytesIO(raw), schema={"id": pl.String})["id"].to_list()
    except Exception:  # noqa: BLE001 (a malformed line: fall back to a per-line parse, which reports it)
        ids = []
        for n, line in enumerate(raw.splitlines(), start=1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"{path}:{n}: not valid JSON") from None
            v = obj.get("id") if isinstance(obj, dict) else None
            ids.append(None if v is None else str(v))
        return ids


def read_jsonl_objects(path: str) -> list[dict]:
    out = []
    for line_no, obj, err in io.read_jsonl(path):
        if err is not None:
            raise InputError(f"{path}:{line_no}: {err}")
        out.append(obj)
    return out


def count_lines(path: str) -> int:
    """Non-blank lines of a file; 0 when it does not exist."""
    if not io.exists(path):
        return 0
    return sum(1 for line in read_bytes(path).splitlines() if line.strip())
