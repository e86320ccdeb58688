#!/usr/bin/env bash
# The bundled OLMo trainer on one GPU, in one run (benchmarks/train_gpu.py does the work):
#   1. correctness on the device: logits vs transformers' OlmoForCausalLM in fp32 (<= 1e-4); a bf16
#      vs fp32 loss curve of 50 steps on real token arrays (|diff| <= 0.05 every step); exact resume;
#   2. throughput: the 1B config at 4096 tokens in bf16, eager and compiled; a 7B-shaped model with
#      fewer layers; each lever on/off (SDPA kernel forced to flash / efficient / cudnn, with the
#      kernels that ran read from the profiler; fused AdamW; activation checkpointing full /
#      one_in_two / selected_ops; FSDP2 reshard-after-forward off; float8, where the GPU has it,
#      with its loss compared to bf16). tokens/s per GPU, MFU, peak memory, GPU model, driver, torch.
#
#   benchmarks/train_gpu.sh           one H100/H200; about 7 minutes; stops at TIME_LIMIT (480 s): rows
#                                     that would start in its last minute are recorded as not run
#   benchmarks/train_gpu.sh --smoke   CPU, tiny config: every code path in a few minutes
#                                     (tests/test_training_bench.py); its figures mean nothing
#
# Results: $BENCH_DIR/results.jsonl (one record per check or row, written as each finishes, so a
# run stopped by the time limit keeps what it measured) and a markdown table on stdout.
# Exit status: 0 all checks passed; 1 a check failed; 2 CUDA asked for but absent (nothing is
# ever measured on the CPU instead); 124 the time limit was hit.
#
# Environment: PYTHON (python3), BENCH_DIR (benchmarks/_data/train_gpu), TIME_LIMIT (seconds,
# 480), and ARGS: extra arguments for train_gpu.py, e.g. ARGS="--steps 12 --layers-7b 16,8
# --only 1b,float8" (see `train_gpu.py --help`).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-python3}
work=${BENCH_DIR:-benchmarks/_data/train_gpu}
limit=${TIME_LIMIT:-480}
read -r -a extra <<< "${ARGS:-}"

mode=()
if [[ "${1:-}" == "--smoke" ]]; then
  mode=(--smoke)
elif [[ -n "${1:-}" ]]; then
  echo "train_gpu.sh: unknown argument '$1' (expected nothing or --smoke)" >&2
  exit 2
else
  # Fail before anything else when there is no GPU: never measure the CPU in its place.
  if ! "$PYTHON" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)'; then
    echo "train_gpu.sh: CUDA was asked for, but $PYTHON's torch sees no GPU" \
         "($("$PYTHON" -c 'import torch; print("torch", torch.__version__, "built with CUDA", torch.version.cuda)' 2>&1))." \
         "Run it on a GPU machine, or use --smoke on the CPU. Nothing was measured." >&2
    exit 2
  fi
  # bit-identical resume needs cuBLAS's deterministic workspace; set before CUDA starts
  export CUBLAS_WORKSPACE_CONFIG=${CUBLAS_WORKSPACE_CONFIG:-:4096:8}
fi

# The package may not be installed (a bare GPU image with torch only): then import it from the
# checkout through a small shim. Its training code needs torch, numpy and PyYAML; the checks
# also use transformers and tokenizers.
if ! "$PYTHON" -c 'import dolma_prep.training' 2>/dev/null; then
  shim="$work/_shim"
  mkdir -p "$shim/dolma_prep"
  : > "$shim/dolma_prep/__init__.py"
  ln -sfn "$PWD/training" "$shim/dolma_prep/training"
  export PYTHONPATH="$(cd "$shim" && pwd)${PYTHONPATH:+:$PYTHONPATH}"
fi

mkdir -p "$work"
export PYTHONUNBUFFERED=1
status=0
timeout --signal=TERM --kill-after=20 "$limit" \
  "$PYTHON" benchmarks/train_gpu.py --work "$work" --time-limit "$limit" ${mode[@]+"${mode[@]}"} ${extra[@]+"${extra[@]}"} || status=$?
if [[ $status -eq 124 || $status -eq 137 ]]; then
  echo "train_gpu.sh: stopped at the time limit (${limit} s); rows measured so far:" >&2
  "$PYTHON" benchmarks/train_gpu.py --work "$work" --report || true
fi
exit $status
