"""`dolma-prep run MIX`: drive the stages of one mix on Ray.

documents --tag--> attributes --dedup--> attributes --select--> kept --tokenize--> tokens

Every stage is a map over shards (one input file each) with done markers, except dedup,
whose kinds need a global shuffle and keep one done marker per kind. The manifest is built
from the markers and the files on disk, and holds no timestamps or absolute paths, so two
runs of the same input, config and seed write byte-identical outputs.
"""
from __future__ import annotations

import importlib
import json
import os
import tempfile
import time
from typing import Any

from . import io
from .io import InputError
from .mixfile import MixFile
from .runtime import Shard, init_ray, make_progress, map_shards, read_marker, write_marker
from . import plan as plan_mod
from .stages import count as count_stage
from .stages import select as select_stage
from .stages import tag as tag_stage
from .stages import tokenize as tokenize_stage


def discover_shards(mix: MixFile) -> list[Shard]:
    shards: list[Shard] = []
    owner: dict[str, str] = {}
    for src in mix.sources:
        if src.dataset is not None:
            try:
                ids = io.hf_shards(src.dataset.model_dump())
            except Exception as e:  # noqa: BLE001 (missing dataset, no hub, bad config name)
                raise InputError(f"source {src.name!r}: cannot open dataset {src.dataset.path!r}: {e}") from None
            shards.extend(Shard(src.name, i, p, f"{src.name}/hf-{i:05d}.jsonl.gz") for i, p in enumerate(ids))
            continue
        paths = io.expand_globs(mix.data_root, src.documents)
        if not paths:
            raise InputError(f"source {src.name!r}: documents {src.documents} matched no files under {mix.data_root}")
        for i, p in enumerate(paths):
            rel = io.relpath(p, mix.data_root) if p.startswith(mix.data_root.rstrip("/") + "/") else os.path.basename(p)
            if rel.endswith(".parquet"):
                rel += ".jsonl.gz"  # outputs (attributes, kept documents) are Dolma JSONL
            if rel in owner:
                raise InputError(f"{p} is matched by both source {owner[rel]!r} and source {src.name!r}")
            owner[rel] = src.name
            shards.append(Shard(src.name, i, p, rel))
    return shards


def check_output(mix: MixFile, force: bool) -> None:
    """The output folder must be writable and, if it holds a run, a run of this config."""
    out = mix.output
    if not io.is_remote(out):
        try:
            os.makedirs(out, exist_ok=True)
            probe = os.path.join(out, ".write-test")
            with open(probe, "w") as f:
                f.write("ok")
            os.remove(probe)
        except OSError as e:
            raise InputError(f"output folder {out} is not writable: {e.strerror}") from None
    cfg_path = io.join(out, "_state", "config.json")
    if io.exists(cfg_path):
        recorded = json.loads(io.read_text(cfg_path))
        prev = recorded.get("config_hash")
        if recorded.get("mix", {}).get("data_root") != mix.data_root:
            prev = f"{prev} over data_root {recorded.get('mix', {}).get('data_root')}"
        if prev != mix.config_hash():
            if not force:
                raise InputError(f"{out} holds a run of a different configuration (hash {prev}, this one "
                                 f"{mix.config_hash()}); choose another --output or pass --force to start over")
            fs = __import__("fsspec").get_fs_token_paths(out)[0]
            for sub in ("_state", "attributes", "kept", "dropped", "tokens", "rejects", "_work"):
                if fs.exists(io.join(out, sub)):
                    fs.rm(io.join(out, sub), recursive=True)
    io.write_text_atomic(cfg_path, json.dumps({"config_hash": mix.config_hash(), "mix": mix.model_dump(mode="json")},
                                              indent=1, sort_keys=True))


DEDUP_MODULES = {"exact": "exact", "paragraphs": "paragraphs", "minhash": "minhash", "decontaminate": "decontam"}


def run_dedup(mix: MixFile, shards: list[Shard], ctx: dict) -> dict[str, dict]:
    """Run each configured dedup kind once over all shards (global), with a done marker."""
    results = {}
    for kind in ("exact", "paragraphs", "minhash", "decontaminate"):
        cfg = getattr(mix.dedup, kind)
        if cfg is None:
            continue
        marker = read_marker(mix.output, "dedup", kind)
        if marker is not None:
            results[kind] = marker
            continue
        params: dict[str, Any] = dict(cfg) if isinstance(cfg, dict) else cfg.model_dump()
        attribute = params.pop("attribute", select_stage.dedup_attribute(kind, cfg))
        pairs = [(s.path, io.join(mix.output, "attributes", attribute, s.rel)) for s in shards]
        work = os.path.join(ctx["work"], "dedup", kind)
        module = importlib.import_module(f"dolma_prep.dedup.{DEDUP_MODULES[kind]}")
        fn = getattr(module, f"run_{kind}")
        stats = fn(pairs, attribute, work, **params)
        # the manifest keeps only counts: timings and memory peaks vary run to run
        stats = {k: v for k, v in stats.items() if isinstance(v, (int, float, str)) and not isinstance(v, bool)
                 and not any(w in k for w in ("seconds", "rss", "time", "memory", "peak"))}
        stats["attribute"] = attribute
        write_marker(mix.output, "dedup", kind, stats)
        results[kind] = stats
    return results


def work_dir(mix: MixFile) -> str:
    """Local scratch space for intermediate tables; under the output when it is local."""
    if io.is_remote(mix.output):
        return os.path.join(tempfile.gettempdir(), "dolma-prep-work", mix.config_hash())
    return os.path.join(mix.output, "_work")


def decide_sampling(mix: MixFile, shards: list[Shard], ctx: dict, prog) -> tuple[dict, dict]:
    """Per-source sampling rules: from proportions, or from token targets via the count stage."""
    if not plan_mod.uses_targets(mix):
        rules = {s.name: plan_mod.proportion_sampling(1.0 if s.proportion is None else s.proportion)
                 for s in mix.sources}
        return rules, {"mode": "proportion", "scale": 1.0, "sources": {}}
    map_shards("count", count_stage.run_shard, shards, ctx, prog)
    files: dict[str, list[str]] = {}
    for s in shards:
        files.setdefault(s.source, []).append(count_stage.count_path(ctx, s))
    rules, report = plan_mod.resolve_targets(mix, files, mix.scale)
    report["mode"] = "tokens"
    return rules, report


def sweep_temporaries(output: str) -> int:
    n = 0
    fs = __import__("fsspec").get_fs_token_paths(output)[0]
    for p in fs.find(output):
        if ".tmp-" in os.path.basename(p) or p.endswith(".parquet.tmp"):
            fs.rm(p)
            n += 1
    return n


TRAINER_DATA_FILE = "olmo_data.yaml"


def trainer_data_section(mix: MixFile, manifest: dict) -> str:
    """The `data:` section of an OLMo config (also read by `dolma-prep train`): every token
    file by absolute path or URL, grouped by source. This is the one output that names its
    location, so it is left out of byte-for-byte comparisons between output folders.
    Up-sampling is already in the arrays (a document with proportion 2.0 is written twice,
    shuffled apart), so no path needs repeating."""
    import yaml

    files = manifest["outputs"]["tokens"]
    paths = [io.join(mix.output, f["path"]) for f in files]
    lines = [f"# data section for an OLMo config; written by dolma-prep for run {mix.name!r}",
             f"# {manifest['total_tokens']:,} tokens in {len(files)} files; per source:"]
    for name, src in manifest["sources"].items():
        lines.append(f"#   {name}: {src['tokens']:,} tokens ({100 * src['share']:.2f}%)")
    body = {"data": {"paths": paths, "memmap_dtype": manifest["tokenizer"]["dtype"] or "uint16",
                     "pad_direction": "right", "drop_last": True},
            "tokenizer": {"identifier": "allenai/gpt-neox-olmo-dolma-v1_5",
                          "eos_token_id": mix.tokenizer.eos_token_id, "pad_token_id": mix.tokenizer.pad_token_id}}
    return "\n".join(lines) + "\n" + yaml.safe_dump(body, sort_keys=False)


def run(mix: MixFile, workers: int | None = None, ray_address: str | None = None, progress: bool = True,
        force: bool = False, tagger_modules: list[str] = ()) -> dict:
    """Run every stage of `mix`. `tagger_modules` (Python files or modules registering extra
    taggers) come from the command line only: a mix file is data and can never load code."""
    from .manifest import build_manifest

    t0 = time.time()
    shards = discover_shards(mix)
    check_output(mix, force)
    init_ray(workers, ray_address)
    ctx = {"output": mix.output, "mix": mix.model_dump_json(), "work": work_dir(mix),
           "tagger_modules": [os.path.abspath(m) if m.endswith(".py") else m for m in tagger_modules]}
    if tagger_modules:
        from dolma_prep.taggers import registry

        registry.load_modules(ctx["tagger_modules"])  # fail early, in the driver, on a bad module
    stage_stats: dict[str, dict] = {}
    with make_progress(progress) as prog:
        if mix.taggers:
            stage_stats["tag"] = map_shards("tag", tag_stage.run_shard, shards, ctx, prog)
        dedup_stats = run_dedup(mix, shards, ctx)
        stage_stats["select"] = map_shards("select", select_stage.run_shard, shards, ctx, prog)
        ctx["sampling"], sampling_report = decide_sampling(mix, shards, ctx, prog)
        stage_stats["tokenize"] = map_shards("tokenize", tokenize_stage.run_shard, shards, ctx, prog)
    sweep_temporaries(mix.output)
    manifest = build_manifest(mix, shards, stage_stats, dedup_stats, ctx["sampling"], sampling_report)
    io.write_text_atomic(io.join(mix.output, "manifest.json"), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    io.write_text_atomic(io.join(mix.output, TRAINER_DATA_FILE), trainer_data_section(mix, manifest))
    manifest["_elapsed_s"] = time.time() - t0
    return manifest
