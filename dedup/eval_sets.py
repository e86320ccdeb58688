"""Evaluation sets -> the n-gram table decontamination looks documents up in.

Items (local JSONL / JSONL.gz / .zst / parquet files, folders and globs of them, or `hf:` datasets
when the `datasets` package is installed) are normalised like MinHash shingles and cut into word
n-grams, hashed with xxh64. The table (`write_table`): sorted distinct hashes, a bit mask of the
tasks (evaluation sets) each occurs in, the task names and a direct-address prefilter. Built
from files by decontam.py (`stage_eval`), or merged from the versions of an evaluation registry
(registry.py); both import this module and neither imports the other's run.
"""
from __future__ import annotations

import numpy as np

from dolma_prep.core import io

from .signatures import shingle_hashes
from .text import normalized_word_bytes

PREFILTER_BITS = 27  # 16 MiB bitmap
MAX_TASK_BITS = 63  # eval sets beyond the 63rd share the last bit in per-task statistics


def expand(specs: list[str]) -> list[str]:
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


def stage_eval(sources: list[str], work: str, ngram: int, text_field: str) -> dict:
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
