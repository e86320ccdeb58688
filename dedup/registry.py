"""The decontamination registry: evaluation sets as a versioned index (`index build --kinds
ngram`). A version holds decontam's table of its evaluation files (sorted distinct n-gram
hashes, task bit masks, task names); `run_decontaminate(eval_index="INDEX@V")` merges versions
1..V into the table a direct run over the same files would build, and records V on every
contaminated line."""

from __future__ import annotations

import hashlib

import numpy as np

from dolma_prep.core import io
from dolma_prep.core.runtime import run_tasks, summarise

from .eval_sets import MAX_TASK_BITS, stage_eval, write_table
from .index_store import IndexInputError, read_manifest
from .kinds import IndexParts

_NGRAM_FILES = ("eval-ngrams.npy", "eval-tasks.npy", "eval-names.json")


def ngram_task(paths: list[str], version_dir: str, params: dict) -> dict:
    """One version of the evaluation registry: decontam's table of the evaluation items."""
    out = io.join(version_dir, "ngram")
    ev = stage_eval(paths, out, params["ngram"], params["text_field"])
    io.remove(io.join(out, "eval-prefilter.npy"))  # rebuilt from the merged table when used
    parts = []
    for name in _NGRAM_FILES:
        data = io.read_bytes(io.join(out, name))
        parts.append({"file": f"ngram/{name}", "rows": ev["eval_ngrams"] if name == "eval-ngrams.npy" else 0,
                      "lo": 0, "hi": 0, "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)})
    parts[0]["eval"] = {k: ev[k] for k in ("eval_items", "eval_items_too_short", "eval_ngrams", "tasks")}
    return {"parts": parts}


def index_params(given: dict) -> dict:
    """What a registry records: the n-gram length and the items' text field."""
    return {"ngram": int(given.get("ngram", 13)), "text_field": given.get("text_field", "text")}


def index_parts(files: list[tuple[int, str]], params: dict, version_dir: str, work: str, workers: int) -> IndexParts:
    """`index build --kinds ngram`: one version of the registry over the evaluation files."""
    (r,) = run_tasks("index:ngram", ngram_task, [([path for _, path in files], version_dir, params)])
    held = next(t["eval"] for t in r["parts"] if "eval" in t)  # the version records what it holds
    return IndexParts(r["parts"], {"ngram": summarise([r])}, {"eval": held})


def open_registry(spec: str, explicit: dict) -> dict:
    """INDEX or INDEX@V: the registry's versions 1..V (V default: the latest)."""
    index, _, v = spec.rpartition("@") if "@" in spec.rsplit("/", 1)[-1] else (spec, "", "")
    m = read_manifest(index)
    if "ngram" not in m["kinds"]:
        raise IndexInputError(f"{index}: not an evaluation registry (it holds {', '.join(m['kinds'])}); build one with "
                          "`dolma-prep index build --kinds ngram --documents EVAL_SETS... --output INDEX`")
    own = m["kinds"]["ngram"]
    differ = [f"{k}={explicit[k]!r} (index: {own[k]!r})" for k in ("ngram", "text_field")
              if explicit.get(k) is not None and explicit[k] != own[k]]
    if differ:
        raise IndexInputError(f"decontaminate against {index}: parameters differ from the registry's: {', '.join(differ)}")
    latest = len(m["versions"])
    try:
        version = int(v) if v else latest
    except ValueError:
        raise IndexInputError(f"{spec}: the version after @ must be a number, got {v!r}") from None
    if not 1 <= version <= latest:
        raise IndexInputError(f"{spec}: the registry has versions 1..{latest}, not {version}")
    used = m["versions"][:version]
    return {"index": index, "version": version, "ngram": own["ngram"],
            "dirs": [io.join(index, x["dir"], "ngram") for x in used],
            "sources": [f["path"] for x in used for f in x["files"]],
            "eval_items": sum(x["eval"]["eval_items"] for x in used),
            "eval_items_too_short": sum(x["eval"]["eval_items_too_short"] for x in used)}


def registry_task(reg: dict, work: str) -> dict:
    """Merge versions 1..V into decontam's work table (task names united, bits remapped)."""
    names: list[str] = []
    hs, ms = [], []
    for d in reg["dirs"]:
        own = io.read_json(io.join(d, "eval-names.json"))
        h = io.load_npy(io.join(d, "eval-ngrams.npy"))
        mask = io.load_npy(io.join(d, "eval-tasks.npy"))
        remapped = np.zeros(len(mask), np.uint64)
        for i, name in enumerate(own):
            if name not in names:
                names.append(name)
            bit = np.uint64(1) << np.uint64(min(names.index(name), MAX_TASK_BITS))
            remapped[(mask >> np.uint64(min(i, MAX_TASK_BITS))) & np.uint64(1) == 1] |= bit
        hs.append(h)
        ms.append(remapped)
    n = write_table(work, np.concatenate(hs) if hs else np.empty(0, np.uint64),
                    np.concatenate(ms) if ms else np.empty(0, np.uint64), names)
    return {"eval_items": reg["eval_items"], "eval_items_too_short": reg["eval_items_too_short"], "eval_ngrams": n,
            "tasks": names}
