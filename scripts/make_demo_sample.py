"""Build the demo's data (sample/demo) from ../shared/sample-corpus: enough real documents per
source that `make demo` (mixes/anneal.yaml) meets every source's planned share within 0.5
percentage points.

Why a separate slice: the anneal plan gives flan 15.7% of the tokens, so flan's size bounds the
whole demo (total <= flan tokens / 0.157 = ~229k tokens), and a source whose documents are large
next to its target cannot land near it (sampling takes whole documents, so a source lands within
half a document of its target). So: every flan document of the corpus, and for each other anneal
source the corpus's documents of at most `cap` tokens, in corpus order, until the source holds
HEADROOM x its target; `cap` is the smallest of CAPS that gives the source enough documents
(1,000 tokens = 0.44% of the demo for all but arxiv, whose short papers are few).
sample/documents (the tests' sample) is not touched.

Run from the repository root: .venv/bin/python scripts/make_demo_sample.py [../shared/sample-corpus]
"""
import gzip
import json
import os
import sys

import yaml
from tokenizers import Tokenizer

SRC = sys.argv[1] if len(sys.argv) > 1 else "../shared/sample-corpus"
DST = os.path.join("sample", "demo")
MIX = os.path.join("mixes", "anneal.yaml")
TOKENIZER = os.path.join("pipeline", "resources", "allenai_gpt-neox-olmo-dolma-v1_5.json")
CAPS, HEADROOM = (1000, 1200, 1400, 1600, 1800, 2000), 2.0

tok = Tokenizer.from_file(TOKENIZER)
mix = yaml.safe_load(open(MIX))
pool = {s["name"]: float(s["tokens_available"]) for s in mix["sources"]}
shares = {k: v / sum(pool.values()) for k, v in pool.items()}


def read(source):
    with gzip.open(os.path.join(SRC, "documents", source, "0000.jsonl.gz"), "rt", encoding="utf-8") as f:
        lines = f.readlines()
    texts = [json.loads(line)["text"].strip() for line in lines]
    sizes = [len(e.ids) + 1 for e in tok.encode_batch(texts, add_special_tokens=False)]  # + EOS
    return lines, sizes


flan_lines, flan_sizes = read("flan")
total = sum(flan_sizes) / shares["flan"]  # the largest demo flan allows
summary = {}
for source in sorted(pool):
    if source == "flan":
        picked = list(zip(flan_lines, flan_sizes))
    else:
        lines, sizes = read(source)
        budget = HEADROOM * shares[source] * total
        for cap in CAPS:
            picked, got = [], 0
            for line, n in zip(lines, sizes):
                if n <= cap and got < budget:
                    picked.append((line, n))
                    got += n
            if got >= budget:
                break
    out_dir = os.path.join(DST, source)
    os.makedirs(out_dir, exist_ok=True)
    half = (len(picked) + 1) // 2
    for i, part in enumerate((picked[:half], picked[half:])):
        with gzip.GzipFile(os.path.join(out_dir, f"{i:04d}.jsonl.gz"), "wb", mtime=0) as g:
            g.write("".join(line for line, _ in part).encode("utf-8"))
    summary[source] = {"documents": len(picked), "tokens": sum(n for _, n in picked),
                       "largest_document_tokens": max(n for _, n in picked)}
with open(os.path.join("sample", "DEMO.json"), "w") as f:
    json.dump({"built_from": "shared/sample-corpus", "by": "scripts/make_demo_sample.py", "mix": MIX,
               "caps": CAPS, "headroom": HEADROOM, "sources": summary}, f, indent=1)
print(json.dumps(summary, indent=1))
