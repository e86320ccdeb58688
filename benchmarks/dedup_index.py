"""Dedup against an index (issue 15) at 200,000 documents: release 2 against the index of
release 1 vs a joint dedup of both, restricted to release 2.

    python benchmarks/dedup_index.py --workers 8              # c200k: build data if needed, run
    python benchmarks/dedup_index.py --workers 8 --files 8    # a quicker 40,000-document version

Corpus: `benchmarks/dedup.py`'s c200k (40 files of 5,000 documents, 3% planted near-copies
inside each file). Release 1 = the first half of the files; release 2 = the second half plus
one file of 3,000 near-copies of random release-1 documents (0-10% of words replaced, Jaccard
~0.4-1.0) and 500 exact copies, so that release 2 really duplicates release 1.

Measured, for exact, paragraphs (false_positive_rate 1e-9 in both runs) and MinHash (default
16 x 7, verification):
- the joint run over release 1 + release 2 (wall seconds, task CPU seconds);
- `index build` over release 1 (paid once per release), then dedup of release 2 `--against`;
- equality of the marks on release 2 (exact, paragraphs: identical; MinHash: identical, and document-level
  precision/recall of the marks against the exact Jaccard >= 0.8 answer, computed by the
  all-pairs join of benchmarks/dedup.py); MinHash verification scratch (candidate documents'
  shingle sets) against the store of every document's shingle set it replaces;
- the index grown 4x (three more versions: copies of release 1 under other names): rows per
  bucket task and peak worker RSS of the --against run at 1x and 4x.
Results: benchmarks/_data/index/results.json and a table on stdout (for RESULTS.md).
"""

from __future__ import annotations

import os
import sys

sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != os.path.dirname(os.path.abspath(__file__))]

import argparse
import gzip
import json
import random
import re
import shutil
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
import importlib.util

_spec = importlib.util.spec_from_file_location("dedup_bench", os.path.join(HERE, "dedup.py"))
bench = importlib.util.module_from_spec(_spec)  # benchmarks/dedup.py: the corpus and the exact answer
sys.modules["dedup_bench"] = bench  # its pool workers pickle functions by module name
_spec.loader.exec_module(bench)
DATA = os.path.join(HERE, "_data", "index")


def _docs(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def make_copies(r1: list[str], dst: str, n_near: int = 3000, n_exact: int = 500) -> str:
    if os.path.exists(dst):
        return dst
    rng = random.Random(15)
    docs = [d for p in r1 for d in _docs(p)]
    n_near, n_exact = min(n_near, len(docs) // 3), min(n_exact, len(docs) // 10)
    vocab = [w for d in rng.sample(docs, min(2000, len(docs))) for w in re.findall(r"\w+", d["text"])[:200]]
    out = []
    for i, d in enumerate(rng.sample(docs, n_near + n_exact)):
        text = d["text"]
        if i < n_near:
            words = len(re.findall(r"\w+", text))
            text = bench._edit_words(text, int(words * rng.choice([0, 0.01, 0.02, 0.04, 0.06, 0.08, 0.1])), vocab, rng)
        out.append({"id": f"r2-copy-{i}", "text": text, "source": "copies"})
    os.makedirs(os.path.dirname(dst), exist_ok=True)
    with gzip.open(dst + ".tmp", "wt", encoding="utf-8") as f:
        f.write("".join(json.dumps(d) + "\n" for d in out))
    os.replace(dst + ".tmp", dst)
    return dst


def _digest(paths) -> str:
    import hashlib

    return hashlib.sha256("\n".join(paths).encode()).hexdigest()[:12]


def marks(pairs, name):
    """Per file, per line: the attribute's spans (the kind's own key)."""
    out = []
    for _, o in pairs:
        with gzip.open(o, "rt", encoding="utf-8") as f:
            out.append([json.loads(line)["attributes"][name] for line in f])
    return out


def cost(stats) -> float:
    """Task CPU seconds of a run (sum over its stages)."""
    total = 0.0
    for s in stats["stages"].values():
        total += s.get("task_seconds", 0.0)
    return round(total, 1)


def timed(fn, *a, **kw):
    t = time.time()
    r = fn(*a, **kw)
    return r, round(time.time() - t, 1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workers", type=int, default=os.cpu_count())
    ap.add_argument("--files", type=int, default=bench.N_FILES, help="files of c200k to use (even; default all 40)")
    ap.add_argument("--budget", type=int, default=1024, help="memory_budget_mb per worker")
    ap.add_argument("--documents", help="a glob of document files to use instead of c200k (a smoke run)")
    args = ap.parse_args()
    import ray

    from dolma_prep.dedup import index as dindex
    from dolma_prep.dedup.exact import run_exact
    from dolma_prep.dedup.minhash import run_minhash
    from dolma_prep.dedup.paragraphs import run_paragraphs

    if args.documents:
        import glob

        files = sorted(glob.glob(args.documents))[: args.files]
    else:
        files = bench.build_corpus(os.path.join(bench.DATA, "corpus200k"), args.workers)[: args.files]
    half = len(files) // 2
    r1 = files[:half]
    r2 = files[half:] + [make_copies(r1, os.path.join(DATA, f"copies-{_digest(r1)}.jsonl.gz"))]
    work = os.path.join(DATA, "run")
    shutil.rmtree(work, ignore_errors=True)
    ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
    res = {"workers": args.workers, "documents_release1": sum(1 for p in r1 for _ in gzip.open(p, "rb")),
           "documents_release2": sum(1 for p in r2 for _ in gzip.open(p, "rb")), "budget_mb": args.budget}

    def pairs(paths, tag):
        return [(p, os.path.join(work, tag, f"{i:03d}.jsonl.gz")) for i, p in enumerate(paths)]

    mh = {"memory_budget_mb": args.budget}
    para = {"false_positive_rate": 1e-9}  # no Bloom false positive in either run: the spans must be identical
    for kind, fn, params, ikind in (("exact", run_exact, {}, {"exact": {}}),
                                    ("paragraphs", run_paragraphs, para, {"paragraphs": {}}),
                                    ("minhash", run_minhash, mh, {"minhash": {}})):
        joint = pairs(r1 + r2, f"joint-{kind}")
        js, jw = timed(fn, joint, kind, os.path.join(work, "w"), **params)
        idx = os.path.join(work, f"index-{kind}")
        bs, bw = timed(dindex.build, idx, r1, ikind, workers=args.workers)
        new = pairs(r2, f"new-{kind}")
        ns, nw = timed(fn, new, kind, os.path.join(work, "w"), against=idx, **params)
        same = marks(joint[len(r1):], kind) == marks(new, kind)
        row = {"joint_wall_s": jw, "joint_task_s": cost(js), "build_wall_s": bw, "against_wall_s": nw,
               "against_task_s": cost(ns), "wall_ratio": round(nw / jw, 3), "task_ratio": round(cost(ns) / cost(js), 3),
               "identical_marks": same, "duplicates_release2": ns.get("duplicates", ns.get("duplicate_paragraphs")),
               "matched_indexed": ns.get("matched_indexed"), "against_peak_rss_mb": ns.get("peak_worker_rss_mb")}
        if kind == "minhash":
            truth = bench.exact_pairs(r1 + r2)
            dup = {b for (a, b) in truth if b[0] >= len(r1)}  # pairs are (earlier, later)
            found = {(len(r1) + fi, ln) for fi, f in enumerate(marks(new, kind)) for ln, m in enumerate(f) if m}
            tp = len(found & dup)
            row |= {"doc_precision": round(tp / max(1, len(found)), 4), "doc_recall": round(tp / max(1, len(dup)), 4),
                    "candidate_documents": ns["candidate_documents"], "verify_store_bytes": ns["verify_store_bytes"],
                    "joint_candidate_documents": js["candidate_documents"],
                    "joint_verify_store_bytes": js["verify_store_bytes"],
                    # what the former store of every document's shingle set would take (u32 per distinct shingle)
                    "joint_all_documents_store_bytes": 4 * sum(len(x) for x in bench._doc_shingles(r1 + r2)[1]),
                    "max_rows_per_bucket_task_1x": ns["max_rows_per_bucket_task"],
                    "bucket_peak_rss_mb_1x": ns["stages"]["buckets"]["peak_worker_rss_mb"]}
            # the index grown 4x: three more versions (release 1 copied under other names)
            for v in range(3):
                copies = []
                for i, p in enumerate(r1):
                    dst = os.path.join(work, f"r1-copy{v}", f"{i:03d}.jsonl.gz")
                    os.makedirs(os.path.dirname(dst), exist_ok=True)
                    shutil.copy(p, dst)
                    copies.append(dst)
                dindex.add(idx, copies, workers=args.workers)
            ray.shutdown()  # fresh workers: their peak RSS is this run's alone
            ray.init(address="local", num_cpus=args.workers, include_dashboard=False, log_to_driver=False)
            four, fw = timed(fn, pairs(r2, "new-4x"), kind, os.path.join(work, "w"), against=idx, **params)
            row |= {"against_4x_wall_s": fw, "max_rows_per_bucket_task_4x": four["max_rows_per_bucket_task"],
                    "bucket_peak_rss_mb_4x": four["stages"]["buckets"]["peak_worker_rss_mb"],
                    "partitions_1x": ns["partitions"], "partitions_4x": four["partitions"],
                    "identical_marks_4x": marks(pairs(r2, "new-4x"), kind) == marks(new, kind)}
        res[kind] = row
        print(kind, json.dumps(row, indent=1), flush=True)
    with open(os.path.join(DATA, "results.json"), "w") as f:
        json.dump(res, f, indent=1)
    print(f"{'kind':10s} {'joint s':>8s} {'build s':>8s} {'against s':>9s} {'ratio':>6s} {'same':>5s}")
    for kind in ("exact", "paragraphs", "minhash"):
        r = res[kind]
        print(f"{kind:10s} {r['joint_wall_s']:8.1f} {r['build_wall_s']:8.1f} {r['against_wall_s']:9.1f} "
              f"{r['wall_ratio']:6.2f} {str(r['identical_marks']):>5s}")


if __name__ == "__main__":
    main()
