"""A run is a declared list of steps. Each stage module declares one `STEP`; the run,
the manifest, `stats` and the report read these declarations, so adding a stage is one new
module in `stages/` and one entry in `stages.STEPS`.

Two kinds of step:
- a shard step runs `run_shard(shard, ctx) -> counters` once per input file, as tasks of the
  one task runtime (`runtime.map_shards`: done markers, retries, SPREAD placement, progress);
- a global step runs `run_global(mix, shards, ctx, progress) -> dict` once per run, for work
  that needs every shard (dedup's shuffles, the sampling decision); it submits its own rounds
  of tasks through the same runtime and records its own done marker.

`counters` names the per-shard numbers a shard step reports; the manifest sums them per
source under `steps.<name>`, and `stats` / the report print every declared step from there.
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Step:
    name: str
    reads: str  # what the step reads, for humans (`stats`, the report, --help)
    writes: str  # what it writes
    counters: tuple[str, ...] = ()  # per-shard counters summed per source in the manifest
    run_shard: Callable[[Any, dict], dict] | None = None
    run_global: Callable[[Any, list, dict, Any], dict] | None = None
    when: Callable[[Any], bool] = lambda mix: True  # does this mix need the step?
    num_gpus: Callable[[Any], float] = lambda mix: 0.0  # GPUs per shard task, from the mix

    def __post_init__(self) -> None:
        if (self.run_shard is None) == (self.run_global is None):
            raise ValueError(f"step {self.name}: give exactly one of run_shard and run_global")


def step_counters(step: Step, shards: list, stats: dict[str, dict]) -> dict[str, dict[str, int]]:
    """A shard step's declared counters summed per source."""
    out: dict[str, dict[str, int]] = {}
    for s in shards:
        r = stats.get(s.key, {})
        src = out.setdefault(s.source, {c: 0 for c in step.counters})
        for c in step.counters:
            v = r.get(c, 0)
            src[c] += int(v) if isinstance(v, (int, float)) else 0
    return out
