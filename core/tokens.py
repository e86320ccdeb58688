"""The token-file contract: what the pipeline's tokenize stage writes and the trainer reads.

As `dolma tokens` writes them (docs/REFERENCE.md section 4):
- an array is a RAW memmap of token ids (no .npy header), documents concatenated, of dtype
  uint16 when the vocabulary fits (at most 65,536 ids), else uint32;
- beside it, `<stem>.csv.gz` (gzip, no header) has one row per document, `start,end,id,src,loc`:
  token offsets (end exclusive), document id, input path, 1-based line;
- the files of input shard i are `part-<i>-<k:05d>.npy` (k counts the files as they roll over).

Both sides read this one module, so the writer (pipeline/stages/tokenize_write.py) and the readers
(`dolma-prep decode`, `stats`, training/data.py and training/mixture.py) cannot drift apart.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Iterable, Iterator
from typing import IO

import numpy as np

from .errors import InputError

DTYPES = {"uint16": np.uint16, "uint32": np.uint32}  # the array dtypes, by the name manifests record
ARRAY_SUFFIX = ".npy"
INDEX_SUFFIX = ".csv.gz"
INDEX_COLUMNS = ("start", "end", "id", "src", "loc")  # of every index row
PART_GLOB = "part-*" + ARRAY_SUFFIX  # every array of a tokens folder


def choose_dtype(vocab_size: int, requested: str = "auto") -> np.dtype:
    """The array dtype for a vocabulary: uint16 when its ids fit, else uint32 (`auto`); a
    requested uint16 that cannot hold the vocabulary is refused."""
    fits16 = vocab_size <= 65536
    if requested == "auto":
        return np.dtype(np.uint16 if fits16 else np.uint32)
    if requested == "uint16" and not fits16:
        raise InputError(f"dtype uint16 cannot hold a vocabulary of {vocab_size} ids (max 65,536); use uint32 or auto")
    return np.dtype(requested)


def part_stem(index: int, k: int) -> str:
    """`part-<index>-<k:05d>`: file k of input shard `index`, without suffix."""
    return f"part-{index}-{k:05d}"


def index_path(array_path: str) -> str:
    """The `.csv.gz` index beside an array."""
    return array_path.removesuffix(ARRAY_SUFFIX) + INDEX_SUFFIX


def read_index(f: IO[bytes]) -> Iterator[list[str]]:
    """The rows of an index (each `start,end,id,src,loc` as strings), from its decompressed bytes."""
    return csv.reader(io.TextIOWrapper(f, encoding="utf-8"))


def format_index(rows: Iterable[tuple]) -> bytes:
    """Index rows as the bytes to append to the (uncompressed stream of the) `.csv.gz` file."""
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue().encode("utf-8")
