"""End-to-end on object storage vs local disk: the same `dolma-prep run`, same input, same
workers, once with documents and outputs on local disk and once with both on an S3 API server
(moto's ThreadedMotoServer on loopback, started here). Prints both wall times, the ratio, and
whether the two outputs are byte-identical.

The mix is benchmarks/e2e.py's (char_length tagger, exact dedup, a length filter, tokenize)
plus paragraph dedup, so intermediate tables also go through object storage. The S3 server
runs in this process on the same cores as the run: its CPU is part of the measured cost (a
real object store would not take the run's cores), so the ratio is an upper bound.

    python benchmarks/e2e_s3.py [--target-mb 60] [--workers 2] [--corpus ../shared/sample-corpus]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import platform
import shutil
import socket
import subprocess
import sys
import tempfile
import time

# `python benchmarks/e2e_s3.py` puts benchmarks/ first on sys.path, where benchmarks/tokenize.py
# would shadow the standard library's tokenize (imported by s3fs's dependencies)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]


def _load_e2e():
    """benchmarks/e2e.py (its input builder and mix), by file: putting benchmarks/ on sys.path
    would let benchmarks/tokenize.py shadow the standard library's tokenize."""
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench_e2e", os.path.join(os.path.dirname(__file__), "e2e.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


e2e = _load_e2e()

MIX_EXTRA = "  paragraphs: {{ngram_length: 13, overlap_threshold: 0.5}}\n"


def tree(root: str) -> dict[str, str]:
    out = {}
    for d, _, files in os.walk(root):
        for f in files:
            p = os.path.join(d, f)
            rel = os.path.relpath(p, root)
            if rel.split(os.sep)[0] in ("_state", "_work") or rel == "olmo_data.yaml":
                continue
            out[rel] = hashlib.sha256(open(p, "rb").read()).hexdigest()
    return out


def run(args: list[str], env: dict) -> float:
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "dolma_prep.pipeline.cli", "run", *args, "-q"], capture_output=True,
                          text=True, env=env)
    dt = time.time() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(proc.stdout + proc.stderr[-4000:])
    return dt


def main() -> None:
    import s3fs
    from moto.server import ThreadedMotoServer

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=os.path.join(e2e.HERE, "..", "..", "shared", "sample-corpus"))
    ap.add_argument("--target-mb", type=float, default=60)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    root, n_docs, n_bytes = e2e.build(args.corpus, args.target_mb)
    sources = "\n".join(f"  - {{name: {s}, documents: ['{s}/*.jsonl.gz']}}" for s in sorted(os.listdir(root)))
    mix = e2e.MIX.replace("  exact: {{}}\n", "  exact: {{}}\n" + MIX_EXTRA).format(sources=sources)
    work = tempfile.mkdtemp(prefix="bench_e2e_s3_")
    mix_path = os.path.join(work, "mix.yaml")
    open(mix_path, "w").write(mix)

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    s3 = {"AWS_ACCESS_KEY_ID": "bench", "AWS_SECRET_ACCESS_KEY": "bench", "AWS_DEFAULT_REGION": "us-east-1",
          "AWS_ENDPOINT_URL": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint}
    env = {**os.environ, **s3, "PYTHONWARNINGS": "ignore"}
    try:
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="bench", secret="bench")
        fs.mkdir("bench")
        t0 = time.time()
        fs.put(root + "/", "bench/documents/", recursive=True)
        upload = time.time() - t0
        print(f"input: {n_docs:,} documents, {n_bytes / 1e6:.1f} MB of text; upload to S3 {upload:.1f} s (not timed below)")
        print(f"machine: {platform.node()} {os.cpu_count()} cores; date {time.strftime('%Y-%m-%d %H:%M')}; "
              f"load average before {os.getloadavg()[0]:.2f}")
        local_out = os.path.join(work, "local")
        t_local = run([mix_path, "--data-root", root, "--output", local_out, "--workers", str(args.workers)], env)
        print(f"local disk : {t_local:.1f} s", flush=True)
        t_s3 = run([mix_path, "--data-root", "s3://bench/documents", "--output", "s3://bench/run", "--workers",
                    str(args.workers)], env)
        print(f"S3 (moto)  : {t_s3:.1f} s", flush=True)
        fs.invalidate_cache()
        fs.get("bench/run/", os.path.join(work, "s3"), recursive=True)
        same = tree(local_out) == tree(os.path.join(work, "s3"))
        print(f"S3 / local: {t_s3 / t_local:.2f}x wall; outputs byte-identical: {same}; "
              f"load average after {os.getloadavg()[0]:.2f}")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
