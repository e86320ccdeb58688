"""A vectorised Bloom filter sized the way dolma's Rust deduper sizes it.

Sizing (`suggest_size_in_bytes`, `optimal_number_of_hashers`) copies dolma 1.2.1's
`bloom_filter.rs`: start at 1 MiB and double until the predicted false-positive rate for the
expected number of elements is at or below the desired rate; k = ceil(m/n * ln 2).

The filter may be cut into `partitions` equal, independent pieces: an element belongs to the
piece named by the top bits of its 64-bit key, so that pieces can be filled by different
processes. Bit positions use double hashing (h1 + i*h2) of two finalised variants of the key.

`check_and_insert` handles a batch of keys at once. Within a batch it treats a key as already
seen when the bits were set before the batch, or when the same key occurred earlier in the
batch; a key whose bits happen to be set only by *other* keys earlier in the same batch is not
counted (a Bloom false positive the sequential filter would have made). Batches have a fixed
size, so results never depend on how the work is scheduled.
"""

from __future__ import annotations

import math

import numpy as np

from .text import fmix64

_SEED1 = np.uint64(0x2545F4914F6CDD1D)
_SEED2 = np.uint64(0x5851F42D4C957F2D)


def prob_of_false_positive(size_in_bytes: int, expected_elements: int, num_hashers: int) -> float:
    k = float(num_hashers)
    m = float(size_in_bytes * 8)
    n = float(expected_elements)
    return (1.0 - (1.0 - 1.0 / m) ** (k * n)) ** k


def optimal_number_of_hashers(size_in_bytes: int, expected_elements: int) -> int:
    return int(math.ceil((size_in_bytes * 8) / max(1, expected_elements) * math.log(2)))


def suggest_size_in_bytes(expected_elements: int, desired_false_positive_rate: float) -> int:
    size = 1024 * 1024
    expected_elements = max(1, int(expected_elements))
    while size < (1 << 62) and prob_of_false_positive(
        size, expected_elements, optimal_number_of_hashers(size, expected_elements)
    ) > desired_false_positive_rate:
        size *= 2
    return size


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The piece each key belongs to (top bits of the key); `partitions` is a power of two."""
    if partitions == 1:
        return np.zeros(len(keys), dtype=np.int64)
    shift = np.uint64(64 - (partitions.bit_length() - 1))
    return (np.asarray(keys, dtype=np.uint64) >> shift).astype(np.int64)


def fewest_hashers(size_in_bytes: int, expected_elements: int, desired_false_positive_rate: float) -> int:
    """The smallest k that meets the desired rate with this size (at most dolma's k).

    dolma always probes ceil(m/n * ln 2) bits; because sizes are rounded up to a power of two,
    fewer probes usually already meet the target, and each probe is a random memory access.
    """
    k_max = max(1, optimal_number_of_hashers(size_in_bytes, expected_elements))
    for k in range(1, k_max + 1):
        if prob_of_false_positive(size_in_bytes, expected_elements, k) <= desired_false_positive_rate:
            return k
    return k_max


class BloomPiece:
    """One piece of a partitioned Bloom filter: `size_in_bytes` of bits, `num_hashers` probes."""

    BATCH = 1 << 16

    def __init__(self, size_in_bytes: int, num_hashers: int):
        if size_in_bytes & (size_in_bytes - 1):
            raise ValueError(f"Bloom piece size must be a power of two bytes, got {size_in_bytes}")
        self.bits = np.zeros(size_in_bytes, dtype=np.uint8)
        self.k = int(num_hashers)
        nbits = size_in_bytes * 8
        self._dtype = np.uint32 if nbits <= (1 << 32) else np.uint64
        self.mask = self._dtype(nbits - 1)
        self._steps = np.arange(self.k, dtype=self._dtype)

    def _probes(self, keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(byte index, bit mask) of the k probes of each key, shape (len(keys), k)."""
        h1 = fmix64(keys ^ _SEED1).astype(self._dtype)
        h2 = (fmix64(keys ^ _SEED2) | np.uint64(1)).astype(self._dtype)
        pos = h2[:, None] * self._steps[None, :]
        pos += h1[:, None]
        pos &= self.mask
        byte = (pos >> self._dtype(3)).astype(np.intp)
        bit = np.left_shift(np.uint8(1), (pos & self._dtype(7)).astype(np.uint8))
        return byte, bit

    def _set(self, byte: np.ndarray, bit: np.ndarray) -> None:
        bits = self.bits
        b, v = byte.ravel(), bit.ravel()
        # fancy `|=` loses updates when two probes hit one byte; redo the lost ones
        while len(b):
            bits[b] |= v
            lost = (bits[b] & v) == 0
            b, v = b[lost], v[lost]

    def check_and_insert(self, keys: np.ndarray) -> np.ndarray:
        """Bool per key: was it (probably) seen before? Inserts all keys."""
        import polars as pl

        keys = np.asarray(keys, dtype=np.uint64)
        out = np.zeros(len(keys), dtype=bool)
        for lo in range(0, len(keys), self.BATCH):
            chunk = keys[lo : lo + self.BATCH]
            byte, bit = self._probes(chunk)
            seen = ((self.bits[byte] & bit) != 0).all(axis=1)
            # later repeats of a key inside the batch are duplicates of its first occurrence
            repeat = ~pl.Series(chunk).is_first_distinct().to_numpy()
            out[lo : lo + len(chunk)] = seen | repeat
            self._set(byte, bit)
        return out

    def contains(self, keys: np.ndarray) -> np.ndarray:
        keys = np.asarray(keys, dtype=np.uint64)
        out = np.zeros(len(keys), dtype=bool)
        for lo in range(0, len(keys), self.BATCH):
            byte, bit = self._probes(keys[lo : lo + self.BATCH])
            out[lo : lo + len(byte)] = ((self.bits[byte] & bit) != 0).all(axis=1)
        return out
