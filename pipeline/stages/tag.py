"""Tag stage: documents -> attribute files (dolma `tag` format), one per shard.

Writes `attributes/<experiment>/<rel>` with one line per input line, in order:
`{"id": ..., "attributes": {"<exp>__<tagger>__<field>": [[start, end, score], ...]}}`.
A line that is not a valid document is counted, written to the rejects file with its reason,
and gets an empty attribute line so the file stays aligned with its documents.
"""
from __future__ import annotations

import contextlib
import json
from functools import lru_cache

from dolma_prep.taggers import registry
from dolma_prep.taggers._runner import TaggerSet, attribute_line

from ...core import io
from ...core.runtime import Shard, run_tasks
from ..steps import Step
from .common import FileRejects, Rejects, attributes_path, mix_of

BATCH = 256


@lru_cache(maxsize=8)
def _tagger_set(spec: str, experiment: str, modules: tuple[str, ...]) -> TaggerSet:
    registry.load_modules(modules)
    names_options = json.loads(spec)
    return TaggerSet([n for n, _ in names_options], experiment, {n: o for n, o in names_options if o})


def taggers_for(names_and_options: list[tuple[str, dict]], experiment: str, modules=()) -> TaggerSet:
    """The run's taggers, built once per worker process (models load once)."""
    return _tagger_set(json.dumps([[n, o] for n, o in names_and_options], sort_keys=True), experiment, tuple(modules))


def tag_records(records, tagset, writer, rejects) -> dict:
    """Tag a stream of `io.Record`s, writing one aligned attribute line per record, byte for
    byte as `dolma tag` writes it (`{"id":..,"attributes":{..},"source":..}`). `tagset` and
    `writer` may be lists of equal length: one attribute file per experiment, one read."""
    pairs = list(zip(tagset, writer)) if isinstance(tagset, list) else [(tagset, writer)]
    errors_before = [ts.errors for ts, _ in pairs]  # a TaggerSet lives as long as its worker: count this file's
    n_in = n_ok = 0
    batch: list[io.Record] = []

    def flush():
        docs = [registry.Document(str(r.doc["id"]), r.doc["text"], str(r.doc.get("source") or ""),
                                  r.doc.get("metadata") if isinstance(r.doc.get("metadata"), dict) else {})
                for r in batch if r.ok]
        for ts, w in pairs:
            bodies = iter(ts.tag_json(docs)) if docs else iter(())
            out = [attribute_line(r.doc["id"], next(bodies), r.doc.get("source")) if r.ok
                   else attribute_line(None, "", None) for r in batch]
            w.write(("\n".join(out) + "\n").encode("utf-8"))
        batch.clear()

    for rec in records:
        if rec.fatal:
            if rejects is not None:
                rejects.add(rec.path, rec.line, rec.error, rec.raw)
            continue
        n_in += 1
        if rec.ok:
            n_ok += 1
        elif rejects is not None:
            rejects.add(rec.path, rec.line, rec.error, rec.raw)
        batch.append(rec)
        if len(batch) >= BATCH:
            flush()
    if batch:
        flush()
    return {"lines": n_in, "documents_in": n_ok,
            "tagger_errors": sum(ts.errors - e0 for (ts, _), e0 in zip(pairs, errors_before))}


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    rejects = Rejects(ctx, "read", shard)
    with contextlib.ExitStack() as stack:  # every experiment's file committed together, or none
        tagsets, writers = [], []
        for experiment, specs in mix.tagger_groups().items():
            tagsets.append(taggers_for(specs, experiment, ctx.get("tagger_modules", [])))
            writers.append(stack.enter_context(io.AtomicWriter(attributes_path(ctx, experiment, shard))))
        stats = tag_records(io.read_documents(shard.path), tagsets, writers, rejects)
    rejects.commit()
    stats.update(rejects.stats())
    return stats


def attributes_beside(doc_path: str, experiment: str) -> str:
    """`<dataset>/documents/<sub>/<file>` -> `<dataset>/attributes/<experiment>/<sub>/<file>`,
    the layout `dolma tag` uses."""
    marker = "/documents/"
    if doc_path.startswith("documents/"):  # a relative dataset path, typed inside the dataset folder (as dolma)
        doc_path = "./" + doc_path
    i = doc_path.rfind(marker)
    if i < 0:
        raise io.InputError(f"{doc_path}: dolma layout expected (<dataset>/documents/...), no 'documents' folder in path")
    return doc_path[:i] + "/attributes/" + experiment + "/" + doc_path[i + len(marker):]


def _tag_one(doc_path: str, attr_path: str, specs: list, experiment: str, modules: list) -> dict:
    """One file of `dolma-prep tag`: the same `tag_records` as a run's tag stage; bad records
    go beside the attribute file (`<attr>.rejects.jsonl`)."""
    tagset = taggers_for(specs, experiment, modules)
    rejects = FileRejects(attr_path + ".rejects.jsonl")
    with io.AtomicWriter(attr_path) as w:
        stats = tag_records(io.read_documents(doc_path), tagset, w, rejects)
    rejects.commit()
    stats.update(rejects.stats())
    return stats


def tag_documents(paths: list[str], specs: list[tuple[str, dict]], experiment: str, modules: list[str] = (),
                  progress=None) -> dict:
    """`dolma-prep tag`: tag documents files in place (dolma layout), in parallel on Ray.
    A file whose attribute file already exists is skipped (outputs appear only by rename)."""
    pairs = [(p, attributes_beside(p, experiment)) for p in paths]
    todo = [(p, a) for p, a in pairs if not io.exists(a)]
    results = run_tasks("tag", _tag_one, [(p, a, list(specs), experiment, list(modules)) for p, a in todo],
                        progress=progress)
    # a file tagged by an earlier run keeps its bad records beside its attributes: still counted,
    # so a rerun of a command that rejected records does not report a clean result
    done = {a for _, a in todo}
    earlier = 0
    for _, a in pairs:
        rej = a + ".rejects.jsonl"
        if a not in done and io.exists(rej):
            earlier += sum(1 for _ in io.read_jsonl(rej))
    return {"files": len(paths), "skipped": len(paths) - len(todo),
            "documents": sum(r["documents_in"] for r in results),
            "rejected": sum(r["rejected"] for r in results) + earlier, "rejected_earlier": earlier,
            "tagger_errors": sum(r["tagger_errors"] for r in results),
            "empty_files": [p for (p, _), r in zip(todo, results) if r["documents_in"] == 0 and r["rejected"] == 0],
            "examples": [e for r in results for e in r["reject_examples"]]}


STEP = Step("tag", reads="documents", writes="attributes/<experiment>/",
            counters=("lines", "documents_in", "rejected", "tagger_errors"), run_shard=run_shard,
            when=lambda mix: bool(mix.taggers), num_gpus=lambda mix: max((t.num_gpus for t in mix.taggers), default=0.0))
