"""Tiny Dolma JSONL helpers for dedup (kept here so `dedup/` never imports `pipeline/`).

Documents are read line by line as bytes, so that a broken line (bad UTF-8, bad JSON, a JSON
value that is not an object, a missing `id` or a `text` that is not a string) is reported as an
invalid document *at its position*: attribute files must stay aligned with document files.
Outputs are written to a temporary name and renamed when complete; gzip headers carry no
timestamp or file name, so the same content always gives the same bytes.
"""

from __future__ import annotations

import gzip
import io
import json
import os
import re
import uuid
from typing import IO, Iterator

Doc = tuple  # (id, text); None for an invalid line


def open_binary(path: str, mode: str = "rb") -> IO[bytes]:
    """Open `path` for binary reading or writing, (de)compressing by extension (.gz, .zst)."""
    if path.endswith(".gz"):
        if "r" in mode:
            return gzip.open(path, "rb")
        raw = open(path, "wb")
        # mtime=0 and no file name: byte-identical output for identical content.
        return _Closing(gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=6), raw)
    if path.endswith((".zst", ".zstd")):
        import zstandard

        if "r" in mode:
            return zstandard.ZstdDecompressor().stream_reader(open(path, "rb"), closefd=True)
        return zstandard.ZstdCompressor(level=3).stream_writer(open(path, "wb"), closefd=True)
    return open(path, mode)


class _Closing(io.RawIOBase):
    """A writer that closes a wrapped gzip stream and then its underlying file."""

    def __init__(self, inner: IO[bytes], raw: IO[bytes]):
        self._inner, self._raw = inner, raw

    def writable(self) -> bool:
        return True

    def write(self, b) -> int:  # type: ignore[override]
        return self._inner.write(b)

    def close(self) -> None:
        if not self.closed:
            self._inner.close()
            self._raw.close()
        super().close()


def iter_raw_lines(path: str) -> Iterator[bytes]:
    """The lines of a (compressed) JSONL file, without their line terminators."""
    with open_binary(path, "rb") as f:
        reader = io.BufferedReader(f, buffer_size=1 << 20) if not isinstance(f, io.BufferedReader) else f
        for line in reader:
            if line.endswith(b"\n"):
                line = line[:-1]
                if line.endswith(b"\r"):
                    line = line[:-1]
            yield line


_SURROGATE = re.compile("[\ud800-\udfff]")


def parse_document(line: bytes):
    """(id, text) of a Dolma document line, or None when the line is not a valid document.

    The rules are those of the pipeline's reader (pipeline/io.py `validate_document`, not
    imported: dedup/ stays independent of pipeline/): a JSON object with `id` (string or
    integer), `text` (a string without lone surrogates) and `source`."""
    try:
        obj = json.loads(line)
    except (ValueError, UnicodeDecodeError):
        return None
    if not isinstance(obj, dict) or "source" not in obj:
        return None
    doc_id = obj.get("id")
    text = obj.get("text")
    if not isinstance(doc_id, (str, int)) or isinstance(doc_id, bool) or not isinstance(text, str):
        return None
    if _SURROGATE.search(text):
        return None
    return doc_id, text


def iter_documents(path: str) -> Iterator[tuple | None]:
    """One item per line of `path`: (id, text), or None for a line that is not a document
    (including a repeated id within the file, as the pipeline's reader rejects it). A byte
    order mark on the first line is tolerated; a corrupt or truncated stream raises."""
    seen: set[str] = set()
    for n, line in enumerate(iter_raw_lines(path)):
        if n == 0 and line.startswith(b"\xef\xbb\xbf"):
            line = line[3:]
        doc = parse_document(line)
        if doc is not None:
            key = str(doc[0])
            if key in seen:
                doc = None
            else:
                seen.add(key)
        yield doc


def id_json(doc_id) -> str:
    """The compact JSON encoding of a document id (`null` for invalid lines)."""
    js = json.dumps(doc_id, ensure_ascii=False, separators=(",", ":"))
    try:
        js.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates: keep them escaped
        js = json.dumps(doc_id, ensure_ascii=True, separators=(",", ":"))
    return js


def attribute_line(id_js: str, name_js: str, spans_js: str) -> str:
    """`{"id": ID, "attributes": {NAME: SPANS}}` from already-encoded JSON pieces."""
    return '{"id":' + id_js + ',"attributes":{' + name_js + ":" + spans_js + "}}\n"


def format_score(score) -> str:
    """A span score as JSON: integers stay integers, floats use Python's shortest repr."""
    if isinstance(score, int):
        return str(score)
    return repr(float(score))


def spans_json(spans) -> str:
    return "[" + ",".join(f"[{s},{e},{format_score(v)}]" for s, e, v in spans) + "]"


class AtomicWriter:
    """Write a (compressed) file under a temporary name; rename it into place on success."""

    def __init__(self, path: str):
        self.path = path
        parent = os.path.dirname(os.path.abspath(path))
        os.makedirs(parent, exist_ok=True)
        base = os.path.basename(path)
        # keep the extension last so that compression is chosen from it
        self.tmp = os.path.join(parent, f".{base}.tmp-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        self._ext = next((e for e in (".gz", ".zst", ".zstd") if path.endswith(e)), "")

    def __enter__(self):
        self._fh = open_binary(self.tmp + self._ext, "wb")
        self._buf: list[str] = []
        self._size = 0
        return self

    def write(self, s: str) -> None:
        self._buf.append(s)
        self._size += len(s)
        if self._size > 1 << 20:
            self._flush()

    def _flush(self) -> None:
        if self._buf:
            self._fh.write("".join(self._buf).encode("utf-8", "surrogatepass"))
            self._buf, self._size = [], 0

    def __exit__(self, exc_type, exc, tb):
        try:
            if exc_type is None:
                self._flush()
        finally:
            self._fh.close()
        if exc_type is None:
            os.replace(self.tmp + self._ext, self.path)
        else:
            try:
                os.remove(self.tmp + self._ext)
            except OSError:
                pass
        return False


def read_jsonl_objects(path: str) -> Iterator[dict]:
    """Valid JSON objects of a (compressed) JSONL file; blank or broken lines are skipped."""
    for line in iter_raw_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            yield obj
