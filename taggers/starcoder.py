"""StarCoder code-quality signals (`code_starcoder_taggers_v2`), as dolma 1.2.1 computes them.

Uses the document's `metadata.ext` (file extension without the dot) and, if present,
`metadata.max_stars_count`. Four document-level spans `[0, len(text), score]`:
- has_xml_template_doc: 1 if `<?xml version=` occurs in the first 100 characters, else 0;
- num_github_stars_doc: `max_stars_count` (0 when absent or null);
- code_to_comment_ratio_doc: for Python, Java and JavaScript files, characters of comments
  (and, for Python, docstrings) / characters of the file; 0.5 for every other language
  (StarCoder filters from both sides, so 0.5 passes both);
- code_to_text_ratio_html_doc: for HTML files, characters of visible text / characters of the
  file, 0 when there are 100 visible characters or fewer (scripts and styles removed),
  -1 when the HTML cannot be parsed; 1 for every other language.

Python comments come from the tokenize module (the `#` removed), docstrings from ast (modules,
classes, functions); text that does not parse or tokenize simply contributes none. Java and
JavaScript comments are pygments' Comment.Single and Comment.Multiline tokens. HTML text is
BeautifulSoup's (html.parser). pygments and beautifulsoup4 are needed, as in dolma's `code`
extra.

Deviation: for an empty Python/Java/JavaScript file dolma raises ZeroDivisionError; ours
scores code_to_comment_ratio_doc -1.0 (dolma's value for "could not compute" elsewhere).
"""
from __future__ import annotations

import ast
import io
import tokenize
import warnings

from .registry import Document, Spans, Tagger, register

# File extensions that the StarCoder filters treat specially (from dolma's
# ext_to_lang_mapping.json; every other extension falls into the default case).
EXT_TO_LANG = {
    **dict.fromkeys(["py", "bzl", "gyp", "lmi", "pyde", "pyp", "pyt", "pyw", "tac", "wsgi", "xpy"], "python"),
    "java": "java",
    **dict.fromkeys(["js", "_js", "bones", "es6", "jake", "jsb", "jscad", "jsfl", "jsm", "jss", "njs", "pac",
                     "sjs", "ssjs", "xsjs", "xsjslib"], "javascript"),
    **dict.fromkeys(["html", "htm", "htmlhl", "xht", "xhtml"], "html"),
}
_DOC_NODES = {ast.ClassDef: 0, ast.FunctionDef: 1, ast.Module: 2}  # dolma sorts docstrings by kind, then name


def _python_docstrings(source: str) -> str:
    tree = ast.parse(source)
    found = [(_DOC_NODES[type(node)], getattr(node, "name", None) or "", ast.get_docstring(node))
             for node in ast.walk(tree) if type(node) in _DOC_NODES]
    found.sort(key=lambda x: (x[0], x[1]))
    return "\n".join(doc for _, _, doc in found if doc)


def _python_comments(source: str) -> str:
    comments = [(tok.type, tok.string) for tok in tokenize.generate_tokens(io.StringIO(source).readline)
                if tok.type == tokenize.COMMENT]
    return tokenize.untokenize(comments).replace("#", "")


def python_natural_text(source: str) -> str:
    """Docstrings and comments of a Python file, as StarCoder's preprocessing extracts them."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            docstrings = _python_docstrings(source)
        except Exception:  # noqa: BLE001 source that does not parse has no docstrings (as dolma)
            docstrings = ""
        try:
            comments = _python_comments(source)
        except Exception:  # noqa: BLE001 source the tokenizer cannot read has no comments (as dolma)
            comments = ""
    return (docstrings + "\n" + comments).strip()


def comment_chars(source: str, language: str) -> int:
    from pygments import lex
    from pygments.lexers import get_lexer_by_name
    from pygments.token import Comment

    return sum(len(tok) for kind, tok in lex(source, get_lexer_by_name(language))
               if kind is Comment.Multiline or kind is Comment.Single)


def html_text_ratio(html: str) -> float:
    from bs4 import BeautifulSoup

    try:
        soup = BeautifulSoup(html, features="html.parser")
    except (TypeError, UnboundLocalError):
        return 0.0
    for element in soup(["script", "style"]):
        element.extract()
    text = soup.get_text()
    ratio = len(text) / len(html)  # an empty file raises here, which the tagger turns into -1
    return ratio if len(text) > 100 else 0.0


@register("code_starcoder_taggers_v2")
class CodeStarCoderV2(Tagger):
    """StarCoder signals from the file's text and `metadata.ext` / `metadata.max_stars_count`."""

    output_fields = ("has_xml_template_doc", "num_github_stars_doc", "code_to_comment_ratio_doc",
                     "code_to_text_ratio_html_doc")

    def __init__(self, **options):
        super().__init__(**options)
        missing = []
        for mod in ("pygments", "bs4"):
            try:
                __import__(mod)
            except ImportError:
                missing.append(mod)
        if missing:
            raise ImportError(f"tagger {self.name!r} needs {', '.join(missing)}: pip install pygments beautifulsoup4")

    def predict(self, doc: Document) -> dict[str, Spans]:
        text = doc.text
        n = len(text)
        meta = doc.metadata or {}
        has_xml = 1.0 if "<?xml version=" in text[:100] else 0.0
        stars = float(meta.get("max_stars_count", 0) or 0)
        ext = meta.get("ext")
        lang = EXT_TO_LANG.get(ext, "-no-lang") if isinstance(ext, str) else "-no-lang"
        if lang in ("python", "java", "javascript"):
            if n == 0:
                comment_ratio = -1.0
            elif lang == "python":
                comment_ratio = len(python_natural_text(text)) / n
            else:
                comment_ratio = comment_chars(text, lang) / n
        else:
            comment_ratio = 0.5
        if lang == "html":
            try:
                text_ratio = html_text_ratio(text)
            except Exception:  # noqa: BLE001 HTML the parser cannot read: ratio -1 (as dolma)
                text_ratio = -1.0
        else:
            text_ratio = 1.0
        return {
            "has_xml_template_doc": [[0, n, has_xml]],
            "num_github_stars_doc": [[0, n, stars]],
            "code_to_comment_ratio_doc": [[0, n, comment_ratio]],
            "code_to_text_ratio_html_doc": [[0, n, text_ratio]],
        }
