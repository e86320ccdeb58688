"""A real two-node Ray cluster on loopback: `ray start --head` plus a second `ray start
--address` node, each with its own custom resource; the pipeline joins it with
--ray-address, tasks run on both nodes, and outputs equal the single-node run."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import run_cli, write_mix
from test_crash import tree_hashes

RAY = str(Path(sys.executable).parent / "ray")
ENV = {**os.environ, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _alive_nodes(address: str) -> list[dict]:
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR');"
            "print(json.dumps([n['Resources'] for n in ray.nodes() if n['Alive']]))" % address)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=120)
    except subprocess.TimeoutExpired:  # a loaded machine: the caller polls again
        return []
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else []


@pytest.fixture
def two_node_cluster(tmp_path):
    port = _free_port()
    address = f"127.0.0.1:{port}"
    common = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats", "--block"]
    procs = [subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
                               '--resources={"node_a": 1}', *common], env=ENV, start_new_session=True,
                              stdout=open(tmp_path / "head.log", "w"), stderr=subprocess.STDOUT)]
    try:
        deadline = time.time() + 240  # generous: CI machines may be loaded
        while time.time() < deadline and not _alive_nodes(address):
            time.sleep(1)
        procs.append(subprocess.Popen([RAY, "start", f"--address={address}", '--resources={"node_b": 1}', *common],
                                      env=ENV, start_new_session=True,
                                      stdout=open(tmp_path / "node.log", "w"), stderr=subprocess.STDOUT))
        while time.time() < deadline and len(_alive_nodes(address)) < 2:
            time.sleep(1)
        nodes = _alive_nodes(address)
        logs = "".join((tmp_path / f).read_text() for f in ("head.log", "node.log") if (tmp_path / f).exists())
        assert sorted(k for n in nodes for k in n if k.startswith("node_")) == ["node_a", "node_b"], (nodes, logs[-3000:])
        yield address
    finally:
        for p in procs[::-1]:
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        for p in procs[::-1]:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.mark.slow
def test_pipeline_on_two_nodes_equals_single_node(two_node_cluster, tmp_path):
    mix = write_mix(tmp_path / "mix.yaml", ["wiki", "flan", "c4", "reddit", "cc_en_head", "cc_en_tail"])
    single, multi = tmp_path / "single", tmp_path / "multi"
    run_cli("run", str(mix), "--output", str(single), "--workers", "2", "-q", check=True)
    run_cli("run", str(mix), "--output", str(multi), "--ray-address", two_node_cluster, "-q", check=True, env=ENV)
    assert tree_hashes(multi) == tree_hashes(single)
    nodes = set()
    for stage in ("tag", "select", "tokenize"):
        for m in (multi / "_state" / stage).rglob("*.json"):
            nodes.add(json.loads(m.read_text())["node"])
    assert len(nodes) == 2, f"tasks ran on {len(nodes)} node(s)"
