"""Shared test fixtures: the bundled sample, the CLI as a subprocess, the bundled tokenizer."""
from __future__ import annotations

import gzip
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "documents"
TOKENIZER = REPO / "pipeline" / "resources" / "allenai_gpt-neox-olmo-dolma-v1_5.json"
CLI = [sys.executable, "-m", "dolma_prep.pipeline.cli"]


def run_cli(*args: str, check: bool = False, timeout: int = 600, env: dict | None = None) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONWARNINGS": "ignore", **(env or {})}
    proc = subprocess.run([*CLI, *args], capture_output=True, text=True, timeout=timeout, env=full_env)
    if check and proc.returncode != 0:
        raise AssertionError(f"dolma-prep {' '.join(args)} exited {proc.returncode}\n{proc.stdout}\n{proc.stderr}")
    return proc


def write_docs(path: Path, docs: list, raw_lines: list[bytes] | None = None) -> Path:
    """Write a gzipped Dolma JSONL file; `raw_lines` are appended verbatim (for bad input)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wb") as f:
        for d in docs:
            f.write(json.dumps(d).encode() + b"\n")
        for raw in raw_lines or []:
            f.write(raw)
    return path


def read_gz_jsonl(path: Path) -> list[dict]:
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


@pytest.fixture
def sample_copy(tmp_path: Path) -> Path:
    """A private copy of the bundled sample's documents (tests may corrupt it)."""
    dst = tmp_path / "documents"
    shutil.copytree(SAMPLE, dst)
    return dst


def write_mix(path: Path, sources: list[str], extra: str = "", data_root: Path | None = None) -> Path:
    lines = [f"name: {path.stem}", "seed: 7", f"data_root: {data_root or SAMPLE}", "experiment: t",
             "taggers: [char_length_v1]", "dedup:", "  exact: {}", extra, "sources:"]
    lines += [f"  - {{name: {s}, documents: ['{s}/*.jsonl.gz']}}" for s in sources]
    path.write_text("\n".join(lines) + "\n")
    return path


# ---------------------------------------------------------------------------------------------
# Required means required: with DOLMA_PREP_REQUIRE_PEERS=1 (what `make test` sets) a skip of
# any kind (pytest.skip, skipif, importorskip, at collection or in a test) fails the run, with
# the skip's reason. Without it, skips stay skips (e.g. on a machine without the peers).
REQUIRE_PEERS = os.environ.get("DOLMA_PREP_REQUIRE_PEERS", "") not in ("", "0")


def _skip_reason(rep) -> str:
    lr = rep.longrepr
    if isinstance(lr, tuple) and len(lr) == 3:
        return f"{lr[2]} ({lr[0]}:{lr[1]})"
    return str(lr)


def _required(rep) -> None:
    if REQUIRE_PEERS and rep.skipped and not hasattr(rep, "wasxfail"):
        rep.outcome = "failed"
        rep.longrepr = f"DOLMA_PREP_REQUIRE_PEERS=1 and this was skipped: {_skip_reason(rep)}"


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    _required(outcome.get_result())


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    _required(outcome.get_result())


@pytest.fixture(scope="module")
def ray_session():
    """A local Ray for tests that call Ray code in-process (2 CPUs, a small object store, no
    dashboard); reused when one is already running. Modules ask for it with
    `pytest.mark.usefixtures("ray_session")` or by argument."""
    import ray

    started = False
    if not ray.is_initialized():
        ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2,
                 log_to_driver=False)
        started = True
    yield
    if started:
        ray.shutdown()
