"""Storage: one way to read, write, list and delete files on local paths and any fsspec URL.

Every write is atomic (a temporary name, then a rename; readers see a whole file or none) and
goes through `check_write`, which holds a run to its output and scratch folders and keeps it
off its inputs. Streams decompress and compress by suffix (.gz, .zst), so memory never grows
with file size.
"""

from __future__ import annotations

import glob as _glob
import gzip
import json
import os
import uuid
from dataclasses import dataclass
from typing import IO, Any, cast

import fsspec
import zstandard

from .errors import InputError

DOC_SUFFIXES = (".jsonl", ".json", ".jsonl.gz", ".json.gz", ".jsonl.zst", ".json.zst", ".jsonl.zstd", ".parquet")
GZIP_LEVEL = 3


def _jsonable(o: Any) -> Any:
    """Values JSON lacks (datetimes from parquet or `datasets` timestamp columns, bytes)."""
    if hasattr(o, "isoformat"):
        return o.isoformat()
    if isinstance(o, bytes):
        return o.decode("utf-8", "replace")
    return str(o)


def dumps(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_jsonable)


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
    return path[len(root) :]


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
    raw: IO[bytes] = fsspec.open(path, mode).open()
    # GzipFile is an io.BufferedIOBase, which typeshed does not declare an IO[bytes] (IO is a
    # class there, not a protocol), though it has every method of one
    if comp == "gzip":
        if "w" in mode:  # level 3: near level 9's size at several times its speed
            return cast(
                IO[bytes], gzip.GzipFile(filename="", fileobj=raw, mode=mode, mtime=0, compresslevel=GZIP_LEVEL)
            )
        return cast(IO[bytes], gzip.GzipFile(fileobj=raw, mode=mode))
    if comp == "zstd":
        if "w" in mode:
            return zstandard.ZstdCompressor(level=3).stream_writer(raw, closefd=True)
        return zstandard.ZstdDecompressor().stream_reader(raw, closefd=True)
    return raw


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


def normalize_path(path: str) -> str:
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
    return WritePolicy(tuple(normalize_path(r) for r in roots if r), tuple(normalize_path(p) for p in protect if p))


def current_write_policy() -> WritePolicy:
    return _POLICY


def check_write(path: str) -> None:
    """Refuse (UnsafeWriteError) a write, rename or delete of `path` that the policy forbids."""
    pol = _POLICY
    if not pol.roots:
        return
    p = normalize_path(path)
    inside = [r for r in pol.roots if _under(p, r)]
    if not inside:
        raise UnsafeWriteError(
            f"refusing to write {path}: it resolves to {p}, outside the output "
            f"({', '.join(pol.roots)}); a name in the mix file may not leave the output folder"
        )
    deepest = max(inside, key=len)
    for prot in pol.protect:
        if _under(p, prot) and not _under(deepest, prot):
            raise UnsafeWriteError(
                f"refusing to write {path}: it lies under the input data root {prot}; inputs are never written"
            )


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

    def __enter__(self) -> AtomicWriter:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
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
    found: bool = fs.exists(path)
    return found


def write_text_atomic(path: str, text: str) -> None:
    w = AtomicWriter(path)
    w.write(text.encode("utf-8"))
    w.commit()


def read_text(path: str) -> str:
    with fsspec.open(path, "rt", encoding="utf-8") as f:
        text: str = f.read()
        return text


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


def fs_of(path: str) -> fsspec.AbstractFileSystem:
    return fsspec.get_fs_token_paths(path)[0]


def write_bytes_atomic(path: str, data: bytes) -> None:
    w = AtomicWriter(path)
    w.write(data)
    w.commit()


def read_bytes(path: str) -> bytes:
    with fsspec.open(path, "rb") as f:
        data: bytes = f.read()
        return data


def open_random(path: str) -> IO[bytes]:
    """A seekable binary reader (range requests on object storage)."""
    f: IO[bytes] = fsspec.open(path, "rb").open()
    return f


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

    def __exit__(self, *_: object) -> None:
        if self._tmp is not None:
            os.remove(self._tmp)
