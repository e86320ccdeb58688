"""The trainer on one GPU, in one process: correctness on the device, then throughput of each lever.

Run through `benchmarks/train_gpu.sh` (which checks CUDA first, makes the package importable and
puts a time limit on the whole run). Every result is appended to `<work>/results.jsonl` as soon
as it exists, so a run stopped by its time limit keeps what it measured; the markdown tables
are printed at the end (`--report` prints them again from the JSONL).

Sections, in order (cheap and essential first):
  env          GPU model, driver, torch / CUDA / cuDNN versions, the peak used for MFU
  data         real token arrays: the bundled sample documents, tokenized with the bundled OLMo
               tokenizer, written in the `dolma-prep run` layout (manifest + raw uint16 memmaps)
  logits       ours vs transformers' OlmoForCausalLM in fp32 on the device (bound 1e-4)
  bf16_vs_fp32 50 steps (smoke: 6) of a small model on the real arrays, bf16 (FSDP2 policy) vs fp32:
               |loss difference| <= 0.05 at every step (stated before measuring)
  resume       6 steps uninterrupted vs 3 steps + checkpoint + resume to 6, deterministic kernels:
               loss, grad norm, LR bit-identical
  throughput   the 1B config at 4096 tokens (bf16) eager and compiled, a 7B-shaped model with
               fewer layers, and each lever on/off; tokens/s/device, MFU, peak memory, the
               attention kernels that ran (profiler), loss vs the reference row

MFU = tokens/s/device x FLOPs per token / peak. FLOPs per token (OLMo's count, model.py
`flops_per_token`) = 6 x non-embedding parameters + 12 x layers x d_model x sequence length
(forward + backward, attention not discounted for the causal mask). Peak: dense bf16
989.5 TFLOP/s for H100/H200 SXM (train.py PEAK_FLOPS); float8 rows use the same bf16 peak.

`--smoke` runs every section on the CPU with the tiny config (gloo instead of NCCL), so the
script's code paths are tested where there is no GPU; its figures mean nothing.
"""

from __future__ import annotations

import os
import sys

# This folder holds benchmarks/tokenize.py, which would shadow the standard library's tokenize
# module for everything imported below: take the script's folder off the import path first.
if sys.path and os.path.abspath(sys.path[0]) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)

import argparse
import gc
import gzip
import json
import re
import statistics
import subprocess
import time
from pathlib import Path

import numpy as np
import torch
import torch.distributed as dist

from dolma_prep.training.config import load_config
from dolma_prep.training.data import write_run_output
from dolma_prep.training.export_hf import save_hf
from dolma_prep.training.float8 import float8_supported
from dolma_prep.training.model import ModelConfig, OLMo
from dolma_prep.training.train import PEAK_FLOPS, Trainer

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "pipeline" / "resources" / "allenai_gpt-neox-olmo-dolma-v1_5.json"
SAMPLE = ROOT / "sample" / "documents"
EOS = 50279
OLMO_CORE = {"1b": "45-46K tok/s/H100, MFU 39-40%", "7b": "9.7-10K tok/s/H100, MFU 47-48%"}
BF16_TOLERANCE = 0.05  # max |loss(bf16) - loss(fp32)| over 50 steps
FLOAT8_TOLERANCE = 0.1  # max |loss(float8) - loss(bf16)| over the timed steps
ATTENTION_NAMES = re.compile(r"flash|fmha|efficient_attention|cudnn|sdpa|scaled_dot_product|attention", re.I)


class Results:
    def __init__(self, path: Path):
        self.path = path

    def add(self, section: str, **record) -> dict:
        record = {"section": section, **record}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        print(f"[{section}] " + json.dumps({k: v for k, v in record.items() if k not in ("losses", "section")}), flush=True)
        return record


def free_memory(device: torch.device) -> None:
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize()
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()


def init_process_group(device: torch.device, work: Path) -> None:
    """One rank, so the trainer takes its multi-GPU path (FSDP2, mixed-precision policy)."""
    backend = "nccl" if device.type == "cuda" else "gloo"
    store = work / "pg_store"
    store.unlink(missing_ok=True)
    dist.init_process_group(backend, init_method=f"file://{store}", rank=0, world_size=1)


# ---------------------------------------------------------------------------------------------
# env and data


def environment(device: torch.device) -> dict:
    env = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device)}
    if device.type == "cuda":
        env["gpu"] = torch.cuda.get_device_name(device)
        env["capability"] = ".".join(map(str, torch.cuda.get_device_capability(device)))
        env["memory_gib"] = round(torch.cuda.get_device_properties(device).total_memory / 2**30, 1)
        env["cudnn"] = torch.backends.cudnn.version()
        try:
            query = ["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"]
            env["driver"] = subprocess.run(query, capture_output=True, text=True, timeout=30).stdout.strip()
        except (OSError, subprocess.SubprocessError) as e:
            env["driver"] = f"unknown ({e})"
        env["peak_flops"] = next((v for k, v in PEAK_FLOPS.items() if k in env["gpu"]), None)
    else:
        env["gpu"] = "none (CPU smoke run)"
        env["peak_flops"] = None
    env["float8"] = float8_supported(device)
    return env


def make_token_arrays(out: Path, max_docs: int | None = None) -> tuple[Path, int]:
    """The bundled sample's documents, one array per source, tokenized as `dolma-prep run`
    does (stripped text + EOS, uint16) with the bundled OLMo tokenizer."""
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(TOKENIZER))
    arrays, total = {}, 0
    for folder in sorted(p for p in SAMPLE.iterdir() if p.is_dir()):
        texts = []
        for path in sorted(folder.glob("*.jsonl.gz")):
            with gzip.open(path, "rt", encoding="utf-8") as f:
                texts += [t for t in (json.loads(line)["text"].strip() for line in f) if t]
        texts = texts[:max_docs] if max_docs else texts
        ids = [i for enc in tok.encode_batch(texts) for i in (*enc.ids, EOS)]
        arrays[folder.name] = [np.array(ids, dtype=np.uint16)]
        total += len(ids)
    return write_run_output(out, arrays), total


# ---------------------------------------------------------------------------------------------
# correctness


def check_logits(device: torch.device, work: Path) -> dict:
    import transformers

    old_tf32 = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False  # true fp32 matmuls
    try:
        config = ModelConfig(d_model=256, n_heads=8, n_layers=3, mlp_hidden_size=1024, max_sequence_length=256, clip_qkv=0.5)
        torch.manual_seed(0)
        model = OLMo(config)
        model.init_weights()
        save_hf(model.state_dict(), config, work / "hf")
        model = model.to(device).eval()
        hf = transformers.OlmoForCausalLM.from_pretrained(work / "hf", dtype=torch.float32).to(device).eval()
        tokens = torch.randint(0, config.vocab_size, (2, 256), generator=torch.Generator().manual_seed(1)).to(device)
        with torch.no_grad():
            diff = (model(tokens) - hf(tokens).logits).abs().max().item()
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = old_tf32
    return {"max_abs_diff": diff, "bound": 1e-4, "transformers": transformers.__version__, "ok": diff <= 1e-4}


def small_config(args, data: Path, save: Path, *sets: str):
    base = "tiny" if args.smoke else "1b"
    shape = [] if args.smoke else [
        "model.d_model=512", "model.n_heads=8", "model.n_layers=4", "model.mlp_hidden_size=4096",
        "model.max_sequence_length=1024", "global_batch_size=16", "micro_batch_size=8",
    ]
    config = load_config(base, [
        *shape, f"device={args.device}", "save_interval=0", "save_final=false", "optimizer.learning_rate=1e-3",
        "scheduler.name=constant", "scheduler.grad_clip_warmup_steps=null", "max_tokens=null", *sets,
    ])
    config.data.run_output, config.data.paths, config.save_folder = str(data), [], str(save)
    return config


def check_bf16_vs_fp32(args, data: Path, work: Path) -> dict:
    runs = {}
    for precision in ("fp32", "bf16"):
        config = small_config(args, data, work / f"precision-{precision}", f"max_steps={args.precision_steps}", f"precision={precision}")
        runs[precision] = [m["loss"] for m in Trainer(config).fit()]
        free_memory(args.device)
    diffs = [abs(a - b) for a, b in zip(runs["fp32"], runs["bf16"])]
    return {
        "steps": len(diffs), "max_abs_diff": max(diffs), "mean_abs_diff": statistics.mean(diffs),
        "tolerance": BF16_TOLERANCE, "fp32_first_last": [runs["fp32"][0], runs["fp32"][-1]],
        "bf16_first_last": [runs["bf16"][0], runs["bf16"][-1]],
        # and the runs learn: over 50 steps the loss must fall by more than 0.5 (the smoke's few steps: fall)
        "ok": max(diffs) <= BF16_TOLERANCE and runs["bf16"][-1] < runs["bf16"][0] - (0.5 if len(diffs) >= 50 else 0.0),
    }


def check_resume(args, data: Path, work: Path) -> dict:
    """Bit-identical resume on the device. Deterministic kernels are required for that (CUDA's
    embedding and attention backward otherwise accumulate with atomics in varying order);
    a second uninterrupted run shows whether any difference is the resume or the kernels."""
    torch.use_deterministic_algorithms(True, warn_only=True)
    try:
        keys = ("loss", "grad_norm", "lr")
        full = [{k: m[k] for k in keys} for m in Trainer(small_config(args, data, work / "resume-a", "max_steps=6")).fit()]
        again = [{k: m[k] for k in keys} for m in Trainer(small_config(args, data, work / "resume-b", "max_steps=6")).fit()]
        Trainer(small_config(args, data, work / "resume-c", "max_steps=3", "save_final=true")).fit()
        resumed = [{k: m[k] for k in keys} for m in Trainer(small_config(args, data, work / "resume-c", "max_steps=6")).fit()]
    finally:
        torch.use_deterministic_algorithms(False)
        free_memory(args.device)
    diff = max(abs(a[k] - b[k]) for a, b in zip(full[3:], resumed) for k in keys)
    return {
        "resumed_steps": len(resumed), "bit_identical": full[3:] == resumed, "max_abs_diff": diff,
        "uninterrupted_runs_identical": full == again, "ok": full[3:] == resumed,
    }


# ---------------------------------------------------------------------------------------------
# throughput


def variants(args) -> list[dict]:
    """Each row: a name, what it compares to, and its config overrides on top of the 1B base
    (bf16, micro-batch 2, FSDP2 on one rank, SDPA with torch's kernel choice, foreach AdamW,
    no activation checkpointing, reshard after forward)."""
    seven = ["model.d_model=4096", "model.n_heads=32", "model.mlp_hidden_size=22016"]
    rows = [
        {"name": "1b eager", "ref": None, "sets": ["compile=false"], "profile": True},
        {"name": "1b compiled", "ref": "1b eager", "sets": ["compile=true"], "profile": True},
        *[
            {"name": f"7b-shaped {n} layers compiled", "ref": None, "model": "7b", "layers": n,
             "sets": ["compile=true", *seven, f"model.n_layers={n}"], "group": "7b"}
            for n in args.layers_7b
        ],
        {"name": "sdpa flash", "ref": "1b eager", "sets": ["compile=false", "sdpa_backend=flash"], "profile": True},
        {"name": "sdpa efficient", "ref": "1b eager", "sets": ["compile=false", "sdpa_backend=efficient"], "profile": True},
        {"name": "sdpa cudnn", "ref": "1b eager", "sets": ["compile=false", "sdpa_backend=cudnn"], "profile": True},
        {"name": "fused AdamW", "ref": "1b eager", "sets": ["compile=false", "optimizer.fused=true"]},
        {"name": "AC full", "ref": "1b eager", "sets": ["compile=false", "activation_checkpointing=full"]},
        {"name": "AC one_in_two", "ref": "1b eager", "sets": ["compile=false", "activation_checkpointing=one_in_two"]},
        {"name": "AC selected_ops", "ref": "1b eager", "sets": ["compile=false", "activation_checkpointing=selected_ops"]},
        {"name": "no reshard after forward", "ref": "1b eager", "sets": ["compile=false", "reshard_after_forward=false"]},
        {"name": "float8 compiled", "ref": "1b compiled", "sets": ["compile=true", "float8=true"], "float8": True, "profile": True},
    ]
    if args.smoke:  # the tiny model stands in for both shapes; sizes small enough for 2 CPU cores
        for row in rows:
            row["sets"] = [s for s in row["sets"] if not s.startswith("model.")]
    if args.only:
        rows = [r for r in rows if any(o in r["name"] for o in args.only)]
    return rows


def throughput_config(args, data: Path, work: Path, row: dict):
    if args.smoke:  # fp32: bf16 matmuls are slow on CPUs, and the bf16 path is the bf16_vs_fp32 check's
        base = ["precision=fp32", "global_batch_size=4", "micro_batch_size=2"]
    else:
        base = ["precision=bf16", f"global_batch_size={args.global_batch}", f"micro_batch_size={args.micro_batch}"]
    config = load_config("tiny" if args.smoke else "1b", [
        *base, f"device={args.device}", "save_interval=0", "save_final=false", f"max_steps={args.steps}",
        "max_tokens=null", *row["sets"],
    ])
    # a 2-step warmup so that the losses move and the rows can be compared on them
    config.scheduler.units, config.scheduler.t_warmup, config.scheduler.t_max = "steps", 2, 10_000
    config.data.run_output, config.data.paths = str(data), []
    config.save_folder = str(work / "throughput" / re.sub(r"\W+", "-", row["name"]))
    return config


def attention_kernels(trainer: Trainer) -> list[str]:
    """Names of the attention ops and GPU kernels that one more training step runs."""
    from torch.profiler import ProfilerActivity, profile

    activities = [ProfilerActivity.CPU] + ([ProfilerActivity.CUDA] if trainer.rt.device.type == "cuda" else [])
    batch = trainer.next_batch()
    with profile(activities=activities) as prof:
        trainer.train_step(batch, trainer.state["tokens"] + trainer.config.tokens_per_step)
    names = {
        e.key for e in prof.key_averages()
        if ATTENTION_NAMES.search(e.key) and e.key != "aten::scaled_dot_product_attention"  # the dispatcher
        and not e.key.startswith("autograd::") and not e.key.endswith("Backward0")  # autograd's wrappers
    }
    return sorted(n[:90] for n in names)


def run_variant(args, data: Path, work: Path, row: dict, reference: dict | None) -> dict:
    import torch._dynamo

    torch._dynamo.reset()  # a fresh compile per row: no cache limits, no stale kernel choice
    free_memory(args.device)
    config = throughput_config(args, data, work, row)
    record = {"name": row["name"], "model": row.get("model", "1b"), "sets": row["sets"], "ref": row["ref"]}
    if row.get("float8") and not args.env["float8"][0]:
        return {**record, "status": f"not run: float8 unsupported ({args.env['float8'][1]})"}
    start = time.perf_counter()
    try:
        trainer = Trainer(config)
        history = trainer.fit()
        kernels = attention_kernels(trainer) if row.get("profile") else None
    except torch.cuda.OutOfMemoryError as e:
        trainer = None
        free_memory(args.device)
        return {**record, "status": f"out of memory: {str(e).splitlines()[0][:200]}"}
    except Exception as e:  # noqa: BLE001 e.g. a forced SDPA kernel that cannot run here: said, not hidden, and the next row runs
        trainer = None
        free_memory(args.device)
        return {**record, "status": f"error: {' '.join(str(e).split())[:300]}"}
    wall = time.perf_counter() - start
    timed = history[args.warmup :] or history
    mfus = [m["mfu"] for m in timed if m["mfu"] is not None]
    losses = [m["loss"] for m in history]
    record.update(
        status="ok",
        parameters=config.model.num_params(),
        layers=config.model.n_layers,
        flops_per_token=config.model.flops_per_token(),
        tokens_per_step=config.tokens_per_step,
        steps_timed=len(timed),
        tokens_per_s=statistics.median(m["tokens_per_s_per_device"] for m in timed),
        mfu=statistics.median(mfus) if mfus else None,
        step_time_s=statistics.median(m["step_time_s"] for m in timed),
        first_step_s=history[0]["step_time_s"],
        peak_memory_gib=max((m.get("max_memory_gb", 0.0) for m in history), default=None) if args.device.type == "cuda" else None,
        wall_s=wall,
        losses=losses,
        attention_kernels=kernels,
    )
    if reference and reference.get("status") == "ok":
        record["max_loss_diff_vs_ref"] = max(abs(a - b) for a, b in zip(losses, reference["losses"]))
        record["speedup_vs_ref"] = record["tokens_per_s"] / reference["tokens_per_s"]
        if row.get("float8"):
            record["loss_ok"] = record["max_loss_diff_vs_ref"] <= FLOAT8_TOLERANCE
    del trainer
    free_memory(args.device)
    return record


# ---------------------------------------------------------------------------------------------
# report


def report(path: Path) -> str:
    records = [json.loads(line) for line in path.read_text().splitlines()]
    by = {}
    for r in records:
        by.setdefault(r["section"], []).append(r)
    out = []
    for env in by.get("env", []):
        peak = f"{env['peak_flops'] / 1e12:.1f} TFLOP/s dense bf16" if env.get("peak_flops") else "none known"
        out.append(
            f"GPU: {env['gpu']} (driver {env.get('driver', 'n/a')}, capability {env.get('capability', 'n/a')}), "
            f"torch {env['torch']}, CUDA {env['cuda']}, cuDNN {env.get('cudnn', 'n/a')}; MFU peak: {peak}; "
            f"float8: {'yes' if env['float8'][0] else 'no: ' + env['float8'][1]}"
        )
    for name in ("data", "logits", "bf16_vs_fp32", "resume"):
        for r in by.get(name, []):
            out.append(f"{name}: " + json.dumps({k: v for k, v in r.items() if k != "section"}))
    out.append("")
    out.append("| row | model | tokens/s/device | MFU | step (s) | peak mem (GiB) | vs ref | max loss diff vs ref | attention kernels / status |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in by.get("throughput", []):
        if r["status"] != "ok":
            out.append(f"| {r['name']} | {r['model']} | | | | | | | {r['status']} |")
            continue
        mfu = f"{100 * r['mfu']:.1f}%" if r["mfu"] is not None else "n/a"
        mem = f"{r['peak_memory_gib']:.1f}" if r["peak_memory_gib"] is not None else "n/a"
        vs = f"{r['speedup_vs_ref']:.2f}x {r['ref']}" if "speedup_vs_ref" in r else ""
        diff = f"{r['max_loss_diff_vs_ref']:.3g}" if "max_loss_diff_vs_ref" in r else ""
        kernels = ", ".join(r["attention_kernels"]) if r.get("attention_kernels") else ""
        out.append(
            f"| {r['name']} | {r['model']} ({r['parameters'] / 1e9:.2f}B, {r['layers']} layers) | {r['tokens_per_s']:,.0f} | "
            f"{mfu} | {r['step_time_s']:.3f} | {mem} | {vs} | {diff} | {kernels} |"
        )
    out.append(f"\nOLMo-core anchor (H100, 4K context): 1B {OLMO_CORE['1b']}; 7B {OLMO_CORE['7b']}.")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, required=True)
    parser.add_argument("--smoke", action="store_true", help="CPU, tiny config: every code path, meaningless figures")
    parser.add_argument("--steps", type=int, default=8, help="steps per throughput row")
    parser.add_argument("--warmup", type=int, default=3, help="steps left out of the medians (compilation)")
    parser.add_argument("--global-batch", type=int, default=8, help="sequences per step (1B and 7B rows)")
    parser.add_argument("--time-limit", type=float, default=None,
                        help="seconds; rows that would start within 60 s of it are recorded as not run")
    parser.add_argument("--micro-batch", type=int, default=2)
    parser.add_argument("--layers-7b", type=lambda s: [int(x) for x in s.split(",")], default=[16, 8],
                        help="7B-shaped layer counts to try in order; the first that fits is measured")
    parser.add_argument("--sections", default="env,data,logits,bf16_vs_fp32,resume,throughput")
    parser.add_argument("--only", type=lambda s: s.split(","), help="throughput rows whose names contain one of these")
    parser.add_argument("--report", action="store_true", help="print the tables of an earlier run's results.jsonl")
    args = parser.parse_args(argv)
    t0 = time.perf_counter()
    args.work.mkdir(parents=True, exist_ok=True)
    results_path = args.work / "results.jsonl"
    if args.report:
        print(report(results_path))
        return 0
    if args.smoke:
        args.device = torch.device("cpu")
        args.steps, args.warmup, args.precision_steps = min(args.steps, 3), 1, 6
    else:
        if not torch.cuda.is_available():
            print(f"train_gpu: CUDA was asked for, but torch {torch.__version__} sees no GPU; use --smoke for the "
                  f"CPU run. Nothing was measured.", file=sys.stderr)
            return 2
        args.device = torch.device("cuda", 0)
        args.precision_steps = 50
        torch.cuda.set_device(args.device)
    results_path.unlink(missing_ok=True)
    results = Results(results_path)
    sections = args.sections.split(",")
    args.env = environment(args.device)
    results.add("env", **args.env)
    init_process_group(args.device, args.work)
    failures = []
    try:
        data, n_tokens = make_token_arrays(args.work / "data", max_docs=20 if args.smoke else None)
        results.add("data", tokens=n_tokens, path=str(data))
        for name, check in (("logits", lambda: check_logits(args.device, args.work)),
                            ("bf16_vs_fp32", lambda: check_bf16_vs_fp32(args, data, args.work)),
                            ("resume", lambda: check_resume(args, data, args.work))):
            if name in sections:
                t = time.perf_counter()
                try:
                    outcome = check()
                except Exception as e:  # noqa: BLE001 recorded as a failed check; the rest still runs
                    outcome = {"ok": False, "error": f"{type(e).__name__}: {' '.join(str(e).split())[:300]}"}
                    free_memory(args.device)
                record = results.add(name, **outcome, wall_s=time.perf_counter() - t)
                if not record["ok"]:
                    failures.append(name)
        if "throughput" in sections:
            done = {}
            for row in variants(args):
                if args.time_limit and time.perf_counter() - t0 > args.time_limit - 60:
                    results.add("throughput", name=row["name"], model=row.get("model", "1b"), sets=row["sets"],
                                ref=row["ref"], status="not run: out of time")
                    continue
                if row.get("group") == "7b" and any(r.get("model") == "7b" and r["status"] == "ok" for r in done.values()):
                    continue  # the 7B shape is tried with fewer layers only when more did not fit
                record = results.add("throughput", **run_variant(args, data, args.work, row, done.get(row["ref"])))
                done[row["name"]] = record
                if record.get("loss_ok") is False:
                    failures.append(row["name"] + " loss")
    finally:
        dist.destroy_process_group()
    print("\n" + report(results_path))
    if failures:
        print(f"\ntrain_gpu: checks FAILED: {', '.join(failures)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
