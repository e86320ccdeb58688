"""Tokenizer throughput: ours vs `dolma tokens` vs the tokenizer's own limit, same data, same cores.

Builds ~200 MB of documents (text bytes) from ../shared/sample-corpus: every document
replicated with a new id (text unchanged), shuffled with a fixed seed and spread over
`--files` gzip JSONL files of about equal size, under benchmarks/_data/tokenize/. Then, in
rounds (order rotated each round, since other work on the machine drifts):

- raw limit: the same tokenizer file's `encode_batch` and `encode_batch_fast` on the stripped
  texts already in memory, 2 Rust threads (RAYON_NUM_THREADS=2), timed around the encode calls
  only (`--raw-processes` instead runs 2 single-threaded processes on halves of the texts);
- ours: `dolma-prep tokenize --workers 2` (Ray start included);
- dolma: `dolma tokens --processes 2` from the peer venv (scripts/setup_peer_dolma.sh);
- ours_pool: our stage code (`run_command_shard`) on a plain 2-process pool, no Ray: shows what
  Ray's start-up costs (for comparison only; the command runs on Ray).

Each command also runs on one small file to measure its fixed start-up cost; "net" throughput
divides by (wall - start-up). CPU seconds are summed over each command's process tree from
/proc (sampled every 0.2 s), so tokens per CPU-second is a second, load-robust view. The token
totals of ours and dolma must be equal (checked). Prints a table per round and medians with
the spread, writes benchmarks/_data/tokenize/results.json.

    python benchmarks/tokenize.py [--target-mb 200] [--files 16] [--rounds 3] [--workers 2]

`--engines` measures the tokenizer engines instead (pipeline/encoder.py): in one process, one
thread each (RAYON_NUM_THREADS=1, FASTOKENS_BPE_THREADS=1), M tokens per CPU-second of
`tokenizers` (`encode_batch_fast`) and `fastokens` (`encode_batch_flat`) on the texts of the
shared sample corpus (../shared/sample-corpus; the bundled sample where it is absent; or
`--engine-files`), through the calls the pipeline makes, best of `--rounds` passes, and whether their ids are
identical on every probe set: the sample, the worker's start-up probe set, the adversarial set
of the tests (100k-character runs, a 1 MB text without spaces). Writes
benchmarks/_data/tokenize/engines.json.

    python benchmarks/tokenize.py --engines [--rounds 3] [--engine-files 'sample/documents/*/*.jsonl.gz']
    python benchmarks/tokenize.py --engines --rounds 1 --engine-files 'sample/documents/*/*.jsonl.gz'  # quick
"""
from __future__ import annotations

import argparse
import gzip
import json
import os
import platform
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
DATA = os.path.join(HERE, "_data", "tokenize")
TOKENIZER = os.path.join(REPO, "pipeline", "resources", "allenai_gpt-neox-olmo-dolma-v1_5.json")
DOLMA = os.environ.get("PEER_DOLMA_VENV", os.path.join(REPO, ".peer-venvs", "dolma"))
TICK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------
# data


def build(corpus: str, target_mb: float, n_files: int) -> tuple[list[str], dict]:
    root = os.path.join(DATA, f"documents-{target_mb:g}mb-{n_files}")
    stamp = os.path.join(root, "built.json")
    if os.path.exists(stamp):
        info = json.load(open(stamp))
        return [os.path.join(root, f) for f in info["files"]], info
    shutil.rmtree(root, ignore_errors=True)
    os.makedirs(root)
    docs = []
    src_root = os.path.join(corpus, "documents")
    for s in sorted(os.listdir(src_root)):
        for name in sorted(os.listdir(os.path.join(src_root, s))):
            with gzip.open(os.path.join(src_root, s, name), "rt", encoding="utf-8") as f:
                docs += [json.loads(line) for line in f]
    one = sum(len(d["text"].encode("utf-8")) for d in docs)
    copies = max(1, round(target_mb * 1e6 / one))
    rows = [(c, d) for c in range(copies) for d in docs]
    random.Random(0).shuffle(rows)
    per_file = -(-copies * one // n_files)
    files, size, f, k = [], 0, None, -1
    for c, d in rows:
        if f is None or (size >= per_file and k < n_files - 1):
            if f is not None:
                f.close()
            k += 1
            files.append(f"{k:04d}.jsonl.gz")
            f = gzip.open(os.path.join(root, files[-1]), "wt", encoding="utf-8", compresslevel=6)
            size = 0
        f.write(json.dumps({**d, "id": f"c{c}-{d['id']}"}, ensure_ascii=False) + "\n")
        size += len(d["text"].encode("utf-8"))
    f.close()
    info = {"files": files, "documents": len(rows), "text_bytes": copies * one, "copies": copies,
            "gz_bytes": sum(os.path.getsize(os.path.join(root, x)) for x in files)}
    with open(stamp, "w") as out:
        json.dump(info, out)
    return [os.path.join(root, x) for x in files], info


# ---------------------------------------------------------------------------------------------
# measuring a command: wall time and CPU seconds of its whole process tree


def _tree_cpu(root: int, seen: dict[int, float]) -> None:
    parents: dict[int, int] = {}
    times: dict[int, float] = {}
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as f:
                stat = f.read().decode("ascii", "replace")
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        pid = int(name)
        parents[pid] = int(fields[1])
        times[pid] = (int(fields[11]) + int(fields[12])) / TICK
    tree, frontier = {root}, [root]
    children: dict[int, list[int]] = {}
    for pid, ppid in parents.items():
        children.setdefault(ppid, []).append(pid)
    while frontier:
        for child in children.get(frontier.pop(), []):
            if child not in tree:
                tree.add(child)
                frontier.append(child)
    for pid in tree:
        if pid in times:
            seen[pid] = max(seen.get(pid, 0.0), times[pid])


def measure(cmd: list[str], env: dict | None = None, cwd: str | None = None) -> dict:
    seen: dict[int, float] = {}
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, cwd=cwd, text=True)
    done = threading.Event()

    def poll():
        while not done.wait(0.2):
            _tree_cpu(proc.pid, seen)

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    out, err = proc.communicate()
    wall = time.perf_counter() - t0
    done.set()
    poller.join()
    if proc.returncode not in (0,):
        raise SystemExit(f"{' '.join(cmd[:3])} ... exited {proc.returncode}\n{out[-2000:]}\n{err[-3000:]}")
    return {"wall_s": wall, "cpu_s": sum(seen.values()), "stdout": out}


def count_tokens(folder: str) -> int:
    return sum(os.path.getsize(os.path.join(folder, f)) // 2 for f in os.listdir(folder) if f.endswith(".npy"))


# ---------------------------------------------------------------------------------------------
# the three contenders

RAW = r"""
import gzip, json, os, sys, time
from tokenizers import Tokenizer
tok = Tokenizer.from_file(sys.argv[1]); mode = sys.argv[2]; part, parts = int(sys.argv[3]), int(sys.argv[4])
texts = []
for p in sys.argv[5:]:
    with gzip.open(p, "rt", encoding="utf-8") as f:
        for line in f:
            t = json.loads(line)["text"].strip()
            if t:
                texts.append(t)
texts = texts[part::parts]
fn = tok.encode_batch_fast if mode == "fast" else tok.encode_batch
B = 1024
n = 0
sys.stdout.write("ready\n"); sys.stdout.flush(); sys.stdin.readline()
c0, t0 = time.process_time(), time.perf_counter()
for i in range(0, len(texts), B):
    n += sum(len(e) for e in fn(texts[i:i + B], add_special_tokens=False))
print(json.dumps({"tokens": n, "wall_s": time.perf_counter() - t0, "cpu_s": time.process_time() - c0}))
"""


def run_raw(files: list[str], mode: str, workers: int, processes: bool) -> dict:
    """Encode-only time: the texts are loaded first (untimed), then all processes start together."""
    n = workers if processes else 1
    env = {**os.environ, "RAYON_NUM_THREADS": "1" if processes else str(workers),
           "TOKENIZERS_PARALLELISM": "false" if processes else "true"}
    procs = [subprocess.Popen([sys.executable, "-c", RAW, TOKENIZER, mode, str(i), str(n), *files], env=env,
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True) for i in range(n)]
    for p in procs:
        assert p.stdout.readline().strip() == "ready"
    t0 = time.perf_counter()
    for p in procs:
        p.stdin.write("go\n")
        p.stdin.flush()
    results = [json.loads(p.stdout.readline()) for p in procs]
    wall = time.perf_counter() - t0
    for p in procs:
        p.wait()
    return {"tokens": sum(r["tokens"] for r in results), "wall_s": wall, "net_s": wall,
            "cpu_s": sum(r["cpu_s"] for r in results)}


def run_ours(files: list[str], out: str, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = {**os.environ, "RAY_ADDRESS": "local", "RAY_DEDUP_LOGS": "0"}
    cli = os.path.join(os.path.dirname(sys.executable), "dolma-prep")
    r = measure([cli, "tokenize", "--documents", *files, "--output", out, "--workers", str(workers), "-q"], env=env)
    r["tokens"] = count_tokens(out)
    shutil.rmtree(out, ignore_errors=True)
    return r


POOL = r"""
import os, sys
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from concurrent.futures import ProcessPoolExecutor
from dolma_prep.pipeline.mixfile import BUNDLED_TOKENIZER, TokenizerConfig
from dolma_prep.core.runtime import Shard
from dolma_prep.pipeline.stages.tokenize import run_command_shard
workers, out, files = int(sys.argv[1]), sys.argv[2], sys.argv[3:]
ctx = {"output": out, "tokenizer": TokenizerConfig(path=BUNDLED_TOKENIZER).model_dump(), "seed": 0}
shards = [Shard("", i, p, f"{i:06d}") for i, p in enumerate(files)]
with ProcessPoolExecutor(workers) as ex:
    list(ex.map(run_command_shard, shards, [ctx] * len(shards)))
"""


def run_pool(files: list[str], out: str, workers: int) -> dict:
    """Our stage code on a plain process pool instead of Ray: what Ray's start-up costs (a
    prototype for comparison, not a command)."""
    shutil.rmtree(out, ignore_errors=True)
    r = measure([sys.executable, "-c", POOL, str(workers), out, *files])
    r["tokens"] = count_tokens(out)
    shutil.rmtree(out, ignore_errors=True)
    return r


PAIRED = r"""
import gzip, json, os, statistics, sys, time
os.environ["TOKENIZERS_PARALLELISM"] = "false"
from dolma_prep.pipeline.mixfile import BUNDLED_TOKENIZER, TokenizerConfig
from dolma_prep.core.runtime import Shard
from dolma_prep.pipeline.stages import tokenize as tk
from dolma_prep.pipeline.stages.common import Rejects
out, reps, files = sys.argv[1], int(sys.argv[2]), sys.argv[3:]
tcfg = TokenizerConfig(path=BUNDLED_TOKENIZER)
tok = tk.load_tokenizer(tcfg.path)
ratios = []
for rep in range(reps):
    for i, path in enumerate(files):
        with gzip.open(path, "rt", encoding="utf-8") as f:
            texts = [t for t in (json.loads(line)["text"].strip() for line in f) if t]
        c = time.process_time()
        for j in range(0, len(texts), 512):
            tok.encode_batch_fast(texts[j:j + 512], add_special_tokens=False)
        raw = time.process_time() - c
        del texts
        c = time.process_time()
        tk.tokenize_file(path, out, i, tcfg, 0, "", tk.ALL, path, Rejects({"output": out}, "tokenize", Shard("", i, path, "x")))
        ours = time.process_time() - c
        ratios.append(raw / ours)
print(json.dumps(ratios))
"""


def run_paired(files: list[str], out: str, reps: int) -> list[float]:
    """Stage efficiency, paired: in one single-threaded process, for each file, the CPU time of
    encode_batch_fast on its texts (already in memory) over the CPU time of our whole stage on
    the file (read, parse, encode, write). Alternating per file cancels the drift of other load."""
    r = measure([sys.executable, "-c", PAIRED, out, str(reps), *files])
    shutil.rmtree(out, ignore_errors=True)
    return json.loads(r["stdout"])


def run_dolma(files: list[str], out: str, workers: int) -> dict:
    shutil.rmtree(out, ignore_errors=True)
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYTHONPATH")}
    r = measure([os.path.join(DOLMA, "bin", "dolma"), "tokens", "--documents", *files, "--destination", out,
                 "--tokenizer.name_or_path", TOKENIZER, "--tokenizer.eos_token_id", "50279",
                 "--tokenizer.pad_token_id", "1", "--processes", str(workers), "--seed", "0", "--dtype", "uint16"],
                env=env)
    r["tokens"] = count_tokens(out)
    shutil.rmtree(out, ignore_errors=True)
    return r


ENGINES = r"""
import glob, gzip, json, os, sys, time
os.environ["RAYON_NUM_THREADS"] = "1"; os.environ["FASTOKENS_BPE_THREADS"] = "1"
os.environ["TOKENIZERS_PARALLELISM"] = "false"
import numpy as np
from importlib.metadata import version
from dolma_prep.pipeline import encoder as en
pattern, rounds, out = sys.argv[1], int(sys.argv[2]), sys.argv[3]
texts = []
for p in sorted(glob.glob(pattern)):
    with gzip.open(p, "rt", encoding="utf-8") as f:
        texts += [t for t in (json.loads(line)["text"].strip() for line in f) if t]
ref = en.load_reference(os.environ["TOKENIZER"])
enc = en.Encoder(os.environ["TOKENIZER"], engine="fastokens")
# what the pipeline calls (pipeline/encoder.py): flat uint32 ids and per-text lengths, no
# per-document Python lists on either side; ids compared after timing
def run_ref(ts):
    flat, lens, errors = en._reference_flat(ref, ts)
    return flat, lens, errors
def run_fast(ts):
    flat, lens, errors, routed = enc.encode_raw(ts)
    assert routed == 0, routed
    return flat, lens, errors
def same(x, y):
    return np.array_equal(x[0], y[0]) and np.array_equal(x[1], y[1]) and x[2] == y[2]
res = {"documents": len(texts), "characters": sum(map(len, texts)), "engines": {}}
ids = {}
for name, fn in (("tokenizers " + version("tokenizers"), run_ref), ("fastokens " + version("fastokens"), run_fast)):
    best = None
    for _ in range(rounds):
        c = time.process_time(); got = fn(texts); cpu = time.process_time() - c
        best = cpu if best is None else min(best, cpu)
    ids[name] = got
    n = len(got[0])
    res["engines"][name] = {"tokens": n, "cpu_s": best, "M_tokens_per_cpu_s": n / best / 1e6}
a, b = ids.values()
res["identical"] = {"sample": same(a, b)}
for label, ts in (("probe set", en.probe_texts()), ("adversarial set", list(en.adversarial_texts(20).values())
                  + [en._pseudo_random_text(1_000_000, "abcdefghijklmnopqrstuvwxyz0123456789", 3)])):
    res["identical"][label] = same(run_ref(ts), run_fast(ts))
json.dump(res, open(out, "w"), indent=1)
"""


def engines_main(args) -> int:
    os.makedirs(DATA, exist_ok=True)
    out = os.path.join(DATA, "engines.json")
    env = {**os.environ, "TOKENIZER": TOKENIZER}
    r = measure([sys.executable, "-c", ENGINES, args.engine_files, str(args.rounds), out], env=env)
    res = json.load(open(out))
    res.update({"machine": platform.node(), "cores": os.cpu_count(), "date": time.strftime("%Y-%m-%d"),
                "load": os.getloadavg()[0], "process_cpu_s": r["cpu_s"]})
    with open(out, "w") as f:
        json.dump(res, f, indent=1)
    print(f"{res['documents']:,} documents, {res['characters'] / 1e6:.1f} M characters ({args.engine_files}); "
          f"one thread per engine, best of {args.rounds}; load {res['load']:.1f}")
    base = None
    for name, e in res["engines"].items():
        base = base or e["M_tokens_per_cpu_s"]
        print(f"  {name:20s} {e['tokens']:>12,} tokens {e['cpu_s']:7.2f} cpu-s {e['M_tokens_per_cpu_s']:7.3f} "
              f"M tok/cpu-s ({e['M_tokens_per_cpu_s'] / base:.2f}x)")
    print("  identical ids: " + ", ".join(f"{k}: {'yes' if v else 'NO'}" for k, v in res["identical"].items()))
    return 0 if all(res["identical"].values()) else 1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--corpus", default=os.path.join(REPO, "..", "shared", "sample-corpus"))
    ap.add_argument("--target-mb", type=float, default=200)
    ap.add_argument("--files", type=int, default=16)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--raw-processes", action="store_true", help="raw limit as N single-threaded processes")
    ap.add_argument("--skip-dolma", action="store_true")
    ap.add_argument("--paired-files", type=int, default=4, help="files for the paired stage-efficiency check (0: skip)")
    ap.add_argument("--only", default="raw_fast,raw,ours,dolma,ours_pool", help="comma-separated subset to run")
    ap.add_argument("--engines", action="store_true", help="measure the tokenizer engines (see the docstring)")
    shared = os.path.join(REPO, "..", "shared", "sample-corpus", "documents")
    ap.add_argument("--engine-files", default=os.path.join(shared if os.path.isdir(shared) else
                                                           os.path.join(REPO, "sample", "documents"), "*", "*.jsonl.gz"),
                    help="the texts to time and compare (default: the shared sample corpus, else the bundled sample)")
    args = ap.parse_args()
    if args.engines:
        return engines_main(args)
    have_dolma = os.path.exists(os.path.join(DOLMA, "bin", "dolma")) and not args.skip_dolma
    files, info = build(args.corpus, args.target_mb, args.files)
    print(f"data: {info['documents']:,} documents, {info['text_bytes'] / 1e6:.1f} MB text, "
          f"{info['gz_bytes'] / 1e6:.1f} MB gzip, {len(files)} files; {platform.node()}, {os.cpu_count()} cores, "
          f"{platform.processor() or platform.machine()}; workers {args.workers}", flush=True)
    work = tempfile.mkdtemp(prefix="tok-bench-", dir=DATA)
    try:
        small = [files[0]]
        start = {}
        names = [n for n in args.only.split(",") if n in ("raw_fast", "raw", "ours", "dolma", "ours_pool")]
        if "ours" in names:
            start["ours"] = run_ours([_tiny(small[0], work)], os.path.join(work, "o"), args.workers)["wall_s"]
        if "ours_pool" in names:
            start["ours_pool"] = run_pool([_tiny(small[0], work)], os.path.join(work, "p"), args.workers)["wall_s"]
        if "dolma" in names and have_dolma:
            start["dolma"] = run_dolma([_tiny(small[0], work)], os.path.join(work, "d"), args.workers)["wall_s"]
        print("start-up on a 20-document file: " + ", ".join(f"{k} {v:.1f}s" for k, v in start.items()), flush=True)
        rounds = []
        for r in range(args.rounds):
            order = names[r % len(names):] + names[:r % len(names)]
            res = {}
            for name in order:
                if name == "dolma" and not have_dolma:
                    continue
                if name.startswith("raw"):
                    res[name] = run_raw(files, "fast" if name == "raw_fast" else "batch", args.workers,
                                        args.raw_processes)
                elif name == "ours":
                    res[name] = run_ours(files, os.path.join(work, "ours"), args.workers)
                elif name == "ours_pool":
                    res[name] = run_pool(files, os.path.join(work, "pool"), args.workers)
                else:
                    res[name] = run_dolma(files, os.path.join(work, "dolma"), args.workers)
                x = res[name]
                x.pop("stdout", None)
                x.setdefault("net_s", x["wall_s"] - start.get(name, 0.0))
                x["tok_s"] = x["tokens"] / x["wall_s"]
                x["net_tok_s"] = x["tokens"] / x["net_s"]
                x["tok_cpu_s"] = x["tokens"] / x["cpu_s"]
                print(f"round {r + 1} {name:10s} {x['tokens']:>12,} tokens {x['wall_s']:7.1f}s wall "
                      f"{x['tok_s'] / 1e6:6.3f} M tok/s (net of start-up {x['net_tok_s'] / 1e6:6.3f}) "
                      f"{x['cpu_s']:7.1f} cpu-s {x['tok_cpu_s'] / 1e6:6.3f} M tok/cpu-s "
                      f"load {os.getloadavg()[0]:.1f}", flush=True)
            if "ours" in res and "dolma" in res and res["ours"]["tokens"] != res["dolma"]["tokens"]:
                raise SystemExit(f"token totals differ: ours {res['ours']['tokens']} dolma {res['dolma']['tokens']}")
            rounds.append(res)
        summary = summarize(rounds)
        if args.paired_files:
            ratios = run_paired(files[:args.paired_files], os.path.join(work, "paired"), 2)
            summary["stage_cpu_efficiency_paired"] = {"median": statistics.median(ratios), "min": min(ratios),
                                                      "max": max(ratios), "n": len(ratios)}
            print(f"  stage CPU efficiency, paired (encode_batch_fast CPU / our stage CPU, same file, one thread): "
                  f"median {statistics.median(ratios):.3f} [{min(ratios):.3f}-{max(ratios):.3f}] over {len(ratios)} pairs")
        with open(os.path.join(DATA, "results.json"), "w") as f:
            json.dump({"data": info, "workers": args.workers, "start_up_s": start, "rounds": rounds,
                       "summary": summary, "date": time.strftime("%Y-%m-%d"), "machine": platform.node(),
                       "cores": os.cpu_count()}, f, indent=1)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


def _tiny(path: str, work: str) -> str:
    out = os.path.join(work, "tiny.jsonl.gz")
    with gzip.open(path, "rt", encoding="utf-8") as f, gzip.open(out, "wt", encoding="utf-8") as g:
        for i, line in enumerate(f):
            if i == 20:
                break
            g.write(line)
    return out


def summarize(rounds: list[dict]) -> dict:
    def stats(values):
        return {"median": statistics.median(values), "min": min(values), "max": max(values)}

    names = sorted({n for r in rounds for n in r})
    summary = {}
    print("\nmedian [min-max] over rounds")
    for name in names:
        summary[name] = {k: stats([r[name][k] for r in rounds if name in r]) for k in ("tok_s", "net_tok_s", "tok_cpu_s")}
        s = summary[name]
        print(f"  {name:9s} {s['tok_s']['median'] / 1e6:.3f} [{s['tok_s']['min'] / 1e6:.3f}-{s['tok_s']['max'] / 1e6:.3f}]"
              f" M tok/s, net {s['net_tok_s']['median'] / 1e6:.3f}, {s['tok_cpu_s']['median'] / 1e6:.3f} M tok/cpu-s")
    limits = [n for n in ("raw_fast", "raw") if n in names]
    for who in ("ours", "ours_pool", "dolma"):
        for lim in limits:
            if who not in names:
                continue
            per = {k: [r[who][k] / r[lim][k] for r in rounds if who in r and lim in r]
                   for k in ("tok_s", "net_tok_s", "tok_cpu_s")}
            summary[f"{who}/{lim}"] = {k: stats(v) for k, v in per.items() if v}
            s = summary[f"{who}/{lim}"]
            print(f"  {who}/{lim}: wall {s['tok_s']['median']:.3f} [{s['tok_s']['min']:.3f}-{s['tok_s']['max']:.3f}], "
                  f"net of start-up {s['net_tok_s']['median']:.3f} [{s['net_tok_s']['min']:.3f}-"
                  f"{s['net_tok_s']['max']:.3f}], per cpu-s {s['tok_cpu_s']['median']:.3f} "
                  f"[{s['tok_cpu_s']['min']:.3f}-{s['tok_cpu_s']['max']:.3f}]")
    if "ours" in names and "dolma" in names:
        per = [r["ours"]["tok_s"] / r["dolma"]["tok_s"] for r in rounds if "ours" in r and "dolma" in r]
        summary["ours/dolma"] = {"tok_s": stats(per)}
        print(f"  ours/dolma: wall {statistics.median(per):.3f} [{min(per):.3f}-{max(per):.3f}]")
    return summary


if __name__ == "__main__":
    sys.exit(main())
