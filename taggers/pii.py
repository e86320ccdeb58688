"""Regex PII detection (`pii_regex_with_counts_v2`, `pii_regex_v2`), as dolma 1.2.1 does it.

Fields:
- EMAIL_ADDRESS, PHONE_NUMBER, IP_ADDRESS: one span per regex match that survives the
  post-processing rules, score 1. Spans are the whole regex match, which for e-mails includes
  the punctuation/whitespace run before the address and the whitespace after it (dolma's
  regexes, unchanged, so that span replacement configs behave the same);
- doc: `[0, len(text), number of PII spans / number of whitespace-separated words]`;
- doc_count (`_with_counts` only): `[0, len(text), number of PII spans]`.

Post-processing (dolma's `postprocess=True`, window 100): an e-mail is dropped when the part
of the match before its first `@` is `(` (after stripping) or the part between the first
and second `@` has no `.`; a phone number or IP address is dropped when the 100 characters
around it contain `isbn`, `doi` or `#`; a phone number is also dropped when the document
"contains a URL" by dolma's URL regex. That regex starts with the two characters `\\b` in a
non-raw Python string, i.e. a literal backspace (U+0008), so in practice it never fires; we
keep that behaviour for parity (it is spelled out as `\\x08` below).

Deviation: dolma raises ZeroDivisionError on a document without words (empty or blank text);
ours scores `doc` -1.0 there, as dolma's `pii_regex_v2` does.

Speed, without changing any match: dolma runs each regex over every position of the text,
which for the e-mail regex costs time proportional to the token length at each position
(quadratic on long tokens). We run the same regexes anchored (`pattern.match`) only at the
positions where a match can start, in increasing order, which is what `finditer` returns:
e-mails near each `@`, phone numbers at the start of a whitespace run followed by three
digits (found with numpy), IP addresses within 3 characters before a `.` between digits.
tests/test_taggers.py checks this against plain `finditer` on random and real text.
"""
from __future__ import annotations

import re

import numpy as np

from ._text import codepoints, isdecimal_table, isspace_table
from .registry import Document, Spans, Tagger, register

EMAIL_KEY, PHONE_KEY, IP_KEY = "EMAIL_ADDRESS", "PHONE_NUMBER", "IP_ADDRESS"
WINDOW = 100

# dolma's patterns, verbatim in meaning
_P = r"[.\s@,?!;:)(]"  # punctuation or whitespace that may surround an address
EMAIL = re.compile(_P + r"*([^\s@]+@[^\s@,?!;:)(]+?)" + _P + r"?[\s\n\r]")
PHONE = re.compile(r"\s+\(?(\d{3})\)?[-\. ]*(\d{3})[-. ]?(\d{4})")
IP = re.compile(r"(?:(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)\.){3}(?:25[0-5]|2[0-4][0-9]|[01]?[0-9][0-9]?)")
# dolma's URL regex (used only to drop phone numbers) is Gruber's liberal URL pattern, whose
# nested repetition (?:C+|\((?:C+|\(C+\))*\))+ can take exponential time; we only ask whether
# it matches somewhere, so it is rewritten with one character per repetition, which accepts
# exactly the same strings in linear time. C = [^\s()<>]; F = its last-character class.
# Note the leading \x08: dolma wrote "\b" in a non-raw string, i.e. a backspace character.
DOLMA_URL_PATTERN = (
    "(?i)\x08((?:https?://|www\\d{0,3}[.]|[a-z0-9.\\-]+[.][a-z]{2,4}/)(?:[^\\s()<>]+|\\(([^\\s()<>]+|"
    "(\\([^\\s()<>]+\\)))*\\))+(?:\\(([^\\s()<>]+|(\\([^\\s()<>]+\\)))*\\)|[^\\s`!()\\[\\]"
    "{};:'\".,<>?«»“”‘’]))"
)
_C = r"[^\s()<>]"
_GROUP = rf"\((?:{_C}|\({_C}+\))*\)"
URL = re.compile(
    r"(?i)\x08(?:https?://|www\d{0,3}[.]|[a-z0-9.\-]+[.][a-z]{2,4}/)"
    rf"(?:{_C}|{_GROUP})+(?:{_GROUP}|[^\s`!()\[\]{{}};:'\".,<>?«»“”‘’])"
)

_P_CHARS = ".@,?!;:)("
_IP_HINT = re.compile(r"\.(?<=[0-9]\.)(?=[0-9])")  # starts with a literal: a fast scan


_SCAN = 256  # characters scanned one by one before switching to whole-string methods
_BREAKS = "@" + "".join(chr(c) for c in range(0x3001) if chr(c).isspace())
_P_RUN_REVERSED = re.compile(r"[\s.@,?!;:)(]*")


def _after_last_break(text: str, k: int) -> int:
    """Start of the run of characters that are neither whitespace nor `@` ending before k."""
    j = k - 1
    lo = max(k - _SCAN, 0)
    while j >= lo:
        if text[j] == "@" or text[j].isspace():
            return j + 1
        j -= 1
    if lo == 0:
        return 0
    return max(text.rfind(c, 0, lo) for c in _BREAKS) + 1  # a long token: C-speed searches


def _punct_run_start(text: str, b: int) -> int:
    """Start of the run of _P characters (punctuation or whitespace) ending just before b."""
    j = b
    lo = max(b - _SCAN, 0)
    while j > lo and (text[j - 1] in _P_CHARS or text[j - 1].isspace()):
        j -= 1
    if j > lo or j == 0:
        return j
    return b - _P_RUN_REVERSED.match(text[b - 1 :: -1]).end()


def _email_matches(text: str) -> list[tuple[int, int]]:
    """What `EMAIL.finditer(text)` finds, trying only the positions that can start a match.

    A match is: a run of _P characters, then an `@`-free, space-free run A, then `@`, ... so
    its `@` (the one after A) is preceded by a character that is neither space nor `@`.
    For each such `@` at k, with A's earliest start b and the _P run before b starting at p0,
    a match using it starts in [p0, k). Starting anywhere in [b, k) gives the same outcome
    (only the part after k decides), so one try covers that stretch; the _P run is tried
    position by position. Positions are tried in increasing order, as finditer does, and a
    try is a full `EMAIL.match`, so the result is identical, in time linear in the text for
    ordinary input instead of dolma's time per position proportional to the token length."""
    out: list[tuple[int, int]] = []
    last_end = 0
    k = text.find("@")
    while k != -1:
        if k > last_end and not text[k - 1].isspace() and text[k - 1] != "@":
            b = _after_last_break(text, k)
            p0 = _punct_run_start(text, b)
            found = None
            for start in range(max(p0, last_end), b):
                found = EMAIL.match(text, start)
                if found:
                    break
            if found is None and max(b, last_end) < k:
                found = EMAIL.match(text, max(b, last_end))
            if found is not None:
                out.append(found.span())
                last_end = found.end()
        k = text.find("@", k + 1)
    return out


def _phone_matches(text: str, cp: np.ndarray, ws: np.ndarray) -> list[tuple[int, int]]:
    """What `PHONE.finditer(text)` finds. A match starts where a whitespace run starts and its
    \\s+ takes the whole run, so it must be followed by `(` or a digit and two more digits:
    we find those run ends with numpy and try the regex only at the start of their runs."""
    if len(text) < 4:
        return []
    dec = isdecimal_table()[cp]
    three = dec[:-2] & dec[1:-1] & dec[2:]
    if not three.any():
        return []
    n = len(text)
    follows = np.zeros(n, dtype=bool)  # text[r:] starts with \(?\d{3}
    follows[: n - 2] = three
    follows[: n - 3] |= (cp[: n - 3] == 40) & three[1:]
    cand = np.flatnonzero(follows[1:] & ws[:-1]) + 1  # r: run end, text[r - 1] is whitespace
    if not cand.size:
        return []
    # start of each candidate's whitespace run: one past the last non-space before it
    non_space = np.flatnonzero(~ws)
    before = np.searchsorted(non_space, cand - 1, side="right") - 1
    run_starts = np.where(before >= 0, non_space[np.maximum(before, 0)] + 1, 0)
    out: list[tuple[int, int]] = []
    last_end = 0
    for s0 in run_starts.tolist():
        if s0 < last_end:
            continue
        m = PHONE.match(text, s0)
        if m:
            out.append(m.span())
            last_end = m.end()
    return out


def _ip_matches(text: str) -> list[tuple[int, int]]:
    """What `IP.finditer(text)` finds: a match starts at most 3 characters before its first
    `.`, which has a digit on each side, so only those few positions are tried, in order."""
    out: list[tuple[int, int]] = []
    last_end = 0
    for h in _IP_HINT.finditer(text):
        dot = h.start()
        for start in range(max(dot - 3, last_end), dot):
            m = IP.match(text, start)
            if m:
                out.append(m.span())
                last_end = m.end()
                break
    return out


def _valid_email(mention: str) -> bool:
    parts = mention.split("@")
    return not (parts[0].strip() == "(" or "." not in parts[1])


def _suspicious_context(text: str, start: int, end: int) -> bool:
    ctx = text[max(0, start - WINDOW) : end + WINDOW]
    return "isbn" in ctx or "doi" in ctx or "#" in ctx


def pii_spans(text: str) -> list[tuple[str, int, int]]:
    """(type, start, end) of each PII match kept by dolma's post-processing, in dolma's order."""
    return _pii(text, codepoints(text))[0]


def _pii(text: str, cp: np.ndarray) -> tuple[list[tuple[str, int, int]], int]:
    """PII spans, and the number of whitespace-separated words (len(text.split()))."""
    ws = isspace_table()[cp]
    n_words = int(np.count_nonzero(~ws[:1])) + int(np.count_nonzero(ws[:-1] & ~ws[1:])) if len(text) else 0
    found: list[tuple[str, int, int]] = []
    if "@" in text:
        for s, e in _email_matches(text):
            if _valid_email(text[s:e]):
                found.append((EMAIL_KEY, s, e))
    phones = _phone_matches(text, cp, ws)
    if phones:
        has_url = "\x08" in text and URL.search(text) is not None
        for s, e in phones:
            if not has_url and not _suspicious_context(text, s, e):
                found.append((PHONE_KEY, s, e))
    for s, e in _ip_matches(text):
        if not _suspicious_context(text, s, e):
            found.append((IP_KEY, s, e))
    return found, n_words


@register("pii_regex_v2")
class PiiRegexV2(Tagger):
    """PII spans plus `doc` (PII spans per word; -1 for a text without words)."""

    output_fields = (EMAIL_KEY, PHONE_KEY, IP_KEY, "doc")

    with_counts = False

    def predict(self, doc: Document) -> dict[str, Spans]:
        text = doc.text
        n = len(text)
        out: dict[str, Spans] = {}
        found, n_words = _pii(text, codepoints(text))
        for kind, s, e in found:
            out.setdefault(kind, []).append([s, e, 1.0])
        out["doc"] = [[0, n, len(found) / n_words if n_words else -1.0]]
        if self.with_counts:
            out["doc_count"] = [[0, n, float(len(found))]]
        return out


@register("pii_regex_with_counts_v2")
class PiiRegexWithCountsV2(PiiRegexV2):
    """As `pii_regex_v2`, plus `doc_count`, the number of PII spans."""

    output_fields = (EMAIL_KEY, PHONE_KEY, IP_KEY, "doc", "doc_count")

    with_counts = True
