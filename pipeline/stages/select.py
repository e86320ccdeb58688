"""Select stage: documents + their attributes -> kept documents.

For each document (joined with every attribute file of its shard, as the dolma mixer does):
1. document-level dedup attributes (kinds of level "document": exact, minhash, decontaminate):
   any span -> dropped;
2. the source's filters (jq / JSONPath include/exclude); a rule that raises on a document has not
   matched it, and is counted per rule in the shard's `rule_errors` (with first examples);
3. span replacement (e.g. delete duplicate paragraphs, mask PII), then `min_text_length`.
Kept documents go to `kept/<rel>` (Dolma format, text after replacement); each dropped
document's id and the rule that decided it go to `dropped/<rel>`, for `dolma-prep show`.
"""
from __future__ import annotations

from contextlib import ExitStack
from functools import lru_cache

from ...core import io
from ...core.runtime import Shard
from ...dedup import kinds
from ..filters import FilterSet, RuleErrors
from ..steps import Step
from .common import Rejects, attributes_path, dropped_path, kept_path, mix_of, parse_mix

# documents per round trip to the filter process (filters.FilterSet.decide_many)
BLOCK = 256
# first errors of raising rules listed in a shard's result (one per rule)
RULE_ERROR_EXAMPLES = 5


def attribute_names(mix) -> list[str]:
    """Attribute folders this run produces, in a fixed order."""
    return list(mix.tagger_groups()) + [dedup_attribute(k.name, cfg) for k, cfg in mix.dedup.configured()]


def document_level_attributes(mix) -> list[str]:
    """The attributes of the mix's document-level dedup kinds: any span drops the document."""
    return [dedup_attribute(k.name, cfg) for k, cfg in mix.dedup.configured() if k.level == "document"]


def dedup_attribute(kind: str, cfg) -> str:
    """The attribute a dedup kind writes with options `cfg` (its record's default if unset)."""
    default = kinds.get(kind).default_attribute
    if isinstance(cfg, dict):
        return cfg.get("attribute", default)
    return getattr(cfg, "attribute", default)


@lru_cache(maxsize=64)
def _filterset(blob: str, source: str | None) -> FilterSet:
    """A source's filters (one helper process per worker and FilterSet). Sources without
    filters of their own share the mix-level set (source None): one helper, not one each."""
    mix = parse_mix(blob)
    src = next((s for s in mix.sources if s.name == source), None)
    if src is None or not (src.filters and (src.filters.include or src.filters.exclude)):
        if source is not None:
            return _filterset(blob, None)
        return FilterSet(mix.filters.include, mix.filters.exclude, where="filters")
    f = mix.source_filters(src)
    return FilterSet(f.include, f.exclude, where=f"sources[{source}].filters")


def _selected_spans(attrs: dict, rule) -> list[tuple[int, int]]:
    return [(int(s[0]), int(s[1])) for s in attrs.get(rule.attribute) or []
            if len(s) >= 3 and (rule.min_score is None or s[2] >= rule.min_score)
            and (rule.max_score is None or s[2] <= rule.max_score)]


def replaced_chars(text_len: int, attrs: dict, rules) -> tuple[int, dict[str, int]]:
    """Characters inside the spans that span replacement replaces: in all rules together (each
    character once) and per rule attribute (the union of that attribute's spans)."""
    def covered(spans: list[tuple[int, int]]) -> int:
        n = pos = 0
        for s, e in sorted(spans):
            s, e = max(s, pos, 0), min(e, text_len)
            if e > s:
                n += e - s
                pos = e
        return n

    by: dict[str, list[tuple[int, int]]] = {}
    for r in rules:
        by.setdefault(r.attribute, []).extend(_selected_spans(attrs, r))
    per = {a: covered(spans) for a, spans in by.items()}
    return covered([x for spans in by.values() for x in spans]), {a: n for a, n in per.items() if n}


def replace_spans(text: str, attrs: dict, rules) -> str:
    """Apply span replacement rules; overlapping spans are merged, replacements applied once."""
    spans: list[tuple[int, int, str]] = []
    for r in rules:
        for s in attrs.get(r.attribute) or []:
            if len(s) >= 3 and (r.min_score is None or s[2] >= r.min_score) and \
                    (r.max_score is None or s[2] <= r.max_score):
                spans.append((int(s[0]), int(s[1]), r.replacement))
    if not spans:
        return text
    spans.sort()
    out, pos = [], 0
    for start, end, repl in spans:
        start = max(start, pos)
        if end <= start:
            continue
        out.append(text[pos:start])
        out.append(repl)
        pos = end
    out.append(text[pos:])
    return "".join(out)


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    src = next(s for s in mix.sources if s.name == shard.source)
    filters = _filterset(ctx["mix"], shard.source)
    rules = mix.source_replacements(src)
    min_len = src.min_text_length if src.min_text_length is not None else mix.min_text_length
    names = attribute_names(mix)
    doc_level = document_level_attributes(mix)
    rejects = Rejects(ctx, "select", shard)
    # without taggers there is no tag stage, so bad input lines are reported here
    read_rejects = Rejects(ctx, "read", shard) if not mix.taggers else None
    dropped: dict[str, int] = {}
    n_in = n_kept = chars_in = chars_out = chars_replaced = 0
    replaced_by: dict[str, int] = {}
    # this shard's own: the FilterSet (and its lifetime tally) is shared by the worker's shards
    rule_errors = RuleErrors()

    def finish(block: list[tuple[dict, dict, str | None]]) -> None:
        """Decide a block of joined documents (filters in one round trip), then write each."""
        nonlocal n_kept, chars_out, chars_replaced
        ask = [i for i, (_, _, reason) in enumerate(block) if reason is None]
        decided = filters.decide_many([{**block[i][0], "attributes": block[i][1]} for i in ask],
                                      errors=rule_errors) if ask else []
        reasons = [reason for _, _, reason in block]
        for i, r in zip(ask, decided):
            reasons[i] = r
        for (doc, attrs, _), reason in zip(block, reasons):
            text = doc["text"]
            replaced = None
            if reason is None and rules:
                text = replace_spans(text, attrs, rules)
                replaced = replaced_chars(len(doc["text"]), attrs, rules)
            if reason is None and len(text.strip()) < max(min_len, 1):
                reason = f"min_text_length: {len(text.strip())} < {max(min_len, 1)}"
            if reason is not None:
                dropped[reason] = dropped.get(reason, 0) + 1
                drop_w.write_line({"id": doc["id"], "reason": reason})
                continue
            n_kept += 1
            chars_out += len(text)
            if replaced is not None:
                chars_replaced += replaced[0]
                for a, n in replaced[1].items():
                    replaced_by[a] = replaced_by.get(a, 0) + n
            kept_w.write_line({**doc, "text": text})

    with ExitStack() as stack:
        attr_iters = [(n, attributes_path(ctx, n, shard), io.read_jsonl(attributes_path(ctx, n, shard))) for n in names]
        kept_w = stack.enter_context(io.AtomicWriter(kept_path(ctx, shard)))
        drop_w = stack.enter_context(io.AtomicWriter(dropped_path(ctx, shard)))
        block: list[tuple[dict, dict, str | None]] = []
        for rec in io.read_documents(shard.path):
            if rec.fatal:
                if read_rejects is not None:
                    read_rejects.add(rec.path, rec.line, rec.error, rec.raw)
                break
            rows = []
            for name, apath, it in attr_iters:
                line, obj, err = next(it, (rec.line, None, "attribute file ended early"))
                rows.append((name, apath, line, obj, err))
            if not rec.ok:
                if read_rejects is not None:
                    read_rejects.add(rec.path, rec.line, rec.error, rec.raw)
                continue  # otherwise counted and set aside by the tag stage
            n_in += 1
            doc = rec.doc
            chars_in += len(doc["text"])
            attrs: dict = {}
            problem = None
            for _name, apath, line, obj, err in rows:
                if err is not None or not isinstance(obj, dict):
                    problem = f"{apath}:{line}: {err or 'not a JSON object'}"
                    break
                if obj.get("id") != doc["id"]:
                    problem = (f"{apath}:{line}: attribute file misaligned with its documents: "
                               f"attribute id {obj.get('id')!r}, document id {doc['id']!r}")
                    break
                attrs.update(obj.get("attributes") or {})
            if problem:
                rejects.add(rec.path, rec.line, problem)
                continue
            block.append((doc, attrs, next((f"dedup: {a}" for a in doc_level if attrs.get(a)), None)))
            if len(block) == BLOCK:
                finish(block)
                block = []
        finish(block)
    rejects.commit()
    read = {}
    if read_rejects is not None:
        read_rejects.commit()
        read = {"read_" + k: v for k, v in read_rejects.stats().items()}
    return {**read, "documents_in": n_in, "documents_kept": n_kept, "chars_in": chars_in, "chars_kept": chars_out,
            "chars_replaced": chars_replaced, "chars_replaced_by": dict(sorted(replaced_by.items())),
            "dropped": dict(sorted(dropped.items())), **rejects.stats(),
            # rules that raised (counted as not matched): per rule, how many documents, and first examples
            "rule_errors": rule_errors.by_rule(), "rule_error_examples": rule_errors.examples(RULE_ERROR_EXAMPLES),
            "rule_errors_total": rule_errors.total}


STEP = Step("select", reads="documents + attributes/", writes="kept/, dropped/",
            counters=("documents_in", "documents_kept", "chars_in", "chars_kept", "chars_replaced", "rejected",
                      "rule_errors_total"), run_shard=run_shard)
