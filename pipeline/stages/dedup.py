"""Dedup step: every configured dedup kind once over all shards (a global step: each kind
shuffles across the whole corpus), writing one attribute file per shard that select reads.

Each kind is a record of the dedup registry (dedup/kinds.py), run in the registry's order; it
runs its rounds of tasks through the one task runtime, with its intermediate tables under the
run's work folder (`_work/dedup/<kind>` under the output, or under --scratch): storage every
node reaches. A kind that finished keeps a done marker (`_state/dedup/<kind>.json`, counts only)
and is not run again on resume.
"""
from __future__ import annotations

import json
from typing import Any

from ...core import io
from ...core.runtime import outputs_intact, read_marker, task_totals, write_marker
from ...dedup import kinds
from ..steps import Step
from .select import dedup_attribute


def runner(kind: str):
    """The entry function of a dedup kind: `run_<kind>(pairs, attribute, work_dir, **params)`."""
    return kinds.get(kind).run


def counts_only(stats: dict) -> dict:
    """What a manifest keeps of a kind's statistics: counts, never timings or memory peaks
    (they vary run to run)."""
    return {k: v for k, v in stats.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
            and not any(w in k for w in ("seconds", "rss", "time", "memory", "peak"))}


def run_dedup(mix, shards: list, ctx: dict, progress=None) -> dict[str, dict]:
    results = {}
    for record, cfg in mix.dedup.configured():
        kind = record.name
        marker = read_marker(mix.output, "dedup", kind)
        if marker is not None and (marker.get("_input") != ctx.get("inputs_digest")
                                   or outputs_intact(mix.output, marker.get("_outputs", {})) is not None):
            marker = None  # other inputs than when it ran, or an attribute file it wrote is damaged
        if marker is not None:
            results[kind] = {k: v for k, v in marker.items() if not k.startswith("_")}
            continue
        # against an index, options left out come from the index, not the defaults (DedupOptions.run_params)
        params: dict[str, Any] = cfg.run_params()
        attribute = params.pop("attribute", dedup_attribute(kind, cfg))
        pairs = [(s.path, io.join(mix.output, "attributes", attribute, s.rel)) for s in shards]
        raw = record.run(pairs, attribute, io.join(ctx["work"], "dedup", kind), **params)
        # timings and memory beside the marker, never in it: the manifest is built from markers
        io.write_text_atomic(io.join(mix.output, "_state", "dedup", "timing", kind + ".json"),
                             json.dumps(task_totals(raw), sort_keys=True, indent=1))
        stats = counts_only(raw)
        stats["attribute"] = attribute
        outputs = {io.relpath(o, mix.output): io.file_size(o) for _, o in pairs}
        write_marker(mix.output, "dedup", kind, {**stats, "_input": ctx.get("inputs_digest"), "_outputs": outputs})
        results[kind] = stats
    return results


STEP = Step("dedup", reads="documents", writes="attributes/<dedup attribute>/", run_global=run_dedup,
            when=lambda mix: bool(mix.dedup.configured()))
