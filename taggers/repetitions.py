"""Repeated token sequences (`tokenizer_repetitions_v2r2`), as dolma 1.2.1 finds them.

The text is cut into pieces of 100,000 characters, each piece is tokenized (no special
tokens) and scanned for token sequences of period 1..13 that repeat at least 3 times in a
row. Fields:
- repetition: one span per repeated stretch, in characters (from its first token's start to
  its last token's end), score = number of repeats; stretches inside an earlier one (same or
  later start, same or earlier end) are dropped;
- doc_max_score_repetition, doc_max_length_repetition, doc_frac_repetition: document-level
  spans with the largest repeat count, the longest stretch in characters, and the fraction of
  characters in stretches. A document without repetitions gets no fields at all.

The tokenizer is a local `tokenizer.json` given as the option `tokenizer_path` (or the
environment variable DOLMA_PREP_TOKENIZER). dolma loads `allenai/eleuther-ai-gpt-neox-20b-
pii-special` from the Hugging Face hub; the OLMo tokenizer this project ships
(allenai_gpt-neox-olmo-dolma-v1_5.json) has the same vocabulary and merges, so spans agree.

The detector works like dolma's: for each period p the token ids are laid out in rows of p
and rows equal to the row before are found with numpy; a block of k such rows, extended by
the matching tail of the row before and head of the row after, is a stretch repeated
(length // p) times, kept when that is at least 3.
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import numpy as np

from ._text import replace_surrogates
from .registry import Document, Spans, Tagger, register

MIN_PERIOD, MAX_PERIOD = 1, 13
MAX_CHARS = 100_000


def _leading_true(row: np.ndarray) -> int:
    off = np.flatnonzero(~row)
    return int(off[0]) if off.size else len(row)


def periodic_runs(ids: np.ndarray, min_period: int = MIN_PERIOD, max_period: int = MAX_PERIOD) -> Iterator[tuple[int, int, int]]:
    """(start, end, times) in token positions, end exclusive, by period then position."""
    n = len(ids)
    for period in range(min_period, min(max_period, n // 3) + 1):
        pad = period - n % period  # always at least one padding value: the last row never repeats
        rows = np.concatenate([ids, np.full(pad, -1, dtype=ids.dtype)]).reshape(-1, period)
        same = np.empty(rows.shape, dtype=bool)
        same[1:] = rows[1:] == rows[:-1]
        same[0] = rows[0] == rows[-1]  # as with np.roll; never all true because of the padding
        full = np.flatnonzero(same.all(axis=1))
        if not full.size:
            continue
        breaks = np.flatnonzero(np.diff(full) != 1)
        for first, last in zip(full[np.r_[0, breaks + 1]].tolist(), full[np.r_[breaks, len(full) - 1]].tolist()):
            before = same[first - 1][::-1]
            start = (first - 1) * period - _leading_true(before)
            end = (last + 1) * period + _leading_true(same[last + 1])
            times = (end - start) // period
            if times > 2:
                yield start, end, times




def _encode(tokenizer: Any, texts: list[str]) -> list[Any]:
    try:
        return tokenizer.encode_batch(texts, add_special_tokens=False)
    except (TypeError, ValueError, UnicodeError):
        # lone surrogates cannot reach the Rust tokenizer (dolma raises); the same number of
        # U+FFFD keeps every character offset where it was
        return tokenizer.encode_batch([replace_surrogates(t) for t in texts], add_special_tokens=False)


def _load_tokenizer(path: str | None, tagger: str) -> Any:
    path = path or os.environ.get("DOLMA_PREP_TOKENIZER")
    if not path:
        raise ValueError(f"tagger {tagger!r} needs a tokenizer: pass tokenizer_path=/path/to/tokenizer.json "
                         "or set DOLMA_PREP_TOKENIZER (tokenizers are never downloaded)")
    if not os.path.isfile(path):
        raise ValueError(f"tagger {tagger!r}: tokenizer_path {path!r} does not exist")
    from tokenizers import Tokenizer

    return Tokenizer.from_file(path)


@register("tokenizer_repetitions_v2r2")
class TokenizerRepetitionsV2R2(Tagger):
    """Repeated token stretches (see the module docstring)."""

    output_fields = ("repetition", "doc_max_score_repetition", "doc_max_length_repetition", "doc_frac_repetition")

    def __init__(self, tokenizer_path: str | None = None, **options):
        super().__init__(tokenizer_path=tokenizer_path, **options)
        self.tokenizer = _load_tokenizer(tokenizer_path, self.name)

    def _piece_spans(self, encoding, offset: int) -> list[tuple[int, int, int]]:
        offsets = encoding.offsets
        found = [(offsets[s][0], offsets[e - 1][1], t)
                 for s, e, t in periodic_runs(np.asarray(encoding.ids, dtype=np.int64))]
        found.sort(key=lambda x: (x[0], -x[1], -x[2]))
        kept: list[tuple[int, int, int]] = []
        prev_start = prev_end = -1
        for s, e, t in found:
            if s >= prev_start and e <= prev_end:
                continue  # inside the previous kept stretch
            prev_start, prev_end = s, e
            kept.append((s + offset, e + offset, t))
        return kept

    def _result(self, text: str, spans: list[tuple[int, int, int]]) -> dict[str, Spans]:
        if not spans:
            return {}
        n = len(text)
        return {
            "repetition": [[s, e, float(t)] for s, e, t in spans],
            "doc_max_score_repetition": [[0, n, float(max(t for _, _, t in spans))]],
            "doc_max_length_repetition": [[0, n, float(max(e - s for s, e, _ in spans))]],
            "doc_frac_repetition": [[0, n, sum(e - s for s, e, _ in spans) / n]],
        }

    def predict_batch(self, docs: list[Document]) -> list[dict[str, Spans]]:
        pieces: list[tuple[int, int]] = []  # (doc index, character offset)
        texts: list[str] = []
        for i, d in enumerate(docs):
            for off in range(0, len(d.text), MAX_CHARS):
                pieces.append((i, off))
                texts.append(d.text[off : off + MAX_CHARS])
        encodings = _encode(self.tokenizer, texts) if texts else []
        spans: list[list[tuple[int, int, int]]] = [[] for _ in docs]
        for (i, off), enc in zip(pieces, encodings):
            spans[i].extend(self._piece_spans(enc, off))
        return [self._result(d.text, s) for d, s in zip(docs, spans)]

    def predict(self, doc: Document) -> dict[str, Spans]:
        return self.predict_batch([doc])[0]
