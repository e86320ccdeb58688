"""Attribute files out, byte for byte as dolma writes them: one line per document line,
`{"id": ..., "attributes": {NAME: [[start, end, score], ...]}}`, scores formatted as msgspec
(dolma's JSON encoder) formats them."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import Any

from .documents import SURROGATE
from .storage import AtomicWriter


def format_score(v: Any) -> str:
    """A span score as JSON, the one formatter of every attribute writer: integers stay
    integers; floats as msgspec (dolma's JSON encoder) writes them: shortest round-trip digits,
    plain decimal for 1e-5 <= |v| < 1e16, else `1e16` / `1.5e-7` style; NaN and inf as null."""
    if isinstance(v, int) and not isinstance(v, bool):
        return str(v)
    v = float(v)
    if v != v or v in (float("inf"), float("-inf")):
        return "null"
    r = repr(v)
    if "e" not in r:
        return r
    mant, exp = r.split("e")
    e = int(exp)
    if e == -5:  # Python switches to exponent form one decade earlier than msgspec
        sign = "-" if mant.startswith("-") else ""
        return f"{sign}0.0000{mant.lstrip('-').replace('.', '')}"
    return f"{mant}e{e}"


def spans_json(spans: Iterable[Sequence[Any]]) -> str:
    """`[[start,end,score],...]` as compact JSON."""
    return "[" + ",".join(f"[{int(s)},{int(e)},{format_score(v)}]" for s, e, v in spans) + "]"


def json_value(value: Any) -> str:
    """Compact JSON of an id or source; lone surrogates (not writable as UTF-8) stay escaped."""
    out = json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    if SURROGATE.search(out):
        out = json.dumps(value, separators=(",", ":"))
    return out


def attribute_line(id_js: str, name_js: str, spans_js: str) -> str:
    """`{"id": ID, "attributes": {NAME: SPANS}}` from already-encoded JSON pieces."""
    return '{"id":' + id_js + ',"attributes":{' + name_js + ":" + spans_js + "}}\n"


def span_list(spans: list[str] | None) -> str:
    """`[a,b,...]` from already-encoded spans; `[]` for none."""
    return "[" + ",".join(spans) + "]" if spans else "[]"


def whole_span(text: str, value: Any = 1) -> str:
    """The span covering a whole document: `[[0,len(text),VALUE]]`."""
    return f"[[0,{len(text)},{value}]]"


class AttributeWriter(AtomicWriter):
    """One attribute file, written atomically: a line per line of its documents file, in order
    (dolma pairs the two files by line). Every dedup kind writes through this."""

    def __init__(self, path: str, attribute: str):
        super().__init__(path)
        self.attribute = attribute
        self.name_js = json.dumps(attribute, ensure_ascii=False)

    def line(self, id_js: str | None, spans_js: str = "[]", extra: dict[str, str] | None = None) -> None:
        """`id_js` None: a documents line that holds no document (empty spans, counted elsewhere).
        `extra`: more attributes of the document, `{suffix: spans_js}`, named `<attribute>__<suffix>`."""
        body = self.name_js + ":" + spans_js
        for suffix, js in (extra or {}).items():
            body += "," + json.dumps(f"{self.attribute}__{suffix}", ensure_ascii=False) + ":" + js
        self.write_text('{"id":' + (id_js or "null") + ',"attributes":{' + body + "}}\n")

    def document(self, doc: dict | None, spans_js: str = "[]", extra: dict[str, str] | None = None) -> None:
        self.line(None if doc is None else json_value(doc["id"]), spans_js, extra)
