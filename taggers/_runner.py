"""Tag a documents file into an attributes file in exactly `dolma tag`'s format.

    from dolma_prep.taggers._runner import tag_file
    tag_file("docs/documents/c4/0000.jsonl.gz", "docs/attributes/exp/c4/0000.jsonl.gz",
             ["gopher_v1", "c4_v1"], experiment="exp")

Each input line gives one output line, in order:
`{"id":...,"attributes":{"<exp>__<tagger>__<field>":[[start,end,score],...],...},"source":...}`
(compact JSON, non-ASCII kept, floats written as msgspec writes them, e.g. `0.00001`, `1e16`),
which is byte for byte what dolma 1.2.1 writes. Taggers run in the order given and each
sees batches of `batch_size` documents (`predict_batch`); files are streamed.

Bad input never stops a file: a line that is not a JSON object with a string `text` gets
`{"id":<id or null>,"attributes":{},"source":<source or null>}` so the attributes stay
aligned with the documents (dolma stops with an error there), and a tagger that raises on a
document leaves that document without its fields; both are counted in the returned stats.

`tag_files` runs many files on a process pool, splitting them into batches so that one big
file does not leave the other processes idle; used by benchmarks/taggers.py (the pipeline
runs `tag_file`-like loops on Ray instead).

This module depends only on the standard library and the taggers.
"""
from __future__ import annotations

import collections
import gzip
import io
import json
import logging
import math
import os
import re
import time
from typing import IO, Any, Iterable, Iterator, Sequence

from . import registry
from .registry import Document, Tagger

log = logging.getLogger(__name__)
BATCH_SIZE = 256
_SURROGATE = re.compile("[\ud800-\udfff]")


# ---------------------------------------------------------------------------------- output format
def format_score(v: float) -> str:
    """A float as msgspec (dolma's JSON encoder) writes it: shortest round-trip digits, plain
    decimal for 1e-5 <= |v| < 1e16, else `1e16` / `1.5e-7` style; NaN and inf as null."""
    if v != v or v in (math.inf, -math.inf):
        return "null"
    r = repr(float(v))
    if "e" not in r:
        return r
    mant, exp = r.split("e")
    e = int(exp)
    if e == -5:  # Python switches to exponent form one decade earlier than msgspec
        sign = "-" if mant.startswith("-") else ""
        return f"{sign}0.0000{mant.lstrip('-').replace('.', '')}"
    return f"{mant}e{e}"


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
    out = []
    for s, e, v in spans:
        v = round(float(v), 5)
        r = _SCORES.get(v) if v else None  # 0.0 and -0.0 are equal keys but print differently
        if r is None:
            r = format_score(v)
            if v and len(_SCORES) < 100_000:
                _SCORES[v] = r
        out.append("[%d,%d,%s]" % (s, e, r))
    return "[" + ",".join(out) + "]"


# ----------------------------------------------------------------------------------------- files
def open_read(path: str) -> IO[str]:
    if path.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", errors="surrogateescape")
    if path.endswith((".zst", ".zstd")):
        import zstandard

        return io.TextIOWrapper(zstandard.open(path, "rb"), encoding="utf-8", errors="surrogateescape")
    return open(path, "rt", encoding="utf-8", errors="surrogateescape")


def open_write(path: str, compression_of: str | None = None) -> IO[str]:
    """Open for writing; compressed by the suffix of `compression_of` (default: `path`)."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    kind = compression_of or path
    if kind.endswith(".gz"):
        return io.TextIOWrapper(gzip.open(path, "wb", compresslevel=1), encoding="utf-8", errors="surrogatepass")
    if kind.endswith((".zst", ".zstd")):
        import zstandard

        return io.TextIOWrapper(zstandard.open(path, "wb"), encoding="utf-8", errors="surrogatepass")
    return open(path, "wt", encoding="utf-8", errors="surrogatepass")


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
            except Exception:  # one bad document must not cost the batch: retry one by one
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

    def tag_lines(self, lines: list[str]) -> tuple[list[str], int]:
        """Output lines for raw input lines, and how many inputs were not documents."""
        parsed: list[tuple[Any, Any, Document | None]] = []
        bad = 0
        for raw in lines:
            row: Any = None
            try:
                row = json.loads(raw)
                text = row["text"]
                if not isinstance(text, str):
                    raise TypeError("text is not a string")
                meta = row.get("metadata")
                doc = Document(str(row["id"]), text, str(row.get("source") or ""), meta if isinstance(meta, dict) else {})
                parsed.append((row.get("id"), row.get("source", ""), doc))
            except Exception:
                bad += 1
                ok = isinstance(row, dict)
                parsed.append((row.get("id") if ok else None, row.get("source") if ok else None, None))
        docs = [d for _, _, d in parsed if d is not None]
        bodies = iter(self.tag_json(docs)) if docs else iter(())
        out = [_line(i, next(bodies) if d is not None else "", s) for i, s, d in parsed]
        return out, bad


def _batches(path: str, size: int) -> Iterator[list[str]]:
    with open_read(path) as f:
        batch: list[str] = []
        for line in f:
            batch.append(line)
            if len(batch) >= size:
                yield batch
                batch = []
        if batch:
            yield batch


def tag_file(documents_path: str, attributes_path: str, tagger_names: Sequence[str], experiment: str | None,
             options: dict[str, dict[str, Any]] | None = None, batch_size: int = BATCH_SIZE,
             taggers: TaggerSet | None = None) -> dict[str, Any]:
    """Tag one documents file (.jsonl, .jsonl.gz, .jsonl.zst) into `attributes_path`.

    `options` maps a tagger name to its keyword options (e.g. {"cc_multi_bin": {"model_path":
    "q.bin"}}). Pass a prebuilt `taggers` to reuse loaded models across files. Returns stats:
    documents, invalid_lines, tagger_errors, seconds."""
    t0 = time.perf_counter()
    ts = taggers or TaggerSet(tagger_names, experiment, options)
    errors0 = ts.errors
    n = bad = 0
    tmp = attributes_path + ".tmp"
    with open_write(tmp, attributes_path) as out:
        for batch in _batches(documents_path, batch_size):
            lines, b = ts.tag_lines(batch)
            out.write("\n".join(lines) + "\n")
            n += len(batch)
            bad += b
    os.replace(tmp, attributes_path)
    return {"documents": n - bad, "invalid_lines": bad, "tagger_errors": ts.errors - errors0,
            "seconds": time.perf_counter() - t0}


# ------------------------------------------------------------------------------ many files, pool
_WORKER: TaggerSet | None = None


def _init_worker(tagger_names, experiment, options) -> None:
    global _WORKER
    _WORKER = TaggerSet(tagger_names, experiment, options)


def _work(lines: list[str]) -> tuple[list[str], int, int]:
    assert _WORKER is not None
    e0 = _WORKER.errors
    out, bad = _WORKER.tag_lines(lines)
    return out, bad, _WORKER.errors - e0


def tag_files(jobs: Iterable[tuple[str, str]], tagger_names: Sequence[str], experiment: str | None,
              options: dict[str, dict[str, Any]] | None = None, processes: int = 1,
              batch_size: int = BATCH_SIZE) -> dict[str, Any]:
    """Tag (documents_path, attributes_path) pairs with `processes` worker processes.

    Batches of every file are spread over the pool (a bounded number in flight, so memory
    stays flat) and written back in order."""
    t0 = time.perf_counter()
    jobs = list(jobs)
    stats = {"files": len(jobs), "documents": 0, "invalid_lines": 0, "tagger_errors": 0}
    if processes <= 1:
        ts = TaggerSet(tagger_names, experiment, options)
        for src, dst in jobs:
            s = tag_file(src, dst, tagger_names, experiment, batch_size=batch_size, taggers=ts)
            for k in ("documents", "invalid_lines", "tagger_errors"):
                stats[k] += s[k]
        stats["seconds"] = time.perf_counter() - t0
        return stats

    import multiprocessing as mp

    # fail here, not in the workers (a Pool whose initializer raises respawns workers forever);
    # with fork, models loaded here are shared with the workers
    TaggerSet(tagger_names, experiment, options)
    window = 4 * processes
    with mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn").Pool(
        processes, initializer=_init_worker, initargs=(list(tagger_names), experiment, options)
    ) as pool:
        pending: collections.deque = collections.deque()
        outs: dict[str, IO[str]] = {}

        def drain(limit: int) -> None:
            while len(pending) > limit:
                dst, n_lines, res = pending.popleft()
                if res is None:  # end of this file
                    outs.pop(dst).close()
                    continue
                out, bad, errs = res.get()
                outs[dst].write("\n".join(out) + "\n")
                stats["documents"] += n_lines - bad
                stats["invalid_lines"] += bad
                stats["tagger_errors"] += errs

        try:
            for src, dst in jobs:
                outs[dst] = open_write(dst + ".tmp", dst)
                for batch in _batches(src, batch_size):
                    pending.append((dst, len(batch), pool.apply_async(_work, (batch,))))
                    drain(window)
                pending.append((dst, 0, None))
            drain(0)
        finally:
            for f in outs.values():
                f.close()
    for _, dst in jobs:
        os.replace(dst + ".tmp", dst)
    stats["seconds"] = time.perf_counter() - t0
    return stats
