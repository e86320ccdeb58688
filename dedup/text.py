"""Text units and 64-bit hashes shared by the dedup algorithms.

Two ways of cutting text into words:

- `dolma_tokens`: what dolma's Rust deduper calls tokens (`wimbd::tokens::tokenize`): the
  Unicode word-boundary segments of UAX #29 (`split_word_bounds`), minus the segments made only
  of white space. Punctuation marks are tokens of their own; "2.0" and "don't" are one token.
  Python's `regex` module implements the same boundaries with its WORD flag.
- `normalized_words`: for MinHash and decontamination, lower-cased text with Unicode
  punctuation (category P*) replaced by spaces, split on white space (which collapses it).

Hashes are 64-bit: xxhash for strings, and vectorised numpy mixing (the murmur3 finaliser)
for combining token hashes into n-gram keys.
"""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import regex
import xxhash

# Characters with the Unicode White_Space property (Rust's `char::is_whitespace`).
WHITE_SPACE = (
    "\t\n\x0b\x0c\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008"
    "\u2009\u200a\u2028\u2029\u202f\u205f\u3000"
)
_WORD_BOUNDARY = regex.compile(r"\b", flags=regex.WORD | regex.V1)
# UAX #29 restricted to ASCII, where it reduces to: runs of letters, digits and "_", joined
# across one of : . ' between letters and one of , ; . ' between digits; every other
# non-white-space character alone. Checked equal to the full rules on the sample corpus.
_ASCII_TOKENS = re.compile(
    r"[A-Za-z0-9_]+(?:(?:(?<=[A-Za-z])[:.'](?=[A-Za-z])|(?<=[0-9])[,;.'](?=[0-9]))[A-Za-z0-9_]+)*"
    r"|[^\t\n\x0b\x0c\r A-Za-z0-9_]"
)
_PUNCTUATION = regex.compile(r"\p{P}+")

_M1 = np.uint64(0xFF51AFD7ED558CCD)
_M2 = np.uint64(0xC4CEB9FE1A85EC53)
_S33 = np.uint64(33)
# odd multiplier of the polynomial n-gram hash
POLY_K = np.uint64(0x9E3779B97F4A7C15)


def dolma_tokens(text: str) -> list[str]:
    """UAX #29 word-boundary segments that contain a non-white-space character."""
    if text.isascii():
        return _ASCII_TOKENS.findall(text)
    return [s for s in _WORD_BOUNDARY.split(text) if s and s.strip(WHITE_SPACE)]


def normalized_words(text: str) -> list[str]:
    """Lower-case, punctuation removed, white space collapsed; the words of `text`."""
    return _PUNCTUATION.sub(" ", text.lower()).split()


# ASCII bytes -> the same bytes, except punctuation (Unicode category P*) -> space
_ASCII_PUNCT_TO_SPACE = bytes(
    (32 if (i < 128 and unicodedata.category(chr(i)).startswith("P")) else i) for i in range(256)
)


def normalized_word_bytes(text: str) -> list[bytes]:
    """`normalized_words` as UTF-8 bytes (a fast path for ASCII text)."""
    if text.isascii():
        return text.encode("ascii").lower().translate(_ASCII_PUNCT_TO_SPACE).split()
    return [w.encode("utf-8", "surrogatepass") for w in normalized_words(text)]


def xxh64(s: str, seed: int = 0) -> int:
    return xxhash.xxh64_intdigest(s.encode("utf-8", "surrogatepass"), seed)


def xxh3(s: str, seed: int = 0) -> int:
    return xxhash.xxh3_64_intdigest(s.encode("utf-8", "surrogatepass"), seed)


def fmix64(x: np.ndarray) -> np.ndarray:
    """murmur3's 64-bit finaliser, vectorised (a bijection that spreads every input bit)."""
    x = np.asarray(x, dtype=np.uint64)
    x = x ^ (x >> _S33)
    x = x * _M1
    x ^= x >> _S33
    x *= _M2
    x ^= x >> _S33
    return x


class TokenHasher:
    """xxh3 hashes of tokens, cached per distinct token (tokens repeat a lot)."""

    def __init__(self, seed: int = 0, max_cache: int = 1 << 20):
        self.seed = seed
        self.max_cache = max_cache
        self.cache: dict[str, int] = {}

    def __call__(self, tokens: list[str]) -> np.ndarray:
        cache = self.cache
        missing = set(tokens).difference(cache)
        if missing:
            seed = self.seed
            h = xxhash.xxh3_64_intdigest
            for t in missing:
                cache[t] = h(t.encode("utf-8", "surrogatepass"), seed)
        out = np.fromiter(map(cache.__getitem__, tokens), dtype=np.uint64, count=len(tokens))
        if len(cache) > self.max_cache:
            cache.clear()
        return out


def window_hashes(token_hashes: np.ndarray, n: int) -> np.ndarray:
    """64-bit keys of every window of `n` consecutive token hashes (len - n + 1 of them).

    A polynomial hash over the (random 64-bit) token hashes, finished with `fmix64`; equal
    windows give equal keys, different windows collide with probability about 2**-64.
    """
    t = np.asarray(token_hashes, dtype=np.uint64)
    count = len(t) - n + 1
    if count <= 0:
        return np.empty(0, dtype=np.uint64)
    acc = np.zeros(count, dtype=np.uint64)
    for j in range(n):
        acc *= POLY_K
        acc += t[j : j + count]
    return fmix64(acc ^ np.uint64(n))
