"""Count stage (token-target mixes only): kept documents -> (u, tokens) per document.

`u` is the document's seeded sampling hash and `tokens` the length it will have in the token
arrays (stripped text, BOS/EOS added). The planner turns these tables into exact per-source
sampling thresholds (`pipeline/plan.py`). Written to `_work/count/<rel>.parquet`.
"""
from __future__ import annotations

import pyarrow as pa

from .. import io
from .. import plan as plan_mod
from ..runtime import Shard
from ..steps import Step
from .common import kept_path, mix_of
from .tokenize import BLOCK, encode_block, load_tokenizer, unit_hash


def count_path(ctx: dict, shard: Shard) -> str:
    return io.join(ctx["work"], "count", shard.rel + ".parquet")


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    tok = load_tokenizer(mix.tokenizer.path)
    us, counts = [], []
    block: list[dict] = []

    def flush():
        texts = [d["text"].strip() for d in block]
        keep = [i for i, t in enumerate(texts) if t]
        for i, ids in zip(keep, encode_block(tok, [texts[i] for i in keep], mix.tokenizer.eos_token_id,
                                             mix.tokenizer.bos_token_id)):
            if len(ids):
                us.append(unit_hash(mix.seed, shard.source, block[i]["id"]))
                counts.append(len(ids))
        block.clear()

    for rec in io.read_documents(kept_path(ctx, shard)):
        if rec.ok:
            block.append(rec.doc)
            if len(block) >= BLOCK:
                flush()
    if block:
        flush()
    io.write_parquet(count_path(ctx, shard), pa.table({"u": pa.array(us, pa.float64()),
                                                      "tokens": pa.array(counts, pa.int64())}))
    return {"documents_in": len(us), "tokens": int(sum(counts))}


STEP = Step("count", reads="kept/", writes="_work/count/<rel>.parquet (u, tokens per document)",
            counters=("documents_in", "tokens"), run_shard=run_shard, when=plan_mod.uses_targets)
