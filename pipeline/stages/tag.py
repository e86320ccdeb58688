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
    taggers = taggers_for(specs, mix.tagger_modules)
    rejects = Rejects(ctx, "read", shard)
    with io.AtomicWriter(attributes_path(ctx, mix.experiment, shard)) as w:
        stats = tag_records(io.read_documents(shard.path), taggers, mix.experiment, w, rejects)
    rejects.commit()
    stats.update(rejects.stats())
    return stats
