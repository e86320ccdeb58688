"""The shards of a run: one per input file its sources' globs (or datasets) match.

Its own module because the run, `plan --measure` and the tools that read a run's inputs all
need the same list in the same order (a shard's index within its source names its output
files, `part-<index>-*`), and none of them should have to import another to get it.
"""
from __future__ import annotations

import os
from dataclasses import replace

from ..core import io
from ..core.io import InputError
from ..core.runtime import Shard, input_identity
from .mixfile import MixFile


def _under_any(path: str, folders: list[str]) -> bool:
    return any(path == f or path.startswith(f.rstrip("/") + "/") for f in folders if f)


def discover_shards(mix: MixFile, skipped: list[str] | None = None, identify: bool = False,
                    exclude: list[str] = ()) -> list[Shard]:
    """The run's shards: one per matched input file. Files under `exclude` (the run's own
    output and scratch, when a source's glob reaches into them) are never inputs: they are
    left out and listed in `skipped`. With `identify`, each shard records what its file is
    now (`runtime.input_identity`), which done markers are checked against."""
    shards: list[Shard] = []
    owner: dict[str, str] = {}
    exclude = [io.normalize_path(e) for e in exclude if e]
    for src in mix.sources:
        if src.dataset is not None:
            try:
                ids = io.hf_shards(src.dataset.model_dump())
            except Exception as e:  # noqa: BLE001 (missing dataset, no hub, bad config name)
                raise InputError(f"source {src.name!r}: cannot open dataset {src.dataset.path!r}: {e}") from None
            shards.extend(Shard(src.name, i, p, f"{src.name}/hf-{i:05d}.jsonl.gz") for i, p in enumerate(ids))
            continue
        paths = io.expand_globs(mix.data_root, src.documents)
        if not paths:
            raise InputError(f"source {src.name!r}: documents {src.documents} matched no files under {mix.data_root}")
        if exclude:
            own = [p for p in paths if _under_any(io.normalize_path(p), exclude)]
            if own and skipped is not None:
                skipped.extend(own)
            mine = set(own)
            paths = [p for p in paths if p not in mine]
            if not paths:
                raise InputError(f"source {src.name!r}: documents {src.documents} match only files of this run's own "
                                 f"output ({len(own)} files under {mix.output}); narrow the glob or move the output")
        for i, p in enumerate(paths):
            rel = io.relpath(p, mix.data_root) if p.startswith(mix.data_root.rstrip("/") + "/") else os.path.basename(p)
            if rel.endswith(".parquet"):
                rel += ".jsonl.gz"  # outputs (attributes, kept documents) are Dolma JSONL
            if rel in owner:
                raise InputError(f"{p} is matched by both source {owner[rel]!r} and source {src.name!r}")
            owner[rel] = src.name
            shards.append(Shard(src.name, i, p, rel))
    if identify:
        shards = [replace(s, ident=input_identity(s.path)) for s in shards]
    return shards
