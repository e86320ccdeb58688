"""C4 rules (`c4_v1`), as dolma 1.2.1 computes them.

Lines are `text.split("\\n")`; a line's span runs from its first character to just after its
newline (the last line has none), so the spans of all lines tile the document.

- lines_with_no_ending_punctuation: one span per line that, stripped, does not end in
  `.`, `?`, `!` or `"` (blank lines included), score 1;
- lines_with_too_few_words: one span per line with fewer than 3 whitespace-separated words,
  score 1;
- has_naughty_word, has_javascript, has_lorem_ipsum, has_curly_brace: a document-level span
  `[0, len(text), 1]` present only when true. Naughty: a lowercased word is in the LDNOOBW
  list, or one of its multi-word phrases occurs anywhere in a lowercased line (as a
  substring, so "big black" also matches "big blackboard"); javascript: a lowercased word
  equals "javascript"; lorem ipsum: the substring "lorem ipsum" in a lowercased line;
  curly brace: a `{` anywhere;
- line_count: `[0, len(text), number of lines]`.

The per-line loop of dolma is replaced by whole-document checks that give the same answers:
no phrase contains a newline or starts or ends with a space, and lowercasing never creates
or removes whitespace, so searching the lowercased document equals searching each line.
"""
from __future__ import annotations

import re
from itertools import repeat

import numpy as np

from ._naughty_words import NAUGHTY_LINES
from .registry import Document, Spans, Tagger, register

MIN_WORDS_PER_LINE = 3
END_PUNCTUATION = (".", "?", "!", '"')
NAUGHTY_WORDS = frozenset(w for w in NAUGHTY_LINES if " " not in w)
NAUGHTY_PHRASES = tuple(w for w in NAUGHTY_LINES if " " in w)


def _phrase_regex(phrases: tuple[str, ...]) -> re.Pattern:
    """One regex true exactly when some phrase occurs in the text.

    Every phrase contains a space: the regex starts at a space, matches what follows it
    through a trie of the phrases' tails (so a failed branch costs one character test), and
    confirms the whole phrase with a look-behind. One pass over the text that only stops at
    spaces, instead of one substring search per phrase."""
    trie: dict = {}
    for phrase in phrases:
        node = trie
        for ch in phrase[phrase.index(" ") + 1 :]:
            node = node.setdefault(ch, {})
        node.setdefault("", []).append(phrase)

    def emit(node: dict) -> str:
        alts = []
        for ch, child in sorted(node.items()):
            if ch == "":
                alts.extend(f"(?<={re.escape(ph)})" for ph in child)
            else:
                alts.append(re.escape(ch) + emit(child))
        return alts[0] if len(alts) == 1 else "(?:" + "|".join(alts) + ")"

    return re.compile(" " + emit(trie))


_PHRASE = _phrase_regex(NAUGHTY_PHRASES)

def c4_spans(text: str) -> dict[str, Spans]:
    n = len(text)
    lines = text.split("\n")
    n_lines = len(lines)
    ends = np.cumsum(np.fromiter(map(len, lines), dtype=np.int64, count=n_lines) + 1)
    ends[-1] -= 1  # the last line has no newline
    starts = np.empty_like(ends)
    starts[0] = 0
    starts[1:] = ends[:-1]

    stripped = list(map(str.strip, lines))
    ok_end = np.fromiter(map(str.endswith, stripped, repeat(END_PUNCTUATION)), dtype=bool, count=n_lines)
    # split at most twice: a line has enough words when there are three pieces
    enough = np.fromiter(map(len, map(str.split, stripped, repeat(None), repeat(MIN_WORDS_PER_LINE - 1))),
                         dtype=np.int64, count=n_lines) >= MIN_WORDS_PER_LINE

    out: dict[str, Spans] = {}
    bad_end = np.flatnonzero(~ok_end)
    if bad_end.size:
        out["lines_with_no_ending_punctuation"] = [[s, e, 1.0] for s, e in zip(starts[bad_end].tolist(), ends[bad_end].tolist())]
    few = np.flatnonzero(~enough)
    if few.size:
        out["lines_with_too_few_words"] = [[s, e, 1.0] for s, e in zip(starts[few].tolist(), ends[few].tolist())]

    lowered = text.lower()
    words = lowered.split()
    if not NAUGHTY_WORDS.isdisjoint(words) or _PHRASE.search(lowered):
        out["has_naughty_word"] = [[0, n, 1.0]]
    if "javascript" in lowered and "javascript" in words:
        out["has_javascript"] = [[0, n, 1.0]]
    if "lorem ipsum" in lowered:
        out["has_lorem_ipsum"] = [[0, n, 1.0]]
    if "{" in text:
        out["has_curly_brace"] = [[0, n, 1.0]]
    out["line_count"] = [[0, n, float(n_lines)]]
    return out


@register("c4_v1")
class C4V1(Tagger):
    """C4 line and document rules (see the module docstring for fields and spans)."""

    output_fields = ("lines_with_no_ending_punctuation", "lines_with_too_few_words", "has_naughty_word",
                     "has_javascript", "has_lorem_ipsum", "has_curly_brace", "line_count")

    def predict(self, doc: Document) -> dict[str, Spans]:
        return c4_spans(doc.text)
