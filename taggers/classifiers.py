"""fastText document classifiers on local models: quality (`cc_multi_bin`, alias
`dolma17-quality`) and toxicity (`jigsaw_hatespeech_document_v2`, `jigsaw_nsfw_document_v1`).

Every tagger here needs the option `model_path` (a fastText `.bin`; nothing is downloaded) and
gives document-level spans `[0, len(text), probability]`, one per label of the model.

cc_multi_bin / dolma17-quality (dolma 1.7's quality filter): the text is split on whitespace
(tokenizers' WhitespaceSplit) and rejoined with single spaces; fields are the labels without
`__label__` (e.g. `hq`, `lq`), most probable first. With experiment `cc_multi_bin` the
quality score is `cc_multi_bin__cc_multi_bin__hq`, as in the Dolma 1.7 mixer configs.
`train_classifier.py` trains compatible models.

jigsaw_*: newlines become spaces and the text is stripped; fields keep fastText's
`__label__` prefix, as dolma writes them, so keys look like
`<exp>__jigsaw_hatespeech_document_v2____label__toxic`. The label without "non" comes first.

Deviation: dolma's quality tagger raises on a document without any non-space character;
ours classifies the empty string (fastText then returns the model's prior).
"""
from __future__ import annotations

from . import _fasttext
from ._text import whitespace_join
from .registry import Document, Spans, Tagger, register


class FastTextDocumentTagger(Tagger):
    def __init__(self, model_path: str | None = None, **options):
        super().__init__(model_path=model_path, **options)
        self.model = _fasttext.load_model(model_path, self.name)

    def prepare(self, text: str) -> str:
        return text.replace("\n", " ").strip()

    def labels(self, text: str) -> list[tuple[str, float]]:
        return _fasttext.predict(self.model, self.prepare(text))

    def predict(self, doc: Document) -> dict[str, Spans]:
        n = len(doc.text)
        out: dict[str, Spans] = {}
        for label, prob in self.labels(doc.text):
            out.setdefault(label, []).append([0, n, prob])
        return out


@register("cc_multi_bin")
class QualityClassifier(FastTextDocumentTagger):
    """Quality probabilities per label (e.g. `hq`, `lq`), most probable first."""

    def prepare(self, text: str) -> str:
        return whitespace_join(text)

    def labels(self, text: str) -> list[tuple[str, float]]:
        preds = [(label.replace("__label__", ""), p) for label, p in super().labels(text)]
        return sorted(preds, key=lambda x: x[1], reverse=True)


@register("dolma17-quality")
class Dolma17Quality(QualityClassifier):
    """dolma's name for the same tagger (keys `<exp>__dolma17_quality__hq`)."""


@register("jigsaw_hatespeech_document_v2")
class JigsawHatespeech(FastTextDocumentTagger):
    """Toxicity probabilities, fields `__label__toxic` and `__label__non_toxic` (model's labels)."""

    def labels(self, text: str) -> list[tuple[str, float]]:
        preds = super().labels(text)[:2]  # dolma reports the top two labels
        if len(preds) == 2 and "non" in preds[0][0]:
            preds.reverse()
        return preds


@register("jigsaw_nsfw_document_v1")
class JigsawNsfw(JigsawHatespeech):
    """NSFW probabilities, fields `__label__nsfw` and `__label__non_nsfw` (model's labels)."""
