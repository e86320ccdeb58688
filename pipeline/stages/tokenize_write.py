"""The part writer of the tokenize step: one source shard's token arrays and indexes,
`part-<index>-<k:05d>.npy` + `.csv.gz` (core/tokens.py), written a shuffled block at a time,
rolling over to the next file at `max_tokens_per_file`; a document is never split across files.
"""
from __future__ import annotations

from itertools import repeat

import numpy as np

from ...core import io
from ...core.tokens import ARRAY_SUFFIX, INDEX_SUFFIX, format_index, part_stem


class PartWriter:
    """Writes one source shard's part files, rolling at `max_tokens`, a block at a time."""

    def __init__(self, out_dir: str, index: int, dtype: np.dtype, max_tokens: int, src: str):
        self.out_dir, self.index, self.dtype, self.max_tokens, self.src = out_dir, index, dtype, max_tokens, src
        self.k = -1
        self.files: list[dict] = []
        self.npy = self.csv = None
        self.n_tokens = self.n_docs = 0

    def _open_next(self) -> None:
        self.k += 1
        self.stem = io.join(self.out_dir, part_stem(self.index, self.k))
        self.npy = io.AtomicWriter(self.stem + ARRAY_SUFFIX)
        self.csv = io.AtomicWriter(self.stem + INDEX_SUFFIX)
        self.n_tokens = self.n_docs = 0

    def _close(self) -> None:
        self.npy.commit()
        self.csv.commit()
        self.files.append({"stem": self.stem, "tokens": self.n_tokens, "documents": self.n_docs})
        self.npy = self.csv = None

    def write_block(self, flat: np.ndarray, starts: np.ndarray, lens: np.ndarray, order: np.ndarray,
                    doc_ids: list, locs: list[int]) -> None:
        """Write documents `order` (indexes into starts/lens/doc_ids/locs), in that order."""
        if not len(order):
            return
        L = lens[order]
        S = starts[order]
        cum = np.cumsum(L)
        pos = 0
        while pos < len(order):
            if self.npy is None:
                self._open_next()
            base = int(cum[pos - 1]) if pos else 0
            k = int(np.searchsorted(cum, base + self.max_tokens - self.n_tokens, side="right")) - pos
            if k <= 0:
                if self.n_docs:
                    self._close()
                    continue
                k = 1  # a document longer than a whole file gets a file of its own
            sel = slice(pos, pos + k)
            toks = np.concatenate([flat[s:s + n] for s, n in zip(S[sel].tolist(), L[sel].tolist())])
            self.npy.write(toks.astype(self.dtype, copy=False).tobytes())
            ends = (self.n_tokens + cum[sel] - base).tolist()
            begins = [self.n_tokens] + ends[:-1]
            chosen = order[sel].tolist()
            self.csv.write(format_index(
                zip(begins, ends, [doc_ids[i] for i in chosen], repeat(self.src), [locs[i] for i in chosen])))
            self.n_tokens = ends[-1]
            self.n_docs += k
            pos += k

    def finish(self) -> list[dict]:
        if self.npy is not None:
            self._close()
        return self.files

    def abort(self) -> None:
        for w in (self.npy, self.csv):
            if w is not None:
                try:
                    w.abort()
                except Exception:  # noqa: BLE001 (best effort; a rerun sweeps temporaries)
                    pass
        self.npy = self.csv = None
