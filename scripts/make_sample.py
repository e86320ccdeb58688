"""Rebuild the bundled sample (sample/documents) from ../shared/sample-corpus.

One-off maintenance script: takes the first documents of each source (up to a byte and
document cap), always keeps every document named in duplicates.json (both sides of each
planted pair), and splits each source into two shards so multi-shard paths are exercised.
"""
import gzip
import json
import os
import sys

SRC = sys.argv[1] if len(sys.argv) > 1 else "../shared/sample-corpus"
DST = "sample"
MAX_BYTES, MAX_DOCS = 220_000, 120

dups = json.load(open(os.path.join(SRC, "duplicates.json")))
keep_ids = set()
for d in dups["planted"]:
    keep_ids.update([d["id"], d["duplicate_of"]])

summary = {}
for source in sorted(os.listdir(os.path.join(SRC, "documents"))):
    docs, size = [], 0
    with gzip.open(os.path.join(SRC, "documents", source, "0000.jsonl.gz"), "rt", encoding="utf-8") as f:
        for line in f:
            doc = json.loads(line)
            take = doc["id"] in keep_ids or (size < MAX_BYTES and len(docs) < MAX_DOCS)
            if take:
                docs.append(line)
                size += len(doc["text"].encode())
    out_dir = os.path.join(DST, "documents", source)
    os.makedirs(out_dir, exist_ok=True)
    half = (len(docs) + 1) // 2
    for i, part in enumerate((docs[:half], docs[half:])):
        with gzip.GzipFile(os.path.join(out_dir, f"{i:04d}.jsonl.gz"), "wb", mtime=0) as g:
            g.write("".join(part).encode("utf-8"))
    summary[source] = {"documents": len(docs), "text_bytes": size}
with open(os.path.join(DST, "SAMPLE.json"), "w") as f:
    json.dump({"built_from": "shared/sample-corpus", "max_bytes": MAX_BYTES, "max_docs": MAX_DOCS,
               "sources": summary}, f, indent=1)
print(json.dumps(summary, indent=1))
