"""Tokenize stage: kept documents -> `tokens/<source>/part-<i>-<k:05d>.npy` + `.csv.gz`.

Format (docs/REFERENCE.md section 4, as `dolma tokens` writes it; the trainer reads the same
contract, core/tokens.py): raw memmaps of token ids (no header), uint16 when the vocabulary fits,
else uint32; each document's text is stripped, empty ones skipped (counted), EOS appended (BOS
prepended if configured; neither doubled); a document is never split across files; files roll
over at `max_tokens_per_file`. The `.csv.gz` index beside each array has one row per document,
`start,end,id,src,loc`.

Token semantics are dolma 1.2.1's (`dolma.tokenizer.Tokenizer.encode(text.strip(),
add_special_tokens=True)`, checked against the real toolkit by tests/test_tokenize_parity.py):
the tokenizer runs with `add_special_tokens=False`, then BOS is inserted unless the ids already
start with it and EOS appended unless they already end with it. A non-empty text that
tokenizes to no ids at all (possible with a normalizer that deletes characters) gets no
BOS/EOS in dolma and an empty index row; here it is set aside as a bad record with its line,
so it is counted and reported and never written as a zero-length document.

Sampling happens here: a document is written `whole + [u(id) < threshold]` times, u being a
seeded hash of its id (core/sampling.py, the trainer's too) and the rule coming from `plan.py`
(a proportion or a token target), applied by pipeline/sampling_rule.py.
Document order within a shard is shuffled in bounded blocks with a seeded RNG, so outputs
depend only on the input, config and seed, never on the number of workers.

Speed: one shard runs as three threads (pipeline/threads.py). A reader decompresses and parses
(zlib releases the GIL), the task's thread encodes blocks with `encode_batch_fast` (Rust, GIL
released) and turns ids into one flat array per block (stages/tokenize_encode.py), and a writer
gathers the shuffled block, casts it once and writes the array bytes and all index rows of the
block in one call each (stages/tokenize_write.py). Per token, Python does nothing but receive
the id list. A token-target run encodes once, in the count step; this step then reads its
stored ids (stages/token_store.py).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterator
from functools import lru_cache

import numpy as np
import xxhash

from ...core import io
from ...core.io import InputError
from ...core.runtime import Shard
from ...core.tokens import DTYPES, index_path, read_index
from ..encoder import load_reference
from ..mixfile import TokenizerConfig
from ..plan import uses_targets
from ..sampling_rule import ALL, draw
from ..steps import Step
from ..threads import END, consumer, queue_put
from .common import Rejects, kept_path, mix_of
from .token_store import stored_blocks, stored_header, usable_store
from .tokenize_encode import Encoded, check_special_ids, encode_file
from .tokenize_write import PartWriter


@lru_cache(maxsize=4)
def load_tokenizer(path: str):
    """The reference `tokenizers` Tokenizer (decoding, vocabulary size); encoding goes through
    `load_encoder` (pipeline/encoder.py), which picks the engine."""
    return load_reference(path)


# ---------------------------------------------------------------------------------------------
# one file


def write_tokens(blocks: Iterator[Encoded], out_dir: str, index: int, tcfg, seed: int, source: str, rule: dict,
                 src_label: str, rejects, stats: dict) -> dict:
    """Sample, shuffle (seeded, per block) and write encoded blocks to
    `out_dir/part-<index>-<k:05d>.npy|csv.gz`, the writing in its own thread."""
    dtype = np.dtype(stats["dtype"])
    check_special_ids(dtype, tcfg.eos_token_id, tcfg.bos_token_id)
    rng = np.random.Generator(np.random.PCG64([seed, xxhash.xxh32_intdigest(f"{source}/{index}".encode())]))
    writer = PartWriter(out_dir, index, dtype, tcfg.max_tokens_per_file, src_label)
    stats.update({"documents_in": 0, "documents_sampled": 0, "documents_out": 0, "empty": 0, "tokens": 0,
                  "tokens_unsampled": 0})
    stop = threading.Event()
    write_q: queue.Queue = queue.Queue(maxsize=2)
    write_errors: list[BaseException] = []
    writing = threading.Thread(target=consumer, args=(writer.write_block, write_q, stop, write_errors), daemon=True,
                               name=f"tokenize-write-{index}")
    writing.start()
    try:
        for e in blocks:
            for r in e.rejects:
                rejects.add(*r)
            stats["documents_in"] += e.documents_in
            stats["empty"] += e.empty
            if e.flat is None:
                continue
            flat, lens = e.flat, e.lens
            valid = np.flatnonzero(lens > 0)
            stats["tokens_unsampled"] += int(lens.sum())
            items, drawn = draw(e.ids, valid, seed, source, rule)
            stats["documents_sampled"] += drawn
            order = items[rng.permutation(len(items))]
            stats["documents_out"] += len(order)
            stats["tokens"] += int(lens[order].sum())
            starts = np.cumsum(lens) - lens
            if not queue_put(write_q, (flat, starts, lens, order, e.ids, e.locs), stop):
                break
        queue_put(write_q, END, stop)
        writing.join()
        if write_errors:
            raise write_errors[0]
        stats["files"] = writer.finish()
    except BaseException:
        stop.set()
        writing.join()
        writer.abort()
        raise
    finally:
        stop.set()
        close = getattr(blocks, "close", None)
        if close is not None:
            close()  # stops the reader thread of an unfinished encode_file
    return stats


def tokenize_file(doc_path: str, out_dir: str, index: int, tcfg, seed: int, source: str, rule: dict,
                  src_label: str, rejects, stored: tuple[str, str] | None = None) -> dict:
    """Tokenize one documents file into `out_dir/part-<index>-<k:05d>.npy|csv.gz`: from the
    stored ids of a count step when `stored` (ids, block table) is given, else by encoding."""
    stats: dict = {}
    if stored is not None:
        head = stored_header(stored[1])
        stats.update({"engine": head["engine"], "engine_note": head.get("engine_note"), "reference_documents": 0,
                      "dtype": head["dtype"], "encoded_by": "count"})
        blocks = stored_blocks(*stored)
    else:
        blocks = encode_file(doc_path, tcfg, stats)
        stats["encoded_by"] = "tokenize"
    return write_tokens(blocks, out_dir, index, tcfg, seed, source, rule, src_label, rejects, stats)


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    rejects = Rejects(ctx, "tokenize", shard)
    stored = usable_store(ctx, shard) if uses_targets(mix) else None
    stats = tokenize_file(kept_path(ctx, shard), io.join(ctx["output"], "tokens", shard.source), shard.index,
                          mix.tokenizer, mix.seed, shard.source, ctx["sampling"][shard.source],
                          "kept/" + shard.rel, rejects, stored=stored)
    rejects.commit()
    if stored is not None:  # consumed: the arrays are written (a rerun without them encodes again)
        for p in stored:
            io.remove(p)
    dtype = stats.pop("dtype")
    stats["files"] = [{"path": io.relpath(f["stem"], ctx["output"]), "tokens": f["tokens"],
                       "documents": f["documents"], "dtype": dtype} for f in stats["files"]]
    stats.update(rejects.stats())
    return stats


def run_command_shard(shard: Shard, ctx: dict) -> dict:
    """`dolma-prep tokenize`: one input file -> `OUTPUT/part-<i>-<k>.npy|csv.gz` (src = input path)."""
    tcfg = TokenizerConfig.model_validate(ctx["tokenizer"])
    rejects = Rejects(ctx, "tokenize", shard)
    stats = tokenize_file(shard.path, ctx["output"], shard.index, tcfg, ctx["seed"], "", ALL, shard.path, rejects)
    rejects.commit()
    stats.pop("dtype")
    stats["files"] = [{"path": io.relpath(f["stem"], ctx["output"]), "tokens": f["tokens"]} for f in stats["files"]]
    stats.update(rejects.stats())
    return stats


def decode(npy_path: str, doc: int, tokenizer_path: str) -> tuple[dict, str]:
    """Row `doc` (0-based) of the index beside `npy_path` and its text, decoded."""
    index = index_path(npy_path)
    with io.open_binary(index) as f:
        rows = list(read_index(f))
    if not 0 <= doc < len(rows):
        raise InputError(f"{index} holds {len(rows)} documents; --doc {doc} is out of range")
    end_all = int(rows[-1][1])
    size = io.file_size(npy_path)
    if end_all == 0 or size % end_all:
        raise InputError(f"{npy_path}: {size} bytes do not match the {end_all} tokens of its index")
    dtype = {np.dtype(t).itemsize: np.dtype(t) for t in DTYPES.values()}.get(size // end_all)
    if dtype is None:
        raise InputError(f"{npy_path}: {size // end_all} bytes per token; expected 2 (uint16) or 4 (uint32)")
    start, end, doc_id, src, loc = rows[doc]
    with io.open_random(npy_path) as f:  # only this document's bytes, on any storage
        f.seek(int(start) * dtype.itemsize)
        ids = np.frombuffer(f.read((int(end) - int(start)) * dtype.itemsize), dtype=dtype)
    text = load_tokenizer(tokenizer_path).decode(ids.tolist(), skip_special_tokens=False)
    return {"start": int(start), "end": int(end), "id": doc_id, "src": src, "loc": int(loc),
            "tokens": int(end) - int(start)}, text


STEP = Step("tokenize", reads="kept/", writes="tokens/<source>/part-*.npy + .csv.gz",
            counters=("documents_out", "tokens", "empty", "rejected"), run_shard=run_shard)
