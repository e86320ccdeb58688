"""Intermediate tables of multi-round work (dedup shuffles, counts): numpy arrays and parquet
files on storage every node reaches (under the run's output or a --scratch URL), written
atomically and read whole or by byte range, so a local path and an s3:// URL behave the same."""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

import fsspec

from .storage import is_remote, open_random, read_bytes, write_bytes_atomic

if TYPE_CHECKING:  # imported where used: a task that needs neither does not pay for them
    import numpy as np
    import numpy.typing as npt
    import pyarrow as pa
    import pyarrow.parquet as pq


def save_npy(path: str, arr: npt.ArrayLike) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.save(buf, arr, allow_pickle=False)
    write_bytes_atomic(path, buf.getvalue())


def load_npy(path: str, mmap: bool = False) -> np.ndarray:
    """An array saved by save_npy; memory-mapped when local and `mmap`."""
    import numpy as np

    arr: np.ndarray  # a .npy file holds one array (np.load's stub says Any: it reads .npz too)
    if mmap and not is_remote(path):
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    else:
        arr = np.load(io.BytesIO(read_bytes(path)), allow_pickle=False)
    return arr


# arrays: array-likes, typed Any: mypy would check each against np.savez's `allow_pickle: bool`
# too, the one keyword its `**kwds` share with
def save_npz(path: str, **arrays: Any) -> None:
    import numpy as np

    buf = io.BytesIO()
    np.savez(buf, **arrays)
    write_bytes_atomic(path, buf.getvalue())


def load_npz(path: str) -> dict[str, np.ndarray]:
    import numpy as np

    with np.load(io.BytesIO(read_bytes(path)), allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def write_parquet(path: str, table: pa.Table, **kwargs: Any) -> None:
    """A pyarrow table to parquet, atomically."""
    import pyarrow.parquet as pq

    buf = io.BytesIO()
    pq.write_table(table, buf, **kwargs)
    write_bytes_atomic(path, buf.getvalue())


def read_parquet(path: str, **kwargs: Any) -> pa.Table:
    import pyarrow.parquet as pq

    if is_remote(path):
        with fsspec.open(path, "rb") as f:
            return pq.read_table(f, **kwargs)
    return pq.read_table(path, **kwargs)


def parquet_file(path: str) -> pq.ParquetFile:
    """A pyarrow ParquetFile for reading row groups (random access on any storage)."""
    import pyarrow.parquet as pq

    return pq.ParquetFile(open_random(path))
