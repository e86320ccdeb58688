"""The sampling rule, applied: a kept document with hash u = unit_hash(seed, source, id)
(core/sampling.py, the trainer's too) is written `whole + [u < threshold]` times. `plan.py`
chooses the rule (a proportion or a token target); the tokenize step applies it, and `stats`
and `show` replay it on the kept documents.
"""
from __future__ import annotations

import numpy as np

from ..core.sampling import unit_hash

ALL = {"whole": 1, "threshold": 0.0}  # the sampling rule that keeps every document once


def copies(u: float, rule: dict) -> int:
    """How many times a document with hash u = unit_hash(seed, source, id) (core/sampling.py)
    is written: whole + [u < threshold]."""
    return int(rule["whole"]) + (1 if u < rule["threshold"] else 0)


def keeps_all(rule: dict) -> bool:
    """Whether the rule writes every document exactly once (no hash needs computing)."""
    return int(rule["whole"]) == 1 and rule["threshold"] <= 0.0


def draw(ids: list, valid: np.ndarray, seed: int, source: str, rule: dict) -> tuple[np.ndarray, int]:
    """Documents `valid` (indexes into `ids`) as the rule writes them, each repeated `copies`
    times, in order; and how many of them are written at least once."""
    if keeps_all(rule):
        return valid, len(valid)
    n = np.array([copies(unit_hash(seed, source, ids[j]), rule) for j in valid.tolist()], dtype=np.int64)
    return np.repeat(valid, n), int(np.count_nonzero(n))
