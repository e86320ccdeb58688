"""Running dedup work as Ray tasks, and measuring it.

The caller initialises Ray; the dedup entry functions only submit tasks. `run_tasks` keeps at
most `workers` tasks in flight and returns results in submission order, so that what a stage
computes never depends on scheduling. Every task reports the peak resident memory of the worker
process that ran it (VmHWM), which is how the memory budget is checked.
"""

from __future__ import annotations

import os
import resource
import time
from typing import Any, Callable, Sequence

_REMOTES: dict[Callable, Any] = {}


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB.

    VmHWM where /proc exists: `ru_maxrss` survives exec on Linux, so a process started from a
    large parent would report the parent's size."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _call(fn: Callable, args: tuple, kwargs: dict) -> dict:
    start = time.perf_counter()
    out = fn(*args, **kwargs)
    out = dict(out or {})
    out["_rss_mb"] = peak_rss_mb()
    out["_pid"] = os.getpid()
    out["_seconds"] = time.perf_counter() - start
    return out


def default_workers() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


def run_tasks(
    fn: Callable[..., dict | None],
    calls: Sequence[tuple],
    workers: int | None = None,
    kwargs: dict | None = None,
) -> list[dict]:
    """Run fn(*args, **kwargs) for each args in `calls` as Ray tasks; results in input order.

    `fn` must be a module-level function returning a small dict (or None). Large data never
    travels through Ray here: tasks read and write files under the stage's work directory.
    """
    import ray

    if not calls:
        return []
    workers = workers or default_workers()
    remote = _REMOTES.get(_call)
    if remote is None:
        remote = ray.remote(num_cpus=1, max_retries=2)(_call)
        _REMOTES[_call] = remote
    kwargs = kwargs or {}
    results: list[Any] = [None] * len(calls)
    in_flight: dict[Any, int] = {}
    next_i = 0
    while next_i < len(calls) or in_flight:
        while next_i < len(calls) and len(in_flight) < workers:
            in_flight[remote.remote(fn, tuple(calls[next_i]), kwargs)] = next_i
            next_i += 1
        done, _ = ray.wait(list(in_flight), num_returns=1)
        for ref in done:
            results[in_flight.pop(ref)] = ray.get(ref)
    return results


def summarise(results: list[dict]) -> dict:
    """Peak worker memory and busy time of a stage, from its task results."""
    if not results:
        return {"tasks": 0, "peak_worker_rss_mb": 0.0, "task_seconds": 0.0}
    return {
        "tasks": len(results),
        "peak_worker_rss_mb": round(max(r["_rss_mb"] for r in results), 1),
        "task_seconds": round(sum(r["_seconds"] for r in results), 3),
    }
