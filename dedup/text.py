"""Text units and 64-bit hashes shared by the dedup algorithms.

Two ways of cutting text into words:

- `dolma_tokens`: what dolma's Rust deduper calls tokens (`wimbd::tokens::tokenize`): the
  Unicode word-boundary segments of UAX #29 (`split_word_bounds`), minus the segments made only
  of white space. Punctuation marks are tokens of their own; "2.0" and "don't" are one token.
  Python's `regex` module implements the same boundaries with its WORD flag.
- `normalized_words`: for MinHash and decontamination, lower-cased text with Unicode
  punctuation (category P*) replaced by spaces, split on white space (which collapses it).

Hashes are 64-bit: xxhash for strings; for paragraph dedup, `span_hashes` hashes ranges of
code points and `window_hashes` combines token hashes into n-gram keys, both vectorised numpy
mixing (the murmur3 finaliser).
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


def word_segments(text: str) -> list[str]:
    """All UAX #29 word-boundary segments of `text`, white space included (they add up to it)."""
    return [s for s in _WORD_BOUNDARY.split(text) if s]


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


# Character classes of the vectorised tokenizer (`ascii_token_bounds`), indexed by a code point
# clipped to 255: UAX #29 restricted to ASCII (see `_ASCII_TOKENS`), every code point >= 128 NON_ASCII.
LETTER, DIGIT, UNDERSCORE, SPACE, MID_LETTER, MID_NUM, NON_ASCII = 1, 2, 4, 8, 16, 32, 64
CLASSES = np.zeros(256, dtype=np.uint8)
CLASSES[128:] = NON_ASCII
for _c in range(128):
    _ch = chr(_c)
    if _ch.isalpha():
        CLASSES[_c] = LETTER
    elif _ch.isdigit():
        CLASSES[_c] = DIGIT
    elif _ch == "_":
        CLASSES[_c] = UNDERSCORE
    elif _ch in WHITE_SPACE:
        CLASSES[_c] = SPACE
CLASSES[ord(":")] = MID_LETTER  # WB6/7: MidLetter, between letters
CLASSES[ord(",")] = CLASSES[ord(";")] = MID_NUM  # WB11/12: MidNum, between digits
CLASSES[ord(".")] = CLASSES[ord("'")] = MID_LETTER | MID_NUM  # MidNumLet(Q): either
# the White_Space characters above ASCII (Rust's `char::is_whitespace`)
NON_ASCII_WHITE_SPACE = np.array(sorted(ord(c) for c in WHITE_SPACE if ord(c) >= 128), dtype=np.uint32)


def is_white_space(cp: np.ndarray) -> np.ndarray:
    """Which code points are White_Space (the characters of `WHITE_SPACE`)."""
    out = (CLASSES[np.minimum(cp, 255)] & SPACE) != 0
    high = np.flatnonzero(cp >= 128)
    out[high] = np.isin(cp[high], NON_ASCII_WHITE_SPACE)
    return out


def ascii_token_bounds(cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`dolma_tokens` of ASCII text, from its character classes (`CLASSES[code points]`), as
    (start, end) character offsets: runs of letters, digits and "_", joined across one
    MID_LETTER between letters or one MID_NUM between digits; every other non-SPACE character a
    token alone. Classes >= 128 (NON_ASCII) come out as one-character tokens: callers send text
    that is not ASCII through `dolma_tokens` instead."""
    word = (cls & (LETTER | DIGIT | UNDERSCORE)) != 0
    if len(cls) > 2:
        letter = (cls & LETTER) != 0
        digit = (cls & DIGIT) != 0
        mid = cls[1:-1]
        word[1:-1] |= (((mid & MID_LETTER) != 0) & letter[:-2] & letter[2:]) | (
            ((mid & MID_NUM) != 0) & digit[:-2] & digit[2:]
        )
    alone = ~word & ((cls & SPACE) == 0)
    edge = np.empty(len(cls) + 1, dtype=bool)  # edge[i]: word[i - 1] != word[i], outside = False
    edge[0], edge[-1] = word[0] if len(cls) else False, word[-1] if len(cls) else False
    np.not_equal(word[1:], word[:-1], out=edge[1:-1])
    starts = np.flatnonzero((edge[:-1] & word) | alone)
    ends = np.flatnonzero((edge[1:] & word) | alone) + 1
    return starts, ends


def span_hashes(cp: np.ndarray, starts: np.ndarray, lengths: np.ndarray, seed: int = 0) -> np.ndarray:
    """64-bit hashes of the code point ranges cp[start:start + length], vectorised: the sum of
    `fmix64(position << 21 | code point)` over the range, finished with its length and `seed`.
    Equal sequences give equal hashes wherever they sit; a sum of independent-looking 64-bit
    terms keeps different sequences apart with probability about 2**-64."""
    starts = np.asarray(starts, dtype=np.int64)
    lengths = np.asarray(lengths, dtype=np.int64)
    out = np.zeros(len(starts), dtype=np.uint64)
    total = int(lengths.sum())
    if total:
        first = np.cumsum(lengths) - lengths
        local = np.arange(total, dtype=np.int64) - np.repeat(first, lengths)
        chars = cp[np.repeat(starts, lengths) + local].astype(np.uint64)
        terms = fmix64((local.astype(np.uint64) << np.uint64(21)) | chars)
        nz = lengths > 0
        out[nz] = np.add.reduceat(terms, first[nz])
    return fmix64(out ^ (lengths.astype(np.uint64) * POLY_K) ^ np.uint64(seed & 0xFFFF_FFFF_FFFF_FFFF))


def str_hashes(tokens: list[str], seed: int = 0) -> np.ndarray:
    """`span_hashes` of each string (the same hash as its characters' range in a longer text)."""
    cp = np.frombuffer("".join(tokens).encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
    lengths = np.fromiter(map(len, tokens), dtype=np.int64, count=len(tokens))
    return span_hashes(cp, np.cumsum(lengths) - lengths, lengths, seed)


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
