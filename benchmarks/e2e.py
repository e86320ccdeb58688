"""End-to-end benchmark: one `dolma-prep run` vs dolma 1.2.1's own pipeline vs the floor, same input.

Input (built once under benchmarks/_data/e2e-<MB>/ from ../shared/sample-corpus): every document
of the corpus, replicated until `--target-mb` MB of text (below the corpus's 35 MB: the same
leading share of every source's documents, so that a quick run and its quarter are smaller); copy 0 is the original, copy c > 0
has a new id and the words of each paragraph shuffled with a seeded RNG (same words, so the
same tokenizer work per byte, but no paragraph repeated across copies: paragraph dedup then
finds the corpus's own duplicates only; which copy of those survives still depends on the
order in which dolma's processes see the files, see below). gzip JSONL, one file per source and copy.

The work, identical on both sides:
- tag `char_length_v1`;
- paragraph dedup, 13-grams, stride 1, overlap threshold 0.5 (`dolma dedupe` / ours);
- mix: drop documents shorter than 50 characters, delete duplicate paragraphs (span
  replacement, min score 0.5);
- tokenize with the bundled OLMo tokenizer, EOS 50279, uint16.
dolma: `dolma tag` -> `dolma dedupe` -> `dolma mix` -> `dolma tokens`, each with --processes
W (the peer venv .peer-venvs/dolma, scripts/setup_peer_dolma.sh). Ours: `dolma-prep run` of
the equivalent mix with --workers W. The token arrays must hold the same documents
(`compare_documents`): the same document ids, and per id the same token sequence, except that
a paragraph repeated across documents of the input may be kept in a different copy (dolma's
Bloom-filter dedupe keeps whichever copy its W processes meet first; ours a fixed first), which
is accepted only when every paragraph one side kept and the other dropped occurs at least twice
in the input. The counts of each kind are printed.

The floor: a pass that only reads, decompresses, parses and re-writes (gzip) every document,
W processes, with our reader and writer (`core/io.py`): what any pipeline pays on this input.

Reported: wall and CPU seconds (CPU of the whole process tree: /proc sampled every 0.2 s, and
getrusage(RUSAGE_CHILDREN) after it ends; the larger is used), dolma / ours ratios, the run's
cost as a multiple of the floor's CPU-seconds per step (the CPU-seconds of the step's tasks,
from the done markers' `_cpu_s`, and for dedup, a global step, from its timing file; "rest" is
the run's CPU outside tasks: Ray, the driver, filter helper processes), the 1 -> W speed-up,
peak worker RSS (the markers' `_rss_mb`) and, with --memory-check, peak worker RSS at a
quarter of the input vs the whole (4x). Load average is printed with every measurement.

    python benchmarks/e2e.py [--target-mb 200] [--workers 2] [--skip-dolma] [--memory-check] [--token-targets] [--anneal]
    python benchmarks/e2e.py --target-mb 5 --memory-check    # a quick check of the script
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import importlib.util
import json
import os
import platform
import random
import resource
import shutil
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
TOKENIZER = os.path.join(REPO, "pipeline", "resources", "allenai_gpt-neox-olmo-dolma-v1_5.json")
DOLMA = os.environ.get("PEER_DOLMA_VENV", os.path.join(REPO, ".peer-venvs", "dolma"))
EOS, PAD = 50279, 1
ATTR = "bff_duplicate_paragraph_spans"

_spec = importlib.util.spec_from_file_location("bench_tokenize", os.path.join(HERE, "tokenize.py"))
_bt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_bt)  # its process-tree CPU sampler

MIX = """name: bench_e2e
seed: 1
experiment: bench
taggers: [char_length_v1]
dedup:
  paragraphs: {{attribute: {attr}, ngram_length: 13, stride: 1, overlap_threshold: 0.5}}
filters:
  exclude: [".attributes.bench__char_length_v1__length[0][2] < 50"]
tokenizer: {{path: bundled, eos_token_id: {eos}, pad_token_id: {pad}, dtype: uint16}}
sources:
{sources}
"""
SOURCE = ("  - {{name: {s}, documents: ['{s}/*.jsonl.gz'], "
          "span_replacement: [{{attribute: {attr}, min_score: 0.5, replacement: ''}}]}}")


# ---------------------------------------------------------------------------------------------
# input


def _shuffle_paragraphs(text: str, rng: random.Random) -> str:
    out = []
    for par in text.split("\n"):
        words = par.split(" ")
        rng.shuffle(words)
        out.append(" ".join(words))
    return "\n".join(out)


def build(corpus: str, target_mb: float) -> tuple[str, dict]:
    data = os.path.join(HERE, "_data", f"e2e-{target_mb:g}mb")
    root = os.path.join(data, "documents")
    stamp = os.path.join(data, "built.json")
    if os.path.exists(stamp):
        return root, json.load(open(stamp))
    shutil.rmtree(data, ignore_errors=True)
    src_root = os.path.join(corpus, "documents")
    docs_by_source, total = {}, 0
    for s in sorted(os.listdir(src_root)):
        docs = []
        for name in sorted(os.listdir(os.path.join(src_root, s))):
            with gzip.open(os.path.join(src_root, s, name), "rt", encoding="utf-8") as f:
                docs += [json.loads(line) for line in f]
        docs_by_source[s] = docs
        total += sum(len(d["text"].encode()) for d in docs)
    copies = max(1, round(target_mb * 1e6 / total))
    if target_mb * 1e6 < 0.75 * total:  # less than the corpus: the same leading share of every source
        share = target_mb * 1e6 / total
        docs_by_source = {s: docs[:max(1, round(len(docs) * share))] for s, docs in docs_by_source.items()}
    n_docs = n_bytes = paragraphs = words = 0
    for s, docs in docs_by_source.items():
        os.makedirs(os.path.join(root, s), exist_ok=True)
        for c in range(copies):
            with gzip.open(os.path.join(root, s, f"{c:04d}.jsonl.gz"), "wt", encoding="utf-8", compresslevel=1) as f:
                for d in docs:
                    text = d["text"] if c == 0 else _shuffle_paragraphs(d["text"], random.Random(f"{c}/{d['id']}"))
                    f.write(json.dumps({**d, "id": f"{d['id']}-c{c}", "text": text}) + "\n")
                    n_docs += 1
                    n_bytes += len(text.encode())
                    paragraphs += text.count("\n") + 1
                    words += len(text.split())
    info = {"documents": n_docs, "bytes": n_bytes, "copies": copies, "paragraphs": paragraphs, "words": words,
            "gz_bytes": sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(root) for f in fs)}
    json.dump(info, open(stamp, "w"))
    return root, info


# ---------------------------------------------------------------------------------------------
# measuring


def measure(cmd: list[str], env: dict | None = None, cwd: str | None = None, ok=(0,)) -> dict:
    """Wall and CPU seconds of a command and everything it starts."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    load = os.getloadavg()[0]
    try:
        r = _bt.measure(cmd, env=env, cwd=cwd)
    except SystemExit as e:
        if "exited 3" in str(e) and 3 in ok:  # bad records rejected: still a finished run
            r = {"wall_s": float("nan"), "cpu_s": float("nan"), "stdout": ""}
        else:
            raise
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    rus = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    r["cpu_poll_s"], r["cpu_rusage_s"] = r["cpu_s"], rus
    r["cpu_s"] = max(r["cpu_s"], rus)
    r["load_before"], r["load_after"] = load, os.getloadavg()[0]
    r.pop("stdout", None)
    return r


def _fmt(name: str, r: dict) -> str:
    return (f"{name:34s} {r['wall_s']:8.1f} s wall {r['cpu_s']:8.1f} cpu-s  "
            f"(load {r['load_before']:.1f} -> {r['load_after']:.1f})")


# ---------------------------------------------------------------------------------------------
# ours


def run_ours(mix_path: str, root: str, out: str, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONWARNINGS": "ignore"}
    r = measure([sys.executable, "-m", "dolma_prep.pipeline.cli", "run", mix_path, "--data-root", root,
                 "--output", out, "--workers", str(workers), "-q"], env=env)
    r.update(markers(out))
    return r


def markers(out: str) -> dict:
    """Per step: task-seconds (sum of `_seconds`) and peak worker RSS (max `_rss_mb`) of the
    done markers of its shard tasks."""
    steps: dict[str, dict] = {}
    state = os.path.join(out, "_state")
    for step in sorted(os.listdir(state)) if os.path.isdir(state) else []:
        for dp, _, files in os.walk(os.path.join(state, step)):
            for f in files:
                m = json.load(open(os.path.join(dp, f)))
                if "_seconds" not in m:
                    continue
                s = steps.setdefault(step, {"task_s": 0.0, "cpu_s": 0.0, "tasks": 0, "rss_mb": 0.0, "task_rss_mb": 0.0})
                # what one task itself added to the worker's memory
                growth = m["_rss_mb"] - m["_rss_start_mb"] if "_rss_start_mb" in m else m.get("_rss_growth_mb", 0.0)
                s["task_rss_mb"] = max(s["task_rss_mb"], growth)
                s["task_s"] += m["_seconds"]
                s["cpu_s"] += m.get("_cpu_s", 0.0)
                s["tasks"] += m.get("tasks", 1)  # a global step's timing file sums its rounds
                s["rss_mb"] = max(s["rss_mb"], m.get("_rss_mb", 0.0))
    manifest = json.load(open(os.path.join(out, "manifest.json")))
    return {"steps": steps, "peak_worker_rss_mb": max([s["rss_mb"] for s in steps.values()] or [0.0]),
            "tokens": manifest["total_tokens"], "documents": manifest["total_documents"],
            "engine": manifest["tokenizer"].get("engine")}


def our_sequences(out: str) -> dict:
    seqs: dict = {}
    for dp, _, files in sorted(os.walk(os.path.join(out, "tokens"))):
        for f in sorted(files):
            if f.endswith(".npy"):
                _add_sequences(os.path.join(dp, f), seqs)
    return seqs


def _add_sequences(npy: str, seqs: dict) -> None:
    """{document id: [its token sequences]} from one token array and its index."""
    import csv

    import numpy as np

    arr = np.fromfile(npy, dtype=np.uint16)
    with gzip.open(npy[:-4] + ".csv.gz", "rt", encoding="utf-8", newline="") as f:
        for row in csv.reader(f):
            seqs.setdefault(row[2], []).append(arr[int(row[0]):int(row[1])].tobytes())


def spans_by_id(folder: str) -> dict:
    """{document id: sorted (start, end) of its paragraph-dedup spans} over an attribute folder."""
    out: dict = {}
    for dp, _, files in os.walk(folder):
        for f in files:
            with gzip.open(os.path.join(dp, f), "rt", encoding="utf-8") as fh:
                for line in fh:
                    obj = json.loads(line)
                    out[obj["id"]] = sorted((int(a), int(b)) for a, b, *_ in obj["attributes"].get(ATTR) or [])
    return out


def differing_ids(a: dict, b: dict) -> set:
    return {k for k in set(a) | set(b) if a.get(k, []) != b.get(k, [])}


def compare_documents(ours: dict, theirs: dict, root: str, order_dependent: set | None = None) -> dict:
    """Do both sides' token arrays hold the same documents? Same document ids (with the same
    number of copies), and per id the same token sequence, except where the two differ only in
    paragraphs that paragraph dedup may drop from either copy: dolma's dedupe (a Bloom filter
    filled by --processes W in whatever order they see the files) keeps the first occurrence it
    happens to meet, ours the first in a fixed order, so for a paragraph repeated across
    documents of the input the two may keep different copies. Such a document is accepted when
    every paragraph that only one side kept occurs at least twice in the input."""
    import numpy as np
    from tokenizers import Tokenizer

    ids_equal = {k: len(v) for k, v in ours.items()} == {k: len(v) for k, v in theirs.items()}
    differ = [k for k in ours if k in theirs and sorted(ours[k]) != sorted(theirs[k])]
    tok = Tokenizer.from_file(TOKENIZER)

    def paragraphs(b: bytes) -> collections.Counter:
        text = tok.decode(np.frombuffer(b, np.uint16).tolist(), skip_special_tokens=True)
        return collections.Counter(p.strip() for p in text.split("\n") if p.strip())

    wanted: dict[str, set] = {}
    for k in differ:
        a, b = paragraphs(ours[k][0]), paragraphs(theirs[k][0])
        wanted[k] = set((a - b) + (b - a))
    need = set().union(*wanted.values()) if wanted else set()
    seen: collections.Counter = collections.Counter()
    if need:
        for dp, _, files in os.walk(root):
            for f in files:
                with gzip.open(os.path.join(dp, f), "rt", encoding="utf-8") as fh:
                    for line in fh:
                        for p in json.loads(line)["text"].split("\n"):
                            if p.strip() in need:
                                seen[p.strip()] += 1
    repeated = [k for k in differ if all(seen[p] >= 2 for p in wanted[k])]
    # what dolma's own dedupe decides differently at W processes than at 1 (process order)
    by_order = [k for k in differ if k not in repeated and order_dependent is not None and k in order_dependent]
    unexplained = [k for k in differ if k not in repeated and k not in by_order]
    return {"same_documents": ids_equal and not unexplained, "ids_equal": ids_equal,
            "documents_ours": sum(map(len, ours.values())), "documents_dolma": sum(map(len, theirs.values())),
            "identical_sequences": sum(1 for k in ours if k in theirs and k not in differ),
            "differ_in_duplicate_paragraphs_only": len(repeated),
            "differ_where_dolma_itself_depends_on_process_order": len(by_order),
            "unexplained_count": len(unexplained), "unexplained": unexplained[:20], "only_ours": sorted(set(ours) - set(theirs))[:20],
            "only_dolma": sorted(set(theirs) - set(ours))[:20]}


# ---------------------------------------------------------------------------------------------
# dolma



def with_config(exe: str, command: str, config: dict, work: str, env: dict) -> dict:
    """`dolma -c WORK/COMMAND.json COMMAND`, timed."""
    path = os.path.join(work, f"{command}.json")
    with open(path, "w") as f:
        json.dump(config, f)
    return measure([exe, "-c", path, command], env=env)

def run_dolma(root: str, info: dict, work: str, workers: int, order_check: bool = True) -> dict:
    """dolma tag -> dedupe -> mix -> tokens on a copy of the input (the copy is not timed)."""
    shutil.rmtree(work, ignore_errors=True)
    docs = os.path.join(work, "documents")
    shutil.copytree(root, docs)
    exe = os.path.join(DOLMA, "bin", "dolma")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    env.update({"NLTK_DATA": "/nonexistent", "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"})
    glob_ = os.path.join(docs, "*", "*.jsonl.gz")
    steps = {}
    steps["tag"] = measure([exe, "tag", "--documents", glob_, "--taggers", "char_length_v1", "--experiment", "bench",
                            "--processes", str(workers)], env=env)
    print(_fmt("  dolma tag", steps["tag"]), flush=True)
    dedupe = {"documents": [glob_], "work_dir": {"input": os.path.join(work, "wi"), "output": os.path.join(work, "wo")},
              "dedupe": {"name": "dd", "paragraphs": {"attribute_name": ATTR, "by_ngram": {
                  "ngram_length": 13, "stride": 1, "overlap_threshold": 0.5}}, "skip_empty": True},
              "bloom_filter": {"file": os.path.join(work, "bloom.bin"), "read_only": False,
                               "estimated_doc_count": max(1, info["words"]),  # ~ one n-gram per word
                               "desired_false_positive_rate": 1e-6},
              "processes": workers}
    steps["dedupe"] = with_config(exe, "dedupe", dedupe, work, env)
    print(_fmt("  dolma dedupe", steps["dedupe"]), flush=True)
    mixed = os.path.join(work, "mixed")
    mix = {"streams": [{"name": "bench", "documents": [glob_], "attributes": ["bench", "dd"],
                        "output": {"path": mixed, "max_size_in_bytes": 1 << 30},
                        "filter": {"exclude": ["$.attributes[?(@.bench__char_length_v1__length[0][2] < 50)]"]},
                        "span_replacement": [{"span": f"$.attributes.{ATTR}", "min_score": 0.5, "replacement": ""}]}],
           "work_dir": {"input": os.path.join(work, "mi"), "output": os.path.join(work, "mo")},
           "processes": workers}
    steps["mix"] = with_config(exe, "mix", mix, work, env)
    print(_fmt("  dolma mix", steps["mix"]), flush=True)
    if order_check:
        # untimed: the same dedupe in one process, shards in our order (the order ours uses at
        # any worker count), to tell differences of process order from differences of method
        one = {**dedupe, "documents": sorted(glob.glob(glob_)), "processes": 1,
               "dedupe": {**dedupe["dedupe"], "name": "dd1"},
               "bloom_filter": {**dedupe["bloom_filter"], "file": os.path.join(work, "bloom1.bin")}}
        r = with_config(exe, "dedupe", one, work, env)
        print(_fmt("  dolma dedupe, 1 process (untimed order check)", r), flush=True)
    tokens = os.path.join(work, "tokens")
    steps["tokens"] = measure([exe, "tokens", "--documents", os.path.join(mixed, "*"), "--destination", tokens,
                               "--tokenizer.name_or_path", TOKENIZER, "--tokenizer.eos_token_id", str(EOS),
                               "--tokenizer.pad_token_id", str(PAD), "--processes", str(workers), "--seed", "0",
                               "--dtype", "uint16"], env=env)
    print(_fmt("  dolma tokens", steps["tokens"]), flush=True)
    seqs: dict = {}
    for f in sorted(os.listdir(tokens)):
        if f.endswith(".npy"):
            _add_sequences(os.path.join(tokens, f), seqs)
    total = {"wall_s": sum(s["wall_s"] for s in steps.values()), "cpu_s": sum(s["cpu_s"] for s in steps.values()),
             "steps": steps, "sequences": seqs}
    if order_check:
        total["spans"] = {n: spans_by_id(os.path.join(work, "attributes", n)) for n in ("dd", "dd1")}
    return total


# ---------------------------------------------------------------------------------------------
# the floor: read, decompress, parse, re-write

FLOOR = r"""
import json, os, sys, time
from concurrent.futures import ProcessPoolExecutor
from dolma_prep.core import io

def one(args):
    src, dst = args
    t0, c0 = time.perf_counter(), time.process_time()
    n = 0
    with io.AtomicWriter(dst) as w:
        for rec in io.read_documents(src):
            if rec.ok:
                w.write_line(rec.doc)
                n += 1
    return {"documents": n, "seconds": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}

root, out, workers, result = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]
only = set(sys.argv[5].split(",")) if len(sys.argv) > 5 else None  # these sources' folders only
files = sorted(os.path.join(dp, f) for dp, _, fs in os.walk(root) for f in fs if f.endswith(".jsonl.gz")
               and (only is None or os.path.relpath(dp, root).split(os.sep)[0] in only))
jobs = [(p, os.path.join(out, os.path.relpath(p, root))) for p in files]
with ProcessPoolExecutor(workers) as ex:
    res = list(ex.map(one, jobs))
with open(result, "w") as f:
    json.dump({"documents": sum(r["documents"] for r in res), "task_s": sum(r["seconds"] for r in res),
               "task_cpu_s": sum(r["cpu_s"] for r in res), "tasks": len(res)}, f)
"""


def run_floor(root: str, out: str, workers: int, sources: list[str] | None = None) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    proc_out = out + "-result.json"
    r = measure([sys.executable, "-c", FLOOR, root, out, str(workers), proc_out] + ([",".join(sources)] if sources else []))
    r.update(json.load(open(proc_out)))
    shutil.rmtree(out, ignore_errors=True)
    os.remove(proc_out)
    return r


# ---------------------------------------------------------------------------------------------


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=os.path.join(REPO, "..", "shared", "sample-corpus"))
    ap.add_argument("--target-mb", type=float, default=200)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--skip-dolma", action="store_true")
    ap.add_argument("--skip-scaling", action="store_true", help="no run at 1 worker")
    ap.add_argument("--anneal", action="store_true",
                    help="also run mixes/anneal.yaml on the same input and report it against its sources' floor")
    ap.add_argument("--token-targets", action="store_true",
                    help="also run ours with a token target per source (tokenize once: count + tokenize cost)")
    ap.add_argument("--memory-check", action="store_true", help="also run ours on a quarter of the input (1x vs 4x)")
    args = ap.parse_args()
    W = args.workers
    root, info = build(args.corpus, args.target_mb)
    data = os.path.dirname(root)
    sources = sorted(os.listdir(root))
    mix_path = os.path.join(data, "mix.yaml")
    with open(mix_path, "w") as f:
        f.write(MIX.format(attr=ATTR, eos=EOS, pad=PAD,
                           sources="\n".join(SOURCE.format(s=s, attr=ATTR) for s in sources)))
    print(f"input: {info['documents']:,} documents, {info['bytes'] / 1e6:.1f} MB of text "
          f"({info['gz_bytes'] / 1e6:.1f} MB gzip), {len(sources)} sources x {info['copies']} copies")
    print(f"machine: {platform.node()} {os.cpu_count()} cores, {platform.processor() or platform.machine()}; "
          f"date {time.strftime('%Y-%m-%d %H:%M')}; load {os.getloadavg()}", flush=True)
    res: dict = {"input": info, "workers": W, "machine": platform.node(), "cores": os.cpu_count(),
                 "date": time.strftime("%Y-%m-%d")}

    res["floor"] = run_floor(root, os.path.join(data, "floor"), W)
    print(_fmt(f"floor (read+parse+write, {W} proc)", res["floor"]), flush=True)
    ours = res[f"ours_w{W}"] = run_ours(mix_path, root, os.path.join(data, f"out-w{W}"), W)
    print(_fmt(f"dolma-prep run --workers {W}", ours) + f"  engine {ours['engine']}", flush=True)

    fl = res["floor"]
    print(f"\ncost vs the floor ({fl['cpu_s']:.1f} cpu-s for the whole input, {fl['task_cpu_s']:.1f} of them in its "
          f"tasks), CPU-seconds of each step's tasks (their wall task-seconds beside):")
    task_cpu = 0.0
    for step, s in ours["steps"].items():
        task_cpu += s["cpu_s"]
        print(f"  {step:10s} {s['cpu_s']:8.1f} cpu-s = {s['cpu_s'] / fl['cpu_s']:5.2f} x floor  "
              f"({s['tasks']} tasks, {s['task_s']:.1f} task-s, peak worker RSS {s['rss_mb']:.0f} MB)")
    rest = ours["cpu_s"] - task_cpu
    print(f"  {'rest':10s} {rest:8.1f} cpu-s = {rest / fl['cpu_s']:5.2f} x floor  (outside tasks: Ray's processes and "
          f"start-up, the driver, filter helper processes)")
    print(f"  whole run: {ours['cpu_s']:.1f} cpu-s = {ours['cpu_s'] / fl['cpu_s']:.2f} x the floor's cpu-s; "
          f"wall {ours['wall_s']:.1f} s = {ours['wall_s'] / fl['wall_s']:.2f} x", flush=True)
    res["vs_floor"] = {"cpu": ours["cpu_s"] / fl["cpu_s"], "wall": ours["wall_s"] / fl["wall_s"],
                       "steps": {k: v["cpu_s"] / fl["cpu_s"] for k, v in ours["steps"].items()},
                       "rest": rest / fl["cpu_s"]}

    if args.token_targets:
        # the same mix with a token target per source (half of what the run above produced):
        # the count step encodes every kept document, sample picks documents by those lengths,
        # tokenize writes the ids count stored. Tokenize-once means count + tokenize here cost
        # about what tokenize alone costs without targets.
        manifest = json.load(open(os.path.join(data, f"out-w{W}", "manifest.json")))
        halves = {name: int(src["tokens"] // 2) for name, src in manifest["sources"].items()}
        tmix = os.path.join(data, "mix-targets.yaml")
        with open(tmix, "w") as f:
            f.write(MIX.format(attr=ATTR, eos=EOS, pad=PAD, sources="\n".join(
                SOURCE.format(s=s, attr=ATTR)[:-1] + f", tokens: {halves[s]}}}" for s in sources)))
        tt = res["ours_token_targets"] = run_ours(tmix, root, os.path.join(data, "out-targets"), W)
        print(_fmt(f"dolma-prep run --workers {W}, token targets (half of each source)", tt), flush=True)
        enc = {k: tt["steps"].get(k, {}).get("cpu_s", 0.0) for k in ("count", "sample", "tokenize")}
        print(f"  count {enc['count']:.1f} + sample {enc['sample']:.1f} + tokenize {enc['tokenize']:.1f} cpu-s with "
              f"targets ({tt['tokens']:,} tokens written) vs tokenize {ours['steps']['tokenize']['cpu_s']:.1f} cpu-s "
              f"without ({ours['tokens']:,} tokens)", flush=True)
        res["token_targets"] = {**enc, "tokenize_without_targets": ours["steps"]["tokenize"]["cpu_s"],
                                "tokens": tt["tokens"]}

    if args.anneal:
        # the product's own anneal mix (mixes/anneal.yaml: 12 of the 17 sources, exact dedup, a
        # length rule, token targets scaled to the data) on the same input, vs the floor of
        # those 12 sources' files
        import yaml

        anneal = os.path.join(REPO, "mixes", "anneal.yaml")
        names = [s["name"] for s in yaml.safe_load(open(anneal))["sources"]]
        afl = res["floor_anneal"] = run_floor(root, os.path.join(data, "floor-anneal"), W, names)
        print(_fmt(f"floor of the anneal sources ({len(names)})", afl), flush=True)
        an = res["ours_anneal"] = run_ours(anneal, root, os.path.join(data, "out-anneal"), W)
        print(_fmt(f"dolma-prep run mixes/anneal.yaml --workers {W}", an), flush=True)
        task_cpu = 0.0
        for step, s in an["steps"].items():
            task_cpu += s["cpu_s"]
            print(f"  {step:10s} {s['cpu_s']:8.1f} cpu-s = {s['cpu_s'] / afl['cpu_s']:5.2f} x floor  "
                  f"({s['tasks']} tasks, peak worker RSS {s['rss_mb']:.0f} MB)")
        print(f"  {'rest':10s} {an['cpu_s'] - task_cpu:8.1f} cpu-s = {(an['cpu_s'] - task_cpu) / afl['cpu_s']:5.2f} x floor")
        print(f"  anneal run: {an['cpu_s']:.1f} cpu-s = {an['cpu_s'] / afl['cpu_s']:.2f} x its floor's cpu-s "
              f"({an['tokens']:,} tokens)", flush=True)
        res["anneal_vs_floor"] = {"cpu": an["cpu_s"] / afl["cpu_s"],
                                  "steps": {k: v["cpu_s"] / afl["cpu_s"] for k, v in an["steps"].items()},
                                  "rest": (an["cpu_s"] - task_cpu) / afl["cpu_s"]}

    if not args.skip_dolma and os.path.exists(os.path.join(DOLMA, "bin", "dolma")):
        print(f"dolma 1.2.1, --processes {W}:", flush=True)
        d = run_dolma(root, info, os.path.join(data, "dolma"), W)
        spans = d.pop("spans", None)
        order = method = None
        if spans:
            ours_spans = spans_by_id(os.path.join(data, f"out-w{W}", "attributes", ATTR))
            order = differing_ids(spans["dd"], spans["dd1"])
            method = differing_ids(ours_spans, spans["dd1"])
            print(f"paragraph dedup spans: dolma {W} processes vs dolma 1 process differ on {len(order):,} documents "
                  f"(process order); ours vs dolma 1 process (same order) differ on {len(method):,} of "
                  f"{len(ours_spans):,} {sorted(method)[:5]}", flush=True)
        cmp = compare_documents(our_sequences(os.path.join(data, f"out-w{W}")), d.pop("sequences"), root, order)
        if method is not None:
            cmp["spans_differ_dolma_w_vs_1"] = len(order)
            cmp["spans_differ_ours_vs_dolma_1"] = len(method)
        same = cmp["same_documents"]
        print(_fmt("dolma tag+dedupe+mix+tokens", {**d, "load_before": d["steps"]["tag"]["load_before"],
                                                   "load_after": d["steps"]["tokens"]["load_after"]}))
        print(f"same documents in the token arrays: {same} ({cmp['documents_ours']:,} ours, "
              f"{cmp['documents_dolma']:,} dolma; same ids: {cmp['ids_equal']}; identical token sequences: "
              f"{cmp['identical_sequences']:,}; differing only in which copy of a repeated paragraph dedup kept: "
              f"{cmp['differ_in_duplicate_paragraphs_only']}; where dolma's own dedupe depends on its process order: "
              f"{cmp['differ_where_dolma_itself_depends_on_process_order']}; unexplained: {cmp['unexplained_count']} "
              f"{cmp['unexplained'][:5]}; only ours {cmp['only_ours'][:5]}, only dolma {cmp['only_dolma'][:5]})")
        print(f"dolma / ours: wall {d['wall_s'] / ours['wall_s']:.2f}x, cpu {d['cpu_s'] / ours['cpu_s']:.2f}x", flush=True)
        res["dolma"] = d
        res["vs_dolma"] = {"wall": d["wall_s"] / ours["wall_s"], "cpu": d["cpu_s"] / ours["cpu_s"], **cmp}
        shutil.rmtree(os.path.join(data, "dolma"), ignore_errors=True)

    if not args.skip_scaling:
        one = res["ours_w1"] = run_ours(mix_path, root, os.path.join(data, "out-w1"), 1)
        print(_fmt("dolma-prep run --workers 1", one), flush=True)
        a, b = os.path.join(data, "out-w1", "manifest.json"), os.path.join(data, f"out-w{W}", "manifest.json")
        same = open(a).read() == open(b).read()
        print(f"speed-up 1 -> {W} workers: {one['wall_s'] / ours['wall_s']:.2f}x wall; manifests identical: {same}; "
              f"peak worker RSS {one['peak_worker_rss_mb']:.0f} MB (1) / {ours['peak_worker_rss_mb']:.0f} MB ({W})")
        res["scaling"] = {"speedup": one["wall_s"] / ours["wall_s"], "manifests_identical": same}

    if args.memory_check:
        small_root, small_info = build(args.corpus, args.target_mb / 4)
        small_mix = os.path.join(os.path.dirname(small_root), "mix.yaml")
        shutil.copy(mix_path, small_mix)
        q = res["ours_quarter"] = run_ours(small_mix, small_root, os.path.join(os.path.dirname(small_root), "out"), W)
        print(_fmt(f"dolma-prep run, 1/4 of the input, {W} w", q))
        print(f"peak worker RSS: {q['peak_worker_rss_mb']:.0f} MB at 1x ({small_info['bytes'] / 1e6:.0f} MB) vs "
              f"{ours['peak_worker_rss_mb']:.0f} MB at 4x ({info['bytes'] / 1e6:.0f} MB); per step, peak (largest "
              f"growth within one task) at 1x -> 4x:")
        for step in ours["steps"]:
            a, b = q["steps"].get(step, {}), ours["steps"][step]
            print(f"  {step:10s} {a.get('rss_mb', 0):6.0f} ({a.get('task_rss_mb', 0):4.0f}) -> "
                  f"{b['rss_mb']:6.0f} ({b['task_rss_mb']:4.0f}) MB")
        res["memory"] = {"rss_1x_mb": q["peak_worker_rss_mb"], "rss_4x_mb": ours["peak_worker_rss_mb"],
                         "per_step_1x": {k: v["rss_mb"] for k, v in q["steps"].items()},
                         "per_step_4x": {k: v["rss_mb"] for k, v in ours["steps"].items()},
                         "task_growth_1x": {k: v["task_rss_mb"] for k, v in q["steps"].items()},
                         "task_growth_4x": {k: v["task_rss_mb"] for k, v in ours["steps"].items()}}

    with open(os.path.join(data, "results.json"), "w") as f:
        json.dump(res, f, indent=1, default=str)
    print(f"\nresults: {os.path.join(data, 'results.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
