"""Gopher quality statistics (`gopher_v1`, and `gopher_v2` which ignores empty lines).

Same fields, spans and scores as dolma 1.2.1's `gopher_v1` (Rae et al. 2021, appendix A):
every field is one document-level span `[0, len(text), value]`.

Words are `text.split()` (Python whitespace). Character counts in the ratios below are the
sum of word lengths, not `len(text)`, as in dolma.

- character_count: len(text); word_count; median_word_length;
- symbol_to_word_ratio: fraction of words containing `#` or `…`;
- fraction_of_words_with_alpha_character; required_word_count (the, be, to, of, and, that,
  have, with: exact, case-sensitive matches);
- fraction_of_lines_starting_with_bullet_point (`*` or `-`), fraction_of_lines_ending_with_ellipsis
  (`…`), fraction_of_duplicate_lines, fraction_of_characters_in_duplicate_lines (lines are
  `text.split("\\n")`);
- fraction_of_characters_in_most_common_{2,3,4}grams: count of the most common word n-gram
  (ties: the one seen first) times its characters, over all word characters;
- fraction_of_characters_in_duplicate_{5..10}grams: characters of n-gram occurrences whose
  n-gram occurs more than once, over the characters of all n-gram occurrences.
An n-gram field is absent when the document has fewer than n words (dolma skips empty
counters); an empty text only has the ten scalar fields, all 0.

Speed: instead of counting tuples of strings, words become integer ids and each n-gram level
is counted with numpy on the positions that can still repeat (an n-gram occurs twice only if
both of its (n-1)-grams do), so long documents cost a few sorts of shrinking arrays.
"""
from __future__ import annotations

import itertools
import re
from collections import Counter

import numpy as np

from ._text import codepoints, isalpha_table
from .registry import Document, Spans, Tagger, register

REQUIRED_WORDS = ("the", "be", "to", "of", "and", "that", "have", "with")
_EMPTY_LINES = re.compile(r"\n+")

SCALAR_FIELDS = (
    "character_count",
    "word_count",
    "median_word_length",
    "symbol_to_word_ratio",
    "fraction_of_words_with_alpha_character",
    "required_word_count",
    "fraction_of_lines_starting_with_bullet_point",
    "fraction_of_lines_ending_with_ellipsis",
    "fraction_of_duplicate_lines",
    "fraction_of_characters_in_duplicate_lines",
)


def _alpha_word_mask(vocab: list[str]) -> np.ndarray:
    """For each (non-empty, whitespace-free) word: does it contain an alphabetic character?"""
    joined = "\n".join(vocab)
    is_alpha = isalpha_table()[codepoints(joined)]
    lengths = np.fromiter(map(len, vocab), dtype=np.int64, count=len(vocab))
    starts = np.zeros(len(vocab), dtype=np.int64)
    np.cumsum(lengths[:-1] + 1, out=starts[1:])
    return np.logical_or.reduceat(is_alpha, starts)


def _median(values: np.ndarray) -> float:
    """statistics.median of integers (mean of the two middle values for an even count)."""
    n = len(values)
    k = n // 2
    if n % 2:
        return float(np.partition(values, k)[k])
    part = np.partition(values, [k - 1, k])
    return (int(part[k - 1]) + int(part[k])) / 2


def _ngram_fields(ids: np.ndarray, lengths: np.ndarray, word_counts: np.ndarray) -> list[tuple[str, float]]:
    """The n-gram fields, from word ids (any ids below len(ids), equal for equal words), word
    lengths, and `word_counts[id]`, the number of occurrences of each id."""
    n_words = len(ids)
    n_vocab = n_words  # ids are below this, so level_id * n_vocab + id is unique
    prefix = np.zeros(n_words + 1, dtype=np.int64)
    np.cumsum(lengths, out=prefix[1:])
    denom_words = max(int(prefix[-1]), 1)

    # state for level n-1: which positions start a repeated (n-1)-gram, and its dense id there
    repeated = word_counts[ids] > 1
    level_id = ids
    most_common: list[tuple[str, float]] = []
    duplicate: list[tuple[str, float]] = []
    for n in range(2, min(n_words, 10) + 1):
        m = n_words - n + 1
        cand = np.flatnonzero(repeated[:m] & repeated[1 : m + 1]) if repeated is not None else ()
        if len(cand) == 0:
            # nothing repeats from here on: every count is 1, the "most common" n-gram is the
            # first one and no characters are in duplicates
            if n <= 4:
                most_common.append((f"fraction_of_characters_in_most_common_{n}grams", int(prefix[n]) / denom_words))
            else:
                duplicate.append((f"fraction_of_characters_in_duplicate_{n}grams", 0.0))
            repeated = None
            continue
        keys = level_id[cand] * n_vocab + ids[cand + n - 1]
        order = np.argsort(keys)  # groups equal n-grams (not stable: first occurrences below)
        sk = keys[order]
        new_group = np.empty(len(sk), dtype=bool)
        new_group[0] = True
        np.not_equal(sk[1:], sk[:-1], out=new_group[1:])
        starts = np.flatnonzero(new_group)
        group_counts = np.empty(len(starts), dtype=np.int64)
        np.subtract(starts[1:], starts[:-1], out=group_counts[:-1])
        group_counts[-1] = len(sk) - starts[-1]
        count_sorted = np.repeat(group_counts, group_counts)  # count of each sorted element's group
        dup_sorted = count_sorted > 1
        dup_pos = cand[order[dup_sorted]]
        chars = prefix[n:] - prefix[:m]  # characters of the n-gram starting at each position
        if n <= 4:
            best = int(group_counts.max())
            if best > 1:
                # among the n-grams with the top count, the one seen first wins (Counter order)
                top = np.flatnonzero(group_counts == best)
                first_seen = np.minimum.reduceat(cand[order], starts)[top]
                pos = int(first_seen.min())
            else:
                best, pos = 1, 0
            most_common.append((f"fraction_of_characters_in_most_common_{n}grams", best * int(chars[pos]) / denom_words))
        else:
            total = int(chars.sum())
            duplicate.append((f"fraction_of_characters_in_duplicate_{n}grams", int(chars[dup_pos].sum()) / max(total, 1)))
        repeated = np.zeros(m, dtype=bool)
        repeated[dup_pos] = True
        # dense ids for the next level, needed only where the n-gram repeats
        level_id = np.empty(m, dtype=np.int64)
        level_id[cand[order]] = np.cumsum(new_group) - 1
    return most_common + duplicate


def gopher_statistics(text: str, ignore_empty_lines: bool = False) -> list[tuple[str, float]]:
    """(field, value) pairs in dolma's output order."""
    n_chars = len(text)
    if n_chars == 0:
        return [(f, 0.0) for f in SCALAR_FIELDS]
    words = text.split()
    n_words = len(words)
    denom = max(n_words, 1)

    fields: list[tuple[str, float]] = []
    if n_words:
        # word ids: the position where each word is first seen (index.setdefault keeps the first)
        index: dict[str, int] = {}
        ids = np.fromiter(map(index.setdefault, words, itertools.count()), dtype=np.int64, count=n_words)
        counts_by_id = np.bincount(ids, minlength=n_words)
        vocab = list(index)
        first_pos = np.fromiter(index.values(), dtype=np.int64, count=len(index))
        vocab_counts = counts_by_id[first_pos]
        length_by_id = np.zeros(n_words, dtype=np.int64)
        length_by_id[first_pos] = np.fromiter(map(len, vocab), dtype=np.int64, count=len(vocab))
        lengths = length_by_id[ids]
        word_chars = int(lengths.sum())
        median = _median(lengths)
        alpha_words = int(vocab_counts[_alpha_word_mask(vocab)].sum())
        if "#" in text or "\u2026" in text:
            symbol_words = sum(int(counts_by_id[i]) for w, i in index.items() if "#" in w or "\u2026" in w)
        else:
            symbol_words = 0
        required = sum(int(counts_by_id[index[w]]) for w in REQUIRED_WORDS if w in index)
        if n_words >= 2:
            fields = _ngram_fields(ids, lengths, counts_by_id)
    else:
        word_chars, median, alpha_words, symbol_words, required = 0, 0.0, 0, 0, 0

    if ignore_empty_lines:
        lines = _EMPTY_LINES.split(text)
        bullets = sum(1 for ln in lines if ln.startswith(("*", "-")))
        ellipses = sum(1 for ln in lines if ln.endswith("\u2026"))
    else:
        lines = text.split("\n")
        bullets = text.startswith(("*", "-")) + text.count("\n*") + text.count("\n-")
        ellipses = text.count("\u2026\n") + text.endswith("\u2026")
    n_lines = max(len(lines), 1)
    line_counts = Counter(lines)
    dup_lines = dup_line_chars = 0
    if len(line_counts) < len(lines):
        for line, c in line_counts.items():
            if c > 1:
                dup_lines += c
                dup_line_chars += len(line) * c

    fields += [
        ("character_count", float(n_chars)),
        ("word_count", float(n_words)),
        ("median_word_length", median),
        ("symbol_to_word_ratio", symbol_words / denom),
        ("fraction_of_words_with_alpha_character", alpha_words / denom),
        ("required_word_count", float(required)),
        ("fraction_of_lines_starting_with_bullet_point", bullets / n_lines),
        ("fraction_of_lines_ending_with_ellipsis", ellipses / n_lines),
        ("fraction_of_duplicate_lines", dup_lines / n_lines),
        ("fraction_of_characters_in_duplicate_lines", dup_line_chars / max(word_chars, 1)),
    ]
    return fields


@register("gopher_v1")
class GopherV1(Tagger):
    """Gopher statistics; each field a document-level span (see the module docstring)."""

    output_fields = ("character_count", "word_count", "median_word_length", "symbol_to_word_ratio",
                     "fraction_of_words_with_alpha_character", "required_word_count",
                     "fraction_of_lines_starting_with_bullet_point", "fraction_of_lines_ending_with_ellipsis",
                     "fraction_of_duplicate_lines", "fraction_of_characters_in_duplicate_lines",
                     *(f"fraction_of_characters_in_most_common_{n}grams" for n in (2, 3, 4)),
                     *(f"fraction_of_characters_in_duplicate_{n}grams" for n in range(5, 11)))

    ignore_empty_lines = False

    def predict(self, doc: Document) -> dict[str, Spans]:
        n = len(doc.text)
        return {f: [[0, n, v]] for f, v in gopher_statistics(doc.text, self.ignore_empty_lines)}


@register("gopher_v2")
class GopherV2(GopherV1):
    """As `gopher_v1`, but lines are split on runs of newlines (empty lines ignored)."""

    ignore_empty_lines = True
