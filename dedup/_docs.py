"""Streaming document reader and aligned attribute writer for the dedup kinds.

Reading goes through `dolma_prep.pipeline.io` (a leaf module: it imports nothing else of
the pipeline), so every stage agrees on which lines are documents: a line the read stage
rejects is `None` here too, and outputs stay aligned line by line with the input.
"""
from __future__ import annotations

from typing import Iterator

from dolma_prep.pipeline.io import AtomicWriter, read_documents


def iter_docs(path: str) -> Iterator[tuple[int, dict | None]]:
    """Yield (1-based line, document or None) for every line of a documents file; stops at
    the point where a corrupt stream breaks (the read stage reports it)."""
    for rec in read_documents(path):
        if rec.fatal:
            return
        yield rec.line, rec.doc if rec.ok else None


class AlignedWriter:
    """Atomic (temp name + rename) JSONL writer, compressed by extension."""

    def __init__(self, path: str):
        self._w = AtomicWriter(path)

    def write(self, obj: dict) -> None:
        self._w.write_line(obj)

    def __enter__(self) -> "AlignedWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        self._w.commit() if exc_type is None else self._w.abort()
