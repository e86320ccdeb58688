#!/usr/bin/env bash
# Training throughput of the bundled OLMo trainer on one GPU: tokens/s and MFU of the 1B config at
# sequence length 4096 in bf16 (FSDP2 mixed precision, one rank), eager and with torch.compile.
# The data is random token ids; the trainer, its data reader and its logging are the real ones.
#
#   benchmarks/train_gpu.sh           one H100/H200; about 5 minutes; prints a markdown table
#   benchmarks/train_gpu.sh --smoke   CPU: tiny config, a few steps (tests/test_training_bench.py)
#
# Environment: STEPS (20; smoke 4), MICRO (micro-batch, 2), GLOBAL (sequences per step, 16),
# PYTHON (python), BENCH_DIR (benchmarks/_data/train_gpu). MFU uses dense bf16 peak 989.5 TFLOP/s
# for H100/H200 SXM (set --set peak_flops=... through EXTRA for other parts).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python}
work=${BENCH_DIR:-benchmarks/_data/train_gpu}

if [[ "${1:-}" == "--smoke" ]]; then
  config=tiny; steps=${STEPS:-4}
  args=(--set device=cpu --set precision=fp32 --set global_batch_size=${GLOBAL:-4} --set micro_batch_size=${MICRO:-2})
else
  config=1b; steps=${STEPS:-20}
  args=(--set device=cuda --set precision=bf16 --set global_batch_size=${GLOBAL:-16} --set micro_batch_size=${MICRO:-2})
fi
read -r -a extra <<< "${EXTRA:-}"

rm -rf "$work" && mkdir -p "$work"
"$PYTHON" - "$work/data" "$config" "$steps" "${args[@]}" <<'PY'
import sys
import numpy as np
from dolma_prep.training.config import load_config
from dolma_prep.training.data import write_run_output

out, config, steps, *sets = sys.argv[1:]
cfg = load_config(config, [s for s in sets if s != "--set"])
n = (int(steps) + 1) * cfg.tokens_per_step
tokens = np.random.default_rng(0).integers(0, cfg.model.vocab_size, n)
write_run_output(out, {"random": [tokens]})
PY

for compile in false true; do
  "$PYTHON" -m torch.distributed.run --standalone --nproc_per_node=1 -m dolma_prep.training.train "$config" \
    --data "$work/data" --max-steps "$steps" --save-folder "$work/compile-$compile" \
    --set compile=$compile --set save_final=false --set save_interval=0 "${args[@]}" ${extra[@]+"${extra[@]}"}
done

"$PYTHON" - "$work" "$config" "${args[@]}" <<'PY'
import json, statistics, sys
from pathlib import Path

import torch
from dolma_prep.training.config import load_config

work, config, *sets = sys.argv[1:]
work = Path(work)
cfg = load_config(config, [s for s in sets if s != "--set"])
device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU"
print(f"\n{config}: {cfg.model.num_params() / 1e9:.2f}B parameters, sequence {cfg.model.max_sequence_length}, "
      f"micro-batch {cfg.micro_batch_size}, {cfg.global_batch_size} sequences per step, {cfg.precision}, "
      f"{device}, torch {torch.__version__}")
print("| config | compile | steps timed | tokens/s/device | MFU | step time (s) | peak mem (GiB) |")
print("|---|---|---:|---:|---:|---:|---:|")
for compile in ("false", "true"):
    rows = [json.loads(l) for l in (work / f"compile-{compile}" / "metrics.jsonl").read_text().splitlines()]
    timed = rows[max(1, len(rows) // 4):] or rows  # skip warm-up (and compilation) steps
    tps = statistics.median(r["tokens_per_s_per_device"] for r in timed)
    mfus = [r["mfu"] for r in timed if r["mfu"] is not None]
    mfu = f"{100 * statistics.median(mfus):.1f}%" if mfus else "n/a"
    step = statistics.median(r["step_time_s"] for r in timed)
    mems = [r["max_memory_gb"] for r in rows if "max_memory_gb" in r]  # CUDA only
    mem = f"{max(mems):.1f}" if mems else "n/a"
    print(f"| {config} | {compile} | {len(timed)} | {tps:,.0f} | {mfu} | {step:.3f} | {mem} |")
PY
