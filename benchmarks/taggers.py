"""Tagging throughput: ours vs `dolma tag` (dolma 1.2.1 from .peer-venvs/dolma), same files, same
taggers, same number of processes, in one run; checks that both wrote identical attributes.

    .venv/bin/python benchmarks/taggers.py                       # the full sample corpus, 2 processes
    .venv/bin/python benchmarks/taggers.py --repeat 3 --json out.json
    .venv/bin/python benchmarks/taggers.py --catalogue paragraphs   # one family of the issue-19 catalogue
    .venv/bin/python benchmarks/taggers.py --catalogue hf --ours-only --hf-model DIR   # no dolma counterpart

`--catalogue FAMILY` benchmarks the later taggers with local resources built in the work
folder (tiny fastText models trained on the documents, the Adblock list of
tests/test_taggers_parity_catalogue.py, or `--abp-list` for a real one such as
oisd_small_abp.txt); dolma is pointed at the same files through
tests/fixtures/taggers/dolma_peer_local.py. Families: paragraphs, sentences, dclm, adblock,
hf (`hf_classifier_v1`, ours only: dolma has none; `--hf-model` a local model folder, default
a tiny BERT built here, which measures the runner, not a real model).

Both sides run as fresh subprocesses and are timed wall-clock from start to exit (imports and
model loading included); CPU seconds are the machine's busy time during the run (Ray's workers
are not the command's children, so its rusage would miss them): run on a quiet machine. The
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
PEER_MODULE = REPO / "tests" / "fixtures" / "taggers" / "dolma_peer_local.py"
CATALOGUE = {
    "paragraphs": ["cld2_en_paragraph_with_doc_score_v2", "ft_lang_id_en_paragraph_v2", "char_length_with_paragraphs_v1",
                   "whitespace_tokenizer_with_paragraphs_v1", "not_alphanum_paragraph_v1"],
    "sentences": ["jigsaw_hatespeech_sentence_v2", "jigsaw_nsfw_sencence_v2"],
    "dclm": ["dclm-oh-eli5"],
    "adblock": ["oisd_small_abp_v1"],
    "hf": ["hf_classifier_v1"],
}


def _catalogue_resources(family: str, docs_root: Path, work: Path, abp_list: str | None,
                         hf_model: str | None) -> dict[str, dict]:
    """Local models and lists for one catalogue family: {tagger: options}."""
    sys.path.insert(0, str(REPO / "tests"))
    taggers = CATALOGUE[family]
    if family == "adblock":
        if not abp_list:
            from test_taggers_parity_catalogue import ABP_RULES

            (work / "rules.txt").write_text(ABP_RULES)
            abp_list = str(work / "rules.txt")
        return {t: {"blocklist_path": [abp_list]} for t in taggers}
    if family == "hf":
        if not hf_model:  # in a fresh interpreter: benchmarks/tokenize.py would shadow the stdlib's for torch
            hf_model = str(work / "hf")
            subprocess.run([sys.executable, "-c", "import sys; from pathlib import Path; sys.path.insert(0, 'tests'); "
                            f"from test_taggers_transformer import build; build(Path({hf_model!r}), 1)"],
                           cwd=REPO, check=True, capture_output=True)
        return {t: {"model_path": hf_model, "batch_size": 32} for t in taggers}
    from dolma_prep.taggers.train_classifier import train_fasttext

    rows = []
    for f in sorted(docs_root.glob("*/*.jsonl.gz")):
        with gzip.open(f, "rt") as fh:
            rows += [json.loads(x) for x in fh]
    words = lambda x: " ".join(x["text"].split()[:200])  # noqa: E731
    p = {"dim": 16, "bucket": 20000, "epoch": 5}
    model = work / f"{family}.bin"
    if family == "dclm":
        train_fasttext([("hq" if x["source"] in ("stackexchange", "wiki") else "cc", words(x)) for x in rows], str(model), 1, p)
    elif family == "sentences":
        train_fasttext([("toxic" if x["source"] == "reddit" else "non_toxic", words(x)) for x in rows], str(model), 1, p)
    else:
        train_fasttext([((x.get("metadata") or {}).get("language") or "en", words(x).lower()) for x in rows], str(model), 1, p)
    return {t: ({"model_path": str(model)} if t.startswith(("ft_", "jigsaw", "dclm")) else {}) for t in taggers}


def _busy_cpu_s() -> float:
    """CPU seconds the whole machine has been busy (all cores, /proc/stat). A Ray run's workers
    are children of the raylet, not of the command, so the command's rusage misses them; on a
    quiet machine the machine-wide delta is the command's CPU (run the benchmark on one)."""
    with open("/proc/stat") as f:
        user, nice, system, _idle, _iowait, irq, softirq, steal = (int(x) for x in f.readline().split()[1:9])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def _timed(cmd: list[str], env: dict) -> tuple[float, float]:
    before = max(0.0, _busy_cpu_s())
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    wall = time.perf_counter() - t0
    cpu = _busy_cpu_s() - before
    if proc.returncode != 0:
        raise SystemExit(f"{cmd[0]} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
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
    ap.add_argument("--catalogue", choices=sorted(CATALOGUE), help="benchmark one family of the later taggers instead")
    ap.add_argument("--ours-only", action="store_true", help="time ours only (taggers dolma does not have)")
    ap.add_argument("--abp-list", help="a local Adblock Plus list for --catalogue adblock")
    ap.add_argument("--hf-model", help="a local Hugging Face model folder for --catalogue hf")
    args = ap.parse_args()
    taggers, options = TAGGERS, {}

    dolma = Path(args.peer) / "bin" / "dolma"
    if args.catalogue == "hf" and not args.ours_only:
        raise SystemExit("dolma has no transformer tagger: use --catalogue hf --ours-only")
    if not dolma.exists() and not args.ours_only:
        raise SystemExit(f"no dolma at {dolma}: run scripts/setup_peer_dolma.sh")
    env = {**os.environ, "NLTK_DATA": "/nonexistent", "PYTHONWARNINGS": "ignore", "TOKENIZERS_PARALLELISM": "false"}
    work = Path(tempfile.mkdtemp(prefix="bench_taggers_"))
    try:
        shutil.copytree(args.documents, work / "documents")
        shutil.copytree(args.documents, work / "ours" / "documents")
        n_docs = _count_docs(work / "documents")
        if args.catalogue:
            options = _catalogue_resources(args.catalogue, work / "documents", work, args.abp_list, args.hf_model)
            taggers = list(options)
            (work / "local.json").write_text(json.dumps({t: o for t, o in options.items() if o}))
            env["DOLMA_PEER_LOCAL"] = str(work / "local.json")
        peer_modules = ["--tagger_modules", str(PEER_MODULE)] if args.catalogue else []
        runs: dict[str, list[tuple[float, float]]] = {"ours": []} if args.ours_only else {"dolma": [], "ours": []}
        for r in range(args.repeat):
            exp = f"bench{r}"
            if not args.ours_only:
                runs["dolma"].append(_timed(
                    [str(dolma), "tag", "--documents", str(work / "documents" / "*" / "*.jsonl.gz"), *peer_modules,
                     "--taggers", *taggers, "--experiment", exp, "--processes", str(args.processes)], env))
            ours_dir = work / "ours" / "attributes" / exp
            runs["ours"].append(_timed(
                [*OURS, "--documents", str(work / "ours" / "documents" / "*" / "*.jsonl.gz"), "--taggers",
                 ",".join(taggers), "--experiment", exp, "--workers", str(args.processes)]
                + (["--options", json.dumps(options)] if options else []), env))
            if args.ours_only:
                print(f"run {r}: ours {runs['ours'][-1][0]:.2f} s", flush=True)
                continue
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
        if not args.ours_only:
            res["speedup_wall"] = round(res["dolma"]["wall_s"] / res["ours"]["wall_s"], 2)
            res["speedup_cpu"] = round(res["dolma"]["cpu_s"] / res["ours"]["cpu_s"], 2)
        res.update({"documents": n_docs, "taggers": taggers, "processes": args.processes,
                    "identical": None if args.ours_only else True,
                    "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, {platform.python_version()}",
                    "date": time.strftime("%Y-%m-%d %H:%M"), "load_avg_1m": round(os.getloadavg()[0], 2)})
        print(f"\n{n_docs} documents, taggers {','.join(taggers)}, {args.processes} processes, median of {args.repeat}")
        for side in runs:
            r = res[side]
            print(f"  {side:<6} {r['wall_s']:7.2f} s  {r['docs_per_s']:8.1f} docs/s   cpu {r['cpu_s']:6.2f} s")
        if not args.ours_only:
            print(f"  ratio (ours/dolma throughput): {res['speedup_wall']:.2f}x wall, {res['speedup_cpu']:.2f}x cpu; "
                  "outputs identical")
        if args.json:
            Path(args.json).write_text(json.dumps(res, indent=2))
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
