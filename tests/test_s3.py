"""Cloud storage through a real S3 API: moto's ThreadedMotoServer on loopback serves the S3
HTTP API; documents are read from and every output written to s3:// URLs through fsspec
(s3fs), the code path users use, and the result equals the local run."""
import json
import os
import socket

import pytest
from conftest import SAMPLE, run_cli, write_mix
from test_crash import tree_hashes

s3fs = pytest.importorskip("s3fs")  # part of the s3 extra that `make test` installs
moto_server = pytest.importorskip("moto.server")

SECRET = "not-a-real-secret-4f1c2b"
SOURCES = ["wiki", "flan", "c4", "cc_en_head", "cc_en_tail"]


@pytest.fixture(scope="module")
def s3(tmp_path_factory):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": SECRET, "AWS_DEFAULT_REGION": "us-east-1",
           "AWS_ENDPOINT_URL": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint}
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret=SECRET)
    fs.mkdir("bucket")
    for src in SOURCES:
        for f in sorted((SAMPLE / src).glob("*.jsonl.gz")):
            fs.put(str(f), f"bucket/data/documents/{src}/{f.name}")
    yield fs, env
    server.stop()
    for k, v in old.items():
        os.environ.pop(k) if v is None else os.environ.__setitem__(k, v)


@pytest.mark.slow
def test_run_from_and_to_s3_equals_local(s3, tmp_path):
    fs, env = s3
    mix = write_mix(tmp_path / "mix.yaml", SOURCES)
    local = tmp_path / "local"
    run_cli("run", str(mix), "--output", str(local), "--workers", "2", "-q", check=True)
    proc = run_cli("run", str(mix), "--data-root", "s3://bucket/data/documents", "--output", "s3://bucket/runs/r1",
                   "--workers", "2", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    fs.invalidate_cache()
    remote = tmp_path / "remote"
    fs.get("bucket/runs/r1/", str(remote), recursive=True)
    assert tree_hashes(remote) == tree_hashes(local)
    assert not [p for p in fs.find("bucket/runs/r1") if ".tmp-" in p]
    stats = run_cli("stats", "s3://bucket/runs/r1", "--json", env=env)
    assert stats.returncode == 0, stats.stderr
    assert json.loads(stats.stdout)["total_tokens"] == json.loads((local / "manifest.json").read_text())["total_tokens"]
    # credentials never reach outputs or logs
    for p in remote.rglob("*"):
        if p.is_file():
            data = p.read_bytes()
            if p.suffix == ".gz":
                import gzip
                data = gzip.decompress(data)
            assert SECRET.encode() not in data, p
    assert SECRET not in proc.stdout + proc.stderr + stats.stdout + stats.stderr
