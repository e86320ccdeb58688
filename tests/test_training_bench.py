"""benchmarks/train_gpu.sh keeps working: its CPU smoke mode runs the tiny config end to end."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "train_gpu.sh"


@pytest.mark.slow  # two torchrun launches and a torch.compile on CPU: ~45 s on 2 cores
@pytest.mark.skipif(shutil.which("bash") is None, reason="needs bash")
def test_train_gpu_benchmark_smoke(tmp_path):
    env = {**os.environ, "PYTHON": sys.executable, "BENCH_DIR": str(tmp_path / "bench"), "STEPS": "3"}
    done = subprocess.run(["bash", str(SCRIPT), "--smoke"], capture_output=True, text=True, env=env, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    rows = [line for line in done.stdout.splitlines() if line.startswith("| tiny |")]
    assert [row.split("|")[2].strip() for row in rows] == ["false", "true"], done.stdout
    for row in rows:
        tokens_per_s = float(row.split("|")[4].replace(",", ""))
        assert tokens_per_s > 0
