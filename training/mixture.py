"""Mixing at read time: a run's per-source token arrays drawn to target token shares.

One tokenized "pool" (a `dolma-prep run` output: per-source arrays and a manifest) can serve any
mixture of its sources without running the pipeline again. The mixture is a pure function of
the pool, the shares, the number of tokens, the seed and the repetition limit:

- documents: each array's `.csv.gz` index beside it gives its documents (start, end, id); an
  array without an index is cut after every EOS id (and its tail is one more document);
- held-out documents (`holdout` > 0): a document whose hash u(holdout_seed, source, id) is below
  `holdout` is never drawn; evaluation reads exactly those (`holdout_documents`), so held-out
  text is the same for every mixture and seed;
- drawing: source s gets target_s = share_s x total tokens. Its documents are ordered by a
  seeded hash of (seed, source, id, pass) and taken whole, in that order, until the running
  total reaches target_s: achieved and target differ by less than one document. A target larger
  than the source repeats it: pass 0 takes every document once, pass 1 again in a new hashed
  order, and so on; target_s / (tokens the source holds) may not exceed its maximum repetition;
- the drawn documents of all sources are interleaved into a token stream in the order of a
  seeded hash of (seed, source, id, pass) of each document, so two mixtures drawn with one seed
  hold their common documents in the same relative order (a document more or less is inserted
  or removed, the rest stay put: common random numbers for mix search's proxies);
- the stream is cut into instances of `seq_len` tokens (an instance may span documents, as in
  OLMo's concatenated arrays), exactly total tokens / seq_len of them: the overshoot (the
  targets are met in whole documents, so under one document per source) is not used. Every
  mixture of a size thus has the same number of instances, hence, for a seed, the same order of
  instances in training.

Instances are read lazily from the arrays (nothing is copied), so the dataset plugs into
`DataOrder` like `MemMapDataset`; rebuilding it from the same config gives the same instances,
which is what makes a resumed run exact.
"""

from __future__ import annotations

import gzip
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..core.sampling import unit_hash
from ..core.tokens import ARRAY_SUFFIX, DTYPES, index_path, read_index
from .data import TokenFile


@dataclass
class SourceDocuments:
    """The documents of one source: parallel arrays over documents, in pool order."""

    name: str
    file: np.ndarray  # index into the pool's file list
    start: np.ndarray  # first token, within its file
    length: np.ndarray  # tokens
    ids: list[str]  # the document id (index), or "<file name>#<ordinal>" without an index

    @property
    def tokens(self) -> int:
        return int(self.length.sum())

    def subset(self, keep: np.ndarray) -> SourceDocuments:
        return SourceDocuments(self.name, self.file[keep], self.start[keep], self.length[keep],
                               [self.ids[i] for i in np.flatnonzero(keep)])


def _index_rows(path: Path) -> list[tuple[int, int, str]] | None:
    """(start, end, id) rows of the `.csv.gz` index beside a token array, if there is one."""
    index = path.with_name(index_path(path.name)) if path.name.endswith(ARRAY_SUFFIX) else None
    if index is None or not index.is_file():
        return None
    with gzip.open(index, "rb") as f:
        return [(int(r[0]), int(r[1]), r[2]) for r in read_index(f)]


def file_documents(file: TokenFile, eos_token_id: int | None) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(starts, lengths, ids) of the documents of one token array."""
    n = file.num_tokens
    rows = _index_rows(file.path)
    if rows is not None:
        if rows and rows[-1][1] != n:
            raise ValueError(f"{file.path}: its index ends at token {rows[-1][1]:,}, the array holds {n:,}")
        starts = np.array([r[0] for r in rows], dtype=np.int64)
        lengths = np.array([r[1] - r[0] for r in rows], dtype=np.int64)
        return starts, lengths, [r[2] for r in rows]
    ids = np.fromfile(file.path, dtype=DTYPES[file.dtype])
    ends = np.flatnonzero(ids == eos_token_id) + 1 if eos_token_id is not None else np.zeros(0, np.int64)
    if not len(ends) or ends[-1] != n:
        ends = np.append(ends, n)
    ends = ends[ends > 0].astype(np.int64)
    starts = np.concatenate([[0], ends[:-1]]).astype(np.int64)
    return starts, ends - starts, [f"{file.path.name}#{i}" for i in range(len(ends))]


def pool_documents(files: Sequence[TokenFile], eos_token_id: int | None) -> dict[str, SourceDocuments]:
    """Every source's documents, over the pool's files in order."""
    parts: dict[str, list] = {}
    for k, f in enumerate(files):
        if f.label_mask is not None:
            raise ValueError(f"{f.path}: label masks are not supported by the mixture dataset")
        starts, lengths, ids = file_documents(f, eos_token_id)
        parts.setdefault(f.source, []).append((np.full(len(starts), k, dtype=np.int64), starts, lengths, ids))
    return {
        s: SourceDocuments(s, np.concatenate([p[0] for p in ps]), np.concatenate([p[1] for p in ps]),
                           np.concatenate([p[2] for p in ps]), [i for p in ps for i in p[3]])
        for s, ps in parts.items()
    }


def held_out_mask(docs: SourceDocuments, holdout: float, holdout_seed: int) -> np.ndarray:
    """True for the documents set aside for evaluation (never drawn for training)."""
    if holdout <= 0:
        return np.zeros(len(docs.ids), dtype=bool)
    return np.array([unit_hash(holdout_seed, "holdout", docs.name, i) < holdout for i in docs.ids], dtype=bool)


def split_pool(
    files: Sequence[TokenFile], eos_token_id: int | None, holdout: float, holdout_seed: int
) -> tuple[dict[str, SourceDocuments], dict[str, SourceDocuments]]:
    """(training documents, held-out documents) per source."""
    train, held = {}, {}
    for name, docs in pool_documents(files, eos_token_id).items():
        mask = held_out_mask(docs, holdout, holdout_seed)
        train[name], held[name] = docs.subset(~mask), docs.subset(mask)
    return train, held


def normalise_shares(shares: dict[str, float], known: Sequence[str], where: str) -> dict[str, float]:
    """Shares as fractions summing to 1, every source checked against the pool's."""
    unknown = sorted(set(shares) - set(known))
    if unknown:
        raise ValueError(f"{where}: no token arrays for source {unknown[0]!r} (the pool has: {', '.join(sorted(known))})")
    bad = {k: v for k, v in shares.items() if not (v >= 0 and math.isfinite(v))}
    if bad:
        raise ValueError(f"{where}: shares must be finite and >= 0, found {bad}")
    total = sum(shares.values())
    if total <= 0:
        raise ValueError(f"{where}: the shares sum to {total}; at least one must be positive")
    return {k: v / total for k, v in shares.items()}


def draw_source(docs: SourceDocuments, target: float, seed: int, max_repetition: float) -> np.ndarray:
    """Positions (into `docs`) of the documents drawn for `target` tokens, in draw order."""
    if target <= 0:
        return np.zeros(0, dtype=np.int64)
    available = docs.tokens
    if available == 0:
        raise ValueError(f"source {docs.name!r}: no training documents left to draw {target:,.0f} tokens from")
    if target > max_repetition * available * (1 + 1e-6):  # shares are floats (rounded, renormalised)
        raise ValueError(
            f"source {docs.name!r}: {target:,.0f} tokens asked for, {available:,} available: "
            f"{target / available:.2f}x repetition exceeds the maximum of {max_repetition:g}x "
            "(lower its share or the run's tokens, or raise the maximum repetition)"
        )
    drawn, total, rep = [], 0, 0
    while total < target:
        keys = np.array([unit_hash(seed, docs.name, i, rep) for i in docs.ids])
        order = np.argsort(keys, kind="stable")
        cum = total + np.cumsum(docs.length[order])
        k = int(np.searchsorted(cum, target, side="left")) + 1  # first prefix reaching the target
        drawn.append(order[: min(k, len(order))])
        total = int(cum[min(k, len(order)) - 1])
        rep += 1
    return np.concatenate(drawn)


class MixtureDataset:
    """Fixed-length instances of a seeded mixture of a pool's sources (see the module doc)."""

    def __init__(
        self,
        files: Sequence[TokenFile],
        seq_len: int,
        shares: dict[str, float],
        total_tokens: int,
        *,
        seed: int,
        max_repetition: float | dict[str, float] = 1.0,
        eos_token_id: int | None = 50279,
        holdout: float = 0.0,
        holdout_seed: int = 0,
        where: str = "data.mixture",
    ):
        self.files, self.seq_len = list(files), seq_len
        train, _ = split_pool(self.files, eos_token_id, holdout, holdout_seed)
        self.shares = normalise_shares(shares, list(train), where)
        # draw at least total_tokens, rounded up to whole instances
        self.total_tokens = math.ceil(total_tokens / seq_len) * seq_len
        reps = max_repetition if isinstance(max_repetition, dict) else {}
        default_rep = max_repetition if not isinstance(max_repetition, dict) else 1.0
        self.report: dict[str, dict] = {}
        file_idx, starts, lengths, keys = [], [], [], []
        for name in sorted(self.shares):
            docs, target = train[name], self.shares[name] * self.total_tokens
            picked = draw_source(docs, target, seed, float(reps.get(name, default_rep)))
            file_idx.append(docs.file[picked])
            starts.append(docs.start[picked])
            lengths.append(docs.length[picked])
            passes: dict[int, int] = {}
            for j in picked.tolist():  # the pass of each drawn copy: how many times it came before
                keys.append(unit_hash(seed, "order", name, docs.ids[j], passes.get(j, 0)))
                passes[j] = passes.get(j, 0) + 1
            drawn = int(docs.length[picked].sum())
            self.report[name] = {
                "share": self.shares[name], "target_tokens": target, "tokens": drawn,
                "documents": len(picked), "available_tokens": docs.tokens,
                "repetition": drawn / docs.tokens if docs.tokens else 0.0,
            }
        file_idx, starts, lengths = (np.concatenate(x) for x in (file_idx, starts, lengths))
        order = np.argsort(np.array(keys, dtype=np.float64), kind="stable")
        self.doc_file, self.doc_start, self.doc_length = file_idx[order], starts[order], lengths[order]
        self.doc_end = np.cumsum(self.doc_length)  # end of each document in the stream
        self.stream_tokens = int(self.doc_end[-1]) if len(self.doc_end) else 0
        self._memmaps: dict[int, np.ndarray] = {}
        if len(self) == 0:
            raise ValueError(f"{where}: the mixture holds no complete instance of {seq_len} tokens")

    def __len__(self) -> int:
        return min(self.stream_tokens, self.total_tokens) // self.seq_len

    def _array(self, k: int) -> np.ndarray:
        if k not in self._memmaps:
            f = self.files[k]
            self._memmaps[k] = np.memmap(f.path, dtype=DTYPES[f.dtype], mode="r")
        return self._memmaps[k]

    def tokens(self, begin: int, end: int) -> np.ndarray:
        """Tokens [begin, end) of the mixture's stream."""
        out = np.empty(end - begin, dtype=np.int64)
        d = int(np.searchsorted(self.doc_end, begin, side="right"))
        pos = begin
        while pos < end:
            doc_begin = int(self.doc_end[d] - self.doc_length[d])
            take = min(end, int(self.doc_end[d])) - pos
            start = int(self.doc_start[d]) + pos - doc_begin
            out[pos - begin : pos - begin + take] = self._array(int(self.doc_file[d]))[start : start + take]
            pos += take
            d += 1
        return out

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        index = int(index)
        if not 0 <= index < len(self):
            raise IndexError(f"instance {index} out of range for {len(self)} instances")
        return {"input_ids": self.tokens(index * self.seq_len, (index + 1) * self.seq_len)}

    def source_tokens(self) -> dict[str, int]:
        """Tokens drawn per source (the stream before cutting into instances)."""
        return {name: r["tokens"] for name, r in self.report.items()}
