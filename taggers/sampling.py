"""Random sampling scores (`random_number_v1`).

Field `random`: one document-level span `[0, len(text), u]`, u uniform in [0, 1).

As in dolma 1.2.1 the generator is seeded once per process with `(pid + 1) * seed` (option
`seed`, default 1), so scores change from run to run. Pass `deterministic=True` for scores
that depend only on `seed` and the document id (a hash), hence are the same on every run,
on any number of workers.
"""
from __future__ import annotations

import hashlib
import os
import random

from .registry import Document, Spans, Tagger, register


@register("random_number_v1")
class RandomNumber(Tagger):
    output_fields = ("random",)

    def __init__(self, seed: int = 1, deterministic: bool = False, **options):
        super().__init__(seed=seed, deterministic=deterministic, **options)
        if int(seed) <= 0:
            raise ValueError(f"random_number_v1: seed must be > 0, got {seed}")
        self.seed = int(seed)
        self.deterministic = bool(deterministic)
        self._rng = random.Random((os.getpid() + 1) * self.seed)

    def predict(self, doc: Document) -> dict[str, Spans]:
        if self.deterministic:
            h = hashlib.blake2b(f"{self.seed}\x00{doc.id}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
            score = (int.from_bytes(h, "big") >> 11) / float(1 << 53)
        else:
            score = self._rng.random()
        return {"random": [[0, len(doc.text), score]]}
