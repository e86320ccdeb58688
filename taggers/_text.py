"""Small text helpers shared by several taggers (no tagger lives here)."""
from __future__ import annotations

import re
from functools import lru_cache

import numpy as np

# A paragraph as dolma's `split_paragraphs` defines it: zero or more characters ending in a
# newline, or one or more characters running to the end of the text.
PARAGRAPH = re.compile(r"[^\n]*\n|[^\n]+$")


def paragraphs(text: str, remove_empty: bool = True) -> list[tuple[int, int]]:
    """(start, end) of each paragraph (newline included); blank ones dropped by default."""
    out = [m.span() for m in PARAGRAPH.finditer(text)]
    if remove_empty:
        out = [(s, e) for s, e in out if text[s:e].strip()]
    return out


_SURROGATES = re.compile("[\ud800-\udfff]")
# str.split() splits on these but tokenizers' WhitespaceSplit (Rust's char::is_whitespace,
# Unicode White_Space) does not; on every other character the two agree
_PY_ONLY_SPACES = ("\x1c", "\x1d", "\x1e", "\x1f")


def replace_surrogates(text: str) -> str:
    """Lone surrogates (possible in JSON input) -> U+FFFD, one for one, so offsets hold."""
    return _SURROGATES.sub("\ufffd", text)


@lru_cache(maxsize=1)
def _whitespace_split():
    from tokenizers import pre_tokenizers

    return pre_tokenizers.WhitespaceSplit()


def whitespace_join(text: str) -> str:
    """Words split as tokenizers' WhitespaceSplit splits them, joined by single spaces (what
    dolma's quality tagger feeds fastText). Uses str.split when that gives the same words."""
    if not any(c in text for c in _PY_ONLY_SPACES):
        return " ".join(text.split())
    try:
        return " ".join(t for t, _ in _whitespace_split().pre_tokenize_str(text))
    except UnicodeError:
        return " ".join(t for t, _ in _whitespace_split().pre_tokenize_str(replace_surrogates(text)))


class CharTable:
    """A per-code-point boolean property, looked up with numpy: a table for the Basic
    Multilingual Plane (built in milliseconds) and the str method for the rare others."""

    def __init__(self, method) -> None:
        self.method = method
        self.bmp = np.fromiter((method(chr(c)) for c in range(0x10000)), dtype=bool, count=0x10000)

    def __getitem__(self, cp: np.ndarray) -> np.ndarray:
        if cp.size and int(cp.max()) >= 0x10000:
            out = np.zeros(cp.shape, dtype=bool)
            low = cp < 0x10000
            out[low] = self.bmp[cp[low]]
            high = np.flatnonzero(~low)
            out[high] = [self.method(chr(c)) for c in cp[high].tolist()]
            return out
        return self.bmp[cp]


@lru_cache(maxsize=1)
def isalpha_table() -> CharTable:
    """`table[cp]` is `chr(cp).isalpha()` for an array of code points."""
    return CharTable(str.isalpha)


@lru_cache(maxsize=1)
def isdecimal_table() -> CharTable:
    """`table[cp]` is `chr(cp).isdecimal()`: what `\\d` matches in a `re` str pattern."""
    return CharTable(str.isdecimal)


@lru_cache(maxsize=1)
def isspace_table() -> CharTable:
    """`table[cp]` is `chr(cp).isspace()`: what `\\s` matches and what `str.split()` splits on."""
    return CharTable(str.isspace)


def codepoints(text: str) -> np.ndarray:
    """The text as a uint32 array of code points (lone surrogates kept as their values)."""
    return np.frombuffer(text.encode("utf-32-le", "surrogatepass"), dtype="<u4")
