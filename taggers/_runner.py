"""Taggers -> attribute lines in exactly `dolma tag`'s format.

`TaggerSet` runs the configured taggers over batches of documents and formats each
document's attributes as `{"id":...,"attributes":{"<exp>__<tagger>__<field>":[[start,end,score],...],...},"source":...}`
(compact JSON, non-ASCII kept, scores rounded to 5 decimals and written as msgspec writes them,
e.g. `0.00001`, `1e16`: `core.attributes.format_score`), byte for byte what dolma 1.2.1 writes.
Files are read and written by the tag stage (`pipeline/stages/tag.py`), the one path that
`dolma-prep run`, `dolma-prep tag` and the parity tests with `dolma tag` all use.

A tagger that raises on a document leaves that document without its fields; the errors are
counted (`TaggerSet.errors`).
"""
from __future__ import annotations

import json
import logging
import re
from collections.abc import Sequence
from typing import Any

from dolma_prep.core.io import format_score

from . import registry
from .registry import Document, Tagger

log = logging.getLogger(__name__)
BATCH_SIZE = 256
_SURROGATE = re.compile("[\ud800-\udfff]")


# ---------------------------------------------------------------------------------- output format
def _dumps(value: Any) -> str:
    out = json.dumps(value, ensure_ascii=False)
    if _SURROGATE.search(out):  # a lone surrogate cannot be written as UTF-8: escape it
        out = json.dumps(value)
    return out


def format_line(doc_id: Any, attributes: dict[str, list], source: Any) -> str:
    """One attributes line (without the newline), from `registry.format_output` dicts."""
    parts = [f"{_dumps(key)}:{_spans_json(spans)}" for key, spans in attributes.items()]
    return _line(doc_id, ",".join(parts), source)


def _line(doc_id: Any, attributes_body: str, source: Any) -> str:
    return f'{{"id":{_dumps(doc_id)},"attributes":{{{attributes_body}}},"source":{_dumps(source)}}}'


_SCORES: dict[float, str] = {}  # formatted scores: most repeat (1.0, 0.0, counts)


attribute_line = _line  # public name for the pipeline's tag stage


def _score_str(v: float) -> str:
    v = round(float(v), 5)
    r = _SCORES.get(v) if v else None  # 0.0 and -0.0 are equal keys but print differently
    if r is None:
        r = format_score(v)
        if v and len(_SCORES) < 100_000:
            _SCORES[v] = r
    return r


def _spans_json(spans: list) -> str:
    """`[[start,end,score],...]` with scores rounded to 5 decimals, as format_output does."""
    if len(spans) > 8:
        # long lists (c4's line spans) mostly share one score: format them in C-level loops
        starts, ends, scores = zip(*spans)
        if len(set(scores)) == 1 and scores[0] == scores[0]:
            pattern = "[%d,%d," + _score_str(scores[0]) + "]"
            return "[" + ",".join(map(pattern.__mod__, zip(starts, ends))) + "]"
    return "[" + ",".join(["[%d,%d,%s]" % (s, e, _score_str(v)) for s, e, v in spans]) + "]"


def _dedupe(parts: list[str]) -> str:
    seen: dict[str, str] = {}
    for p in parts:
        seen[p.split(":", 1)[0]] = p
    return ",".join(seen.values())


# --------------------------------------------------------------------------------------- tagging
class TaggerSet:
    """The configured taggers of one run, built once per process."""

    def __init__(self, tagger_names: Sequence[str], experiment: str | None,
                 options: dict[str, dict[str, Any]] | None = None) -> None:
        options = options or {}
        unknown = set(options) - set(tagger_names)
        if unknown:
            raise ValueError(f"options given for taggers not in the run: {sorted(unknown)}")
        self.taggers: list[tuple[str, str, Tagger]] = []
        for name in dict.fromkeys(tagger_names):
            # without an experiment dolma names keys <tagger>__<tagger>__<field>
            self.taggers.append((name, experiment or name, registry.get(name, **options.get(name, {}))))
        self.errors = 0
        self._keys: dict[str, dict[str, str]] = {}

    def _results(self, docs: list[Document]):
        """(tagger name, experiment, per-document results) for each tagger, in order."""
        for name, experiment, tagger in self.taggers:
            try:
                results = tagger.predict_batch(docs)
            except Exception:  # noqa: BLE001 one bad document must not cost the batch: retry one by one
                results = []
                for d in docs:
                    try:
                        results.append(tagger.predict(d))
                    except Exception:
                        self.errors += 1
                        log.exception("tagger %s failed on document %r", name, d.id)
                        results.append({})
            yield name, experiment, results

    def tag(self, docs: list[Document]) -> list[dict[str, list]]:
        """Merged `registry.format_output` dicts, one per document."""
        merged: list[dict[str, list]] = [{} for _ in docs]
        for name, experiment, results in self._results(docs):
            for out, res in zip(merged, results):
                out.update(registry.format_output(experiment, name, res))
        return merged

    def tag_json(self, docs: list[Document]) -> list[str]:
        """The body of each document's "attributes" object, straight from the results: the
        same text as formatting `tag(docs)`, without building the intermediate lists."""
        parts: list[list[str]] = [[] for _ in docs]
        for name, experiment, results in self._results(docs):
            prefix = registry.key_prefix(experiment, name)
            keys = self._keys.setdefault(prefix, {})
            for out, res in zip(parts, results):
                for fld, spans in res.items():
                    key = keys.get(fld)
                    if key is None:
                        key = keys[fld] = _dumps(prefix + registry.variable_name(fld)) if fld else ""
                    if key:
                        out.append(f"{key}:{_spans_json(spans)}")
        # a later tagger's key replaces an earlier one's, in its first position (dict.update)
        return [",".join(p) if len(p) == len({x.split(":", 1)[0] for x in p}) else _dedupe(p) for p in parts]
