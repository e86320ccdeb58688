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
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, Literal, cast

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
    ident: str = ""  # what the input file was when the run saw it (`input_identity`)

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
    # one task = one core: the tokenizer engines' own thread pools are held to one thread
    env_vars = {
        "RAYON_NUM_THREADS": "1",
        "TOKENIZERS_PARALLELISM": "false",
        "PYTHONWARNINGS": "ignore",
        "FASTOKENS_BPE_THREADS": "1",
        "POLARS_MAX_THREADS": "1",
    }
    # the driver's own settings (the tokenizer engine, `DOLMA_PREP_*`) hold in every worker
    env_vars.update({k: v for k, v in os.environ.items() if k.startswith("DOLMA_PREP_")})
    env = {"env_vars": env_vars}
    # ray.init annotates logging_level as int, but takes a level name too: its own default is
    # the string "info" (ray_constants.LOGGER_LEVEL), which setup_logger turns into a level
    if address:
        ray.init(address=address, runtime_env=env, log_to_driver=not quiet, logging_level="ERROR")  # type: ignore[arg-type]
    else:
        n = workers or os.cpu_count() or 1
        # address="local": always a fresh embedded Ray, even if `ray start` runs on this machine
        ray.init(
            address="local",
            num_cpus=n,
            include_dashboard=False,
            object_store_memory=128 * 1024 * 1024,
            runtime_env=env,
            log_to_driver=not quiet,
            logging_level="ERROR",  # type: ignore[arg-type]
            configure_logging=True,
        )
    return int(workers or ray.cluster_resources().get("CPU", 1))


def shutdown_ray() -> None:
    import ray

    if ray.is_initialized():
        ray.shutdown()


def input_identity(path: str) -> str:
    """What a shard's input file is, cheaply: size and modification time (nanoseconds) on a
    local disk, size and ETag (else modification time) on object storage. A done marker records
    it; a file that changed since (edited, appended to, replaced by a copy) no longer matches,
    and its shard runs again. Not a content hash: reading every input on every rerun would cost
    as much as the tag step."""
    if path.startswith(io.HF_PREFIX):
        return "hf:" + path
    if not io.is_remote(path):
        st = os.stat(path)
        return f"{st.st_size}:{st.st_mtime_ns}"
    info = io.fs_of(path).info(path)
    tag = info.get("ETag") or info.get("etag") or info.get("LastModified") or info.get("mtime") or ""
    return f"{info.get('size')}:{str(tag).strip(chr(34))}"


def fingerprint(*parts: Any) -> str:
    """A short stable digest of JSON-able parts (what a marker's result was computed from)."""
    import hashlib

    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def marker_path(output: str, stage: str, key: str) -> str:
    return io.join(output, "_state", stage, key + ".json")


def read_marker(output: str, stage: str, key: str) -> dict | None:
    p = marker_path(output, stage, key)
    if not io.exists(p):
        return None
    marker: dict = json.loads(io.read_text(p))
    return marker


def write_marker(output: str, stage: str, key: str, stats: dict) -> None:
    io.write_text_atomic(marker_path(output, stage, key), json.dumps(stats, sort_keys=True, indent=1))


def reset_peak_rss() -> bool:
    """Restart this process's peak-RSS count (Linux: writing 5 to /proc/self/clear_refs resets
    VmHWM), so that a task's `_rss_mb` is its own peak, not that of an earlier task the same
    Ray worker ran. False where the kernel does not allow it (the peak is then the process's)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def release_free_memory() -> None:
    """Hand the heap's free pages back to the OS (glibc `malloc_trim`) after a task, so that a
    long-lived Ray worker does not keep an earlier task's peak resident (and the next task's
    `_rss_mb` starts from what is live). A no-op where glibc is absent."""
    global _TRIM
    if _TRIM is None:
        try:
            import ctypes

            _TRIM = ctypes.CDLL("libc.so.6").malloc_trim
        except (OSError, AttributeError):
            _TRIM = False
    if _TRIM:
        _TRIM(0)


_TRIM: Callable[[int], object] | Literal[False] | None = None  # None: not looked up yet


def _status_mb(field: str) -> float | None:
    """One memory line of /proc/self/status (`VmRSS`, `VmHWM`) in MiB; None where /proc is absent."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def current_rss_mb() -> float:
    """This process's resident set size now, in MiB (0.0 where /proc is absent)."""
    return _status_mb("VmRSS") or 0.0


def peak_rss_mb() -> float:
    """Peak resident set size of this process since `reset_peak_rss` (or its start), in MiB
    (VmHWM where /proc exists: `ru_maxrss` survives exec on Linux, so a process started from
    a large parent would report the parent's size)."""
    peak = _status_mb("VmHWM")
    if peak is not None:
        return peak
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _node_id() -> str:
    try:
        import ray

        return ray.get_runtime_context().get_node_id()
    except Exception:  # noqa: BLE001 (outside Ray)
        return "local"


def _recorded_outputs(root: str, written: list[str]) -> dict[str, int]:
    """The files a task committed under `root` (outside `_state/` and `_work/`, whose tables
    later steps delete by design), relative to it, with their sizes: what a rerun and `stats`
    check before trusting the task's marker."""
    out: dict[str, int] = {}
    base = root.rstrip("/") + "/"
    for p in written:
        if not p.startswith(base):
            continue
        rel = p[len(base) :]
        if rel.startswith(("_state/", "_work/")):
            continue
        out[rel] = io.file_size(p)
    return dict(sorted(out.items()))


def outputs_intact(root: str, outputs: dict[str, int]) -> str | None:
    """None when every file a marker recorded is there with its size, else what is wrong."""
    if not outputs:
        return None
    fs = io.fs_of(root)
    for rel, size in outputs.items():
        path = io.join(root, rel)
        try:
            have = int(fs.size(path))
        except FileNotFoundError:
            return f"{rel}: missing"
        if have != size:
            return f"{rel}: {have} bytes, {size} when written"
    return None


def _call(
    fn: Callable,
    args: tuple,
    kwargs: dict,
    marker: str | None,
    policy: io.WritePolicy | None = None,
    input_fp: str | None = None,
    root: str | None = None,
) -> dict:
    """The body of every task: run under the driver's write policy, add the task's own
    statistics, write the done marker (with what the result was computed from, `_input`, and
    the files it wrote, `_outputs`)."""
    reset_peak_rss()
    rss_start = current_rss_mb()
    start, cpu = time.perf_counter(), time.process_time()
    old = io.set_write_policy(policy)  # the task's writes and its marker's
    try:
        io.begin_task_writes()
        try:
            out = dict(fn(*args, **kwargs) or {})
        finally:
            written = io.end_task_writes()
        if marker is not None:
            if input_fp is not None:
                out["_input"] = input_fp
            if root is not None:
                out["_outputs"] = _recorded_outputs(root, written)
        out["node"] = _node_id()
        out["_rss_mb"] = round(peak_rss_mb(), 1)
        out["_rss_start_mb"] = round(rss_start, 1)  # what the worker held before (Ray, modules, caches)
        out["_pid"] = os.getpid()
        out["_seconds"] = round(time.perf_counter() - start, 3)
        out["_cpu_s"] = round(time.process_time() - cpu, 3)  # this process's CPU (its threads too)
        release_free_memory()
        if marker is not None:
            io.write_text_atomic(marker, json.dumps(out, sort_keys=True, indent=1))
    finally:
        io.set_write_policy(old)
    return out


# Errors worth another try on another worker: flaky object storage and networks. Everything
# else (bad input, a bug) fails the run at once with its message. A worker that dies (killed,
# out of memory, its node lost) is always retried by Ray itself.
RETRY_ON = (ConnectionError, TimeoutError, OSError)
MAX_RETRIES = 3


def run_tasks(
    name: str,
    fn: Callable[..., dict | None],
    calls: Sequence[tuple],
    *,
    kwargs: dict | None = None,
    state: str | None = None,
    keys: Sequence[str] | None = None,
    progress: Progress | None = None,
    max_in_flight: int | None = None,
    num_cpus: float = 1,
    num_gpus: float = 0,
    fingerprints: Sequence[str] | None = None,
) -> list[dict]:
    """The one way work runs: `fn(*call, **kwargs)` for each call as a Ray task; the results,
    in call order (never in completion order, so what a step computes cannot depend on
    scheduling).

    - placement: SPREAD, so a cluster's nodes all get work, not only the driver's;
    - retries: a task whose worker or node died is rerun (MAX_RETRIES), and so is one that
      raised a storage or network error (RETRY_ON); outputs appear only by atomic rename, so a
      rerun never sees half-written files;
    - done markers: with `state` (a folder, any storage) and one key per call, a finished task
      writes `<state>/<name>/<key>.json` holding its result, and a later run returns the
      recorded result instead of running the task again (resume), unless the marker was
      computed from other inputs (`fingerprints`, one per call: the shard's input identity and
      what the steps before it decided) or a file it wrote is missing or has another size
      (a damaged output is re-derived, not trusted);
    - the write policy of the driver (`io.set_write_policy`) holds in every task: no write
      outside the output and scratch, none onto the inputs;
    - per-task statistics added to each result: `node`, `_rss_mb` (the worker's peak memory
      during this task), `_rss_start_mb` (its memory when the task began),
      `_pid`, `_seconds` (wall), `_cpu_s` (the worker's CPU time);
    - progress: one bar per call of `run_tasks`, documents counted from `documents_in`.

    `fn` is a module-level function returning a small dict: large data never travels through
    Ray, tasks read and write files through `core.io`.
    """
    import ray

    if keys is not None and len(keys) != len(calls):
        raise ValueError("run_tasks: one key per call")
    kwargs = kwargs or {}
    results: list[dict | None] = [None] * len(calls)
    todo: list[int] = []
    if fingerprints is not None and len(fingerprints) != len(calls):
        raise ValueError("run_tasks: one fingerprint per call")
    for i in range(len(calls)):
        marker = read_marker(state, name, keys[i]) if state is not None and keys is not None else None
        if marker is not None and fingerprints is not None and marker.get("_input") != fingerprints[i]:
            marker = None  # computed from another input (or by a version that did not record it)
        # (a marker is only read with a state folder)
        if marker is not None and state is not None and outputs_intact(state, marker.get("_outputs", {})) is not None:
            marker = None  # a file it wrote is gone or changed: write it again
        if marker is not None:
            results[i] = marker
        else:
            todo.append(i)
    docs = sum(int(r.get("documents_in", 0)) for r in results if r)
    progress = progress or _PROGRESS
    bar = progress.add_task(name, total=len(calls), completed=len(calls) - len(todo), docs=docs) if progress else None
    remote = _remote(num_cpus, num_gpus)
    policy = io.current_write_policy()
    limit = max_in_flight or max(1, int(ray.cluster_resources().get("CPU", 1)) * 2)
    pending: dict[Any, int] = {}
    queue = list(todo)
    while queue or pending:
        while queue and len(pending) < limit:
            i = queue.pop(0)
            marker_file = marker_path(state, name, keys[i]) if state is not None and keys is not None else None
            fp = fingerprints[i] if fingerprints is not None else None
            pending[
                remote.remote(fn, tuple(calls[i]), kwargs, marker_file, policy, fp, state if marker_file else None)
            ] = i
        done, _ = ray.wait(list(pending), num_returns=1)
        for ref in done:
            i = pending.pop(ref)
            result: dict = ray.get(ref)
            results[i] = result
            docs += int(result.get("documents_in", 0))
            if progress is not None and bar is not None:  # (a bar exactly when a progress display)
                progress.update(bar, advance=1, docs=docs)
    return cast(list[dict], results)  # every slot is filled by now: from its marker or its task


_REMOTES: dict[tuple[float, float], Any] = {}


def _remote(num_cpus: float, num_gpus: float = 0) -> Any:
    """`_call` as a Ray remote function with these resources (one per resource pair)."""
    import ray

    key = (num_cpus, num_gpus)
    if key not in _REMOTES:
        # ray.remote's overload annotates retry_exceptions as bool; it takes a list of exception
        # types too (its docstring; RemoteFunction._remote turns a list into an allow-list)
        _REMOTES[key] = ray.remote(  # type: ignore[call-overload]
            num_cpus=num_cpus,
            num_gpus=num_gpus,
            max_retries=MAX_RETRIES,
            retry_exceptions=list(RETRY_ON),
            scheduling_strategy="SPREAD",
        )(_call)
    return _REMOTES[key]


def map_shards(
    stage: str,
    fn: Callable[[Shard, dict], dict],
    shards: list[Shard],
    ctx: dict,
    progress: Progress | None = None,
    max_in_flight: int | None = None,
    num_gpus: float = 0,
    upstream: str = "",
) -> dict[str, dict]:
    """`fn(shard, ctx)` for every shard, with done markers under the run's output; the stats of
    all shards (fresh and resumed), keyed by shard key, in shard order. A marker counts only
    for the same shard input (`Shard.ident`, its place among the source's files) and the same
    `upstream` (a digest of what the global steps before this one decided)."""
    fps = [fingerprint(stage, s.source, s.index, s.rel, s.ident, upstream) for s in shards]
    res = run_tasks(
        stage,
        fn,
        [(s, ctx) for s in shards],
        state=ctx["output"],
        keys=[s.key for s in shards],
        progress=progress,
        max_in_flight=max_in_flight,
        num_gpus=num_gpus,
        fingerprints=fps,
    )
    return {s.key: r for s, r in zip(shards, res)}


def summarise(results: list[dict]) -> dict:
    """Peak worker memory, busy time, CPU time and the most memory one task added to its
    worker, of a round of tasks, from their results."""
    if not results:
        return {
            "tasks": 0,
            "peak_worker_rss_mb": 0.0,
            "task_seconds": 0.0,
            "task_cpu_s": 0.0,
            "task_rss_growth_mb": 0.0,
        }
    return {
        "tasks": len(results),
        "peak_worker_rss_mb": round(max(r["_rss_mb"] for r in results), 1),
        "task_seconds": round(sum(r["_seconds"] for r in results), 3),
        "task_cpu_s": round(sum(r.get("_cpu_s", 0.0) for r in results), 3),
        "task_rss_growth_mb": round(max(r["_rss_mb"] - r.get("_rss_start_mb", r["_rss_mb"]) for r in results), 1),
    }


def task_rounds(stats: object, prefix: str = "") -> dict[str, dict]:
    """Every round of tasks summarised (`summarise`) anywhere in a global step's nested
    statistics, by its dotted path (`stages.keys`, `signatures`, ...)."""
    if not isinstance(stats, dict):
        return {}
    if "tasks" in stats and "task_seconds" in stats and "peak_worker_rss_mb" in stats:
        return {prefix or "tasks": stats}
    out: dict[str, dict] = {}
    for k, v in stats.items():
        out.update(task_rounds(v, f"{prefix}.{k}" if prefix else str(k)))
    return out


def task_totals(stats: object) -> dict:
    """A global step's rounds of tasks added up: tasks, task-seconds (`_seconds`), task
    CPU-seconds (`_cpu_s`), peak worker memory (`_rss_mb`), and each round's figures."""
    rounds = task_rounds(stats)
    return {
        "tasks": sum(r["tasks"] for r in rounds.values()),
        "_seconds": round(sum(r["task_seconds"] for r in rounds.values()), 3),
        "_cpu_s": round(sum(r.get("task_cpu_s", 0.0) for r in rounds.values()), 3),
        "_rss_mb": max([r["peak_worker_rss_mb"] for r in rounds.values()] or [0.0]),
        "_rss_growth_mb": max([r.get("task_rss_growth_mb", 0.0) for r in rounds.values()] or [0.0]),
        "rounds": rounds,
    }


def default_workers() -> int:
    import ray

    return max(1, int(ray.cluster_resources().get("CPU", 1)))


_PROGRESS: Progress | None = None  # the bars of the command now running; every run_tasks adds one


def make_progress(enabled: bool = True) -> Progress:
    """The progress display of a command: one bar per round of tasks (shard steps, dedup rounds,
    connected-components iterations), tasks done / total, documents, elapsed time."""
    global _PROGRESS
    _PROGRESS = Progress(
        TextColumn("[bold]{task.description:<24}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tasks"),
        TextColumn("{task.fields[docs]:>10,} docs"),
        TimeElapsedColumn(),
        disable=not enabled,
        transient=False,
    )
    return _PROGRESS


def shard_dict(s: Shard) -> dict:
    return asdict(s)
