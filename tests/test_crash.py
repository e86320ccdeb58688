"""Crash and resume: SIGKILL the driver (or a Ray worker) at seeded random points, rerun, and
require byte-identical outputs with no temporary files left behind."""
import hashlib
import os
import random
import signal
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, run_cli, write_mix

SOURCES = ["wiki", "flan", "c4", "reddit", "cc_en_head", "cc_en_tail"]
N_KILLS = 10


def tree_hashes(out: Path) -> dict[str, str]:
    """Hash of every output file; _state (done markers, which name the node) and _work
    (intermediate tables) are the resume machinery, not outputs; olmo_data.yaml names the
    output folder's own location."""
    return {str(p.relative_to(out)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(out.rglob("*"))
            if p.is_file() and p.relative_to(out).parts[0] not in ("_state", "_work", "olmo_data.yaml")}


def leftovers(out: Path) -> list[str]:
    return [str(p) for p in out.rglob("*") if ".tmp-" in p.name or p.name.endswith(".tmp")]


def _start(mix: Path, out: Path, workers: int = 2) -> subprocess.Popen:
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    return subprocess.Popen([*CLI, "run", str(mix), "--output", str(out), "--workers", str(workers), "-q"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)


def _kill_group(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver and the local Ray it started
    except ProcessLookupError:
        pass
    proc.wait()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    mix = write_mix(base / "mix.yaml", SOURCES)
    out = base / "ref"
    t0 = time.time()
    run_cli("run", str(mix), "--output", str(out), "--workers", "2", "-q", check=True)
    return mix, tree_hashes(out), time.time() - t0


@pytest.mark.slow
def test_driver_sigkill_at_random_points_then_resume(reference, tmp_path):
    mix, ref, duration = reference
    rng = random.Random(20261127)
    outcomes = []
    for i in range(N_KILLS):
        out = tmp_path / f"run{i}"
        delay = rng.uniform(0.5, duration)
        proc = _start(mix, out)
        time.sleep(delay)
        finished = proc.poll() is not None
        os.kill(proc.pid, signal.SIGKILL) if not finished else None
        _kill_group(proc)
        outcomes.append("finished" if finished else f"killed@{delay:.1f}s")
        run_cli("run", str(mix), "--output", str(out), "--workers", "2", "-q", check=True)
        assert tree_hashes(out) == ref, f"kill point {i} ({outcomes[-1]}): outputs differ after resume"
        assert leftovers(out) == [], f"kill point {i}: temporary files left behind"
    assert sum(o.startswith("killed") for o in outcomes) >= 8, outcomes


def _ray_task_workers(session_pid: int) -> list[int]:
    out = subprocess.run(["ps", "-eo", "pid,sid,args"], capture_output=True, text=True).stdout
    pids = []
    for line in out.splitlines()[1:]:
        pid, sid, args = line.strip().split(None, 2)
        if int(sid) == session_pid and args.startswith("ray::_call"):  # runtime._call: the body of every task
            pids.append(int(pid))
    return pids


@pytest.mark.slow
def test_worker_sigkill_is_retried_and_outputs_are_identical(reference, tmp_path):
    mix, ref, _ = reference
    killed = 0
    for i in range(2):
        out = tmp_path / f"w{i}"
        proc = _start(mix, out)
        deadline = time.time() + 60
        while time.time() < deadline and proc.poll() is None:
            busy = _ray_task_workers(proc.pid)
            if busy:
                os.kill(busy[0], signal.SIGKILL)
                killed += 1
                break
            time.sleep(0.05)
        rc = proc.wait(timeout=300)
        _kill_group(proc)
        assert rc == 0, proc.stderr.read().decode()
        assert tree_hashes(out) == ref
        assert leftovers(out) == []
    assert killed == 2
