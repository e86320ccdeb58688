"""DCLM's fastText quality classifier under dolma 1.2.1's name: `dclm-oh-eli5`.

DCLM (DataComp-LM) filters with a bigram fastText model trained on OpenHermes 2.5 and
r/ExplainLikeImFive answers (label `hq`) against RefinedWeb (label `cc`):
`openhermes_reddit_eli5_vs_rw_v2_bigram_200k_train.bin`. Point `model_path` at a local copy
(nothing is downloaded); any fastText model with labels `hq` / `cc` works.

Field `score` (keys `<exp>__dclm_oh_eli5__score`): one document span `[0, len(text), p]`
where p is the probability of `hq`. As dolma computes it: the text is stripped, split into
lines with `str.splitlines` (which also splits on \\r, \\v, \\f, \\x1c-\\x1e, \\x85, U+2028,
U+2029) and rejoined with single spaces; fastText gives its single most probable label; when
that is `cc` the score is 1 - its probability. The field name is the label with `__label__`
removed and every `cc` and `hq` in it replaced by `score`, so a model with other labels
writes other fields (e.g. `lq`), exactly as dolma does.
"""
from __future__ import annotations

from . import _fasttext
from .registry import Document, Spans, Tagger, register


def field_name(label: str) -> str:
    return label.replace("__label__", "").replace("cc", "score").replace("hq", "score")


@register("dclm-oh-eli5")
class DclmOhEli5(Tagger):
    """DCLM's OpenHermes + ELI5 vs RefinedWeb quality score (field `score`, option `model_path`)."""

    def __init__(self, model_path: str | None = None, **options):
        super().__init__(model_path=model_path, **options)
        self.model = _fasttext.load_model(model_path, self.name)

    def predict(self, doc: Document) -> dict[str, Spans]:
        text = " ".join(doc.text.strip().splitlines())
        (label, prob), = _fasttext.predict(self.model, text, k=1)
        if label == "__label__cc":
            prob = 1.0 - prob
        return {field_name(label): [[0, len(doc.text), prob]]}
