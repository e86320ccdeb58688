"""Length taggers: character count of the whole document (`char_length_v1`)."""
from __future__ import annotations

from .registry import Document, Spans, Tagger, register


@register("char_length_v1")
class CharLength(Tagger):
    """Field `length`: one document-level span whose score is the number of characters."""

    def predict(self, doc: Document) -> dict[str, Spans]:
        n = len(doc.text)
        return {"length": [[0, n, float(n)]]}
