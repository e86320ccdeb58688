"""Tag stage: documents -> attribute files (dolma `tag` format), one per shard.

Writes `attributes/<experiment>/<rel>` with one line per input line, in order:
`{"id": ..., "attributes": {"<exp>__<tagger>__<field>": [[start, end, score], ...]}}`.
A line that is not a valid document is counted, written to the rejects file with its reason,
and gets an empty attribute line so the file stays aligned with its documents.
"""
from __future__ import annotations

from functools import lru_cache

from dolma_prep.taggers import registry

from .. import io
from ..runtime import Shard
from .common import Rejects, attributes_path, mix_of

BATCH = 256


@lru_cache(maxsize=8)
def _taggers(spec: tuple[tuple[str, str], ...], modules: tuple[str, ...]):
    import json

    registry.load_modules(modules)
    return [(name, registry.get(name, **json.loads(opts))) for name, opts in spec]


def taggers_for(names_and_options: list[tuple[str, dict]], modules: list[str] = ()):
    import json

    spec = tuple((n, json.dumps(o, sort_keys=True)) for n, o in names_and_options)
    return _taggers(spec, tuple(modules))


def tag_records(records, taggers, experiment: str, writer: io.AtomicWriter, rejects: Rejects | None) -> dict:
    """Tag a stream of `io.Record`s, writing one aligned attribute line per record."""
    n_in = n_ok = 0
    batch: list[tuple[io.Record, registry.Document | None]] = []

    def flush():
        docs = [d for _, d in batch if d is not None]
        merged: list[dict] = [{} for _ in docs]
        for name, tagger in taggers:
            for out, res in zip(merged, tagger.predict_batch(docs)):
                out.update(registry.format_output(experiment, name, res))
        it = iter(merged)
        for rec, d in batch:
            if d is None:
                writer.write_line({"id": None, "attributes": {}})
            else:
                writer.write_line({"id": rec.doc["id"], "attributes": next(it)})
        batch.clear()

    for rec in records:
        n_in += 1
        if rec.fatal:
            if rejects is not None:
                rejects.add(rec.path, rec.line, rec.error, rec.raw)
            continue
        if rec.ok:
            n_ok += 1
            doc = rec.doc
            batch.append((rec, registry.Document(str(doc["id"]), doc["text"], str(doc.get("source", "")),
                                                 doc.get("metadata") or {})))
        else:
            if rejects is not None:
                rejects.add(rec.path, rec.line, rec.error, rec.raw)
            batch.append((rec, None))
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return {"lines": n_in, "documents_in": n_ok}


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    specs = [(t.name, t.options) for t in mix.taggers]
    taggers = taggers_for(specs, ctx.get("tagger_modules", []))
    rejects = Rejects(ctx, "read", shard)
    with io.AtomicWriter(attributes_path(ctx, mix.experiment, shard)) as w:
        stats = tag_records(io.read_documents(shard.path), taggers, mix.experiment, w, rejects)
    rejects.commit()
    stats.update(rejects.stats())
    return stats


def attributes_beside(doc_path: str, experiment: str) -> str:
    """`<dataset>/documents/<sub>/<file>` -> `<dataset>/attributes/<experiment>/<sub>/<file>`,
    the layout `dolma tag` uses."""
    marker = "/documents/"
    i = doc_path.rfind(marker)
    if i < 0:
        raise io.InputError(f"{doc_path}: dolma layout expected (<dataset>/documents/...), no 'documents' folder in path")
    return doc_path[:i] + "/attributes/" + experiment + "/" + doc_path[i + len(marker):]


def _tag_one(doc_path: str, attr_path: str, specs: list, experiment: str, modules: list) -> dict:
    taggers = taggers_for(specs, modules)
    rej_path = attr_path + ".rejects.jsonl"
    rejects_items: list = []

    class _R:  # rejects go beside the attribute file
        def add(self, path, line, reason, raw=""):
            rejects_items.append({"file": path, "line": line, "reason": reason, "raw": raw})

    with io.AtomicWriter(attr_path) as w:
        stats = tag_records(io.read_documents(doc_path), taggers, experiment, w, _R())
    if rejects_items:
        with io.AtomicWriter(rej_path) as w:
            for it in rejects_items:
                w.write_line(it)
    stats["rejected"] = len(rejects_items)
    stats["examples"] = [f"{r['file']}:{r['line']}: {r['reason']}" for r in rejects_items[:3]]
    return stats


def tag_documents(paths: list[str], specs: list[tuple[str, dict]], experiment: str, modules: list[str] = (),
                  progress=None) -> dict:
    """`dolma-prep tag`: tag documents files in place (dolma layout), in parallel on Ray.
    A file whose attribute file already exists is skipped (outputs appear only by rename)."""
    import ray

    remote = ray.remote(num_cpus=1, max_retries=3)(_tag_one)
    todo = [(p, attributes_beside(p, experiment)) for p in paths]
    todo = [(p, a) for p, a in todo if not io.exists(a)]
    task = progress.add_task("tag", total=len(paths), completed=len(paths) - len(todo), docs=0) if progress else None
    pending = {remote.remote(p, a, list(specs), experiment, list(modules)): p for p, a in todo}
    totals = {"files": len(paths), "skipped": len(paths) - len(todo), "documents": 0, "rejected": 0, "examples": []}
    while pending:
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            pending.pop(ref)
            st = ray.get(ref)
            totals["documents"] += st["documents_in"]
            totals["rejected"] += st["rejected"]
            totals["examples"] += st["examples"]
            if progress is not None:
                progress.update(task, advance=1, docs=totals["documents"])
    return totals
