"""Decontamination: mark text that shares word n-grams with evaluation sets.

Evaluation items (local JSONL / JSONL.gz / .zst / parquet files, or `hf:` datasets when the
`datasets` package is installed) are normalised like MinHash shingles (lower case, punctuation
removed, white space collapsed) and cut into word n-grams (default 13, the GPT-3 / Dolma
choice), hashed with xxh64 into one sorted array. An item shorter than n words gives no n-gram
and is counted as `eval_items_too_short`.

Each document's words are taken across paragraph breaks (a prompt split over lines is still
caught); every document n-gram found in the evaluation set marks its n words as covered.
The attribute holds one span per paragraph ("\\n"-separated, spans as in the paragraph
deduper) that has covered words: [start, end, score] with score = covered words / words of
the paragraph, rounded to 5 decimals. A paragraph of fewer than n words inside a matching
n-gram is marked too. Documents without contamination get []. Typical uses in a mixer:
drop documents with any span, or delete spans with score >= 0.5.
"""
from __future__ import annotations

import numpy as np
from pydantic import Field, field_validator, model_validator

from dolma_prep.core import io
from dolma_prep.core.runtime import run_tasks, summarise

from .eval_sets import MAX_TASK_BITS, PREFILTER_BITS, expand, stage_eval
from .kinds import DedupKind, DedupOptions, IndexSpec, checked, register
from .registry import index_params, index_parts, open_registry, registry_task
from .signatures import shingle_hashes
from .text import normalized_word_bytes, paragraph_spans


def _stage_docs(shard_index: int, doc_path: str, out_path: str, work: str, attribute: str, p: dict) -> dict:
    table = io.load_npy(io.join(work, "eval-ngrams.npy"), mmap=True)
    task_masks = io.load_npy(io.join(work, "eval-tasks.npy"), mmap=True)
    prefilter = io.load_npy(io.join(work, "eval-prefilter.npy"))
    n_tasks = len(io.read_json(io.join(work, "eval-names.json")))
    n = p["ngram"]
    per_task = np.zeros(min(n_tasks, MAX_TASK_BITS + 1), dtype=np.int64)
    docs = contaminated = spans_total = invalid = 0
    with io.AttributeWriter(out_path, attribute) as out:
        for _, doc in io.iter_documents(doc_path):
            if doc is None:
                invalid += 1
                out.document(None)
                continue
            text = doc["text"]
            docs += 1
            spans = _contaminated_spans(text, n, table, prefilter, task_masks, per_task, p["separator"]) if len(table) else []
            if p["min_score"] is not None:
                spans = [x for x in spans if x[2] >= p["min_score"]]
            if spans:
                contaminated += 1
                spans_total += len(spans)
            version = int(p["registry_version"]) if spans and p.get("registry_version") else None
            out.document(doc, io.spans_json((s, e, float(v)) for s, e, v in spans),  # + which registry version matched
                         {"eval_version": io.whole_span(text, version)} if version else None)
    return {
        "documents": docs,
        "invalid": invalid,
        "contaminated_documents": contaminated,
        "contaminated_spans": spans_total,
        "per_task": per_task.tolist(),
    }


def _contaminated_spans(text, n, table, prefilter, task_masks, per_task, sep):
    words: list[bytes] = []
    owner: list[int] = []
    paragraphs = []
    for i, (start, end, p) in enumerate(paragraph_spans(text, sep)):
        w = normalized_word_bytes(p)
        words.extend(w)
        owner.extend([i] * len(w))
        paragraphs.append((start, end, len(w)))
    if len(words) < n:
        return []
    h = shingle_hashes(words, n)
    top = (h >> np.uint64(64 - PREFILTER_BITS)).astype(np.int64)
    maybe = np.flatnonzero(prefilter[top >> 3] & np.left_shift(np.uint8(1), (top & 7).astype(np.uint8)))
    if not len(maybe):
        return []
    pos = np.searchsorted(table, h[maybe])
    pos[pos >= len(table)] = 0
    found = table[pos] == h[maybe]
    if not found.any():
        return []
    hit = np.zeros(len(h), dtype=bool)
    hit[maybe[found]] = True
    pos_hit = pos[found]
    mask = np.bitwise_or.reduce(np.asarray(task_masks[pos_hit]))
    for t in range(len(per_task)):
        if int(mask) >> t & 1:
            per_task[t] += 1
    diff = np.zeros(len(words) + 1, dtype=np.int64)
    starts = np.flatnonzero(hit)
    np.add.at(diff, starts, 1)
    np.add.at(diff, starts + n, -1)
    covered = np.cumsum(diff[:-1]) > 0
    cov_per_par = np.bincount(np.asarray(owner)[covered], minlength=len(paragraphs))
    spans = []
    for i, (start, end, nw) in enumerate(paragraphs):
        if cov_per_par[i]:
            spans.append((start, end, round(cov_per_par[i] / nw, 5)))
    return spans


class DecontaminateOptions(DedupOptions):
    """Decontamination against evaluation sets (`run_decontaminate`)."""

    attribute: str = "decontamination_spans"
    eval_sets: list[str] | None = Field(default=None, min_length=1,
                                        description="files, globs, folders or hf:NAME[:CONFIG][@SPLIT]")
    eval_index: str | None = Field(default=None, description="an evaluation registry INDEX[@VERSION]")
    ngram: int = Field(default=13, ge=1)
    text_field: str = "text"
    separator: str = "\n"
    min_score: float | None = Field(default=None, ge=0, le=1)
    threshold: float | None = Field(default=None, ge=0, le=1, description="alias of min_score")
    keep_work: bool = False

    @field_validator("eval_sets", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_source(self) -> DecontaminateOptions:
        if (self.eval_sets is None) == (self.eval_index is None):
            raise ValueError("give eval_sets (files, globs, hf: datasets) or eval_index (a registry built by "
                             "`dolma-prep index build --kinds ngram`), not both or neither")
        return self

    def from_index(self) -> str | None:
        return self.eval_index

    def resolve_paths(self, resolve) -> None:
        """Evaluation sets and the registry resolve against the mix file (hf: names are not paths)."""
        if self.eval_sets is not None:
            self.eval_sets = [e if e.startswith("hf:") else resolve(e) for e in self.eval_sets]
        if self.eval_index is not None:
            self.eval_index = resolve(self.eval_index)

    def extra_attributes(self) -> tuple[str, ...]:
        return ("eval_version",) if self.eval_index else ()  # the registry version that matched


DEFAULTS = DecontaminateOptions.defaults("threshold", "keep_work")


def run_decontaminate(
    shards: list[tuple[str, str]],
    attribute: str,
    work_dir: str,
    *,
    workers: int | None = None,
    threshold: float | None = None,
    keep_work: bool = False,
    **params,
) -> dict:
    """Mark paragraphs sharing word n-grams with evaluation sets.

    Parameters: eval_sets (required: paths, globs, folders or `hf:NAME[:CONFIG][@SPLIT]`),
    ngram=13, text_field="text" (items without it use all their strings), separator="\\n",
    min_score=None (`threshold` is an alias): keep only spans with score >= min_score; by
    default every paragraph with a marked word gets a span (choose the cut in the mixer).
    eval_index="INDEX[@V]" instead of eval_sets: the evaluation registry's versions 1..V (default:
    the latest) from `dolma-prep index build --kinds ngram`; contaminated lines then also carry
    `<attribute>__eval_version` [[0, len, V]].
    """
    p = checked("decontaminate", params, DEFAULTS)
    if threshold is not None:
        p["min_score"] = float(threshold)
    if bool(p["eval_sets"]) == bool(p["eval_index"]):
        raise ValueError("run_decontaminate needs eval_sets=[...] (files, globs or hf: datasets) or "
                         "eval_index=INDEX[@VERSION] (an evaluation registry built by `index build --kinds ngram`)")
    work = io.join(work_dir, "decontaminate")
    io.rmtree(work)
    if p["eval_index"]:  # the registry's versions 1..V merged into one table
        reg = open_registry(p["eval_index"], params)
        p["ngram"], p["registry_version"] = reg["ngram"], reg["version"]
        sources = reg["sources"]
        (ev,) = run_tasks("decontaminate:eval-index", registry_task, [(reg, work)])
    else:
        specs = [p["eval_sets"]] if isinstance(p["eval_sets"], str) else list(p["eval_sets"])
        sources = expand(specs)
        (ev,) = run_tasks("decontaminate:eval", stage_eval, [(sources, work, int(p["ngram"]), p["text_field"])])
    res = run_tasks("decontaminate:documents", _stage_docs,
                    [(i, d, o, work, attribute, p) for i, (d, o) in enumerate(shards)], max_in_flight=workers)
    if not keep_work:
        io.rmtree(work)
    per_task = np.zeros(len(ev["tasks"]), dtype=np.int64)
    for r in res:
        per_task[: len(r["per_task"])] += np.asarray(r["per_task"], dtype=np.int64)
    return {
        "kind": "decontaminate",
        "shards": len(shards),
        "documents": sum(r["documents"] for r in res),
        "invalid_lines": sum(r["invalid"] for r in res),
        "contaminated_documents": sum(r["contaminated_documents"] for r in res),
        "contaminated_spans": sum(r["contaminated_spans"] for r in res),
        "eval_sources": sources,
        "eval_items": ev["eval_items"],
        "eval_items_too_short": ev["eval_items_too_short"],
        "eval_ngrams": ev["eval_ngrams"],
        "documents_per_task": {t: int(c) for t, c in zip(ev["tasks"], per_task)},
        "eval_registry_version": p.get("registry_version"),
        "stages": {"eval": summarise([ev]), "documents": summarise(res)},
    }


def _use_registry(index: str, params: dict) -> dict:
    """`dolma-prep dedup decontaminate --against REGISTRY[@V]`: checked before Ray starts."""
    open_registry(index, params)
    return {**params, "eval_index": index}


def _cli_check(params: dict) -> str | None:
    if "eval_sets" not in params and "eval_index" not in params:
        return "needs --eval-sets FILE_OR_GLOB... or --against REGISTRY[@VERSION]"
    return None


register(DedupKind("decontaminate", DecontaminateOptions, run_decontaminate, level="document",
                   index=IndexSpec("ngram", ("ngram", "text_field"), index_params, index_parts, _use_registry,
                                   documents=False),
                   cli_check=_cli_check))
