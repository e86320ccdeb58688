"""Language identification: CLD2 (`cld2_en_doc_v2`, `cld2_doc_v2`) and fastText
(`ft_lang_id_en_doc_v2`, `ft_lang_id_doc_v1`), as dolma 1.2.1 scores them.

All spans are document-level, `[0, len(text), score]`.

cld2_en_doc_v2: fields `en` and `not_en`. `en` is CLD2's percentage of English text / 100
when CLD2 calls its result reliable, else 0; `not_en` = 1 - en. As in dolma, when pycld2
rejects the input (control characters and other bytes it calls invalid UTF-8) we retry on
an ASCII transliteration (anyascii), then with control and surrogate characters removed.
A language's code is the first two letters of CLD2's language *name*, lowercased.
cld2_doc_v2: one field per language CLD2 reports (when reliable), no negatives.

ft_lang_id_en_doc_v2: fields `en` and `not_en` from a fastText language-id model (e.g.
lid.176.bin) given as the option `model_path`; the text is lowercased, newlines become
spaces, then stripped. ft_lang_id_doc_v1: one field per label of the model.

Deviation: dolma crashes on text with lone surrogates (pycld2 cannot encode them); we
treat that like pycld2's own input error and go on to the fallbacks.
"""
from __future__ import annotations

import re

from . import _fasttext
from .registry import Document, Spans, Tagger, register

_BAD_CHARS = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff]+")  # \p{Cc} and \p{Cs}


def _transliterate(text: str) -> str:
    try:
        from anyascii import anyascii
    except ImportError:  # pragma: no cover - optional: without it we go straight to the last fallback
        raise ValueError("anyascii not installed") from None
    return anyascii(text)


def _sanitize(text: str) -> str:
    return _BAD_CHARS.sub("", text)


class _LanguageDoc(Tagger):
    """Document spans from `languages(text)`: [(code, score)], the part each engine differs in."""

    include_negative = False
    english_only = False

    def languages(self, text: str) -> list[tuple[str, float]]:
        raise NotImplementedError

    def predict(self, doc: Document) -> dict[str, Spans]:
        n = len(doc.text)
        langs = self.languages(doc.text)
        if self.english_only:
            langs = [(lang, s) for lang, s in langs if lang == "en"] or [("en", 0.0)]
        out: dict[str, Spans] = {}
        for lang, score in langs:
            out.setdefault(lang, []).append([0, n, score])
        if self.include_negative:
            for lang, score in langs:
                out.setdefault(f"not_{lang}", []).append([0, n, 1.0 - score])
        return out


class Cld2Doc(_LanguageDoc):
    def __init__(self, **options):
        super().__init__(**options)
        try:
            import pycld2
        except ImportError as e:
            raise ImportError(f"tagger {self.name!r} needs pycld2: pip install pycld2") from e
        self._cld2 = pycld2

    def languages(self, text: str) -> list[tuple[str, float]]:
        details: tuple = ()
        reliable = False
        for transform in (None, _transliterate, _sanitize):
            try:
                reliable, _, details = self._cld2.detect(text if transform is None else transform(text))
                break
            except (self._cld2.error, ValueError):
                continue
        if not reliable:
            return []
        return [(d[0][:2].lower(), d[2] / 100.0) for d in details if d[0] != "UNKNOWN_LANGUAGE"]


register("cld2_doc_v2")(Cld2Doc)


@register("cld2_en_doc_v2")
class Cld2EnglishDoc(Cld2Doc):
    """`en` / `not_en` from CLD2 (see the module docstring)."""

    output_fields = ("en", "not_en")

    include_negative = True
    english_only = True


@register("ft_lang_id_doc_v1")
class FastTextLangIdDoc(_LanguageDoc):
    """One field per language label of a local fastText language-id model (`model_path`)."""

    def __init__(self, model_path: str | None = None, **options):
        super().__init__(model_path=model_path, **options)
        self.model = _fasttext.load_model(model_path, self.name)

    def languages(self, text: str) -> list[tuple[str, float]]:
        text = text.lower().replace("\n", " ").strip()
        return [(label.replace("__label__", ""), p) for label, p in _fasttext.predict(self.model, text)]


@register("ft_lang_id_en_doc_v2")
class FastTextLangIdEnglishDoc(FastTextLangIdDoc):
    """`en` / `not_en` from a local fastText language-id model (`model_path`)."""

    output_fields = ("en", "not_en")

    include_negative = True
    english_only = True
