"""Intermediate tables of multi-round work (dedup shuffles, counts): numpy arrays and parquet
files on storage every node reaches (under the run's output or a --scratch URL), written
atomically and read whole or by byte range, so a local path and an s3:// URL behave the same."""
from __future__ import annotations

import io

import fsspec

from .storage import is_remote, open_random, read_bytes, write_bytes_atomic


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
