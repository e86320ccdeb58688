"""Dolma documents and attribute files in and out, for local paths and any fsspec URL.

Everything here streams: a file is read line by line through a decompressing stream and
written through a compressing one, so memory never grows with file size.

Reading never raises on a bad record: `read_documents` yields `Record`s that carry either a
parsed document or the reason it was rejected, with the file and 1-based line number, so a
stage can count and set aside the bad record and go on with the rest of the shard.
"""
from __future__ import annotations

import glob as _glob
import gzip
import io
import json
import os
import re
import uuid
import zlib
from dataclasses import dataclass, field
from typing import IO, Any, Iterator

import fsspec
import zstandard

DOC_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".jsonl.zstd", ".parquet")
MAX_REJECT_PREVIEW = 2000
GZIP_LEVEL = 3
_SURROGATE = re.compile("[\ud800-\udfff]")
_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # a \uD800..\uDFFF escape in a raw JSON line


class InputError(Exception):
    """A user-facing problem with input data or configuration (no traceback shown)."""


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


def is_remote(path: str) -> bool:
    return "://" in path and not path.startswith("file://")


def join(base: str, *parts: str) -> str:
    """Join path parts for local paths and URLs alike."""
    out = base.rstrip("/")
    for p in parts:
        if p:
            out = out + "/" + p.strip("/")
    return out


def relpath(path: str, root: str) -> str:
    root = root.rstrip("/") + "/"
    if not path.startswith(root):
        raise InputError(f"{path} is not under {root}")
    return path[len(root):]


def expand_globs(root: str, patterns: list[str]) -> list[str]:
    """Expand glob patterns relative to `root` (local folder or URL); sorted, deduplicated."""
    found: set[str] = set()
    for pat in patterns:
        full = pat if (is_remote(pat) or os.path.isabs(pat) or not root) else join(root, pat)
        if is_remote(full):
            fs, _, _ = fsspec.get_fs_token_paths(full)
            proto = full.split("://", 1)[0]
            matches = [f"{proto}://{m}" if "://" not in m else m for m in fs.glob(full)]
        else:
            matches = _glob.glob(full, recursive=True)
        found.update(m for m in matches if m.endswith(DOC_SUFFIXES))
    return sorted(found)


def _compression(path: str) -> str | None:
    if path.endswith(".gz"):
        return "gzip"
    if path.endswith((".zst", ".zstd")):
        return "zstd"
    return None


def open_binary(path: str, mode: str = "rb") -> IO[bytes]:
    """Open a local path or fsspec URL as a binary (decompressed) stream."""
    comp = _compression(path)
    if "w" in mode or "a" in mode:
        check_write(path)
    raw = fsspec.open(path, mode).open()
    if comp == "gzip":
        if "w" in mode:  # level 3: near level 9's size at several times its speed
            return gzip.GzipFile(filename="", fileobj=raw, mode=mode, mtime=0, compresslevel=GZIP_LEVEL)
        return gzip.GzipFile(fileobj=raw, mode=mode)
    if comp == "zstd":
        if "w" in mode:
            return zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=True)
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return raw


def iter_lines(path: str) -> Iterator[tuple[int, bytes | None, str | None]]:
    """Yield (line_no, raw bytes, None) for each line, then (line_no, None, error) if the
    stream breaks (truncated gzip, corrupt zstd); never raises on corrupt data."""
    line_no = 0
    try:
        with open_binary(path) as f:
            # small read-ahead: on a corrupt stream, at most one buffer of lines is lost
            buffered = f if isinstance(f, (gzip.GzipFile, io.BufferedReader)) else io.BufferedReader(f, 1 << 16)
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
        return _SURROGATE.sub("\ufffd", obj)
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
        if (type(doc) is dict and "source" in doc and type(doc["text"]) is str
                and type(doc["id"]) in (str, int)):
            if _has_surrogate_escape(raw):
                doc = replace_lone_surrogates(doc)
            return Record(path, line, doc=doc)
    except Exception:  # noqa: BLE001 (whatever it is, the full check names it)
        pass
    return _parse_document_checked(raw, path, line)


def _parse_document_checked(raw: bytes, path: str, line: int) -> Record:
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
        return Record(path, line, error=f"field 'text' must be a string, found {type(doc['text']).__name__}", raw=preview)
    if not isinstance(doc["id"], (str, int)) or isinstance(doc["id"], bool):
        return Record(path, line, error=f"field 'id' must be a string or integer, found {type(doc['id']).__name__}", raw=preview)
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
        yield Record(path, row + 1, error=f"corrupt parquet file ({type(e).__name__}: {e}); rows after {row} lost",
                     fatal=True)


HF_PREFIX = "hfdataset:"


def _load_hf(spec: dict):
    import datasets

    if os.path.isdir(spec["path"]) and os.path.exists(os.path.join(spec["path"], "state.json")):
        return datasets.load_from_disk(spec["path"])  # a folder written by save_to_disk
    return datasets.load_dataset(spec["path"], name=spec.get("name"), split=spec.get("split", "train"),
                                 data_files=spec.get("data_files"), streaming=spec.get("streaming", True))


def hf_shards(spec: dict) -> list[str]:
    """Shard ids of a Hugging Face dataset: one per underlying file when streaming, else
    contiguous blocks of 10,000 rows; each id is a path `read_documents` understands."""
    ds = _load_hf(spec)
    n = getattr(ds, "num_shards", None) or getattr(ds, "n_shards", None)
    if n is None:
        n = max(1, -(-len(ds) // 10_000))
    return [HF_PREFIX + json.dumps({**spec, "index": i, "num_shards": int(n)}, sort_keys=True) for i in range(int(n))]


def iter_hf(path: str) -> Iterator[Record]:
    spec = json.loads(path[len(HF_PREFIX):])
    label = f"{spec['path']}[{spec.get('split', 'train')}] shard {spec['index']}/{spec['num_shards']}"
    ds = _load_hf(spec)
    part = (ds.shard(num_shards=spec["num_shards"], index=spec["index"]) if hasattr(ds, "num_shards") or hasattr(ds, "n_shards")
            else ds.shard(num_shards=spec["num_shards"], index=spec["index"], contiguous=True))
    for row, doc in enumerate(part, start=1):
        yield validate_document(dict(doc), label, row, json.dumps(doc, default=str, ensure_ascii=False)[:MAX_REJECT_PREVIEW])


def read_documents(path: str) -> Iterator[Record]:
    """Stream the records of a documents file, checking ids are unique within the file."""
    seen: set[str] = set()
    stream = iter_hf(path) if path.startswith(HF_PREFIX) else iter_parquet(path) if path.endswith(".parquet") else (
        Record(path, line, error=err, fatal=True) if err is not None else parse_document(raw, path, line)
        for line, raw, err in iter_lines(path))
    for rec in stream:
        if rec.fatal:
            yield rec
            return
        if rec.ok:
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
        try:
            yield line, json.loads(raw), None
        except (json.JSONDecodeError, UnicodeDecodeError) as e:
            yield line, None, f"not valid JSON ({e})"


def _jsonable(o: Any) -> Any:
    """Values JSON lacks (datetimes from parquet or `datasets` timestamp columns, bytes)."""
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_jsonable)


# ------------------------------------------------------------------------------ where writes may go
class UnsafeWriteError(InputError):
    """A write to a path outside the run's output (and scratch), or onto its inputs."""


@dataclass(frozen=True)
class WritePolicy:
    """Where a run may write: under one of `roots` (the output, the scratch folder), and never
    under `protect` (the data root) unless the root the path is under lies inside it (an
    output folder inside the data root). Every write of the package goes through
    `check_write`; `runtime` hands the driver's policy to every task."""

    roots: tuple[str, ...] = ()
    protect: tuple[str, ...] = ()


_POLICY = WritePolicy()
_WRITTEN: list[str] | None = None  # files committed by the task now running (runtime._call)


def _norm(path: str) -> str:
    """A path with `..`, `.` and links resolved (local) or collapsed (URLs), no trailing slash."""
    if is_remote(path):
        proto, rest = path.split("://", 1)
        return proto + "://" + os.path.normpath("/" + rest).lstrip("/").rstrip("/")
    return os.path.realpath(path.removeprefix("file://")).rstrip("/") or "/"


def _under(path: str, root: str) -> bool:
    return path == root or path.startswith(root.rstrip("/") + "/")


def set_write_policy(policy: WritePolicy | None) -> WritePolicy:
    """Install the policy of this process (None: unrestricted); returns the one it replaces."""
    global _POLICY
    old = _POLICY
    _POLICY = policy or WritePolicy()
    return old


def write_policy(roots: list[str] | tuple[str, ...], protect: list[str] | tuple[str, ...] = ()) -> WritePolicy:
    return WritePolicy(tuple(_norm(r) for r in roots if r), tuple(_norm(p) for p in protect if p))


def current_write_policy() -> WritePolicy:
    return _POLICY


def check_write(path: str) -> None:
    """Refuse (UnsafeWriteError) a write, rename or delete of `path` that the policy forbids."""
    pol = _POLICY
    if not pol.roots:
        return
    p = _norm(path)
    inside = [r for r in pol.roots if _under(p, r)]
    if not inside:
        raise UnsafeWriteError(f"refusing to write {path}: it resolves to {p}, outside the output "
                               f"({', '.join(pol.roots)}); a name in the mix file may not leave the output folder")
    deepest = max(inside, key=len)
    for prot in pol.protect:
        if _under(p, prot) and not _under(deepest, prot):
            raise UnsafeWriteError(f"refusing to write {path}: it lies under the input data root {prot}; "
                                   "inputs are never written")


def begin_task_writes() -> None:
    global _WRITTEN
    _WRITTEN = []


def end_task_writes() -> list[str]:
    global _WRITTEN
    out, _WRITTEN = _WRITTEN or [], None
    return out


class AtomicWriter:
    """Write a (possibly compressed) file under a temporary name; `commit()` renames it into
    place, so a reader never sees a half-written file and a killed task leaves no output."""

    def __init__(self, path: str):
        check_write(path)
        self.path = path
        suffix = "".join(s for s in (".gz", ".zst") if path.endswith(s))
        self.tmp = f"{path}.tmp-{uuid.uuid4().hex[:8]}{suffix}"
        if not is_remote(path):
            os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
        self._f = open_binary(self.tmp, "wb")

    def write_line(self, obj: Any) -> None:
        self._f.write(dumps(obj).encode("utf-8") + b"\n")

    def write(self, data: bytes) -> None:
        self._f.write(data)

    def write_text(self, text: str) -> None:
        self._f.write(text.encode("utf-8"))

    def commit(self) -> None:
        self._f.close()
        move(self.tmp, self.path)
        if _WRITTEN is not None:
            _WRITTEN.append(self.path)

    def abort(self) -> None:
        try:
            self._f.close()
        finally:
            remove(self.tmp)

    def __enter__(self) -> "AtomicWriter":
        return self

    def __exit__(self, exc_type, *_) -> None:
        if exc_type is None:
            self.commit()
        else:
            self.abort()


def move(src: str, dst: str) -> None:
    check_write(dst)
    if is_remote(dst):
        fs, _, _ = fsspec.get_fs_token_paths(dst)
        fs.mv(src, dst)
    else:
        os.replace(src, dst)


def remove(path: str) -> None:
    check_write(path)
    fs, _, _ = fsspec.get_fs_token_paths(path)
    try:
        fs.rm(path)
    except FileNotFoundError:
        pass


def exists(path: str) -> bool:
    fs, _, _ = fsspec.get_fs_token_paths(path)
    return fs.exists(path)


def write_text_atomic(path: str, text: str) -> None:
    w = AtomicWriter(path)
    w.write(text.encode("utf-8"))
    w.commit()


def read_text(path: str) -> str:
    with fsspec.open(path, "rt", encoding="utf-8") as f:
        return f.read()


def file_size(path: str) -> int:
    fs, _, _ = fsspec.get_fs_token_paths(path)
    return int(fs.size(path))


def list_files(root: str, suffix: str = "") -> list[str]:
    """All files under a folder (local or URL), sorted."""
    fs, _, _ = fsspec.get_fs_token_paths(root)
    if not fs.exists(root):
        return []
    proto = root.split("://", 1)[0] + "://" if is_remote(root) else ""
    out = [proto + p if proto and "://" not in p else p for p in fs.find(root)]
    return sorted(p for p in out if p.endswith(suffix) and ".tmp-" not in p)


def iter_documents(path: str) -> Iterator[tuple[int, dict | None]]:
    """(1-based line, document or None) for every line of a documents file, None where the
    line is not a valid document: what stages that write aligned outputs (attributes) iterate.
    Stops where a corrupt stream breaks (the reading stage reports it)."""
    for rec in read_documents(path):
        if rec.fatal:
            return
        yield rec.line, rec.doc if rec.ok else None


# ------------------------------------------------------------------------------ attribute values
def format_score(v: Any) -> str:
    """A span score as JSON, the one formatter of every attribute writer: integers stay
    integers; floats as msgspec (dolma's JSON encoder) writes them: shortest round-trip digits,
    plain decimal for 1e-5 <= |v| < 1e16, else `1e16` / `1.5e-7` style; NaN and inf as null."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")):
        return "null"
    r = repr(v)
    if "e" not in r:
        return r
    mant, exp = r.split("e")
    e = int(exp)
    if e == -5:  # Python switches to exponent form one decade earlier than msgspec
        sign = "-" if mant.startswith("-") else ""
        return f"{sign}0.0000{mant.lstrip('-').replace('.', '')}"
    return f"{mant}e{e}"


def spans_json(spans) -> str:
    """`[[start,end,score],...]` as compact JSON."""
    return "[" + ",".join(f"[{int(s)},{int(e)},{format_score(v)}]" for s, e, v in spans) + "]"


def json_value(value: Any) -> str:
    """Compact JSON of an id or source; lone surrogates (not writable as UTF-8) stay escaped."""
    out = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if _SURROGATE.search(out):
        out = json.dumps(value, separators=(",", ":"))
    return out


def attribute_line(id_js: str, name_js: str, spans_js: str) -> str:
    """`{"id": ID, "attributes": {NAME: SPANS}}` from already-encoded JSON pieces."""
    return '{"id":' + id_js + ',"attributes":{' + name_js + ":" + spans_js + "}}\n"


def span_list(spans: list[str] | None) -> str:
    """`[a,b,...]` from already-encoded spans; `[]` for none."""
    return "[" + ",".join(spans) + "]" if spans else "[]"


def whole_span(text: str, value: Any = 1) -> str:
    """The span covering a whole document: `[[0,len(text),VALUE]]`."""
    return f"[[0,{len(text)},{value}]]"


class AttributeWriter(AtomicWriter):
    """One attribute file, written atomically: a line per line of its documents file, in order
    (dolma pairs the two files by line). Every dedup kind writes through this."""

    def __init__(self, path: str, attribute: str):
        super().__init__(path)
        self.attribute = attribute
        self.name_js = json.dumps(attribute, ensure_ascii=False)

    def line(self, id_js: str | None, spans_js: str = "[]", extra: dict[str, str] | None = None) -> None:
        """`id_js` None: a documents line that holds no document (empty spans, counted elsewhere).
        `extra`: more attributes of the document, `{suffix: spans_js}`, named `<attribute>__<suffix>`."""
        body = self.name_js + ":" + spans_js
        for suffix, js in (extra or {}).items():
            body += "," + json.dumps(f"{self.attribute}__{suffix}", ensure_ascii=False) + ":" + js
        self.write_text('{"id":' + (id_js or "null") + ',"attributes":{' + body + "}}\n")

    def document(self, doc: dict | None, spans_js: str = "[]", extra: dict[str, str] | None = None) -> None:
        self.line(None if doc is None else json_value(doc["id"]), spans_js, extra)


# ------------------------------------------------------------------------ work files (any storage)
# Intermediate tables of multi-round work (dedup shuffles, counts) live on storage every node
# reaches: under the run's output or a --scratch URL. These helpers are the only way code
# reads and writes them, so a local path and an s3:// URL behave the same.


def fs_of(path: str):
    return fsspec.get_fs_token_paths(path)[0]


def write_bytes_atomic(path: str, data: bytes) -> None:
    w = AtomicWriter(path)
    w.write(data)
    w.commit()


def read_bytes(path: str) -> bytes:
    with fsspec.open(path, "rb") as f:
        return f.read()


def open_random(path: str) -> IO[bytes]:
    """A seekable binary reader (range requests on object storage)."""
    return fsspec.open(path, "rb").open()


def save_npy(path: str, arr) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())


def load_npy(path: str, mmap: bool = False):
    """An array saved by save_npy; memory-mapped when local and `mmap`."""
    import numpy as np

    if mmap and not is_remote(path):
        return np.load(path, mmap_mode="r", allow_pickle=False)
    return np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)


def save_npz(path: str, **arrays) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def load_npz(path: str) -> dict:
    import numpy as np

    with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_parquet(path: str, table, **kwargs) -> None:
    """A pyarrow table to parquet, atomically."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, **kwargs)
    write_bytes_atomic(path, buf.getvalue())


def read_parquet(path: str, **kwargs):
    import pyarrow.parquet as pq

    if is_remote(path):
        with fsspec.open(path, "rb") as f:
            return pq.read_table(f, **kwargs)
    return pq.read_table(path, **kwargs)


def parquet_file(path: str):
    """A pyarrow ParquetFile for reading row groups (random access on any storage)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(open_random(path))


def glob(pattern: str) -> list[str]:
    """Files matching a glob, sorted, as local paths or full URLs; temporaries excluded."""
    if is_remote(pattern):
        fs = fs_of(pattern)
        proto = pattern.split("://", 1)[0]
        found = [m if "://" in m else f"{proto}://{m}" for m in fs.glob(pattern)]
    else:
        found = _glob.glob(pattern)
    return sorted(m for m in found if ".tmp-" not in m)


def total_size(paths: list[str]) -> int:
    """Bytes in these files (one metadata request per file on object storage). A source that is
    not a file (a Hugging Face dataset shard, `hfdataset:...`) counts 0: its reader reports it."""
    total = 0
    for p in paths:
        try:
            total += int(fs_of(p).size(p) or 0)
        except (FileNotFoundError, ValueError):
            pass
    return total


def rmtree(path: str) -> None:
    """Remove a folder and everything under it; nothing if it does not exist."""
    check_write(path)
    fs = fs_of(path)
    try:
        if fs.exists(path):
            fs.rm(path, recursive=True)
    except FileNotFoundError:
        pass


def write_json(path: str, obj: Any) -> None:
    write_text_atomic(path, json.dumps(obj, sort_keys=True))


def read_json(path: str) -> Any:
    return json.loads(read_text(path))


class local_copy:
    """`with local_copy(path) as p:` a local file path for a library that only opens local
    files (fastText models): the path itself when local, else a temporary download that is
    deleted on exit (spill the task creates and removes itself)."""

    def __init__(self, path: str):
        self.path = path
        self._tmp: str | None = None

    def __enter__(self) -> str:
        if not is_remote(self.path):
            return self.path
        import tempfile

        fd, self._tmp = tempfile.mkstemp(prefix="dolma-prep-", suffix="-" + self.path.rsplit("/", 1)[-1])
        with os.fdopen(fd, "wb") as out, fsspec.open(self.path, "rb") as src:
            while chunk := src.read(1 << 22):
                out.write(chunk)
        return self._tmp

    def __exit__(self, *_) -> None:
        if self._tmp is not None:
            os.remove(self._tmp)
