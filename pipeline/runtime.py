"""Ray runtime: start or join Ray, run one task per shard, done markers, progress.

A shard task writes its outputs under temporary names, renames them when complete, and only
then writes its done marker (`<output>/_state/<stage>/<shard>.json`, holding the shard's
statistics). A rerun skips shards whose marker exists, so a run killed at any point resumes
where it stopped. Ray retries a task whose worker died; because outputs only appear by
rename, a retried task never sees or leaves half-written files.
"""
from __future__ import annotations

import json
import os
from dataclasses import asdict, dataclass
from typing import Any, Callable

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from . import io


@dataclass(frozen=True)
class Shard:
    """One input file of one source. `rel` is its path relative to the data root; `index` its
    position among the source's files (sorted), used in output names (`part-<index>-*`)."""

    source: str
    index: int
    path: str
    rel: str

    @property
    def key(self) -> str:
        return self.rel


def init_ray(workers: int | None, address: str | None, quiet: bool = True) -> int:
    """Start an embedded local Ray (default) or join `address`. Returns the CPU count in use."""
    import ray

    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    os.environ.setdefault("RAY_ENABLE_UV_RUN_RUNTIME_ENV", "0")
    if ray.is_initialized():
        return int(ray.cluster_resources().get("CPU", 1))
    # Ray workers must import dolma_prep even where it is not installed (running from a
    # checkout); shipping the repo's parent on PYTHONPATH is enough for a local cluster.
    env = {"env_vars": {"RAYON_NUM_THREADS": "1", "TOKENIZERS_PARALLELISM": "false", "PYTHONWARNINGS": "ignore"}}
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=not quiet, logging_level="ERROR")
    else:
        n = workers or os.cpu_count() or 1
        # address="local": always a fresh embedded Ray, even if `ray start` runs on this machine
        ray.init(address="local", num_cpus=n, include_dashboard=False, object_store_memory=128 * 1024 * 1024,
                 runtime_env=env, log_to_driver=not quiet, logging_level="ERROR", configure_logging=True)
    return int(workers or ray.cluster_resources().get("CPU", 1))


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def marker_path(output: str, stage: str, key: str) -> str:
    return io.join(output, "_state", stage, key + ".json")


def read_marker(output: str, stage: str, key: str) -> dict | None:
    p = marker_path(output, stage, key)
    if not io.exists(p):
        return None
    return json.loads(io.read_text(p))


def write_marker(output: str, stage: str, key: str, stats: dict) -> None:
    io.write_text_atomic(marker_path(output, stage, key), json.dumps(stats, sort_keys=True, indent=1))


def _task(fn: Callable, shard: Shard, ctx: dict, stage: str) -> dict:
    stats = fn(shard, ctx)
    stats["node"] = _node_id()
    write_marker(ctx["output"], stage, shard.key, stats)
    return stats


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 (outside Ray)
        return "local"


def map_shards(stage: str, fn: Callable[[Shard, dict], dict], shards: list[Shard], ctx: dict,
               progress: Progress | None = None, max_in_flight: int | None = None) -> dict[str, dict]:
    """Run `fn(shard, ctx)` for every shard without a done marker, on Ray; return the stats of
    all shards (fresh and resumed), keyed by shard key, in shard order."""
    import ray

    results: dict[str, dict] = {}
    todo: list[Shard] = []
    for s in shards:
        m = read_marker(ctx["output"], stage, s.key)
        if m is not None:
            results[s.key] = m
        else:
            todo.append(s)
    docs = sum(int(r.get("documents_in", 0)) for r in results.values())
    task_id = progress.add_task(stage, total=len(shards), completed=len(results), docs=docs) if progress else None
    # SPREAD: shard tasks go to every node of a cluster, not packed onto the driver's node
    remote = ray.remote(num_cpus=1, max_retries=3, retry_exceptions=False, scheduling_strategy="SPREAD")(_task)
    limit = max_in_flight or max(1, int(ray.cluster_resources().get("CPU", 1)) * 2)
    pending: dict[Any, Shard] = {}
    queue = list(todo)
    while queue or pending:
        while queue and len(pending) < limit:
            s = queue.pop(0)
            pending[remote.remote(fn, s, ctx, stage)] = s
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            s = pending.pop(ref)
            results[s.key] = ray.get(ref)
            docs += int(results[s.key].get("documents_in", 0))
            if progress is not None:
                progress.update(task_id, advance=1, docs=docs)
    return {s.key: results[s.key] for s in shards}


def make_progress(enabled: bool = True) -> Progress:
    return Progress(TextColumn("[bold]{task.description:<10}"), BarColumn(), MofNCompleteColumn(),
                    TextColumn("shards"), TextColumn("{task.fields[docs]:>10,} docs"), TimeElapsedColumn(),
                    disable=not enabled, transient=False)


def shard_dict(s: Shard) -> dict:
    return asdict(s)
