"""benchmarks/train_gpu.sh keeps working: its CPU smoke mode runs every section and every row of
the GPU run (tiny config, gloo), and the script refuses to measure anything without CUDA."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "train_gpu.sh"
ROWS = [
    "1b eager", "1b compiled", "7b-shaped 16 layers compiled", "sdpa flash", "sdpa efficient", "sdpa cudnn",
    "fused AdamW", "AC full", "AC one_in_two", "AC selected_ops", "no reshard after forward", "float8 compiled",
]


def test_refuses_without_cuda(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "BENCH_DIR": str(tmp_path), "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(["bash", str(SCRIPT)], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "CUDA was asked for" in done.stderr and "Nothing was measured" in done.stderr
    assert not (tmp_path / "results.jsonl").exists()


@pytest.mark.slow  # every section and row, three torch.compile runs: 430 s on 2 cores at load average 7-10
def test_train_gpu_benchmark_smoke(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "BENCH_DIR": str(tmp_path / "bench"), "TIME_LIMIT": "1500"}
    done = subprocess.run(["bash", str(SCRIPT), "--smoke"], capture_output=True, text=True, env=env, timeout=1600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    records = [json.loads(line) for line in (tmp_path / "bench" / "results.jsonl").read_text().splitlines()]
    by = {r["section"]: r for r in records if r["section"] != "throughput"}
    assert by["env"]["gpu"].startswith("none") and by["data"]["tokens"] > 10_000
    assert by["logits"]["ok"] and by["logits"]["max_abs_diff"] <= 1e-4
    assert by["bf16_vs_fp32"]["ok"] and 0 < by["bf16_vs_fp32"]["max_abs_diff"] <= 0.05  # bf16 differs, a little
    assert by["resume"]["bit_identical"] and by["resume"]["resumed_steps"] == 3

    rows = {r["name"]: r for r in records if r["section"] == "throughput"}
    assert list(rows) == ROWS  # the 8-layer 7B fallback is not tried when 16 layers fit
    for name in ("sdpa efficient", "sdpa cudnn"):  # CUDA-only kernels: an error row, not a silent fallback
        assert rows[name]["status"].startswith("error") and "No viable backend" in rows[name]["status"], rows[name]
    for name, row in rows.items():
        if name in ("sdpa efficient", "sdpa cudnn"):
            continue
        assert row["status"] == "ok", row
        assert row["tokens_per_s"] > 0 and len(row["losses"]) == 3
    cpu_flash = {"aten::_scaled_dot_product_flash_attention_for_cpu", "aten::_scaled_dot_product_flash_attention_for_cpu_backward"}
    for name in ("1b eager", "sdpa flash"):  # torch's own choice on the CPU is its flash kernel
        assert {k for k in rows[name]["attention_kernels"] if k.startswith("aten::_scaled_dot")} == cpu_flash, rows[name]
    # every lever leaves the maths alone: same losses as its reference row, up to rounding
    for name in ("1b compiled", "fused AdamW", "AC full", "AC one_in_two", "AC selected_ops", "no reshard after forward"):
        assert rows[name]["max_loss_diff_vs_ref"] < 1e-2, (name, rows[name]["max_loss_diff_vs_ref"])
    assert rows["float8 compiled"]["loss_ok"] and rows["float8 compiled"]["max_loss_diff_vs_ref"] > 0
    table = [line for line in done.stdout.splitlines() if line.startswith("| ")]
    assert any(line.startswith("| 1b eager | 1b (") for line in table), done.stdout
