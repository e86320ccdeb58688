"""The seeded hash that places a document in [0, 1): the one definition the pipeline and the trainer share.

The pipeline samples with it (u = unit_hash(seed, source, id) against a source's rule, in the
count and tokenize stages, replayed by `stats` and `show`); the trainer draws mixtures and
held-out documents with it (training/mixture.py) and mix search picks its evaluation texts.
A document's u must be the same number on both sides, so there is one function, here.
"""

from __future__ import annotations

import xxhash


def unit_hash(*parts: object) -> float:
    """A seeded position in [0, 1) of whatever `parts` name (seed, source, document id, ...):
    xxh64 of their `str` forms joined by U+001F, over 2**64."""
    key = "\x1f".join(map(str, parts))
    return xxhash.xxh64_intdigest(key.encode("utf-8", "surrogatepass")) / 2.0**64
