"""`dolma-prep run MIX`: run the declared steps of one mix on Ray (`stages.STEPS`).

documents --tag--> attributes --dedup--> attributes --select--> kept --tokenize--> tokens

A shard step is a map over shards (one input file each) with done markers; a global step
(dedup, whose kinds shuffle across the corpus; sampling) runs once and keeps its own marker.
Everything a run writes, intermediate tables included, goes to storage every node reaches:
the output (`_work/` under it) or --scratch. The manifest is built from the markers and the
files, and holds no timestamps or absolute paths, so two runs of the same input, config and
seed write byte-identical outputs.
"""
from __future__ import annotations

import json
import os
import sys
import time

import fsspec
import yaml

from dolma_prep.taggers import registry

from ..core import io
from ..core.io import InputError
from ..core.runtime import fingerprint, init_ray, make_progress, map_shards
from ..core.tokens import ARRAY_SUFFIX, INDEX_SUFFIX
from . import stages
from .manifest import build_manifest
from .mixfile import MixFile, config_diff, deciding_config
from .shards import discover_shards


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
        prev_mix = recorded.get("mix", {})
        if recorded.get("config_hash") != mix.config_hash():
            if not force:
                changed = config_diff(deciding_config(prev_mix), deciding_config(mix.model_dump(mode="json")))
                shown = "; ".join(changed[:8]) + (f"; and {len(changed) - 8} more" if len(changed) > 8 else "")
                raise InputError(f"{out} holds a run of a different configuration (hash {recorded.get('config_hash')}, "
                                 f"this one {mix.config_hash()}): {shown or 'fields differ'}. Choose another --output "
                                 "or pass --force to start over")
            fs = fsspec.get_fs_token_paths(out)[0]
            for sub in ("_state", "attributes", "kept", "dropped", "tokens", "rejects", "_work"):
                if fs.exists(io.join(out, sub)):
                    io.rmtree(io.join(out, sub))
        elif prev_mix.get("data_root") != mix.data_root:
            # same configuration over another data root: the markers are checked against each
            # input's identity, so only shards whose files differ run again
            print(f"note: {out} was last run over data_root {prev_mix.get('data_root')}; now {mix.data_root} "
                  "(same configuration: shards whose input files are identical are reused)", file=sys.stderr)
    io.write_text_atomic(cfg_path, json.dumps({"config_hash": mix.config_hash(), "mix": mix.model_dump(mode="json")},
                                              indent=1, sort_keys=True))


def work_dir(mix: MixFile, scratch: str | None = None) -> str:
    """Where intermediate tables go: `<output>/_work`, or a folder of this run's config under
    `scratch` (any fsspec URL). Never the driver's local disk when the output is remote: every
    node must reach it."""
    if scratch:
        return io.join(scratch, "dolma-prep-work", mix.config_hash())
    return io.join(mix.output, "_work")


def sweep_temporaries(output: str) -> int:
    n = 0
    fs = fsspec.get_fs_token_paths(output)[0]
    for p in fs.find(output):
        if ".tmp-" in os.path.basename(p) or p.endswith(".parquet.tmp"):
            fs.rm(p)
            n += 1
    return n


def sweep_stale_tokens(output: str, tokenize: dict[str, dict]) -> int:
    """Delete token files under `tokens/` that no shard of this run wrote (left by an earlier
    run whose inputs had more files, or files in another order): a trainer reading the folder
    by glob must find exactly this run's arrays."""
    keep = {f["path"] + suffix for r in tokenize.values() for f in r.get("files", [])
            for suffix in (ARRAY_SUFFIX, INDEX_SUFFIX)}
    n = 0
    for p in io.list_files(io.join(output, "tokens")):
        rel = io.relpath(p, output)
        if rel not in keep:
            io.remove(p)
            n += 1
    return n


TRAINER_DATA_FILE = "olmo_data.yaml"


def trainer_data_section(mix: MixFile, manifest: dict) -> str:
    """The `data:` section of an OLMo config (also read by `dolma-prep train`): every token
    file by absolute path or URL, grouped by source. This is the one output that names its
    location, so it is left out of byte-for-byte comparisons between output folders.
    Up-sampling is already in the arrays (a document with proportion 2.0 is written twice,
    shuffled apart), so no path needs repeating."""
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
        force: bool = False, tagger_modules: list[str] = (), scratch: str | None = None) -> dict:
    """Run every step of `mix`. `tagger_modules` (Python files or modules registering extra
    taggers) come from the command line only: a mix file is data and can never load code.
    The steps are `stages.STEPS`, read when the run starts (one declaration adds a step)."""
    t0 = time.time()
    work = work_dir(mix, scratch)
    skipped: list[str] = []
    shards = discover_shards(mix, skipped, identify=True, exclude=[mix.output, scratch or ""])
    if skipped:
        print(f"warning: left out {len(skipped)} files under the output folder {mix.output} that the sources' globs "
              f"match (a run never reads its own outputs), e.g. {skipped[0]}", file=sys.stderr)
    # every write of the run, in the driver and in every task, stays under the output and the
    # scratch folder, and never touches the inputs (an output inside the data root is allowed);
    # the caller's own policy is back in force when the run returns or raises
    previous = io.set_write_policy(io.write_policy([mix.output, work], protect=[mix.data_root or ""]))
    try:
        manifest = _run_steps(mix, shards, workers, ray_address, progress, force, tagger_modules, work)
    finally:
        io.set_write_policy(previous)
    manifest["_elapsed_s"] = time.time() - t0
    return manifest


def _run_steps(mix: MixFile, shards: list, workers: int | None, ray_address: str | None, progress: bool,
               force: bool, tagger_modules, work: str) -> dict:
    check_output(mix, force)
    init_ray(workers, ray_address)
    inputs = fingerprint([(s.source, s.rel, s.ident) for s in shards])
    ctx = {"output": mix.output, "mix": mix.model_dump_json(), "work": work, "inputs_digest": inputs,
           "tagger_modules": [os.path.abspath(m) if m.endswith(".py") else m for m in tagger_modules]}
    if tagger_modules:
        registry.load_modules(ctx["tagger_modules"])  # fail early, in the driver, on a bad module
    results: dict[str, dict] = {}
    upstream = ""  # what the global steps so far decided: a shard step's markers count only for the same
    steps = list(stages.STEPS)
    with make_progress(progress) as prog:
        for step in steps:
            if not step.when(mix):
                continue
            if step.run_shard is not None:
                results[step.name] = map_shards(step.name, step.run_shard, shards, ctx, prog,
                                                num_gpus=step.num_gpus(mix), upstream=upstream)
            else:
                results[step.name] = step.run_global(mix, shards, ctx, prog)
                upstream = fingerprint(upstream, step.name, inputs, results[step.name])
    sweep_temporaries(mix.output)
    stale = sweep_stale_tokens(mix.output, results.get("tokenize", {}))
    if stale:
        print(f"note: removed {stale} token files of an earlier run that this run's inputs no longer produce",
              file=sys.stderr)
    manifest = build_manifest(mix, shards, results, steps)
    io.write_text_atomic(io.join(mix.output, "manifest.json"), json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    io.write_text_atomic(io.join(mix.output, TRAINER_DATA_FILE), trainer_data_section(mix, manifest))
    return manifest
