"""Helpers shared by the stages: context, output paths, rejects."""
from __future__ import annotations

from functools import lru_cache
from typing import Any

from ...core import io
from ...core.runtime import Shard
from ..mixfile import MixFile


@lru_cache(maxsize=4)
def parse_mix(blob: str) -> MixFile:
    """The run's mix from its JSON, parsed once per worker (tasks receive the JSON)."""
    return MixFile.model_validate_json(blob)


def mix_of(ctx: dict) -> MixFile:
    return parse_mix(ctx["mix"])


def attributes_path(ctx: dict, name: str, shard: Shard) -> str:
    return io.join(ctx["output"], "attributes", name, shard.rel)


def kept_path(ctx: dict, shard: Shard) -> str:
    return io.join(ctx["output"], "kept", shard.rel)


def dropped_path(ctx: dict, shard: Shard) -> str:
    return io.join(ctx["output"], "dropped", shard.rel)


class FileRejects:
    """Collects bad records and writes them (with reasons) to `path` when there are any."""

    def __init__(self, path: str):
        self.path = path
        self.items: list[dict[str, Any]] = []
        self.reasons: dict[str, int] = {}

    def add(self, path: str, line: int, reason: str, raw: str = "") -> None:
        self.items.append({"file": path, "line": line, "reason": reason, "raw": raw})
        kind = reason.split(":")[0].split(" (")[0]
        self.reasons[kind] = self.reasons.get(kind, 0) + 1

    def commit(self) -> None:
        if not self.items:
            return
        with io.AtomicWriter(self.path) as w:
            for it in self.items:
                w.write_line(it)

    def stats(self) -> dict:
        return {"rejected": len(self.items), "reject_reasons": dict(sorted(self.reasons.items())),
                "reject_examples": [f"{r['file']}:{r['line']}: {r['reason']}" for r in self.items[:5]]}


def rejects_path(output: str, stage: str, rel: str) -> str:
    """Where the bad records of one shard go: `<output>/rejects/<stage>/<rel>.jsonl`, the
    shard's compression suffix dropped (the one rule: `Rejects` writes there, `stats` and `show`
    read there)."""
    base = rel
    for suf in (".gz", ".zst", ".zstd"):
        base = base.removesuffix(suf)
    if not base.endswith(".jsonl"):
        base += ".jsonl"
    return io.join(output, "rejects", stage, base)


class Rejects(FileRejects):
    """The bad records of one shard of a run: `rejects_path(output, stage, rel)`."""

    def __init__(self, ctx: dict, stage: str, shard: Shard):
        super().__init__(rejects_path(ctx["output"], stage, shard.rel))
