"""MinHash signatures: word n-gram shingles, permutations, min-hashes, LSH band keys.

Shingles are xxh64 of each word n-gram (normalised words joined by one space, UTF-8), as
datatrove hashes them. Permutations: `multiply_shift` h(x) = a*x + b mod 2**64 with random odd
a (the minimum is decided by the high bits, the good ones of this family), or `mersenne`, the
(a*x + b) mod (2**61 - 1) of datasketch/datatrove computed in wrapping uint64 as they do.
Signatures are computed for a batch of documents at once, in row chunks that stay in cache.
"""

from __future__ import annotations

import numpy as np
import xxhash

from .text import POLY_K, fmix64

MERSENNE = np.uint64((1 << 61) - 1)
_MAX64 = np.iinfo(np.uint64).max
_CHUNK = 2048


def permutations(num_perm: int, seed: int, family: str) -> tuple[np.ndarray, np.ndarray]:
    if family == "mersenne":  # datatrove's generator and ranges
        gen = np.random.RandomState(seed)
        a = gen.randint(1, MERSENNE, dtype=np.uint64, size=num_perm)
        b = gen.randint(0, MERSENNE, dtype=np.uint64, size=num_perm)
        return a, b
    if family != "multiply_shift":
        raise ValueError(f"hash_family must be 'multiply_shift' or 'mersenne', got {family!r}")
    rng = np.random.default_rng(seed)
    a = rng.integers(0, _MAX64, size=num_perm, dtype=np.uint64, endpoint=True) | np.uint64(1)
    b = rng.integers(0, _MAX64, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


def shingle_hashes(words: list[bytes], n: int) -> np.ndarray:
    """xxh64 of each word n-gram (UTF-8, words joined by one space); a short text is one shingle."""
    h = xxhash.xxh64_intdigest
    count = len(words) - n + 1
    if count <= 0:
        if not words:
            return np.empty(0, dtype=np.uint64)
        return np.array([h(b" ".join(words))], dtype=np.uint64)
    grams = zip(*(words[i:] for i in range(n)))
    return np.fromiter(map(h, map(b" ".join, grams)), dtype=np.uint64, count=count)


def signatures(shingles: np.ndarray, offsets: np.ndarray, a: np.ndarray, b: np.ndarray, family: str) -> np.ndarray:
    """Min-hash signatures (docs x num_perm) of documents whose shingles are
    shingles[offsets[i]:offsets[i+1]]; a document without shingles keeps all-ones values."""
    ndocs = len(offsets) - 1
    sig = np.full((ndocs, len(a)), _MAX64, dtype=np.uint64)
    if len(shingles) == 0:
        return sig
    doc_of_row = np.repeat(np.arange(ndocs), np.diff(offsets))
    buf = np.empty((_CHUNK, len(a)), dtype=np.uint64)
    for lo in range(0, len(shingles), _CHUNK):
        x = shingles[lo : lo + _CHUNK]
        phv = buf[: len(x)]
        np.multiply(x[:, None], a[None, :], out=phv)
        phv += b
        if family == "mersenne":
            np.remainder(phv, MERSENNE, out=phv)
        d = doc_of_row[lo : lo + _CHUNK]
        starts = np.flatnonzero(np.concatenate([[True], d[1:] != d[:-1]]))
        mins = np.minimum.reduceat(phv, starts, axis=0)
        docs = d[starts]
        sig[docs] = np.minimum(sig[docs], mins)
    return sig


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(docs x bands) 64-bit bucket keys; the band number is part of the key."""
    s = sig[:, : bands * rows].reshape(len(sig), bands, rows)
    acc = np.broadcast_to(np.arange(1, bands + 1, dtype=np.uint64), (len(sig), bands)).copy()
    for c in range(rows):
        acc *= POLY_K
        acc += s[:, :, c]
    return fmix64(acc)
