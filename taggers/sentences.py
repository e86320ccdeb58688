"""Sentence-level toxicity taggers under dolma 1.2.1's names: `jigsaw_hatespeech_sentence_v2`
and `jigsaw_nsfw_sencence_v2` (dolma's spelling, kept so configs port unchanged).

Sentences are dolma's `split_sentences`: Bling Fire's `text_to_sentences_and_offsets` (the
`blingfire` package, which dolma requires), one span per sentence in character offsets of
the original text, whitespace between sentences left out. Each sentence is scored as the
document taggers score a whole text (newlines become spaces, stripped; the model's top two
labels, the one without "non" first), so the fields are the model's labels with their
`__label__` prefix (e.g. `__label__toxic`, `__label__non_toxic`), one span per sentence each.
An empty text has no sentences and no fields. Option `model_path` (a local fastText model).

Deviation (as for the other fastText taggers): lone surrogates, which Bling Fire cannot
encode (dolma raises), are replaced by U+FFFD first; offsets are unchanged.
"""
from __future__ import annotations

from ._text import replace_surrogates
from .classifiers import JigsawHatespeech
from .registry import Document, Spans, register


def sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character offsets of each sentence, as dolma's split_sentences."""
    if not text:
        return []
    try:
        import blingfire
    except ImportError as e:  # pragma: no cover - a project dependency
        raise ImportError("sentence-level taggers need Bling Fire: pip install blingfire") from e
    try:
        _, offsets = blingfire.text_to_sentences_and_offsets(text)
    except UnicodeError:
        _, offsets = blingfire.text_to_sentences_and_offsets(replace_surrogates(text))
    return [(int(s), int(e)) for s, e in offsets]


@register("jigsaw_hatespeech_sentence_v2")
class JigsawHatespeechSentence(JigsawHatespeech):
    """Per-sentence toxicity probabilities (`__label__toxic`, `__label__non_toxic`; option `model_path`)."""

    def predict(self, doc: Document) -> dict[str, Spans]:
        text = doc.text
        out: dict[str, Spans] = {}
        for s, e in sentences(text):
            for label, prob in self.labels(text[s:e]):
                out.setdefault(label, []).append([s, e, prob])
        return out


@register("jigsaw_nsfw_sencence_v2")
class JigsawNsfwSentence(JigsawHatespeechSentence):
    """Per-sentence NSFW probabilities (`__label__nsfw`, `__label__non_nsfw`; option `model_path`)."""
