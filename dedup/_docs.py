"""Minimal streaming document reader and aligned attribute writer for the dedup kinds.

`dedup/` stays independent of `pipeline/`: it reads Dolma JSONL (plain, .gz, .zst; local or
fsspec URL) itself. Lines that are not documents yield `None` so outputs stay aligned.
"""
from __future__ import annotations

import gzip
import io
import json
import os
import uuid
from typing import Iterator

import fsspec
import zstandard


def _open(path: str, mode: str):
    raw = fsspec.open(path, mode).open()
    if path.endswith(".gz"):
        return gzip.GzipFile(filename="", fileobj=raw, mode=mode, **({"mtime": 0} if "w" in mode else {}))
    if path.endswith((".zst", ".zstd")):
        if "w" in mode:
            return zstandard.ZstdCompressor().stream_writer(raw, closefd=True)
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return raw


def iter_docs(path: str) -> Iterator[tuple[int, dict | None]]:
    """Yield (1-based line, document or None) for every line; stops quietly at corruption
    (the pipeline's read stage has already reported it)."""
    try:
        with _open(path, "rb") as f:
            for line_no, raw in enumerate(io.BufferedReader(f, 1 << 20), start=1):
                try:
                    doc = json.loads(raw)
                except ValueError:
                    yield line_no, None
                    continue
                ok = isinstance(doc, dict) and "id" in doc and isinstance(doc.get("text"), str)
                yield line_no, doc if ok else None
    except (EOFError, OSError, zstandard.ZstdError):
        return


class AlignedWriter:
    """Atomic (temp name + rename) writer of JSONL lines, compressed by extension."""

    def __init__(self, path: str):
        self.path = path
        suffix = "".join(s for s in (".gz", ".zst") if path.endswith(s))
        self.tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}{suffix}"
        if "://" not in path:
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._f = _open(self.tmp, "wb")

    def write(self, obj: dict) -> None:
        self._f.write(json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode("utf-8", "surrogatepass") + b"\n")

    def __enter__(self) -> "AlignedWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self._f.close()
        fs, _, _ = fsspec.get_fs_token_paths(self.path)
        if exc_type is None:
            fs.mv(self.tmp, self.path) if "://" in self.path else os.replace(self.tmp, self.path)
        else:
            fs.rm(self.tmp)
