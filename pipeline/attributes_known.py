"""What a run writes under `attributes`, and which attribute keys a filter rule reads.

The select stage joins each document with the attribute files of its shard and hands the filters
`{**document, "attributes": merged}`: the document's own `attributes` field, if it has one, is
replaced, so the keys a rule can see are exactly the keys this mix's taggers and dedup kinds
write. A key no step writes is null in jq, and `null < 50` is true: one transposed letter in
`.attributes.anneal__char_length_v1__lenght[0][2] < 50` excludes every document, and the run
exits 0 with 0 tokens. The preflight (`preflight.attribute_problems`) refuses such rules before
anything starts, using the two halves here:

- `known_attributes(mix)`: every key the run writes. A tagger T in experiment E writes
  `E__T__FIELD` (`registry.format_output`: the three parts made identifier-safe), with FIELD
  from the tagger class's `output_fields` (or `output_fields_for(options)`). A tagger whose
  fields are not known before it runs (a fastText model's labels, one per language, a user's
  tagger that declares none) contributes its prefix: any key under `E__T__` is accepted. Each
  dedup kind writes one key, its `attribute`, and the keys its options add beside it
  (`DedupOptions.extra_attributes`: exact and minhash dedup `against` an index also write
  `<attribute>__matched_id` and `<attribute>__matched_version`, decontamination against an
  evaluation registry `<attribute>__eval_version`).
- `rule_attributes(rule)`: the keys a jq or JSONPath rule names after the document's
  top-level `attributes`: `.attributes.KEY`, `.attributes["KEY"]`, `.attributes."KEY"`,
  `.attributes | .KEY`, `.attributes | has("KEY")`, `$.attributes.KEY`, `$.attributes['KEY']`
  and `@.KEY` inside `$.attributes[?(...)]` (dolma applies that filter to the attributes
  object itself). A rule that reads `.attributes` as a whole (`.attributes | keys`,
  `$.attributes.`keys``) names no key there and is not checked there. This is a scan of the
  rule's text, not a parse: a key spelled inside a string literal is read as a key too, which
  errs on the side of the check.
"""
from __future__ import annotations

import difflib
import json
import re
from dataclasses import dataclass, field
from typing import Any

# ---------------------------------------------------------------------------- what is written


@dataclass
class KnownAttributes:
    """The attribute keys a run writes (`keys`: key -> the step that writes it) and the key
    prefixes of taggers whose fields are known only once they run (`prefixes`: prefix -> step)."""

    keys: dict[str, str] = field(default_factory=dict)
    prefixes: dict[str, str] = field(default_factory=dict)

    def knows(self, key: str) -> bool:
        return key in self.keys or any(key.startswith(p) and len(key) > len(p) for p in self.prefixes)

    def suggestion(self, key: str) -> str | None:
        """The closest written key (difflib), or None. Under a prefix of unknown fields the
        candidate is that prefix with the key's own field (`E__T__` + what follows the key's
        second `__`), so a typo in the tagger or experiment part still gets a full key; a key
        that does not split that way is compared with the bare prefix."""
        candidates = dict.fromkeys(self.keys)
        parts = key.split("__", 2)
        for p in self.prefixes:
            candidates[p + parts[2] if len(parts) == 3 and parts[2] else p] = None
        close = difflib.get_close_matches(key, list(candidates), n=1, cutoff=0.6)
        return close[0] if close else None

    def describe(self, limit: int = 12) -> str:
        """The written keys for a message: `a, b, c, E__T__* ...` (at most `limit` named)."""
        names = sorted(self.keys) + [p + "*" for p in sorted(self.prefixes)]
        if not names:
            return "nothing (no taggers, no dedup)"
        more = f" and {len(names) - limit} more" if len(names) > limit else ""
        return ", ".join(names[:limit]) + more


def _declared_at_or_below_predict(cls: type, attr: str) -> bool:
    """True when the class that gives `cls` its `attr` is the class whose predict /
    predict_batch runs, or a subclass of it: a subclass that overrides predict does not
    inherit its parent's declaration (what its predict returns is its own)."""
    owner = next((k for k in cls.__mro__ if attr in vars(k)), None)
    runs = next((k for k in cls.__mro__ if "predict" in vars(k) or "predict_batch" in vars(k)), None)
    return owner is not None and runs is not None and issubclass(owner, runs)


def tagger_fields(cls: type, options: dict[str, Any] | None = None) -> tuple[str, ...] | None:
    """The field names a registered tagger class writes with `options`, or None (unknown until
    it runs). `output_fields_for(options)` wins over the `output_fields` class attribute; both
    are believed only where declared at or below the class whose predict runs."""
    derive = getattr(cls, "output_fields_for", None)
    if callable(derive) and _declared_at_or_below_predict(cls, "output_fields_for"):
        try:
            got = derive(dict(options or {}))
        except Exception:  # noqa: BLE001 - a tagger that cannot tell is a tagger of unknown fields
            got = None
        if got is not None:
            return tuple(str(f) for f in got)
    declared = getattr(cls, "output_fields", None)
    if isinstance(declared, (tuple, list, frozenset, set)) and all(isinstance(f, str) for f in declared) \
            and _declared_at_or_below_predict(cls, "output_fields"):
        return tuple(declared)
    return None


def known_attributes(mix) -> KnownAttributes:
    """Every attribute key the run of `mix` writes (see the module docstring). A tagger not in
    the registry (a typo, reported by the preflight on its own line) counts as one of unknown
    fields, so its rules are not reported a second time."""
    from dolma_prep.taggers import registry

    from .stages.select import dedup_attribute

    known = KnownAttributes()
    registry.available()  # discover the bundled taggers; user modules were loaded before the preflight
    for t in mix.taggers:
        # as the tag stage names them: TaggerSet falls back to the tagger's name without an experiment
        experiment = t.experiment or mix.experiment or t.name
        prefix = registry.key_prefix(experiment, t.name)
        what = f"tagger {t.name} (experiment {experiment})"
        cls = registry._REGISTRY.get(t.name)
        fields = tagger_fields(cls, t.options) if cls is not None else None
        if fields is None:
            known.prefixes.setdefault(prefix, what)
            continue
        for f in fields:
            if f:  # format_output drops empty field names
                known.keys.setdefault(prefix + registry.variable_name(f), what)
    for kind, cfg in mix.dedup.configured():
        attribute = dedup_attribute(kind.name, cfg)
        known.keys.setdefault(attribute, f"dedup.{kind.name}")
        for suffix in cfg.extra_attributes():  # io.AttributeWriter's `extra` attributes
            known.keys.setdefault(f"{attribute}__{suffix}", f"dedup.{kind.name} (against)")
    return known


# ---------------------------------------------------------------------------- what is read

# `.attributes` as the document's own field: not preceded by a name, a closing bracket or a
# quote or `?` (`.metadata.attributes`, `$doc.attributes`, `.x[0].attributes` are something else);
# `$` and `@` are JSONPath's root and current node, `..` recursive descent.
_ATTRIBUTES = re.compile(r"(?<![A-Za-z0-9_\]\)}\"'`?])\.attributes(?![A-Za-z0-9_@-])")
_JQ_NAME = r"[A-Za-z_][A-Za-z0-9_]*"
_JSONPATH_NAME = r"[A-Za-z_@][A-Za-z0-9_@-]*"  # jsonpath-ng's lexer: `-` and `@` are name characters
_DQ = r'"((?:[^"\\]|\\.)*)"'
_SQ = r"'((?:[^'\\]|\\.)*)'"
_JQ_DOTTED = re.compile(r"\.(" + _JQ_NAME + ")")
_JSONPATH_DOTTED = re.compile(r"\.(" + _JSONPATH_NAME + ")")
_JQ_QUOTED = re.compile(r"\." + _DQ)  # .attributes."KEY"
_JQ_PIPE = re.compile(r"\s*\|\s*")
_JQ_HAS = re.compile(r"has\(\s*" + _DQ + r"\s*\)")
_OPEN = re.compile(r"\[\s*")
_JQ_STRING = re.compile(_DQ)
_JSONPATH_STRING = re.compile(f"{_DQ}|{_SQ}")
_SEPARATOR = re.compile(r"\s*(,|\])\s*")
_FILTER_OPEN = re.compile(r"\[\s*\?\s*\(")
_NESTED_FILTER = re.compile(r"\[\s*\?")
_CURRENT_KEY = re.compile(r"@\s*(?:\.(" + _JSONPATH_NAME + r")|\[\s*(?:" + _DQ + "|" + _SQ + r")\s*\])")


def _unquote(m: re.Match, group: int = 1) -> str:
    """The key of a string literal matched by `_DQ` (JSON escapes) at `group`, or by `_SQ` at
    `group + 1` (backslash escapes)."""
    if m.group(group) is not None:
        try:
            return json.loads(f'"{m.group(group)}"')
        except ValueError:
            return m.group(group)
    return re.sub(r"\\(.)", r"\1", m.group(group + 1))


def _strings_in_brackets(src: str, pos: int, jsonpath: bool) -> list[str] | None:
    """`["a"]` (jq, JSONPath) or `['a', 'b']` (JSONPath's union) at `pos`: the keys, or None."""
    m = _OPEN.match(src, pos)
    if not m:
        return None
    keys, i = [], m.end()
    while True:
        q = (_JSONPATH_STRING if jsonpath else _JQ_STRING).match(src, i)
        if not q:
            return None
        keys.append(_unquote(q))
        sep = _SEPARATOR.match(src, q.end())
        if not sep:
            return None
        if sep.group(1) == "]":
            return keys
        i = sep.end()


def _filter_body(src: str, pos: int) -> str | None:
    """The text inside `[?( ... )]` starting at `pos`, with string literals kept and nested
    filters (`@.k[?(@ > 1)]`, whose `@` is an element of something inside) left out."""
    m = _FILTER_OPEN.match(src, pos)
    if not m:
        return None
    out, i, depth, nested, quote = [], m.end(), 1, 0, None
    while i < len(src):
        c = src[i]
        if quote:
            if c == "\\":
                c = src[i:i + 2]
            elif c == quote:
                quote = None
        elif c in "\"'":
            quote = c
        elif c == "[" and _NESTED_FILTER.match(src, i):
            nested += 1
        elif c == "[" and nested:
            nested += 1
        elif c == "]" and nested:
            nested -= 1
            i += 1
            continue
        elif c == "(" and not nested:
            depth += 1
        elif c == ")" and not nested:
            depth -= 1
            if not depth:
                break
        if not nested:
            out.append(c)
        i += len(c)
    return "".join(out)


def _keys_at(src: str, pos: int, jsonpath: bool, piped: bool = False) -> list[str]:
    """The keys named by the access that follows `.attributes` at `pos` (empty for none)."""
    if jsonpath:
        n = _JSONPATH_DOTTED.match(src, pos)
        if n:
            return [n.group(1)]
        keys = _strings_in_brackets(src, pos, True)
        if keys is not None:
            return keys
        body = _filter_body(src, pos)
        return [_unquote(k, 2) if k.group(1) is None else k.group(1) for k in _CURRENT_KEY.finditer(body or "")]
    if src.startswith("?", pos):  # .attributes?.KEY
        pos += 1
    n = _JQ_DOTTED.match(src, pos)
    if n:
        return [n.group(1)]
    q = _JQ_QUOTED.match(src, pos)
    if q:
        return [_unquote(q)]
    keys = _strings_in_brackets(src, pos + 1 if src.startswith(".[", pos) else pos, False)
    if keys is not None:
        return keys
    if not piped:  # `.attributes | .KEY`, `.attributes | has("KEY")`
        p = _JQ_PIPE.match(src, pos)
        if p:
            h = _JQ_HAS.match(src, p.end())
            return [_unquote(h)] if h else _keys_at(src, p.end(), False, piped=True)
    return []


def rule_attributes(rule: str) -> list[str]:
    """The attribute keys a filter rule reads by name, in order of first appearance, each once
    (see the module docstring for the forms). Empty for a rule that names none."""
    src = rule.strip()
    jsonpath = src.startswith("$")  # as filters.compile_expression tells them apart
    found: list[str] = []
    for m in _ATTRIBUTES.finditer(src):
        # anything but a key (`| keys`, `| length`, `[*]`, `.`keys``) reads the whole object: no key named
        found += _keys_at(src, m.end(), jsonpath)
    return list(dict.fromkeys(k for k in found if k))
