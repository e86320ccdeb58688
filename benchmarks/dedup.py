"""MinHash dedup benchmark: dolma-prep (Ray) vs datatrove's 4-stage MinHash.

    python benchmarks/dedup.py                      # build data if needed, run everything
    python benchmarks/dedup.py --corpora small      # only the 6,242-document sample corpus
    python benchmarks/dedup.py --no-datatrove       # only ours

Corpora:
  small   /work/shared/sample-corpus/documents (17 files, 6,242 documents, planted duplicates)
  c50k    the first 10 of the 40 files of c200k (50,000 documents)
  c200k   benchmarks/_data/corpus200k: 200,000 documents made from the sample corpus (see
          `build_corpus`), 3% of them planted near-copies with a spread of Jaccard similarities

Both systems get the same files, in the same order, and the same number of worker processes,
and each runs in a fresh subprocess (ours starts and stops its own Ray instance inside it).
Quality is measured against the exact answer: every pair of documents whose 5-gram shingle
sets (same normalisation) have Jaccard >= 0.8, found by an exact all-pairs similarity join
(prefix filtering, then exact verification). A system "finds" a pair when it puts both
documents in one cluster; precision = found pairs that are true / found pairs, recall = true
pairs found / true pairs. Memory: peak RSS (VmHWM) of each worker process (ours: reported by
every Ray task; datatrove: polled from /proc over its process tree), the largest one.

datatrove runs from the peer environment .peer-venvs/datatrove
(`pip install "datatrove[processing]" orjson spacy`).
"""

from __future__ import annotations

import os
import sys

# Running `python benchmarks/dedup.py` puts benchmarks/ first on sys.path, where sibling
# scripts (tokenize.py) would shadow standard-library modules.
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import glob
import gzip
import json
import math
import platform
import random
import re
import struct
import subprocess
import time
from collections import defaultdict

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DATA = os.path.join(HERE, "_data")
SMALL = "/work/shared/sample-corpus"
DATATROVE_PY = os.path.join(ROOT, ".peer-venvs", "datatrove", "bin", "python")
THRESHOLD = 0.8
DOCS_PER_FILE = 5000
N_FILES = 40

# ------------------------------------------------------------------ corpus


def _read_jsonl(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            yield json.loads(line)


def _window(text: str, rng: random.Random, max_chars: int) -> str:
    if len(text) <= max_chars:
        return text
    starts = [0] + [m.end() for m in re.finditer("\n", text[: len(text) - max_chars // 2])]
    s = rng.choice(starts)
    return text[s : s + max_chars]


def _replace_words(text: str, prob: float, vocab: list[str], rng: random.Random) -> str:
    parts = re.split(r"(\w+)", text)
    for i in range(1, len(parts), 2):
        if rng.random() < prob:
            parts[i] = rng.choice(vocab)
    return "".join(parts)


def _edit_words(text: str, n_edits: int, vocab: list[str], rng: random.Random) -> str:
    parts = re.split(r"(\w+)", text)
    positions = list(range(1, len(parts), 2))
    for pos in rng.sample(positions, min(n_edits, len(positions))):
        parts[pos] = rng.choice(vocab)
    return "".join(parts)


EDIT_RATES = [0.0, 0.003, 0.006, 0.01, 0.014, 0.018, 0.022, 0.027, 0.033, 0.04, 0.05, 0.065, 0.08, 0.1]


def _build_file(args):
    """One file of the synthetic corpus (run in a worker process)."""
    file_index, base, vocab, out_path = args
    from dolma_prep.dedup.text import normalized_words

    rng = random.Random(1000 + file_index)
    docs, planted = [], []
    for j in range(DOCS_PER_FILE):
        doc_id = f"f{file_index:03d}-{j:05d}"
        if j >= 20 and rng.random() < 0.03:
            # a near-copy of an earlier document of this file, edited at a known rate
            k = rng.randrange(max(0, j - 2000), j)
            orig = docs[k]
            if orig["metadata"].get("copy_of"):
                orig = docs[k - 1] if k and not docs[k - 1]["metadata"].get("copy_of") else None
            if orig is not None:
                rate = rng.choice(EDIT_RATES)
                n = len(normalized_words(orig["text"]))
                text = _edit_words(orig["text"], int(round(rate * n)), vocab, rng)
                docs.append({"id": doc_id, "text": text, "source": orig["source"], "metadata": {"copy_of": orig["id"], "edit_rate": rate}})
                planted.append((doc_id, orig["id"], rate))
                continue
        src, text = rng.choice(base)
        text = _replace_words(_window(text, rng, rng.randint(800, 4000)), 0.5, vocab, rng)
        docs.append({"id": doc_id, "text": text, "source": src, "metadata": {"base": True}})
    tmp = out_path + ".tmp"
    with gzip.open(tmp, "wt", encoding="utf-8", compresslevel=1) as f:
        for d in docs:
            f.write(json.dumps(d) + "\n")
    os.replace(tmp, out_path)
    return planted


def build_corpus(dst: str, workers: int) -> list[str]:
    """200,000 documents in 40 files: each a 800-4,000-character window of a random sample-corpus
    document with every word replaced by a random corpus word with probability 1/2 (so that
    documents share no long word sequences by chance), and 3% planted near-copies of an earlier
    document of the same file with 0-10% of the words replaced (Jaccard about 0.4-1.0)."""
    from multiprocessing import Pool

    docs_dir = os.path.join(dst, "documents")
    os.makedirs(docs_dir, exist_ok=True)
    paths = [os.path.join(docs_dir, f"part-{i:03d}.jsonl.gz") for i in range(N_FILES)]
    if all(os.path.exists(p) for p in paths) and os.path.exists(os.path.join(dst, "planted.json")):
        return paths
    base = [(d["source"], d["text"]) for p in sorted(glob.glob(f"{SMALL}/documents/*/*.jsonl.gz")) for d in _read_jsonl(p)]
    rng = random.Random(0)
    vocab = [w for _, t in rng.sample(base, 2000) for w in re.findall(r"\w+", t)[:300]]
    t0 = time.time()
    with Pool(workers) as pool:
        planted = pool.map(_build_file, [(i, base, vocab, p) for i, p in enumerate(paths)])
    with open(os.path.join(dst, "planted.json"), "w") as f:
        json.dump([x for per in planted for x in per], f)
    print(f"built {dst}: {N_FILES * DOCS_PER_FILE} documents in {time.time() - t0:.0f} s", flush=True)
    return paths


# ------------------------------------------------------------------ exact answer


def _doc_shingles(paths):
    from dolma_prep.dedup.signatures import shingle_hashes
    from dolma_prep.dedup.text import normalized_word_bytes

    keys, sets = [], []
    for fi, path in enumerate(paths):
        for line, d in enumerate(_read_jsonl(path)):
            sh = np.unique(shingle_hashes(normalized_word_bytes(d["text"]), 5))
            if len(sh):
                keys.append((fi, line))
                sets.append(sh)
    return keys, sets


def exact_pairs(paths, threshold: float = THRESHOLD):
    """All pairs with Jaccard >= threshold: prefix filtering (rarest shingles first), then exact
    verification; exact because two sets with J >= t share one of the first
    |A| - ceil(t |A|) + 1 elements of each (in any fixed global order)."""
    keys, sets = _doc_shingles(paths)
    allh = np.concatenate(sets)
    uniq, counts = np.unique(allh, return_counts=True)
    del allh
    tok_doc, tok = [], []
    for d, sh in enumerate(sets):
        freq = counts[np.searchsorted(uniq, sh)]
        order = np.lexsort((sh, freq))
        p = len(sh) - math.ceil(threshold * len(sh) - 1e-9) + 1
        pref = sh[order[:p]]
        tok.append(pref)
        tok_doc.append(np.full(len(pref), d, dtype=np.int64))
    tok = np.concatenate(tok)
    tok_doc = np.concatenate(tok_doc)
    order = np.argsort(tok, kind="stable")
    tok, tok_doc = tok[order], tok_doc[order]
    starts = np.flatnonzero(np.concatenate([[True], tok[1:] != tok[:-1]]))
    ends = np.append(starts[1:], len(tok))
    cand = set()
    for s, e in zip(starts[ends - starts > 1], ends[ends - starts > 1]):
        ds = np.unique(tok_doc[s:e])
        for i in range(len(ds)):
            for j in range(i + 1, len(ds)):
                cand.add((int(ds[i]), int(ds[j])))
    truth = {}
    for a, b in cand:
        x, y = sets[a], sets[b]
        if min(len(x), len(y)) < threshold * max(len(x), len(y)):
            continue
        inter = len(np.intersect1d(x, y, assume_unique=True))
        j = inter / (len(x) + len(y) - inter)
        if j >= threshold:
            truth[(keys[a], keys[b])] = j
    return truth


def cluster_pairs(members: dict) -> set:
    """members: cluster id -> list of (file, line); all pairs inside clusters."""
    out = set()
    for docs in members.values():
        docs = sorted(set(docs))
        for i in range(len(docs)):
            for j in range(i + 1, len(docs)):
                out.add((docs[i], docs[j]))
    return out


# ------------------------------------------------------------------ our run (subprocess)


def run_ours_inner(args) -> None:
    import ray

    from dolma_prep.dedup.minhash import run_minhash

    files = json.load(open(args.files))
    params = json.loads(args.params)
    out_dir = args.out
    t0 = time.time()
    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, object_store_memory=100 * 1024**2, log_to_driver=False)
    t1 = time.time()
    shards = [(f, os.path.join(out_dir, "attributes", f"{i:04d}.jsonl.gz")) for i, f in enumerate(files)]
    stats = run_minhash(
        shards, "minhash", os.path.join(out_dir, "work"), workers=args.workers,
        clusters_path=os.path.join(out_dir, "clusters.parquet"), **params,
    )
    t2 = time.time()
    ray.shutdown()
    from dolma_prep.core.runtime import peak_rss_mb

    stats["_timing"] = {"ray_init_s": t1 - t0, "run_minhash_s": t2 - t1, "driver_rss_mb": peak_rss_mb()}
    with open(os.path.join(out_dir, "stats.json"), "w") as f:
        json.dump(stats, f, indent=1)


def run_ours(name: str, files: list[str], workers: int, params: dict, tag: str) -> dict:
    import pyarrow.parquet as pq

    out = os.path.join(DATA, "runs", f"ours-{tag}-{name}")
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, "files.json"), "w") as f:
        json.dump(files, f)
    cmd = [sys.executable, __file__, "--inner-ours", "--files", os.path.join(out, "files.json"), "--out", out,
           "--workers", str(workers), "--params", json.dumps(params)]
    t0 = time.time()
    subprocess.run(cmd, check=True)
    wall = time.time() - t0
    stats = json.load(open(os.path.join(out, "stats.json")))
    members = defaultdict(list)
    removed_set = set()
    for r in pq.read_table(os.path.join(out, "clusters.parquet")).to_pylist():
        root = (r["root_shard"], r["root_line"])
        members[root] += [root, (r["shard"], r["line"])]
        removed_set.add((r["shard"], r["line"]))
    return {
        "removed_set": removed_set,
        "wall_s": wall,
        "inner_s": stats["_timing"]["run_minhash_s"],
        "peak_worker_rss_mb": stats["peak_worker_rss_mb"],
        "driver_rss_mb": stats["_timing"]["driver_rss_mb"],
        "removed": stats["duplicates"],
        "pairs": cluster_pairs(members),
        "stats": {k: v for k, v in stats.items() if k not in ("params",)},
    }


# ------------------------------------------------------------------ datatrove run (subprocess)

DATATROVE_SCRIPT = r'''
import json, sys, time
from datatrove.executor import LocalPipelineExecutor
from datatrove.pipeline.dedup import MinhashDedupSignature
from datatrove.pipeline.dedup.minhash import MinhashConfig, MinhashDedupBuckets, MinhashDedupCluster, MinhashDedupFilter
from datatrove.pipeline.readers import JsonlReader
from datatrove.pipeline.writers.jsonl import JsonlWriter
from datatrove.utils.hashing import HashConfig


def main():
    data_folder, paths_file, out, workers, n_files = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    config = MinhashConfig(hash_config=HashConfig(precision=64), num_buckets=14, hashes_per_bucket=8)
    reader = lambda: JsonlReader(data_folder, paths_file=paths_file)
    t = [time.time()]
    LocalPipelineExecutor(pipeline=[reader(), MinhashDedupSignature(output_folder=f"{out}/sigs", config=config)],
                          tasks=n_files, workers=workers, logging_dir=f"{out}/logs/s1").run(); t.append(time.time())
    LocalPipelineExecutor(pipeline=[MinhashDedupBuckets(input_folder=f"{out}/sigs", output_folder=f"{out}/buckets", config=config)],
                          tasks=config.num_buckets, workers=workers, logging_dir=f"{out}/logs/s2").run(); t.append(time.time())
    LocalPipelineExecutor(pipeline=[MinhashDedupCluster(input_folder=f"{out}/buckets", output_folder=f"{out}/remove_ids",
                                                        config=config, save_cluster_id=True)],
                          tasks=1, logging_dir=f"{out}/logs/s3").run(); t.append(time.time())
    LocalPipelineExecutor(pipeline=[reader(), MinhashDedupFilter(input_folder=f"{out}/remove_ids", exclusion_writer=JsonlWriter(f"{out}/removed")),
                                    JsonlWriter(f"{out}/deduplicated")],
                          tasks=n_files, workers=workers, logging_dir=f"{out}/logs/s4").run(); t.append(time.time())
    json.dump({"stage_s": [b - a for a, b in zip(t, t[1:])]}, open(f"{out}/timing.json", "w"))


if __name__ == "__main__":
    main()
'''


def run_datatrove(name: str, files: list[str], workers: int) -> dict:
    import shutil

    out = os.path.join(DATA, "runs", f"datatrove-{name}")
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    folder = os.path.commonpath(files)
    paths_file = os.path.join(out, "paths.txt")
    with open(paths_file, "w") as f:
        f.write("\n".join(os.path.relpath(p, folder) for p in files) + "\n")
    script = os.path.join(out, "run_datatrove.py")
    with open(script, "w") as f:
        f.write(DATATROVE_SCRIPT)
    # run through a wrapper that polls the peak RSS (VmHWM) of every process in datatrove's tree
    cmd = [sys.executable, __file__, "--inner-watch", "--out", os.path.join(out, "datatrove.log"), "--",
           DATATROVE_PY, script, folder, paths_file, out, str(workers), str(len(files))]
    res = json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip().splitlines()[-1])
    removed_set = set()
    for path in glob.glob(os.path.join(out, "remove_ids", "*.remove")):
        rank = int(os.path.basename(path).split(".")[0])
        removed_set |= {(rank, d) for (d,) in struct.iter_unpack("<I", open(path, "rb").read())}
    members = defaultdict(list)
    for path in glob.glob(os.path.join(out, "remove_ids", "*.clusters")):
        rank = int(os.path.basename(path).split(".")[0])
        data = open(path, "rb").read()
        for doc, cid in struct.iter_unpack("<2I", data):
            members[cid].append((rank, doc))
    return {
        "wall_s": res["wall"],
        "peak_worker_rss_mb": res["peak_rss_mb"],
        "processes_seen": res["processes"],
        "removed": len(removed_set),
        "removed_set": removed_set,
        "pairs": cluster_pairs(members),
        "stage_s": json.load(open(os.path.join(out, "timing.json")))["stage_s"],
    }


def _tree(root: int) -> set[int]:
    children = defaultdict(list)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children[ppid].append(int(d))
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [root]
    while todo:
        p = todo.pop()
        out.add(p)
        todo.extend(children.get(p, []))
    return out


def run_watch_inner(args, cmd: list[str]) -> None:
    """Run cmd, polling every process of its tree for VmHWM (peak RSS); print wall and peak."""
    t0 = time.time()
    with open(args.out, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=log)
        peak, seen = {}, set()
        while proc.poll() is None:
            for pid in _tree(proc.pid):
                try:
                    with open(f"/proc/{pid}/status") as f:
                        for line in f:
                            if line.startswith("VmHWM:"):
                                peak[pid] = max(peak.get(pid, 0), int(line.split()[1]))
                                seen.add(pid)
                except OSError:
                    pass
            time.sleep(0.05)
    if proc.returncode:
        raise SystemExit(f"{cmd} failed with {proc.returncode}; see {args.out}")
    print(json.dumps({"wall": time.time() - t0, "peak_rss_mb": max(peak.values(), default=0) / 1024, "processes": len(seen)}))


# ------------------------------------------------------------------ main


def _quality(r: dict, truth: dict) -> dict:
    """Pair metrics (pairs inside clusters vs true pairs) and document metrics (a removed
    document is right when it has a true near-duplicate; a true pair is resolved when at
    least one of its two documents is removed)."""
    pairs, removed = r.pop("pairs"), r.pop("removed_set")
    tp = len(pairs & set(truth))
    in_truth = {d for p in truth for d in p}
    return {
        "precision": tp / max(1, len(pairs)),
        "recall": tp / max(1, len(truth)),
        "doc_precision": len(removed & in_truth) / max(1, len(removed)),
        "doc_recall": sum(1 for a, b in truth if a in removed or b in removed) / max(1, len(truth)),
    }


def _doc_count(files):
    return sum(1 for f in files for _ in gzip.open(f, "rb"))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--corpora", default="small,c50k,c200k")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--budget", type=int, default=1024, help="memory_budget_mb of our workers")
    ap.add_argument("--no-datatrove", action="store_true")
    ap.add_argument("--datatrove-on", default="small,c200k", help="corpora on which datatrove also runs")
    ap.add_argument("--inner-ours", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--inner-watch", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--files", help=argparse.SUPPRESS)
    ap.add_argument("--out", help=argparse.SUPPRESS)
    ap.add_argument("--params", default="{}", help=argparse.SUPPRESS)
    argv = sys.argv[1:]
    cmd = argv[argv.index("--") + 1 :] if "--" in argv else []
    args = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    if args.inner_watch:
        return run_watch_inner(args, cmd)
    if args.inner_ours:
        return run_ours_inner(args)

    corpora = {}
    wanted = args.corpora.split(",")
    if "small" in wanted:
        corpora["small"] = sorted(glob.glob(f"{SMALL}/documents/*/*.jsonl.gz"))
    if {"c50k", "c200k"} & set(wanted):
        big = build_corpus(os.path.join(DATA, "corpus200k"), args.workers)
        if "c50k" in wanted:
            corpora["c50k"] = big[: N_FILES // 4]
        if "c200k" in wanted:
            corpora["c200k"] = big
    configs = {
        "default 16x7+verify": {"memory_budget_mb": args.budget},
        "9x13+verify": {"memory_budget_mb": args.budget, "bands": 9, "rows": 13},
    }
    results = {"machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
               "date": time.strftime("%Y-%m-%d %H:%M"), "workers": args.workers, "budget_mb": args.budget, "runs": []}
    for name, files in corpora.items():
        t0 = time.time()
        truth = exact_pairs(files)
        ndocs = _doc_count(files)
        print(f"\n== {name}: {ndocs} documents in {len(files)} files; {len(truth)} pairs with J >= {THRESHOLD} "
              f"(exact join {time.time() - t0:.0f} s)", flush=True)
        rows = []
        for tag, params in configs.items():
            r = run_ours(name, files, args.workers, params, tag.split()[0].replace("+", "-"))
            rows.append({"system": f"dolma-prep {tag}", **_quality(r, truth), **r})
        if not args.no_datatrove and name in args.datatrove_on.split(",") and os.path.exists(DATATROVE_PY):
            r = run_datatrove(name, files, args.workers)
            rows.append({"system": "datatrove 14x8", **_quality(r, truth), **r})
        print(f"{'system':28s} {'wall s':>7s} {'RSS MB':>7s} {'removed':>8s} {'pair P':>7s} {'pair R':>7s} "
              f"{'doc P':>7s} {'doc R':>7s}")
        for r in rows:
            print(f"{r['system']:28s} {r['wall_s']:7.1f} {r['peak_worker_rss_mb']:7.0f} {r['removed']:8d} "
                  f"{r['precision']:7.3f} {r['recall']:7.3f} {r['doc_precision']:7.3f} {r['doc_recall']:7.3f}", flush=True)
        dt = next((r for r in rows if r["system"].startswith("datatrove")), None)
        if dt:
            for r in rows[:-1]:
                print(f"  speed-up of {r['system']} over datatrove: {dt['wall_s'] / r['wall_s']:.2f}x "
                      f"(recall {r['recall']:.3f} vs {dt['recall']:.3f})")
        results["runs"].append({"corpus": name, "documents": ndocs, "files": len(files), "true_pairs": len(truth), "rows": rows})
    if "c50k" in corpora and "c200k" in corpora:
        a = {r["system"]: r for r in results["runs"][-2]["rows"]}
        b = {r["system"]: r for r in results["runs"][-1]["rows"]}
        for s in a:
            if s in b and s.startswith("dolma-prep"):
                print(f"  {s}: peak worker RSS {a[s]['peak_worker_rss_mb']:.0f} MB at 50k -> "
                      f"{b[s]['peak_worker_rss_mb']:.0f} MB at 200k ({b[s]['peak_worker_rss_mb'] / a[s]['peak_worker_rss_mb']:.2f}x)")
    os.makedirs(DATA, exist_ok=True)
    with open(os.path.join(DATA, "results.json"), "w") as f:
        json.dump(results, f, indent=1, default=str)


if __name__ == "__main__":
    main()
