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

from dolma_prep.core import io
from dolma_prep.core.runtime import run_tasks, summarise

from . import checked
from .signatures import shingle_hashes
from .paragraphs import _paragraph_spans
from .text import normalized_word_bytes

PREFILTER_BITS = 27  # 16 MiB bitmap
MAX_TASK_BITS = 63  # eval sets beyond the 63rd share the last bit in per-task statistics


def _expand(specs: list[str]) -> list[str]:
    out: list[str] = []
    for spec in specs:
        if spec.startswith("hf:"):
            out.append(spec)
            continue
        matches = io.glob(spec)
        if io.fs_of(spec).isdir(spec):
            matches = [f for f in io.glob(io.join(spec, "*")) if f.endswith((".jsonl", ".gz", ".zst", ".parquet", ".json"))]
        if not matches:
            raise FileNotFoundError(f"decontaminate: evaluation set {spec!r} matches no file")
        out.extend(matches)
    return out


def _item_text(obj: dict, text_field: str) -> str | None:
    value = obj.get(text_field)
    if isinstance(value, str):
        return value
    # no text field: join the item's strings (question, choices, answers ...)
    parts: list[str] = []

    def walk(v):
        if isinstance(v, str):
            parts.append(v)
        elif isinstance(v, dict):
            for x in v.values():
                walk(x)
        elif isinstance(v, list):
            for x in v:
                walk(x)

    walk(obj)
    return "\n".join(parts) if parts else None


def _eval_texts(source: str, text_field: str):
    """(task name, text) for each item of one evaluation source."""
    if source.startswith("hf:"):
        try:
            import datasets
        except ImportError as e:  # optional dependency
            raise ImportError(f"decontaminate: {source!r} needs the `datasets` package") from e
        spec = source[3:]
        spec, _, split = spec.partition("@")
        name, _, config = spec.partition(":")
        ds = datasets.load_dataset(name, config or None, split=split or "validation")
        task = name.split("/")[-1]
        for row in ds:
            text = _item_text(dict(row), text_field)
            if text:
                yield task, text
        return
    base = source.rstrip("/").rsplit("/", 1)[-1]
    task = base.split(".")[0]
    if source.endswith(".parquet"):
        table = io.read_parquet(source)
        if text_field in table.column_names:
            for text in table.column(text_field).to_pylist():
                if isinstance(text, str):
                    yield task, text
        else:
            for row in table.to_pylist():
                text = _item_text(row, text_field)
                if text:
                    yield task, text
        return
    for _, obj, _err in io.read_jsonl(source):
        if not isinstance(obj, dict):  # blank or broken lines of an evaluation file carry no item
            continue
        text = _item_text(obj, text_field)
        if text:
            yield obj.get("task", task) if isinstance(obj.get("task"), str) else task, text


def _stage_eval(sources: list[str], work: str, ngram: int, text_field: str) -> dict:
    names: list[str] = []
    hashes, masks = [], []
    items = too_short = 0
    for source in sources:
        for task, text in _eval_texts(source, text_field):
            if task not in names:
                names.append(task)
            bit = np.uint64(1) << np.uint64(min(names.index(task), MAX_TASK_BITS))
            items += 1
            words = normalized_word_bytes(text)
            if len(words) < ngram:
                too_short += 1
                continue
            h = shingle_hashes(words, ngram)
            hashes.append(h)
            masks.append(np.full(len(h), bit, dtype=np.uint64))
    h = np.concatenate(hashes) if hashes else np.empty(0, np.uint64)
    m = np.concatenate(masks) if masks else np.empty(0, np.uint64)
    n = write_table(work, h, m, names)
    return {"eval_items": items, "eval_items_too_short": too_short, "eval_ngrams": n, "tasks": names}


def write_table(work: str, h: np.ndarray, m: np.ndarray, names: list[str]) -> int:
    """The evaluation table from n-gram hashes `h` with task bit masks `m` (any order, repeats
    allowed): sorted distinct hashes, their OR-ed masks, the task names and the prefilter."""
    order = np.argsort(h, kind="stable")
    h, m = h[order], m[order]
    uniq, start = np.unique(h, return_index=True)
    mask = np.bitwise_or.reduceat(m, start) if len(h) else m
    io.save_npy(io.join(work, "eval-ngrams.npy"), uniq)
    # direct-address prefilter on the top bits: most document n-grams stop here
    bitmap = np.zeros(1 << (PREFILTER_BITS - 3), dtype=np.uint8)
    top = (uniq >> np.uint64(64 - PREFILTER_BITS)).astype(np.int64)
    np.bitwise_or.at(bitmap, top >> 3, np.left_shift(np.uint8(1), (top & 7).astype(np.uint8)))
    io.save_npy(io.join(work, "eval-prefilter.npy"), bitmap)
    io.save_npy(io.join(work, "eval-tasks.npy"), mask)
    io.write_json(io.join(work, "eval-names.json"), names)
    return int(len(uniq))


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
    for i, (start, end, p) in enumerate(_paragraph_spans(text, sep)):
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


DEFAULTS = dict(eval_sets=None, ngram=13, text_field="text", separator="\n", min_score=None, eval_index=None)


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
        from .registry import open_registry, registry_task

        reg = open_registry(p["eval_index"], params)
        p["ngram"], p["registry_version"] = reg["ngram"], reg["version"]
        sources = reg["sources"]
        (ev,) = run_tasks("decontaminate:eval-index", registry_task, [(reg, work)])
    else:
        specs = [p["eval_sets"]] if isinstance(p["eval_sets"], str) else list(p["eval_sets"])
        sources = _expand(specs)
        (ev,) = run_tasks("decontaminate:eval", _stage_eval, [(sources, work, int(p["ngram"]), p["text_field"])])
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
