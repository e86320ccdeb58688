"""The conftest hook: with DOLMA_PREP_REQUIRE_PEERS=1 every kind of skip fails the run, with its
reason; without it, skips stay skips. Runs pytest on a small suite in a subprocess, with
tests/conftest.py loaded as a plugin."""
import os
import re
import subprocess
import sys
from pathlib import Path

SUITE = {
    "test_kinds.py": '''
import pytest

def test_passes():
    assert True

def test_skip_call():
    pytest.skip("peer venv missing: /nowhere")

@pytest.mark.skipif(True, reason="needs chromium")
def test_skipif():
    pass

def test_importorskip_in_test():
    pytest.importorskip("no_such_module_dolma_prep")

@pytest.mark.xfail(reason="known", strict=True)
def test_expected_failure():
    assert False
''',
    "test_module_level.py": '''
import pytest
pytest.importorskip("another_missing_module_dolma_prep")

def test_never_collected():
    pass
''',
}


def _run(tmp_path: Path, require: str | None) -> subprocess.CompletedProcess:
    for name, text in SUITE.items():
        (tmp_path / name).write_text(text)
    env = {k: v for k, v in os.environ.items() if k != "DOLMA_PREP_REQUIRE_PEERS"}
    if require is not None:
        env["DOLMA_PREP_REQUIRE_PEERS"] = require
    env["PYTHONPATH"] = str(Path(__file__).parent) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-m", "pytest", "-q", "-rA", "-p", "conftest", "-p", "no:cacheprovider", "--continue-on-collection-errors",
                           "--rootdir", str(tmp_path), str(tmp_path)],
                          cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def _summary(out: str) -> str:
    return out.strip().splitlines()[-1]


def test_skips_fail_when_peers_are_required(tmp_path):
    proc = _run(tmp_path, "1")
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    summary = _summary(proc.stdout)
    # pytest.skip / importorskip in a test: failed; skipif (decided in setup) and a module-level
    # importorskip (at collection): errors; the passing and the xfail test unchanged
    assert re.search(r"\b2 failed\b", summary) and re.search(r"\b1 passed\b", summary), summary
    assert re.search(r"\b1 xfailed\b", summary) and re.search(r"\b2 errors\b", summary), summary
    assert "skipped" not in summary, summary
    for reason in ("peer venv missing: /nowhere", "needs chromium", "no_such_module_dolma_prep",
                   "another_missing_module_dolma_prep"):
        assert re.search(r"DOLMA_PREP_REQUIRE_PEERS=1 and this was skipped: .*" + re.escape(reason), out), reason


def test_skips_stay_skips_otherwise(tmp_path):
    for require in (None, "0"):
        proc = _run(tmp_path, require)
        summary = _summary(proc.stdout)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert re.search(r"\b4 skipped\b", summary) and re.search(r"\b1 passed\b", summary), summary
