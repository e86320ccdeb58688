"""Length taggers: characters (`char_length_v1`) and words (`whitespace_tokenizer_v1`).

Both give one document-level span `[0, len(text), score]`, field `length`, as in dolma 1.2.1.
"""
from __future__ import annotations

import re

try:  # dolma counts with the `regex` module, whose \w follows Unicode more closely than `re`
    import regex as _regex
except ImportError:  # pragma: no cover - `re` differs only on rare characters (e.g. combining marks)
    _regex = re

from .registry import Document, Spans, Tagger, register

_TOKEN = _regex.compile(r"\w+|[^\w\s]+")
# On ASCII text the two modules agree except on \x1c-\x1f (whitespace only for `re`); there
# the faster `re` gives the same count.
_TOKEN_ASCII = re.compile(r"\w+|[^\w\s]+")
_RE_ONLY_SPACES = ("\x1c", "\x1d", "\x1e", "\x1f")


@register("char_length_v1")
class CharLength(Tagger):
    """Field `length`: one document-level span whose score is the number of characters."""

    output_fields = ("length",)

    def predict(self, doc: Document) -> dict[str, Spans]:
        n = len(doc.text)
        return {"length": [[0, n, float(n)]]}


@register("whitespace_tokenizer_v1")
class WhitespaceTokenizer(Tagger):
    """Field `length`: runs of word characters and runs of other non-space characters, plus
    one. dolma computes `len(regex.split(r"\\w+|[^\\w\\s]+", text))`, the number of pieces
    *between* tokens, which is the number of tokens + 1 (1 for an empty text); we keep it."""

    output_fields = ("length",)

    def predict(self, doc: Document) -> dict[str, Spans]:
        text = doc.text
        fast = text.isascii() and not any(c in text for c in _RE_ONLY_SPACES)
        pieces = len((_TOKEN_ASCII if fast else _TOKEN).split(text))
        return {"length": [[0, len(text), float(pieces)]]}
