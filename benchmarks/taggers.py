"""Tagging throughput: ours vs `dolma tag` (dolma 1.2.1 from .peer-venvs/dolma), same files, same
taggers, same number of processes, in one run; checks that both wrote identical attributes.

    .venv/bin/python benchmarks/taggers.py                       # the full sample corpus, 2 processes
    .venv/bin/python benchmarks/taggers.py --repeat 3 --json out.json

Both sides run as fresh subprocesses and are timed wall-clock from start to exit (imports and
model loading included); CPU seconds (user + sys of the subprocess tree) are shown too. The
runs alternate (dolma, ours, dolma, ours, ...) so that load from other processes on the
machine hits both alike; the reported figure is the median over repeats.

dolma parallelises over files (one file per process); ours splits files into batches of 256
documents over a multiprocessing pool (the pipeline uses Ray for the same thing).
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
DEFAULT_DOCS = REPO.parent / "shared" / "sample-corpus" / "documents"
PEER = REPO / ".peer-venvs" / "dolma"
TAGGERS = ["gopher_v1", "c4_v1", "pii_regex_with_counts_v2", "cld2_en_doc_v2"]

# ours: the product path, `dolma-prep tag` on Ray (start-up included), on its own copy of the documents
OURS = [sys.executable, "-m", "dolma_prep.pipeline.cli", "tag", "-q"]


def _timed(cmd: list[str], env: dict) -> tuple[float, float]:
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu


def _count_docs(root: Path) -> int:
    n = 0
    for f in sorted(root.glob("*/*.jsonl.gz")):
        with gzip.open(f, "rb") as fh:
            n += sum(1 for _ in fh)
    return n


def _compare(root: Path, exp_theirs: str, ours_dir: Path) -> tuple[int, int]:
    """(lines compared, lines that differ): ours must equal dolma's output byte for byte."""
    lines = differ = 0
    for f in sorted((root / "documents").glob("*/*.jsonl.gz")):
        rel = f.relative_to(root / "documents")
        a = gzip.decompress((ours_dir / rel).read_bytes()).splitlines()
        b = gzip.decompress((root / "attributes" / exp_theirs / rel).read_bytes()).splitlines()
        lines += max(len(a), len(b))
        differ += abs(len(a) - len(b)) + sum(x != y for x, y in zip(a, b))
    return lines, differ


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--documents", default=str(DEFAULT_DOCS), help="folder of <source>/*.jsonl.gz")
    ap.add_argument("--processes", type=int, default=2)
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--peer", default=str(PEER), help="the dolma venv")
    ap.add_argument("--json", help="also write the results here")
    args = ap.parse_args()

    dolma = Path(args.peer) / "bin" / "dolma"
    if not dolma.exists():
        raise SystemExit(f"no dolma at {dolma}: run scripts/setup_peer_dolma.sh")
    env = {**os.environ, "NLTK_DATA": "/nonexistent", "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    work = Path(tempfile.mkdtemp(prefix="bench_taggers_"))
    try:
        shutil.copytree(args.documents, work / "documents")
        shutil.copytree(args.documents, work / "ours" / "documents")
        n_docs = _count_docs(work / "documents")
        runs: dict[str, list[tuple[float, float]]] = {"dolma": [], "ours": []}
        for r in range(args.repeat):
            exp = f"bench{r}"
            runs["dolma"].append(_timed(
                [str(dolma), "tag", "--documents", str(work / "documents" / "*" / "*.jsonl.gz"), "--taggers", *TAGGERS,
                 "--experiment", exp, "--processes", str(args.processes)], env))
            ours_dir = work / "ours" / "attributes" / exp
            runs["ours"].append(_timed(
                [*OURS, "--documents", str(work / "ours" / "documents" / "*" / "*.jsonl.gz"), "--taggers",
                 ",".join(TAGGERS), "--experiment", exp, "--workers", str(args.processes)], env))
            lines, differ = _compare(work, exp, ours_dir)
            if differ:
                raise SystemExit(f"outputs differ on {differ} of {lines} lines (run {r})")
            print(f"run {r}: dolma {runs['dolma'][-1][0]:.2f} s, ours {runs['ours'][-1][0]:.2f} s, "
                  f"{lines} attribute lines identical", flush=True)
        res = {}
        for side, vals in runs.items():
            wall = statistics.median(w for w, _ in vals)
            cpu = statistics.median(c for _, c in vals)
            res[side] = {"wall_s": round(wall, 2), "cpu_s": round(cpu, 2), "docs_per_s": round(n_docs / wall, 1),
                         "runs_wall_s": [round(w, 2) for w, _ in vals]}
        res["speedup_wall"] = round(res["dolma"]["wall_s"] / res["ours"]["wall_s"], 2)
        res["speedup_cpu"] = round(res["dolma"]["cpu_s"] / res["ours"]["cpu_s"], 2)
        res.update({"documents": n_docs, "taggers": TAGGERS, "processes": args.processes, "identical": True,
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
                    "date": time.strftime("%Y-%m-%d %H:%M"), "load_avg_1m": round(os.getloadavg()[0], 2)})
        print(f"\n{n_docs} documents, taggers {','.join(TAGGERS)}, {args.processes} processes, median of {args.repeat}")
        for side in ("dolma", "ours"):
            r = res[side]
            print(f"  {side:<6} {r['wall_s']:7.2f} s  {r['docs_per_s']:8.1f} docs/s   cpu {r['cpu_s']:6.2f} s")
        print(f"  ratio (ours/dolma throughput): {res['speedup_wall']:.2f}x wall, {res['speedup_cpu']:.2f}x cpu; "
              "outputs identical")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
