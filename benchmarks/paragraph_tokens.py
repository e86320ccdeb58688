"""Paragraph dedup's vectorised tokenizer against the full UAX #29 rules, and its keys stage's cost.

    python benchmarks/paragraph_tokens.py                       # the shared sample corpus
    python benchmarks/paragraph_tokens.py --documents DIR       # any documents folder

1. Every paragraph of every document: the tokens `text.token_bounds` finds (paragraphs without
   SLOW characters) must equal `text.dolma_tokens` (the `regex` module's word boundaries, the
   rules dolma's deduper uses); prints how many paragraphs each way and any that differ.
2. CPU-seconds of paragraph dedup's first stage (`paragraphs._stage_keys`: read, tokenise, hash
   every n-gram) over the same files, in this process, against reading and parsing them alone.
"""

from __future__ import annotations

import argparse
import glob
import os
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", ".."))

from dolma_prep.core import io
from dolma_prep.dedup import paragraphs, text

SHARED = os.path.join(os.path.dirname(__file__), "..", "..", "shared", "sample-corpus", "documents")


def check_tokens(files: list[str]) -> dict:
    classes = text.char_classes()
    n = slow = differ = 0
    for f in files:
        for _, doc in io.iter_documents(f):
            if not doc or not doc["text"]:
                continue
            for par in doc["text"].split("\n"):
                n += 1
                cp = np.frombuffer(par.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
                cls = classes[np.minimum(cp, text.TABLE_END)]
                if (cls & text.SLOW).any():
                    slow += 1
                    continue
                starts, ends = text.token_bounds(cls)
                if [par[a:b] for a, b in zip(starts.tolist(), ends.tolist())] != text.dolma_tokens(par):
                    differ += 1
                    if differ <= 5:
                        print("DIFFER:", repr(par[:200]))
    return {"paragraphs": n, "full_rules": slow, "vectorised": n - slow, "differ": differ}


def time_keys(files: list[str]) -> dict:
    p = {**paragraphs.DEFAULTS, "bloom_partitions": 8}
    work = tempfile.mkdtemp(prefix="paragraph-keys-")
    t = time.process_time()
    for f in files:
        for _ in io.iter_documents(f):
            pass
    floor = time.process_time() - t
    t = time.process_time()
    keys = sum(paragraphs._stage_keys(i, f, work, p)["keys"] for i, f in enumerate(files))
    stage = time.process_time() - t
    io.rmtree(work)
    return {"files": len(files), "keys": keys, "read_parse_cpu_s": round(floor, 2), "keys_stage_cpu_s": round(stage, 2)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--documents", default=SHARED, help="a folder of *.jsonl.gz documents (searched recursively)")
    args = ap.parse_args()
    files = sorted(glob.glob(os.path.join(args.documents, "**", "*.json*"), recursive=True))
    if not files:
        sys.exit(f"no documents under {args.documents}")
    r = check_tokens(files)
    print(f"paragraphs {r['paragraphs']:,}: vectorised {r['vectorised']:,}, full rules {r['full_rules']:,} "
          f"({100 * r['full_rules'] / max(1, r['paragraphs']):.2f}%); tokens differ on {r['differ']}")
    t = time_keys(files)
    print(f"keys stage over {t['files']} files: {t['keys_stage_cpu_s']} CPU-s for {t['keys']:,} keys "
          f"(reading and parsing alone: {t['read_parse_cpu_s']} CPU-s)")
    sys.exit(1 if r["differ"] else 0)


if __name__ == "__main__":
    main()
