"""A real two-node Ray cluster whose nodes share nothing but object storage.

- storage: moto's ThreadedMotoServer, a real S3 API on loopback, holds the documents (jsonl.gz,
  jsonl.zst and parquet sources), the evaluation sets, the fastText quality model trained here,
  every output and every intermediate table;
- node A: `ray start --head` (the driver's machine);
- node B: `ray start --address` inside its own mount namespace (`unshare --mount`, we are root),
  with private empty tmpfs mounts over the test's temporary folders (the mix file, the model's
  local copy, the single-node output) and the system temp folder: whatever a task on node B
  would read from or write to the driver's disk, it cannot find there, and nothing it leaves on
  its own disk is seen by anyone else;
- the mix runs every step of general.yaml: a fastText classifier tagger, exact + paragraph dedup
  with span deletion, MinHash, decontamination, token targets per source;
- the outputs must be byte-identical to a single-node local run of the same mix, and both nodes
  must have run shard tasks (their node ids are in the done markers);
- a second run kills node B (its whole process group, started by this test; never `ray stop`,
  which would end every Ray process on the machine) while the run is under way, and the run
  still completes with the same bytes.
"""
import gzip
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest
from conftest import REPO, SAMPLE, run_cli
from test_crash import tree_hashes

pytestmark = pytest.mark.slow

s3fs = pytest.importorskip("s3fs")  # the s3 extra, installed by `make test`
moto_server = pytest.importorskip("moto.server")

RAY = str(Path(sys.executable).parent / "ray")
SECRET = "cluster-secret-9d3e"
SOURCES = {"cc_en_head": "jsonl.gz", "cc_en_middle": "jsonl.gz", "cc_en_tail": "jsonl.gz", "wiki": "jsonl.zst", "flan": "parquet", "c4": "jsonl.gz", "reddit": "jsonl.gz",
           "stackexchange": "jsonl.gz"}
EVAL = REPO / "tests" / "fixtures" / "dedup" / "eval"

MIX = """name: cluster
seed: 5
experiment: cl
taggers:
  - char_length_v1
  - {name: cc_multi_bin, experiment: cc_multi_bin, options: {model_path: s3://cluster-bucket/models/quality.bin}}
dedup:
  exact: {attribute: exact_duplicates, key: text}
  paragraphs: {attribute: bff_duplicate_paragraph_spans, ngram_length: 13, overlap_threshold: 0.5}
  minhash: {attribute: minhash_duplicates}
  decontaminate: {attribute: decontamination_spans, eval_sets: ["s3://cluster-bucket/eval/*.jsonl.gz"]}
tokenizer: {path: bundled, eos_token_id: 50279, pad_token_id: 1, dtype: auto}
sources:
  - name: cc
    documents: ["cc_en_head/*.jsonl.gz", "cc_en_middle/*.jsonl.gz", "cc_en_tail/*.jsonl.gz"]
    tokens: 20000            # token targets below what each source holds: sampling subsamples
    filters:
      include: ["(.attributes.cc_multi_bin__cc_multi_bin__hq[0][-1]) > 0.5"]
      exclude:
        - "((((.attributes.bff_duplicate_paragraph_spans // []) | map(.[2] * (.[1] - .[0])) | add) // 0) / ([(.text | length), 1] | max)) > 0.3"
    span_replacement:
      - {attribute: bff_duplicate_paragraph_spans, min_score: 0.5, replacement: ""}
  - {name: wiki, documents: ["wiki/*.jsonl.zst"], tokens: 30000}
  - {name: flan, documents: ["flan/*.parquet"], tokens: 800}
  - {name: c4, documents: ["c4/*.jsonl.gz"], tokens: 20000}
  - {name: reddit, documents: ["reddit/*.jsonl.gz"], tokens: 5000}
  - {name: stackexchange, documents: ["stackexchange/*.jsonl.gz"], tokens: 25000}
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_env(tmp_path_factory):
    port = _free_port()
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint}
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret=SECRET)
    fs.mkdir("cluster-bucket")
    work = tmp_path_factory.mktemp("upload")
    _upload_inputs(fs, work)
    yield fs, env
    server.stop()


def _upload_inputs(fs, work: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import zstandard

    from dolma_prep.taggers.train_classifier import train_fasttext

    for src, fmt in SOURCES.items():
        for f in sorted((SAMPLE / src).glob("*.jsonl.gz")):
            stem = f.name[: -len(".jsonl.gz")]
            if fmt == "jsonl.gz":
                fs.put(str(f), f"cluster-bucket/data/documents/{src}/{f.name}")
                continue
            raw = gzip.decompress(f.read_bytes())
            local = work / f"{src}-{stem}.{fmt}"
            if fmt == "jsonl.zst":
                local.write_bytes(zstandard.ZstdCompressor(level=3).compress(raw))
            else:
                rows = [json.loads(x) for x in raw.decode().splitlines()]
                pq.write_table(pa.Table.from_pylist([{k: r[k] for k in ("id", "text", "source")} for r in rows]), local)
            fs.put(str(local), f"cluster-bucket/data/documents/{src}/{stem}.{fmt}")
    for f in sorted(EVAL.glob("*.jsonl.gz")):
        fs.put(str(f), f"cluster-bucket/eval/{f.name}")
    docs = [json.loads(x) for p in sorted(SAMPLE.glob("*/*.jsonl.gz")) for x in gzip.decompress(p.read_bytes()).splitlines()]
    quality = [("hq" if d["source"] in ("wiki", "pes2o") else "lq", " ".join(d["text"].split()[:100]))
               for d in docs if d["source"] in ("wiki", "pes2o", "cc_en_tail", "cc_en_middle")]
    train_fasttext(quality, str(work / "quality.bin"), 1, {"dim": 8, "bucket": 5000, "epoch": 10})
    fs.put(str(work / "quality.bin"), "cluster-bucket/models/quality.bin")


def _ray_env(s3: dict) -> dict:
    return {**os.environ, **s3, "RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0",
            # a killed node is declared dead after ~3 s instead of ~30 s
            "RAY_health_check_period_ms": "500", "RAY_health_check_timeout_ms": "500",
            "RAY_health_check_failure_threshold": "4"}


def _alive_nodes(address: str, env: dict) -> list[dict]:
    code = ("import json, ray; ray.init(address=%r, logging_level='ERROR');"
            "print(json.dumps([n['Resources'] for n in ray.nodes() if n['Alive']]))" % address)
    try:
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    except subprocess.TimeoutExpired:  # a loaded machine: the caller polls again
        return []
    return json.loads(proc.stdout.strip().splitlines()[-1]) if proc.returncode == 0 else []


def _hidden_paths(basetemp: Path) -> list[str]:
    """What node B must not see: the test's temporary folders and, unless the checkout itself
    lives there, the system temp folder (where an intermediate table on the driver's disk would
    go)."""
    tmp = os.path.realpath(tempfile.gettempdir())
    inside = lambda p: os.path.realpath(p).startswith(tmp + os.sep)  # noqa: E731
    if inside(REPO) or inside(sys.prefix):  # the checkout is in the temp folder: hide only the test's part
        return [str(basetemp)]
    return [tmp] if inside(basetemp) else [tmp, str(basetemp)]


class Cluster:
    def __init__(self, env: dict, logs: Path, hidden: list[str]):
        self.env, self.logs, self.hidden = env, logs, hidden
        self.address = f"127.0.0.1:{_free_port()}"
        self.common = ["--num-cpus=1", "--object-store-memory=80000000", "--disable-usage-stats", "--block"]
        self.head = self.node_b = None

    def start(self) -> None:
        port = self.address.split(":")[1]
        self.head = subprocess.Popen([RAY, "start", "--head", f"--port={port}", "--include-dashboard=false",
                                      '--resources={"node_a": 1}', *self.common], env=self.env, start_new_session=True,
                                     stdout=open(self.logs / "head.log", "w"), stderr=subprocess.STDOUT)
        deadline = time.time() + 240  # generous: CI machines may be loaded
        while time.time() < deadline and not _alive_nodes(self.address, self.env):
            time.sleep(1)
        mounts = " && ".join(f"mount -t tmpfs tmpfs {h}" for h in self.hidden)
        ray_cmd = " ".join([RAY, "start", f"--address={self.address}", "'--resources={\"node_b\": 1}'", *self.common])
        # check the isolation before Ray starts: the hidden folders must be empty in node B's namespace
        probe = " && ".join(f'test -z "$(ls -A {h})"' for h in self.hidden)
        self.node_b = subprocess.Popen(
            ["unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
             f"{mounts} && {probe} && echo isolated && exec {ray_cmd}"],
            env=self.env, start_new_session=True, stdout=open(self.logs / "node_b.log", "w"), stderr=subprocess.STDOUT)
        while time.time() < deadline and len(_alive_nodes(self.address, self.env)) < 2:
            time.sleep(1)
        nodes = _alive_nodes(self.address, self.env)
        assert sorted(k for n in nodes for k in n if k.startswith("node_")) == ["node_a", "node_b"], \
            (nodes, self.log_tail())
        assert (self.logs / "node_b.log").read_text().startswith("isolated"), self.log_tail()

    def log_tail(self) -> str:
        return "".join((self.logs / f).read_text()[-2000:] for f in ("head.log", "node_b.log") if (self.logs / f).exists())

    def kill_node_b(self) -> None:
        os.killpg(self.node_b.pid, signal.SIGKILL)
        self.node_b.wait(timeout=60)

    def stop(self) -> None:
        for p in (self.node_b, self.head):
            if p is None:
                continue
            try:
                os.killpg(p.pid, signal.SIGTERM)
            except ProcessLookupError:
                continue
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


@pytest.fixture
def cluster(s3_env, tmp_path, tmp_path_factory):
    _, s3 = s3_env
    c = Cluster(_ray_env(s3), tmp_path, _hidden_paths(tmp_path_factory.getbasetemp()))
    try:
        c.start()
        yield c
    finally:
        c.stop()


@pytest.fixture(scope="module")
def single_node(s3_env, tmp_path_factory):
    """The reference: the same mix on one local Ray node, data on S3, outputs on local disk."""
    _, s3 = s3_env
    d = tmp_path_factory.mktemp("single")
    (d / "mix.yaml").write_text(MIX)
    proc = run_cli("run", str(d / "mix.yaml"), "--data-root", "s3://cluster-bucket/data/documents", "--output",
                   str(d / "out"), "--workers", "2", "-q", env=s3, timeout=1200)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:]
    hashes = tree_hashes(d / "out")
    manifest = json.loads((d / "out" / "manifest.json").read_text())
    # the mix exercised what it claims: every step ran and each one changed something
    assert [s["step"] for s in manifest["steps"]] == ["tag", "dedup", "select", "count", "sample", "tokenize"]
    assert manifest["dedup"]["exact"]["duplicates"] > 0
    assert manifest["dedup"]["paragraphs"]["duplicate_paragraphs"] > 0
    assert manifest["dedup"]["minhash"]["duplicates"] > 0
    assert manifest["dedup"]["decontaminate"]["contaminated_documents"] > 0
    assert manifest["sources"]["cc"]["stages"]["filtered"]["removed"] > 0
    assert manifest["sampling"]["mode"] == "tokens"
    assert all(0 < src["sampling"]["threshold"] < 1 for src in manifest["sources"].values())
    assert {f["path"].split("/")[1] for f in manifest["outputs"]["tokens"]} == \
        {"cc", "wiki", "flan", "c4", "reddit", "stackexchange"}
    assert any(k.endswith(".jsonl.zst") for k in hashes) and any(".parquet" in k for k in hashes)
    return hashes


def _download(fs, url: str, dst: Path) -> dict:
    fs.invalidate_cache()
    fs.get(url.removeprefix("s3://") + "/", str(dst), recursive=True)
    return tree_hashes(dst)


def _nodes_in_markers(fs, url: str) -> set[str]:
    nodes = set()
    for step in ("tag", "select", "tokenize"):
        for m in fs.glob(url.removeprefix("s3://") + f"/_state/{step}/**/*.json"):
            nodes.add(json.loads(fs.cat(m))["node"])
    return nodes


def test_cluster_sharing_only_object_storage_equals_single_node(cluster, s3_env, single_node, tmp_path):
    fs, s3 = s3_env
    (tmp_path / "mix.yaml").write_text(MIX)
    out = "s3://cluster-bucket/runs/cluster"
    proc = run_cli("run", str(tmp_path / "mix.yaml"), "--data-root", "s3://cluster-bucket/data/documents", "--output", out,
                   "--ray-address", cluster.address, "-q", env=cluster.env, timeout=1500)
    assert proc.returncode == 0, proc.stdout + proc.stderr[-5000:] + cluster.log_tail()
    assert _download(fs, out, tmp_path / "got") == single_node
    assert len(_nodes_in_markers(fs, out)) == 2, "shard tasks did not run on both nodes"
    assert not [p for p in fs.find("cluster-bucket/runs/cluster") if ".tmp-" in p]
    assert not fs.exists("cluster-bucket/runs/cluster/_work/dedup"), "dedup left its intermediate tables behind"


def test_cluster_survives_losing_a_node_mid_run(cluster, s3_env, single_node, tmp_path):
    fs, s3 = s3_env
    (tmp_path / "mix.yaml").write_text(MIX)
    out = "s3://cluster-bucket/runs/cluster-kill"
    env = {**os.environ, "PYTHONWARNINGS": "ignore", "RAY_DEDUP_LOGS": "0", **cluster.env}
    cmd = [sys.executable, "-m", "dolma_prep.pipeline.cli", "run", str(tmp_path / "mix.yaml"), "--data-root",
           "s3://cluster-bucket/data/documents", "--output", out, "--ray-address", cluster.address, "-q"]
    with open(tmp_path / "run.log", "w") as log:
        run = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
        try:
            # kill node B once the run is under way: after the first tagged shard, mid-tag
            deadline = time.time() + 600
            while time.time() < deadline and run.poll() is None:
                fs.invalidate_cache()
                if fs.glob("cluster-bucket/runs/cluster-kill/_state/tag/**/*.json"):
                    break
                time.sleep(0.5)
            assert run.poll() is None, "the run ended before node B could be killed: " + (tmp_path / "run.log").read_text()[-3000:]
            cluster.kill_node_b()
            rc = run.wait(timeout=1500)
        finally:
            if run.poll() is None:
                run.kill()
    assert rc == 0, (tmp_path / "run.log").read_text()[-5000:] + cluster.log_tail()
    assert len(_alive_nodes(cluster.address, cluster.env)) == 1
    assert _download(fs, out, tmp_path / "got") == single_node
