"""Exact-substring dedup benchmark: throughput, peak worker memory and scratch of
`run_substrings` on ~60 MB and ~240 MB of text built from ../shared/sample-corpus.

Input as benchmarks/e2e.py builds it: every document of the corpus replicated with a new id and
a unique first line, gzip JSONL, one file per source and copy (so most of the text is
duplicated across files: the worst case for span output, a typical one for the suffix arrays).
For each size it runs with the default part size and with parts of `--small-part-mb`, so the
cross-part merge (fingerprints, windows, verify) runs too, and prints per configuration: wall
time, MB/s, parts, peak worker RSS per round, peak RSS per byte of a part, scratch bytes per
input byte (every intermediate kept to the end and measured), duplicated fraction.

    python benchmarks/substrings.py [--sizes 60 240] [--workers 2] [--min-length 100]
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
DATA = os.path.join(HERE, "_data", "substrings")
# benchmarks/tokenize.py would shadow the standard library's `tokenize` (imported by Ray)
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != HERE]


def build(corpus: str, target_mb: float) -> tuple[str, int, int]:
    root = os.path.join(DATA, f"{target_mb:g}mb", "documents")
    stamp = os.path.join(DATA, f"{target_mb:g}mb", "built.json")
    if os.path.exists(stamp):
        with open(stamp) as f:
            info = json.load(f)
        return root, info["documents"], info["bytes"]
    shutil.rmtree(os.path.dirname(root), ignore_errors=True)
    src_root = os.path.join(corpus, "documents")
    docs_by_source, total = {}, 0
    for s in sorted(os.listdir(src_root)):
        with gzip.open(os.path.join(src_root, s, "0000.jsonl.gz"), "rt", encoding="utf-8") as f:
            docs_by_source[s] = [json.loads(line) for line in f]
        total += sum(len(d["text"].encode()) for d in docs_by_source[s])
    copies = max(1, round(target_mb * 1e6 / total))
    n_docs = n_bytes = 0
    for s, docs in docs_by_source.items():
        os.makedirs(os.path.join(root, s), exist_ok=True)
        for c in range(copies):
            with gzip.open(os.path.join(root, s, f"{c:04d}.jsonl.gz"), "wt", compresslevel=1, encoding="utf-8") as f:
                for d in docs:
                    text = f"copy {c} of {d['id']}\n{d['text']}"
                    f.write(json.dumps({**d, "id": f"{d['id']}-c{c}", "text": text}) + "\n")
                    n_docs += 1
                    n_bytes += len(text.encode())
    with open(stamp, "w") as f:
        json.dump({"documents": n_docs, "bytes": n_bytes}, f)
    return root, n_docs, n_bytes


def du(path: str) -> int:
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


def one(root: str, n_bytes: int, workers: int, min_length: int, part_size: int | None) -> dict:
    import ray

    from dolma_prep.core.io import expand_globs
    from dolma_prep.dedup.substrings import DEFAULTS, run_substrings

    files = expand_globs(root, ["*/*.jsonl.gz"])
    out = os.path.join(os.path.dirname(root), "attributes")
    work = os.path.join(os.path.dirname(root), "work")
    shutil.rmtree(out, ignore_errors=True)
    shutil.rmtree(work, ignore_errors=True)
    pairs = [(f, os.path.join(out, os.path.relpath(f, root))) for f in files]
    params = {"min_length": min_length}
    if part_size:
        params["part_size"] = part_size
    ray.init(address="local", num_cpus=workers, include_dashboard=False, object_store_memory=128 * 1024**2,
             log_to_driver=False)
    try:
        t0 = time.time()
        stats = run_substrings(pairs, "dup", work, workers=workers, keep_work=True, **params)
        dt = time.time() - t0
    finally:
        ray.shutdown()
    scratch = du(work)
    shutil.rmtree(work, ignore_errors=True)
    part = min(part_size or DEFAULTS["part_size"], stats["units"])
    peak = max(s["peak_worker_rss_mb"] for s in stats["stages"].values())
    return {"input_mb": round(n_bytes / 1e6, 1), "part_size": part_size or DEFAULTS["part_size"],
            "parts": stats["parts"], "seconds": round(dt, 1), "mb_per_s": round(n_bytes / 1e6 / dt, 2),
            "peak_rss_mb": {k: v["peak_worker_rss_mb"] for k, v in stats["stages"].items() if v["tasks"]},
            "task_seconds": {k: v["task_seconds"] for k, v in stats["stages"].items() if v["tasks"]},
            "peak_rss_bytes_per_part_byte": round(peak * 2**20 / part, 1),
            "scratch_bytes_per_input_byte": round(scratch / n_bytes, 2),
            "duplicated_fraction": round(stats["duplicate_units"] / stats["units"], 4),
            "documents_with_duplicates": stats["documents_with_duplicates"], "documents": stats["documents"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=float, nargs="+", default=[60, 240], help="input sizes in MB")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--min-length", type=int, default=100)
    ap.add_argument("--small-part-mb", type=float, default=16, help="part size of the merge runs (MiB of text)")
    ap.add_argument("--corpus", default=os.path.join(HERE, "..", "..", "shared", "sample-corpus"))
    ap.add_argument("--one", help=argparse.SUPPRESS)  # internal: run one configuration (fresh process)
    args = ap.parse_args()
    if args.one:
        size, part = args.one.split(",")
        root, _, n_bytes = build(args.corpus, float(size))
        print(json.dumps(one(root, n_bytes, args.workers, args.min_length, int(part) or None)))
        return
    print(f"machine: {os.cpu_count()} CPUs; load: {os.getloadavg()}")
    for size in args.sizes:
        build(args.corpus, size)
        for part in (0, int(args.small_part_mb * 2**20)):
            # a fresh process per configuration, so peak RSS figures do not carry over
            proc = subprocess.run([sys.executable, __file__, "--one", f"{size:g},{part}", "--workers",
                                   str(args.workers), "--min-length", str(args.min_length), "--corpus", args.corpus],
                                  capture_output=True, text=True)
            if proc.returncode != 0:
                raise SystemExit(proc.stderr)
            print(json.dumps(json.loads(proc.stdout.strip().splitlines()[-1])), flush=True)
    print(f"load after: {os.getloadavg()}")


if __name__ == "__main__":
    main()
