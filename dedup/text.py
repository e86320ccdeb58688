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

import functools
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


# Character classes of the vectorised tokenizer (`token_bounds`), from each code point's UAX #29
# Word_Break property: the classes whose rules are "join runs of letters/digits/connectors, and
# across one middle mark between two letters or two digits" (WB5-WB13b without Hebrew or
# Katakana), white space, and OTHER (a token alone). Text holding any other class (Extend,
# Format, ZWJ, Hebrew_Letter, Katakana, Regional_Indicator; code points >= TABLE_END) is SLOW:
# callers send it through `dolma_tokens`, the full rules.
LETTER, DIGIT, CONNECTOR, SPACE, MID_LETTER, MID_NUM, SLOW = 1, 2, 4, 8, 16, 32, 64
OTHER = 0
TABLE_END = 0x30000
_WORD_BREAK_CLASS = {
    "ALetter": LETTER, "Numeric": DIGIT, "ExtendNumLet": CONNECTOR,
    "MidLetter": MID_LETTER, "MidNum": MID_NUM, "MidNumLet": MID_LETTER | MID_NUM,
    "Single_Quote": MID_LETTER | MID_NUM, "Other": OTHER, "Double_Quote": OTHER,
    "Newline": OTHER, "CR": OTHER, "LF": OTHER, "WSegSpace": OTHER,
    "Extend": SLOW, "Format": SLOW, "ZWJ": SLOW, "Hebrew_Letter": SLOW, "Katakana": SLOW,
    "Regional_Indicator": SLOW,
}


@functools.cache
def char_classes() -> np.ndarray:
    """The class of every code point below TABLE_END, and SLOW at index TABLE_END (index with
    `np.minimum(cp, TABLE_END)`); built once per process from the `regex` module's Unicode
    tables (~0.2 s), the same tables its UAX #29 boundaries use."""
    table = np.full(TABLE_END + 1, SLOW, dtype=np.uint8)
    cps = np.arange(TABLE_END, dtype=np.uint32)
    cps = cps[(cps < 0xD800) | (cps >= 0xE000)]
    chars = cps.astype("<u4").tobytes().decode("utf-32-le")
    for name, cls in _WORD_BREAK_CLASS.items():
        hits = [m.start() for m in regex.finditer(r"\p{Word_Break=%s}" % name, chars)]
        table[cps[hits]] = cls
    space = [ord(c) for c in WHITE_SPACE]
    # White_Space is never part of a token, except where it joins others (U+202F is ExtendNumLet)
    table[space] = np.where(table[space] == OTHER, SPACE, SPACE | SLOW)
    return table


def token_bounds(cls: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`dolma_tokens` of text without SLOW characters, from its classes (`char_classes()`), as
    (start, end) offsets: runs of LETTER, DIGIT and CONNECTOR, joined across one MID_LETTER
    between letters or one MID_NUM between digits; every other character that is not SPACE a
    token alone (SLOW ones too: callers keep text that has them away)."""
    word = (cls & (LETTER | DIGIT | CONNECTOR)) != 0
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


def ragged(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """For segments (start, count) laid end to end: each segment's first item, and each item's
    index within its segment and absolute index (start + local)."""
    first = np.cumsum(counts) - counts
    local = np.arange(int(counts.sum()), dtype=np.int64) - np.repeat(first, counts)
    return first, local, np.repeat(starts, counts) + local


_TERM_POSITIONS = 64


@functools.cache
def _term_table() -> np.ndarray:
    """`span_hashes`' terms for positions < 64 and code points < 256, index position << 8 | cp."""
    i = np.arange(_TERM_POSITIONS << 8, dtype=np.uint64)
    return fmix64(((i >> np.uint64(8)) << np.uint64(21)) | (i & np.uint64(255)))


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
        first, local, absolute = ragged(starts, lengths)
        chars = cp[absolute]
        if int(local.max()) < _TERM_POSITIONS and (chars.dtype == np.uint8 or int(chars.max()) < 256):
            terms = _term_table()[(local << 8) | chars]  # the same terms, precomputed
        else:
            terms = fmix64((local.astype(np.uint64) << np.uint64(21)) | chars.astype(np.uint64))
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


def paragraph_spans(text: str, sep: str):
    """(start, end, paragraph) of each `sep`-separated paragraph as dolma's deduper computes them:
    character offsets, `end` including the separator except once the offset reaches the text's
    UTF-8 byte length minus one (its end-of-text quirk, kept: paragraphs.py). Paragraph dedup
    (vectorised, in `paragraphs._add_texts`) and decontamination write spans this way."""
    text_length = len(text.encode("utf-8", "surrogatepass"))
    offset = 0
    for p in text.split(sep):
        start = offset
        offset += len(p)
        if offset < text_length - 1:
            offset += 1
        yield start, offset, p
