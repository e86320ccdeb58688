"""The run manifest: what went in, what each stage did per source, what came out.

Deterministic by construction: no timestamps, no absolute paths (outputs are relative to the
output folder, inputs relative to the data root), keys sorted when written.

The run hands over the steps it ran (`stages.STEPS`): the manifest imports no stage, so the
step list has one declaration and one reader.
"""
from __future__ import annotations

import os
from collections import defaultdict

from ..core import io
from ..core.runtime import Shard
from ..core.tokens import ARRAY_SUFFIX, INDEX_SUFFIX
from .mixfile import MixFile
from .steps import Step, step_counters

MANIFEST_VERSION = 1


def _add(d: dict, key: str, v) -> None:
    d[key] = d.get(key, 0) + v


def steps_section(steps: list[Step], shards: list[Shard], results: dict[str, dict]) -> list[dict]:
    """Every declared step the run ran, in run order: its name, what it reads and writes and,
    for shard steps, its declared counters per source. `stats` and the report print this
    table as it is, so a new step shows up there without edits."""
    out = []
    for step in steps:
        if step.name not in results:
            continue
        entry = {"step": step.name, "reads": step.reads, "writes": step.writes,
                 "kind": "shard" if step.run_shard else "global"}
        if step.run_shard is not None:
            entry["counters"] = step_counters(step, shards, results[step.name])
        out.append(entry)
    return out


def step_entry(manifest: dict, name: str) -> dict:
    """One step's entry of a manifest's `steps` list ({} when the run did not have it)."""
    return next((s for s in manifest.get("steps", []) if s["step"] == name), {})


def build_manifest(mix: MixFile, shards: list[Shard], results: dict[str, dict], steps: list[Step]) -> dict:
    stage_stats = results
    dedup_stats = results.get("dedup", {})
    sampling, sampling_report = results["sample"]["rules"], results["sample"]["report"]
    per: dict[str, dict] = defaultdict(lambda: defaultdict(dict))
    inputs, token_files = [], []
    rejected_total = 0
    for s in shards:
        src = per[s.source]
        inputs.append({"source": s.source, "path": s.rel.removesuffix(".parquet.jsonl.gz") + ".parquet"
                       if s.rel.endswith(".parquet.jsonl.gz") else s.rel,
                       "bytes": None if s.path.startswith(io.HF_PREFIX) else io.file_size(s.path)})
        sel = stage_stats["select"][s.key]
        tok = stage_stats["tokenize"][s.key]
        if "tag" in stage_stats:
            tg = stage_stats["tag"][s.key]
            read_docs, rej = tg["documents_in"], tg["rejected"]
            _add(src["tagged"], "documents", tg["documents_in"])
        else:
            read_docs, rej = sel["documents_in"], sel.get("read_rejected", 0)
        inputs[-1]["documents"] = read_docs
        # a rule that raised on a document (a jq type error, `error(...)`): counted per rule, never a silent "no match"
        for rule, n in sel.get("rule_errors", {}).items():
            _add(src["filtered"].setdefault("rule_errors", {}), rule, n)
        if sel.get("rule_error_examples"):
            examples = src["filtered"].setdefault("rule_error_examples", [])
            examples.extend(sel["rule_error_examples"][: max(0, 5 - len(examples))])
        _add(src["read"], "documents", read_docs)
        _add(src["read"], "rejected", rej)
        _add(src["read"], "chars", sel["chars_in"])
        rejected_total += rej + sel.get("rejected", 0) + tok.get("rejected", 0)
        for reason, n in sel["dropped"].items():
            stage = "deduplicated" if reason.startswith("dedup:") else "filtered"
            src[stage].setdefault("removed_by", {})
            _add(src[stage]["removed_by"], reason.split(": ", 1)[1] if stage == "deduplicated" else reason, n)
        _add(src["selected"], "documents", sel["documents_kept"])
        _add(src["selected"], "chars", sel["chars_kept"])
        _add(src["selected"], "chars_replaced", sel.get("chars_replaced", 0))  # by span replacement, kept docs
        for attr, n in sel.get("chars_replaced_by", {}).items():
            _add(src["selected"].setdefault("chars_replaced_by", {}), attr, n)
        _add(src["selected"], "rejected", sel.get("rejected", 0))
        _add(src["sampled"], "documents_unique", tok["documents_sampled"])
        _add(src["sampled"], "documents", tok["documents_out"])
        _add(src["sampled"], "tokens_before", tok["tokens_unsampled"])
        _add(src["tokenized"], "documents", tok["documents_out"])
        _add(src["tokenized"], "tokens", tok["tokens"])
        _add(src["tokenized"], "empty_skipped", tok["empty"])
        for f in tok["files"]:
            npy = io.join(mix.output, f["path"] + ARRAY_SUFFIX)
            token_files.append({"source": s.source, "path": f["path"] + ARRAY_SUFFIX, "index": f["path"] + INDEX_SUFFIX,
                                "tokens": f["tokens"], "documents": f["documents"], "dtype": f["dtype"],
                                "bytes": io.file_size(npy),
                                "index_bytes": io.file_size(io.join(mix.output, f["path"] + INDEX_SUFFIX))})
    sources = {}
    for src in mix.sources:
        st = per[src.name]
        for stage in ("deduplicated", "filtered"):
            st[stage].setdefault("removed_by", {})
            st[stage]["removed"] = sum(st[stage]["removed_by"].values())
        rep = sampling_report["sources"].get(src.name)
        if rep is None:  # proportion mode: the plan is the proportion of what the data holds
            p = 1.0 if src.proportion is None else src.proportion
            rep = {"planned_tokens": p * st["sampled"].get("tokens_before", 0), "shortfall_tokens": 0.0}
        sources[src.name] = {
            "documents": st["tokenized"].get("documents", 0),
            "tokens": st["tokenized"].get("tokens", 0),
            "planned_tokens": rep["planned_tokens"],
            "shortfall_tokens": rep["shortfall_tokens"],
            "sampling": sampling[src.name],
            "stages": {k: dict(v) for k, v in st.items()},
        }
    total = sum(v["tokens"] for v in sources.values())
    engines = sorted({r.get("engine") or "unknown" for r in stage_stats["tokenize"].values()})
    notes = sorted({r["engine_note"] for r in stage_stats["tokenize"].values() if r.get("engine_note")})
    by_reference = 0  # documents the fast engine handed to tokenizers, counted where they were encoded
    for key, r in stage_stats["tokenize"].items():
        encoded = stage_stats.get("count", {}).get(key, {}) if r.get("encoded_by") == "count" else r
        by_reference += int(encoded.get("reference_documents", 0))
    planned_total = sum(v["planned_tokens"] for v in sources.values())
    for v in sources.values():
        v["share"] = v["tokens"] / total if total else 0.0
        v["planned_share"] = v["planned_tokens"] / planned_total if planned_total else 0.0
    return {
        "version": MANIFEST_VERSION,
        "name": mix.name,
        "config_hash": mix.config_hash(),
        "seed": mix.seed,
        "tokenizer": {"file": os.path.basename(mix.tokenizer.path), "eos_token_id": mix.tokenizer.eos_token_id,
                      "bos_token_id": mix.tokenizer.bos_token_id, "pad_token_id": mix.tokenizer.pad_token_id,
                      "dtype": token_files[0]["dtype"] if token_files else None,
                      # the engine that encoded (pipeline/encoder.py): ids are tokenizers' either way
                      "engine": {"engines": engines, "notes": notes, "documents_by_reference": by_reference}},
        "inputs": inputs,
        "dedup": dedup_stats,
        "sources": sources,
        "total_tokens": total,
        "planned_tokens": planned_total,
        "sampling": {"mode": sampling_report["mode"], "scale": sampling_report["scale"]},
        "total_documents": sum(v["documents"] for v in sources.values()),
        "rejected": rejected_total,
        "outputs": {"tokens": token_files},
        "steps": steps_section(steps, shards, results),
    }
