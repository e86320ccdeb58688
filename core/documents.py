"""Dolma documents in: JSONL (.gz/.zst), parquet and Hugging Face datasets, line by line.

Reading never raises on a bad record: `read_documents` yields `Record`s that carry either a
parsed document or the reason it was rejected, with the file and 1-based line number, so a
stage can count and set aside the bad record and go on with the rest of the shard.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, cast

import fsspec
import zstandard

from .storage import open_binary

MAX_REJECT_PREVIEW = 2000
SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a \uD800..\uDFFF escape in a raw JSON line


@dataclass
class Record:
    """One line of a documents file: a document, or the reason it could not be one."""

    path: str
    line: int  # 1-based
    doc: dict[str, Any] | None = None
    error: str | None = None
    raw: str = ""
    fatal: bool = False  # the stream itself broke here (corrupt or truncated file)

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class FileStats:
    lines: int = 0
    rejected: int = 0
    reasons: dict[str, int] = field(default_factory=dict)


def iter_lines(path: str) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Yield (line_no, raw bytes, None) for each line, then (line_no, None, error) if the
    stream breaks (truncated gzip, corrupt zstd); never raises on corrupt data."""
    line_no = 0
    try:
        with open_binary(path) as f:
            # small read-ahead: on a corrupt stream, at most one buffer of lines is lost. The
            # streams wrapped here (fsspec's files, zstd's reader) have the `readinto` of a raw
            # stream, which IO[bytes], what open_binary declares, does not name.
            buffered = (
                f
                if isinstance(f, (gzip.GzipFile, io.BufferedReader))
                else io.BufferedReader(cast(io.RawIOBase, f), 1 << 16)
            )
            for line_no, raw in enumerate(buffered, start=1):
                yield line_no, raw, None
    except (EOFError, OSError, zlib.error, zstandard.ZstdError) as e:
        yield line_no + 1, None, f"corrupt or truncated file ({type(e).__name__}: {e}); lines after {line_no} lost"


def _has_surrogate_escape(raw: bytes) -> bool:
    """Whether a raw JSON line holds a `\\uD800`..`\\uDFFF` escape (any case), the only way a
    line of valid UTF-8 can carry a lone surrogate; two substring tests keep most lines cheap."""
    return (b"\\ud" in raw or b"\\uD" in raw) and _SURROGATE_ESCAPE.search(raw) is not None


def replace_lone_surrogates(obj: Any) -> Any:
    """`obj` with each lone UTF-16 surrogate in its strings (values and keys, at any depth)
    replaced by U+FFFD, one character for one, so offsets hold. A valid pair (`\\ud83d\\ude00`)
    arrives from JSON as one character and is not touched."""
    if isinstance(obj, str):
        return SURROGATE.sub("\ufffd", obj)
    if isinstance(obj, dict):
        return {replace_lone_surrogates(k): replace_lone_surrogates(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [replace_lone_surrogates(v) for v in obj]
    return obj


def parse_document(raw: bytes, path: str, line: int) -> Record:
    """Decode and validate one JSON line as a Dolma document.

    The fast path accepts exactly what the full check accepts, with the same result (stdlib
    json on the strictly decoded line; only a line with a `\\uD800`..`\\uDFFF` escape, the only
    way a lone surrogate can arrive, is scanned to replace lone surrogates with U+FFFD); anything
    else goes to the full check for its message."""
    try:
        doc = json.loads(raw.decode("utf-8"))
        if type(doc) is dict and "source" in doc and type(doc["text"]) is str and type(doc["id"]) in (str, int):
            if _has_surrogate_escape(raw):
                doc = replace_lone_surrogates(doc)
            return Record(path, line, doc=doc)
    except Exception:  # noqa: BLE001 (whatever it is, the full check names it)
        pass
    return parse_document_checked(raw, path, line)


def parse_document_checked(raw: bytes, path: str, line: int) -> Record:
    preview = raw[:MAX_REJECT_PREVIEW].decode("utf-8", "replace")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        return Record(path, line, error=f"invalid UTF-8 at byte {e.start}", raw=preview)
    if line == 1 and text.startswith("\ufeff"):
        text = text[1:]  # tolerate a UTF-8 byte-order mark
    text = text.rstrip("\r\n")
    if not text.strip():
        return Record(path, line, error="empty line", raw=preview)
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as e:
        return Record(path, line, error=f"not valid JSON: {e.msg} at column {e.colno}", raw=preview)
    except RecursionError:
        return Record(path, line, error="not valid JSON: nested too deeply", raw=preview)
    return validate_document(doc, path, line, preview, surrogates=_has_surrogate_escape(raw))


def validate_document(doc: Any, path: str, line: int, preview: str = "", *, surrogates: bool = True) -> Record:
    """Check the Dolma document fields of an already-decoded record. Lone surrogates in any of
    its strings become U+FFFD (dolma's reader accepts them, UTF-8 cannot hold them); `surrogates`
    False: the caller knows the record holds none, and the scan is skipped."""
    if not isinstance(doc, dict):
        return Record(path, line, error=f"expected a JSON object, found {type(doc).__name__}", raw=preview)
    for key in ("id", "text", "source"):
        if key not in doc:
            return Record(path, line, error=f"missing field '{key}'", raw=preview)
    if not isinstance(doc["text"], str):
        return Record(
            path, line, error=f"field 'text' must be a string, found {type(doc['text']).__name__}", raw=preview
        )
    if not isinstance(doc["id"], (str, int)) or isinstance(doc["id"], bool):
        return Record(
            path, line, error=f"field 'id' must be a string or integer, found {type(doc['id']).__name__}", raw=preview
        )
    if surrogates:
        try:
            doc = replace_lone_surrogates(doc)
        except RecursionError:  # reading never raises on a bad record
            return Record(path, line, error="nested too deeply to replace lone UTF-16 surrogates", raw=preview)
    return Record(path, line, doc=doc)


def iter_parquet(path: str, batch_size: int = 1024) -> Iterator[Record]:
    """Rows of a parquet file of Dolma documents (columns id, text, source, ...), as records
    with 1-based row numbers for lines; streamed by record batch."""
    import pyarrow.parquet as pq

    row = 0
    try:
        with fsspec.open(path, "rb") as f:
            for batch in pq.ParquetFile(f).iter_batches(batch_size=batch_size):
                for doc in batch.to_pylist():
                    row += 1
                    preview = json.dumps(doc, default=str, ensure_ascii=False)[:MAX_REJECT_PREVIEW]
                    # Arrow strings are UTF-8: a lone surrogate cannot be in a parquet file
                    yield validate_document(doc, path, row, preview, surrogates=False)
    except (OSError, ValueError) as e:  # pyarrow raises ArrowInvalid (a ValueError) on corrupt files
        yield Record(
            path, row + 1, error=f"corrupt parquet file ({type(e).__name__}: {e}); rows after {row} lost", fatal=True
        )


HF_PREFIX = "hfdataset:"


def _load_hf(spec: dict) -> Any:
    """The `datasets` Dataset or IterableDataset a spec names (datasets has no type information)."""
    import datasets

    if os.path.isdir(spec["path"]) and os.path.exists(os.path.join(spec["path"], "state.json")):
        return datasets.load_from_disk(spec["path"])  # a folder written by save_to_disk
    return datasets.load_dataset(
        spec["path"],
        name=spec.get("name"),
        split=spec.get("split", "train"),
        data_files=spec.get("data_files"),
        streaming=spec.get("streaming", True),
    )


def hf_shards(spec: dict) -> list[str]:
    """Shard ids of a Hugging Face dataset: one per underlying file when streaming, else
    contiguous blocks of 10,000 rows; each id is a path `read_documents` understands."""
    ds = _load_hf(spec)
    n = getattr(ds, "num_shards", None) or getattr(ds, "n_shards", None)
    if n is None:
        n = max(1, -(-len(ds) // 10_000))
    return [HF_PREFIX + json.dumps({**spec, "index": i, "num_shards": int(n)}, sort_keys=True) for i in range(int(n))]


def iter_hf(path: str) -> Iterator[Record]:
    spec = json.loads(path[len(HF_PREFIX) :])
    label = f"{spec['path']}[{spec.get('split', 'train')}] shard {spec['index']}/{spec['num_shards']}"
    ds = _load_hf(spec)
    part = (
        ds.shard(num_shards=spec["num_shards"], index=spec["index"])
        if hasattr(ds, "num_shards") or hasattr(ds, "n_shards")
        else ds.shard(num_shards=spec["num_shards"], index=spec["index"], contiguous=True)
    )
    for row, doc in enumerate(part, start=1):
        yield validate_document(
            dict(doc), label, row, json.dumps(doc, default=str, ensure_ascii=False)[:MAX_REJECT_PREVIEW]
        )


def read_documents(path: str) -> Iterator[Record]:
    """Stream the records of a documents file, checking ids are unique within the file."""
    seen: set[str] = set()
    stream = (
        iter_hf(path)
        if path.startswith(HF_PREFIX)
        else iter_parquet(path)
        if path.endswith(".parquet")
        else (
            # iter_lines yields raw bytes or an error, never both
            Record(path, line, error=err, fatal=True)
            if err is not None
            else parse_document(cast(bytes, raw), path, line)
            for line, raw, err in iter_lines(path)
        )
    )
    for rec in stream:
        if rec.fatal:
            yield rec
            return
        if rec.ok:
            assert rec.doc is not None  # an ok record holds its document
            key = str(rec.doc["id"])
            if key in seen:
                rec = Record(path, rec.line, error=f"duplicate id {key!r} within the file", raw=rec.raw)
            else:
                seen.add(key)
        yield rec


def read_jsonl(path: str) -> Iterator[tuple[int, dict | None, str | None]]:
    """Stream any JSONL file (attributes, rejects) as (line_no, obj, error)."""
    for line, raw, err in iter_lines(path):
        if err is not None:
            yield line, None, err
            return
        assert raw is not None  # iter_lines yields raw bytes or an error, never both
        try:
            yield line, json.loads(raw), None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            yield line, None, f"not valid JSON ({e})"


def iter_documents(path: str) -> Iterator[tuple[int, dict | None]]:
    """(1-based line, document or None) for every line of a documents file, None where the
    line is not a valid document: what stages that write aligned outputs (attributes) iterate.
    Stops where a corrupt stream breaks (the reading stage reports it)."""
    for rec in read_documents(path):
        if rec.fatal:
            return
        yield rec.line, rec.doc if rec.ok else None
