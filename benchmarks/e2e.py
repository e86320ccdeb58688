"""End-to-end benchmark: `dolma-prep run` on ~200 MB of documents at 1 and 2 workers.

Builds the input from ../shared/sample-corpus: every document replicated with a new id and a
unique first line (so exact dedup keeps the copies), gzip JSONL, one file per source and
copy. Runs a mix with the skeleton stages (char_length tagger, exact dedup, a length filter,
tokenization) at --workers 1 and 2, and prints documents/s, MB/s and the 1->2 speed-up.

    python benchmarks/e2e.py [--target-mb 200] [--corpus ../shared/sample-corpus]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "_data", "e2e")

MIX = """name: bench_e2e
seed: 1
experiment: bench
taggers: [char_length_v1]
dedup:
  exact: {{}}
filters:
  exclude: [".attributes.bench__char_length_v1__length[0][2] < 50"]
sources:
{sources}
"""


def build(corpus: str, target_mb: float) -> tuple[str, int, int]:
    root = os.path.join(DATA, "documents")
    stamp = os.path.join(DATA, f"built-{target_mb}")
    if os.path.exists(stamp):
        info = json.load(open(stamp))
        return root, info["documents"], info["bytes"]
    shutil.rmtree(DATA, ignore_errors=True)
    src_root = os.path.join(corpus, "documents")
    sources = sorted(os.listdir(src_root))
    docs_by_source = {}
    total = 0
    for s in sources:
        with gzip.open(os.path.join(src_root, s, "0000.jsonl.gz"), "rt") as f:
            docs_by_source[s] = [json.loads(line) for line in f]
            total += sum(len(d["text"].encode()) for d in docs_by_source[s])
    copies = max(1, round(target_mb * 1e6 / total))
    n_docs = n_bytes = 0
    for s, docs in docs_by_source.items():
        os.makedirs(os.path.join(root, s), exist_ok=True)
        for c in range(copies):
            with gzip.open(os.path.join(root, s, f"{c:04d}.jsonl.gz"), "wt", compresslevel=1) as f:
                for d in docs:
                    text = f"copy {c} of {d['id']}\n{d['text']}"
                    f.write(json.dumps({**d, "id": f"{d['id']}-c{c}", "text": text}) + "\n")
                    n_docs += 1
                    n_bytes += len(text.encode())
    json.dump({"documents": n_docs, "bytes": n_bytes}, open(stamp, "w"))
    return root, n_docs, n_bytes


def run(mix_path: str, root: str, workers: int) -> float:
    out = os.path.join(DATA, f"out-w{workers}")
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.time()
    proc = subprocess.run([sys.executable, "-m", "dolma_prep.pipeline.cli", "run", mix_path, "--data-root", root,
                           "--output", out, "--workers", str(workers), "-q"], capture_output=True, text=True)
    dt = time.time() - t0
    if proc.returncode not in (0, 3):
        raise SystemExit(proc.stderr)
    return dt


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", default=os.path.join(HERE, "..", "..", "shared", "sample-corpus"))
    ap.add_argument("--target-mb", type=float, default=200)
    args = ap.parse_args()
    root, n_docs, n_bytes = build(args.corpus, args.target_mb)
    sources = "\n".join(f"  - {{name: {s}, documents: ['{s}/*.jsonl.gz']}}" for s in sorted(os.listdir(root)))
    mix_path = os.path.join(DATA, "mix.yaml")
    open(mix_path, "w").write(MIX.format(sources=sources))
    print(f"input: {n_docs:,} documents, {n_bytes / 1e6:.1f} MB of text, {len(os.listdir(root))} sources")
    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"date {time.strftime('%Y-%m-%d')}")
    times = {}
    for w in (1, 2):
        times[w] = run(mix_path, root, w)
        print(f"workers={w}: {times[w]:.1f} s, {n_docs / times[w]:,.0f} documents/s, {n_bytes / 1e6 / times[w]:.2f} MB/s")
    out1, out2 = os.path.join(DATA, "out-w1"), os.path.join(DATA, "out-w2")
    same = open(os.path.join(out1, "manifest.json")).read() == open(os.path.join(out2, "manifest.json")).read()
    print(f"speed-up 1->2 workers: {times[1] / times[2]:.2f}x; manifests identical: {same}")


if __name__ == "__main__":
    main()
