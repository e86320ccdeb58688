"""dolma mixer filters over a document joined with its attributes; never evaluates Python.

An expression starting with `$` is JSONPath (jsonpath-ng, extended syntax): it matches when it
selects anything. Anything else is jq (the `jq` package, a binding of the C jq engine): it
matches when its first output is truthy in jq's sense (anything but `false` and `null`).
This is how the dolma mixer treats its `include`/`exclude` lists, so the filter expressions
of the dolma 1.7 configs run unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jq
from jsonpath_ng.exceptions import JsonPathLexerError, JsonPathParserError
from jsonpath_ng import DatumInContext
from jsonpath_ng.ext import parse as jsonpath_parse
from jsonpath_ng.ext.filter import Filter as _Filter

from .io import InputError


class _ObjectFilter(_Filter):
    """dolma's JSONPath engine (jsonpath-rust) applies `[?(...)]` on an object to the object
    itself, which is what `$.attributes[?(@.key[0][2] < 50)]` in dolma configs relies on;
    RFC 9535 (and jsonpath-ng) would test the object's children instead."""

    def find(self, datum):
        datum = DatumInContext.wrap(datum)
        if isinstance(datum.value, dict):
            return [datum] if all(e.find(datum.value) for e in self.expressions) else []
        return super().find(datum)


def _dolma_semantics(node):
    if isinstance(node, _Filter) and not isinstance(node, _ObjectFilter):
        return _ObjectFilter(node.expressions)
    for attr in ("left", "right"):
        if hasattr(node, attr):
            setattr(node, attr, _dolma_semantics(getattr(node, attr)))
    return node


@dataclass
class Expression:
    source: str
    kind: str  # "jq" | "jsonpath"
    _compiled: Any

    def matches(self, doc: dict) -> bool:
        if self.kind == "jsonpath":
            return len(self._compiled.find(doc)) > 0
        try:
            out = self._compiled.input_value(doc).first()
        except StopIteration:
            return False
        except ValueError:
            # jq runtime errors, e.g. indexing null when an attribute is missing: no match
            return False
        return out is not None and out is not False


def compile_expression(expr: str, where: str = "") -> Expression:
    expr = expr.strip()
    try:
        if expr.startswith("$"):
            return Expression(expr, "jsonpath", _dolma_semantics(jsonpath_parse(expr)))
        return Expression(expr, "jq", jq.compile(expr))
    except (ValueError, JsonPathLexerError, JsonPathParserError, Exception) as e:  # noqa: BLE001
        raise InputError(f"{where}: cannot compile filter {expr!r}: {e}") from None


class FilterSet:
    """Include/exclude rules; `decide(doc)` returns None to keep or the rule that dropped it."""

    def __init__(self, include: list[str], exclude: list[str], where: str = "filters"):
        self.include = [compile_expression(e, f"{where}.include[{i}]") for i, e in enumerate(include)]
        self.exclude = [compile_expression(e, f"{where}.exclude[{i}]") for i, e in enumerate(exclude)]
        # handing jq a document means serialising it; skip the (large) text when no rule reads it
        self.needs_text = any("text" in e.source for e in self.include + self.exclude)

    def decide(self, doc: dict) -> str | None:
        if not self.needs_text and "text" in doc:
            doc = {k: v for k, v in doc.items() if k != "text"}
        if self.include and not any(e.matches(doc) for e in self.include):
            return "include: no rule matched"
        for e in self.exclude:
            if e.matches(doc):
                return f"exclude: {e.source}"
        return None
