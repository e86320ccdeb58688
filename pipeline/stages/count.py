"""Count stage (token-target mixes only): kept documents -> (u, tokens) per document, and their ids.

This is where a token-target run tokenizes, once. Every kept document is read and encoded in
the blocks the tokenize stage uses (`tokenize_encode.encode_file`); the ids and the block table are
kept in the run's work storage (`token_store.store_blocks`: `_work/ids/<rel>.ids` and
`.blocks.jsonl.gz`), and the tokenize stage, once the planner has chosen the thresholds,
samples, shuffles and writes from them without encoding again.

`u` is the document's seeded sampling hash and `tokens` the length it will have in the token
arrays (stripped text, BOS/EOS added). The planner turns these tables into exact per-source
sampling thresholds (`pipeline/plan.py`). Written to `_work/count/<rel>.parquet`.
"""
from __future__ import annotations

import pyarrow as pa

from ...core import io
from ...core.runtime import Shard
from ...core.sampling import unit_hash
from .. import plan as plan_mod
from ..steps import Step
from .common import kept_path, mix_of
from .token_store import source_key, store_blocks, stored_paths
from .tokenize_encode import encode_file


def count_path(ctx: dict, shard: Shard) -> str:
    return io.join(ctx["work"], "count", shard.rel + ".parquet")


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    kept = kept_path(ctx, shard)
    us: list[float] = []
    counts: list[int] = []
    stats: dict = {}
    blocks = encode_file(kept, mix.tokenizer, stats)

    def measure(e) -> None:
        if e.flat is None:
            return
        for j in (e.lens > 0).nonzero()[0].tolist():
            us.append(unit_hash(mix.seed, shard.source, e.ids[j]))
            counts.append(int(e.lens[j]))

    header = {"dtype": stats["dtype"], "engine": stats["engine"], "engine_note": stats["engine_note"],
              **source_key(kept, mix.tokenizer)}
    try:
        store_blocks(blocks, *stored_paths(ctx["work"], shard.rel), header, on_block=measure)
    finally:
        blocks.close()
    io.write_parquet(count_path(ctx, shard), pa.table({"u": pa.array(us, pa.float64()),
                                                      "tokens": pa.array(counts, pa.int64())}))
    return {"documents_in": len(us), "tokens": int(sum(counts)), "engine": stats["engine"],
            "engine_note": stats["engine_note"], "reference_documents": stats["reference_documents"]}


STEP = Step("count", reads="kept/", writes="_work/count/<rel>.parquet (u, tokens per document), _work/ids/ (their ids)",
            counters=("documents_in", "tokens"), run_shard=run_shard, when=plan_mod.uses_targets)
