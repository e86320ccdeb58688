"""Paragraph-level variants of the language and length taggers, under dolma 1.2.1's names.

A paragraph is dolma's `split_paragraphs`: a run of characters ending in a newline (the
newline included), or the characters after the last newline; paragraphs with only white
space are dropped. Spans are `[paragraph start, paragraph end, score]` in characters.

| tagger | fields |
|---|---|
| `cld2_paragraph_v2` | one per language CLD2 reports reliably for the paragraph (as `cld2_doc_v2`) |
| `cld2_en_paragraph_v2` | `en`, `not_en` per paragraph (as `cld2_en_doc_v2`): all `en` spans first, then all `not_en` |
| `cld2_en_paragraph_with_doc_score_v2` | as above, plus document spans `doc_en` = sum over paragraphs of (paragraph length x en) / len(text), and `doc_not_en` = 1 - doc_en (both 0 for an empty text) |
| `ft_lang_id_paragraph_v1` | every label of the fastText model per paragraph (option `model_path`) |
| `ft_lang_id_en_paragraph_v2` | `en`, `not_en` per paragraph from the fastText model |
| `ft_lang_id_en_paragraph_with_doc_score_v2` | as above plus `doc_en`, `doc_not_en` |
| `char_length_with_paragraphs_v1` | `paragraph` (characters of each paragraph), `document` (len(text)) |
| `whitespace_tokenizer_with_paragraphs_v1` | `paragraph` (whitespace_tokenizer_v1's count of the paragraph, i.e. tokens + 1), `document` (the sum over paragraphs) |
| `not_alphanum_paragraph_v1` | `all_punct`: score 1 per paragraph without any ASCII letter or digit made only of punctuation, space and emoji; a single document span with score 0 when there is none |
"""
from __future__ import annotations

from ._text import paragraphs
from .language import Cld2Doc, FastTextLangIdDoc
from .length import WhitespaceTokenizer
from .registry import Document, Spans, Tagger, register

try:
    import regex as _regex
except ImportError:  # pragma: no cover - a project dependency
    _regex = None


class _ParagraphLanguage:
    """Mixin: score each paragraph with `languages(text)`; negatives and document scores as dolma."""

    include_negative = False
    english_only = False
    doc_score = False

    def predict(self, doc: Document) -> dict[str, Spans]:
        text = doc.text
        spans: list[tuple[str, int, int, float]] = []
        for s, e in paragraphs(text):
            langs = self.languages(text[s:e])
            if self.english_only:
                langs = [(lang, p) for lang, p in langs if lang == "en"] or [("en", 0.0)]
            spans += [(lang, s, e, p) for lang, p in langs]
        if self.include_negative:
            spans += [(f"not_{lang}", s, e, 1.0 - p) for lang, s, e, p in spans]
        if self.doc_score:
            n = len(text)
            if n:
                en = sum((e - s) * p for lang, s, e, p in spans if lang == "en") / n
                not_en = 1 - en
            else:  # dolma: ZeroDivisionError caught, both 0
                en = not_en = 0.0
            spans += [("doc_en", 0, n, en), ("doc_not_en", 0, n, not_en)]
        out: dict[str, Spans] = {}
        for lang, s, e, p in spans:
            out.setdefault(lang, []).append([s, e, p])
        return out


@register("cld2_paragraph_v2")
class Cld2Paragraph(_ParagraphLanguage, Cld2Doc):
    """Per-paragraph CLD2 languages (reliable results only)."""


@register("cld2_en_paragraph_v2")
class Cld2EnglishParagraph(_ParagraphLanguage, Cld2Doc):
    """Per-paragraph `en` / `not_en` from CLD2."""

    output_fields = ("en", "not_en")

    include_negative = True
    english_only = True


@register("cld2_en_paragraph_with_doc_score_v2")
class Cld2EnglishParagraphWithDocScore(Cld2EnglishParagraph):
    """Per-paragraph `en` / `not_en` plus the length-weighted `doc_en` / `doc_not_en`."""

    output_fields = ("en", "not_en", "doc_en", "doc_not_en")

    doc_score = True


@register("ft_lang_id_paragraph_v1")
class FastTextLangIdParagraph(_ParagraphLanguage, FastTextLangIdDoc):
    """Every label of a local fastText language-id model (`model_path`), per paragraph."""


@register("ft_lang_id_en_paragraph_v2")
class FastTextLangIdEnglishParagraph(_ParagraphLanguage, FastTextLangIdDoc):
    """Per-paragraph `en` / `not_en` from a local fastText language-id model (`model_path`)."""

    output_fields = ("en", "not_en")

    include_negative = True
    english_only = True


@register("ft_lang_id_en_paragraph_with_doc_score_v2")
class FastTextLangIdEnglishParagraphWithDocScore(FastTextLangIdEnglishParagraph):
    """Per-paragraph `en` / `not_en` plus `doc_en` / `doc_not_en`."""

    output_fields = ("en", "not_en", "doc_en", "doc_not_en")

    doc_score = True


@register("char_length_with_paragraphs_v1")
class CharLengthWithParagraphs(Tagger):
    """`paragraph`: characters per paragraph; `document`: characters of the text."""

    output_fields = ("paragraph", "document")

    def predict(self, doc: Document) -> dict[str, Spans]:
        n = len(doc.text)
        paras = [[s, e, float(e - s)] for s, e in paragraphs(doc.text)]
        return {**({"paragraph": paras} if paras else {}), "document": [[0, n, float(n)]]}


@register("whitespace_tokenizer_with_paragraphs_v1")
class WhitespaceTokenizerWithParagraphs(Tagger):
    """`paragraph`: whitespace_tokenizer_v1's count per paragraph; `document`: their sum."""

    output_fields = ("paragraph", "document")

    def __init__(self, **options):
        super().__init__(**options)
        self._count = WhitespaceTokenizer()

    def predict(self, doc: Document) -> dict[str, Spans]:
        text = doc.text
        paras = [[s, e, self._count.predict(Document("", text[s:e]))["length"][0][2]] for s, e in paragraphs(text)]
        return {**({"paragraph": paras} if paras else {}), "document": [[0, len(text), float(sum(p[2] for p in paras))]]}


@register("not_alphanum_paragraph_v1")
class NotAlphanumParagraph(Tagger):
    """`all_punct`: paragraphs of only punctuation, space and emoji (see the module docstring)."""

    output_fields = ("all_punct",)

    def __init__(self, **options):
        super().__init__(**options)
        if _regex is None:  # pragma: no cover
            raise ImportError(f"tagger {self.name!r} needs the regex module: pip install regex")
        self._alnum = _regex.compile(r"[a-zA-Z0-9]")
        # dolma: ^([[:punct:]]|\s|[EMOJI]+)+$, whose nested repetition backtracks exponentially on a
        # long emoji run followed by any other character; one character class accepts the same texts
        self._all_punct = _regex.compile(
            r"^[[:punct:]\s\U0001f300-\U0001f64f\U0001f680-\U0001f6ff\u2600-\u26ff\u2700-\u27bf]+$")

    def predict(self, doc: Document) -> dict[str, Spans]:
        text = doc.text
        spans = [[s, e, 1.0] for s, e in paragraphs(text)
                 if not self._alnum.search(text[s:e]) and self._all_punct.search(text[s:e])]
        return {"all_punct": spans or [[0, len(text), 0.0]]}
