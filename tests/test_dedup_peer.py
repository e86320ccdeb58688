"""Parity of `run_paragraphs` with `dolma dedupe` (dolma 1.2.1, Rust) on the bundled sample.

Needs the peer environment .peer-venvs/dolma (`pip install dolma==1.2.1`). Skipped when it is
missing, unless DOLMA_PREP_REQUIRE_PEERS is set, in which case a missing peer is a failure.
"""

from __future__ import annotations

import glob
import gzip
import json
import math
import os
import shutil
import subprocess

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DOLMA = os.path.join(ROOT, ".peer-venvs", "dolma", "bin", "dolma")
SAMPLE = os.path.join(ROOT, "sample", "documents")

pytestmark = [pytest.mark.peer, pytest.mark.slow]


def _require_peer():
    if not os.path.exists(DOLMA):
        if os.environ.get("DOLMA_PREP_REQUIRE_PEERS"):
            pytest.fail(f"DOLMA_PREP_REQUIRE_PEERS is set but {DOLMA} is missing")
        pytest.skip(f"peer environment missing: {DOLMA}")


def _spans(path, name):
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            out.append((obj["id"], obj["attributes"].get(name, [])))
    return out


def test_paragraph_dedup_parity_with_dolma(tmp_path, ray_session):
    _require_peer()
    from dolma_prep.dedup.paragraphs import run_paragraphs

    docs_dir = tmp_path / "data" / "documents"
    shutil.copytree(SAMPLE, docs_dir)
    doc_paths = sorted(glob.glob(str(docs_dir / "*" / "*.jsonl.gz")))
    name, fp_rate = "bff_duplicate_paragraph_spans", 1e-6

    ours = [(d, d.replace("/documents/", "/ours/")) for d in doc_paths]
    stats = run_paragraphs(ours, name, str(tmp_path / "work"), false_positive_rate=fp_rate)

    config = {
        "documents": doc_paths,  # one process: shards in this order, as ours
        "work_dir": {"input": str(tmp_path / "wi"), "output": str(tmp_path / "wo")},
        "dedupe": {
            "name": "dd",
            "paragraphs": {
                "attribute_name": name,
                "by_ngram": {"ngram_length": 13, "stride": 1, "overlap_threshold": 0.5},
            },
            "skip_empty": True,
        },
        "bloom_filter": {
            "file": str(tmp_path / "bloom.bin"),
            "read_only": False,
            "estimated_doc_count": stats["keys"],
            "desired_false_positive_rate": fp_rate,
        },
        "processes": 1,
    }
    cfg = tmp_path / "dedupe.json"
    cfg.write_text(json.dumps(config))
    proc = subprocess.run([DOLMA, "-c", str(cfg), "dedupe"], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-2000:]

    mine, theirs = set(), set()
    scores_ours, scores_theirs = {}, {}
    for d, o in ours:
        a = _spans(o, name)
        b = _spans(d.replace("/documents/", "/attributes/dd/"), name)
        assert [i for i, _ in a] == [i for i, _ in b]
        for (doc_id, sa), (_, sb) in zip(a, b):
            for s, e, v in sa:
                mine.add((d, doc_id, s, e))
                scores_ours[(d, doc_id, s, e)] = v
            for s, e, v in sb:
                theirs.add((d, doc_id, s, e))
                scores_theirs[(d, doc_id, s, e)] = v
    # both filters may add false positives: allow a few times the expected number
    allowed = max(3, math.ceil(6 * stats["keys"] * fp_rate))
    assert len(theirs) > 1000
    assert len(mine ^ theirs) <= allowed, (len(mine - theirs), len(theirs - mine))
    common = mine & theirs
    differing = [k for k in common if abs(scores_ours[k] - scores_theirs[k]) > 1e-6]
    assert len(differing) <= allowed
