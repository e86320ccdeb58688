"""What a mix file asks for, in tokens per source, and how sampling delivers it.

The plan is computed from the mix file alone, before any data is read:
    planned(source) = tokens                           if the source gives a token target
                    = tokens_available * proportion    otherwise (proportion defaults to 1)
then, if the mix sets a run-level `total_tokens` budget, every source is scaled by the same
factor so they sum to it (this is how the 50B anneal mix draws from its 105.129 GT pool).

Sampling is one rule for every mode: a document with seeded hash u in [0, 1) is written
`whole + [u < threshold]` times. A `proportion` p gives whole = floor(p), threshold = frac(p).
A token target (the plan, times `scale`) is met exactly, within one document: the kept
documents of a source are ordered by u and taken while that brings the total nearer the
target (so achieved and planned differ by less than one document), using
a histogram of u per shard, so no process holds the whole source.

This module sits below the stages (count, sample and tokenize read their rules from it): it
imports the mix file, the encoder and the shard list, never a stage or the run.
"""
from __future__ import annotations

import math

import numpy as np

from ..core import io
from ..core.runtime import init_ray, run_tasks
from .encoder import encode_block, load_encoder
from .mixfile import MixFile
from .shards import discover_shards

HIST_BINS = 1 << 16
MEASURE_BLOCK = 4096  # texts per encoder call while measuring: bounds memory, the counts do not depend on it


def uses_targets(mix: MixFile) -> bool:
    """Token-target mode: a run budget, or any source with an absolute token target."""
    return mix.total_tokens is not None or any(s.tokens is not None for s in mix.sources)


def plan(mix: MixFile) -> dict:
    rows = {}
    for s in mix.sources:
        if s.tokens is not None:
            planned = float(s.tokens)
        elif s.tokens_available is not None:
            planned = float(s.tokens_available) * (1.0 if s.proportion is None else float(s.proportion))
        else:
            planned = None
        rows[s.name] = {"planned_tokens": planned, "tokens_available": s.tokens_available,
                        "proportion": s.proportion}
    known = [r["planned_tokens"] for r in rows.values() if r["planned_tokens"] is not None]
    total = sum(known)
    if mix.total_tokens is not None:
        if len(known) != len(rows):
            missing = [n for n, r in rows.items() if r["planned_tokens"] is None]
            raise ValueError(f"total_tokens needs a size for every source; missing tokens_available for {missing}")
        factor = mix.total_tokens / total if total else 0.0
        for r in rows.values():
            r["planned_tokens"] *= factor
            if r["tokens_available"]:
                r["proportion"] = r["planned_tokens"] / r["tokens_available"]
        total = float(mix.total_tokens)
    for r in rows.values():
        r["share"] = (r["planned_tokens"] / total) if (total and r["planned_tokens"] is not None) else None
    return {"sources": rows, "total_tokens": total}


def proportion_sampling(p: float) -> dict:
    whole = math.floor(p)
    return {"whole": whole, "threshold": p - whole}


def resolve_targets(mix: MixFile, count_files: dict[str, list[str]], scale: float | str) -> tuple[dict, dict]:
    """Turn the plan into per-source sampling rules from measured (u, tokens) tables.

    Returns (sampling, report): sampling[source] = {"whole", "threshold"}; report holds the
    plan, the measured tokens, the scale used and any shortfall."""
    the_plan = plan(mix)
    measured = {}
    for name, files in count_files.items():
        files = [f for f in files if io.exists(f)]
        measured[name] = sum(int(io.read_parquet(f, columns=["tokens"])["tokens"].to_numpy().sum()) for f in files)
    if scale == "auto":
        ratios = [measured[n] / r["planned_tokens"] for n, r in the_plan["sources"].items() if r["planned_tokens"]]
        s = min([1.0] + ratios)
    else:
        s = float(scale)
    sampling, report = {}, {"scale": s, "sources": {}}
    for name, r in the_plan["sources"].items():
        target = (r["planned_tokens"] or 0.0) * s
        files = [f for f in count_files.get(name, []) if io.exists(f)]
        threshold = _threshold(files, target) if measured[name] > target else 1.0
        sampling[name] = {"whole": 0, "threshold": threshold}
        report["sources"][name] = {"planned_tokens": target, "planned_tokens_unscaled": r["planned_tokens"],
                                   "share_planned": r["share"], "tokens_measured": measured[name],
                                   "shortfall_tokens": max(0.0, target - measured[name])}
    return sampling, report


def _threshold(files: list[str], target: float) -> float:
    """u* such that documents with u < u* hold the token total nearest the target. Two passes
    over the count tables, one file at a time (any storage): a token histogram over u, then
    the documents of the one bin where the running total crosses the target."""
    if target <= 0:
        return 0.0
    hist = np.zeros(HIST_BINS + 1, dtype=np.int64)
    for f in files:
        t = io.read_parquet(f, columns=["u", "tokens"])
        bins = np.floor(t["u"].to_numpy() * HIST_BINS).astype(np.int64)
        hist += np.bincount(bins, weights=t["tokens"].to_numpy(), minlength=HIST_BINS + 1).astype(np.int64)
    cum_before = np.concatenate([[0], np.cumsum(hist)])
    crossing = np.flatnonzero(cum_before[1:] >= target)
    if not len(crossing):
        return 1.0
    b = int(crossing[0])
    us, ns = [], []
    for f in files:
        t = io.read_parquet(f, columns=["u", "tokens"])
        u = t["u"].to_numpy()
        sel = (u >= b / HIST_BINS) & (u < (b + 1) / HIST_BINS)
        us.append(u[sel])
        ns.append(t["tokens"].to_numpy()[sel])
    u, n = np.concatenate(us), np.concatenate(ns)
    order = np.argsort(u, kind="stable")
    cum = int(cum_before[b])
    for uu, nn in zip(u[order].tolist(), n[order].tolist()):
        if cum + nn >= target:
            # take the crossing document only if that lands nearer the target
            return math.nextafter(uu, 2.0) if (cum + nn - target) <= (target - cum) else uu
        cum += nn
    return 1.0


def _count_shard(path: str, tokenizer_path: str, eos: int | None, bos: int | None) -> dict:
    tok = load_encoder(tokenizer_path)
    total, block = 0, []
    for rec in io.read_documents(path):
        if rec.ok and rec.doc["text"].strip():
            block.append(rec.doc["text"].strip())
            if len(block) >= MEASURE_BLOCK:
                total += sum(len(x) for x in encode_block(tok, block, eos, bos))
                block = []
    if block:
        total += sum(len(x) for x in encode_block(tok, block, eos, bos))
    return {"tokens": total}


def measure(mix: MixFile, workers: int | None = None, ray_address: str | None = None) -> dict[str, int]:
    """Tokens each source's documents hold (stripped, with EOS), counted on Ray: the sizes
    `plan --measure` uses instead of the declared `tokens_available`."""
    shards = discover_shards(mix)
    init_ray(workers, ray_address)
    t = mix.tokenizer
    counts = run_tasks("measure", _count_shard, [(s.path, t.path, t.eos_token_id, t.bos_token_id) for s in shards])
    out: dict[str, int] = {s.name: 0 for s in mix.sources}
    for s, r in zip(shards, counts):
        out[s.source] += r["tokens"]
    return out
