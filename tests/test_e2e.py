"""End to end on a real local Ray: the anneal mix over the bundled sample, arrays checked."""
import csv
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, TOKENIZER, read_gz_jsonl, run_cli, write_docs, write_mix
from tokenizers import Tokenizer

pytestmark = pytest.mark.slow  # pipeline runs on a local Ray

EOS = 50279


@pytest.fixture(scope="module")
def anneal_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("anneal") / "out"
    proc = run_cli("run", str(REPO / "mixes" / "anneal.yaml"), "--output", str(out), "--workers", "2")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return out, proc


def _index(path: Path) -> list[list[str]]:
    with gzip.open(path, "rt") as f:
        return list(csv.reader(f))


def test_arrays_match_indexes_and_decode_to_kept_text(anneal_run):
    out, _ = anneal_run
    tok = Tokenizer.from_file(str(TOKENIZER))
    manifest = json.loads((out / "manifest.json").read_text())
    files = manifest["outputs"]["tokens"]
    assert {f["source"] for f in files} == set(manifest["sources"]) and len(files) >= 12
    kept_cache: dict[str, list[dict]] = {}
    n_docs = 0
    for f in files:
        arr = np.memmap(out / f["path"], dtype=np.uint16, mode="r")
        rows = _index(out / f["index"])
        assert int(rows[-1][1]) == len(arr) == f["tokens"]
        prev = 0
        for start, end, doc_id, src, loc in rows:
            start, end = int(start), int(end)
            assert start == prev and end > start
            prev = end
            ids = arr[start:end]
            assert ids[-1] == EOS and EOS not in ids[:-1]
            kept = kept_cache.setdefault(src, read_gz_jsonl(out / src))
            doc = kept[int(loc) - 1]
            assert str(doc["id"]) == doc_id
            # the OLMo tokenizer NFC-normalises, so decoding gives back the normalised text
            assert tok.decode(ids[:-1].tolist(), skip_special_tokens=False) == tok.normalizer.normalize_str(doc["text"].strip())
            n_docs += 1
    assert n_docs == manifest["total_documents"]


def test_stats_json_equals_manifest(anneal_run):
    out, run_proc = anneal_run
    proc = run_cli("stats", str(out), "--json")
    assert proc.returncode == 0, proc.stderr
    stats = json.loads(proc.stdout)
    manifest = json.loads((out / "manifest.json").read_text())
    assert stats["errors"] == []
    assert stats["total_tokens"] == manifest["total_tokens"] > 40_000
    for name, s in manifest["sources"].items():
        assert stats["sources"][name]["tokens"] == s["tokens"] and stats["sources"][name]["documents"] == s["documents"]
    # the run printed the per-source table
    assert "tokens per source" in run_proc.stdout and "flan" in run_proc.stdout


def test_stats_detects_a_truncated_array(anneal_run, tmp_path):
    import shutil

    out, _ = anneal_run
    copy = tmp_path / "copy"
    shutil.copytree(out, copy)
    victim = copy / json.loads((copy / "manifest.json").read_text())["outputs"]["tokens"][0]["path"]
    victim.write_bytes(victim.read_bytes()[:-2])
    proc = run_cli("stats", str(copy), "--json")
    assert proc.returncode == 4
    assert any("bytes but its index covers" in e for e in json.loads(proc.stdout)["errors"])


def test_rerun_resumes_and_changes_nothing(anneal_run):
    out, _ = anneal_run
    before = (out / "manifest.json").read_bytes()
    npy = sorted(out.glob("tokens/*/*.npy"))
    mtimes = [p.stat().st_mtime_ns for p in npy]
    proc = run_cli("run", str(REPO / "mixes" / "anneal.yaml"), "--output", str(out), "--workers", "1", "-q")
    assert proc.returncode == 0, proc.stderr
    assert (out / "manifest.json").read_bytes() == before
    assert [p.stat().st_mtime_ns for p in npy] == mtimes  # every shard was skipped
    assert not [p for p in out.rglob("*") if ".tmp-" in p.name]


def test_tokenize_once_equals_encoding_again(anneal_run, tmp_path):
    """The anneal mix has token targets: its count step encoded every kept document once and the
    tokenize step wrote from those ids. Rerunning the tokenize step without them (it reads and
    encodes the kept documents again, the two-pass design) gives the same bytes and manifest."""
    import shutil

    from test_crash import tree_hashes

    out, _ = anneal_run
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["sampling"]["mode"] == "tokens"
    markers = [json.loads(p.read_text()) for p in (out / "_state" / "tokenize").rglob("*.json")]
    assert markers and all(m["encoded_by"] == "count" for m in markers)
    assert not list((out / "_work" / "ids").rglob("*.ids"))  # consumed
    assert manifest["tokenizer"]["engine"] == {"engines": [markers[0]["engine"]], "notes": [],
                                               "documents_by_reference": 0}
    copy = tmp_path / "again"
    shutil.copytree(out, copy)
    shutil.rmtree(copy / "_state" / "tokenize")
    shutil.rmtree(copy / "tokens")
    proc = run_cli("run", str(REPO / "mixes" / "anneal.yaml"), "--output", str(copy), "--workers", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    again = [json.loads(p.read_text()) for p in (copy / "_state" / "tokenize").rglob("*.json")]
    assert len(again) == len(markers) and all(m["encoded_by"] == "tokenize" for m in again)
    assert tree_hashes(copy) == tree_hashes(out)  # arrays, indexes, manifest: byte for byte


def test_exact_dedup_across_sources_keeps_the_first(tmp_path):
    mix = write_mix(tmp_path / "cc.yaml", ["cc_en_head", "cc_en_middle", "cc_en_tail"])
    out = tmp_path / "out"
    proc = run_cli("run", str(mix), "--output", str(out), "--workers", "2", "-q")
    assert proc.returncode == 0, proc.stderr
    dups = json.loads((REPO / "sample" / "duplicates.json").read_text())["planted"]
    exact = [d for d in dups if d["kind"] == "exact" and d["source"].startswith("cc_")]
    assert exact, "the sample must hold planted exact duplicates among the CC sources"
    dropped = {r["id"]: r["reason"] for p in out.glob("dropped/*/*.jsonl.gz") for r in read_gz_jsonl(p)}
    kept = {d["id"] for p in out.glob("kept/*/*.jsonl.gz") for d in read_gz_jsonl(p)}
    for d in exact:
        # the copy in the later shard (sorted by source then file) is removed, the first kept
        first, second = sorted([(d["source"], d["id"]), (d["duplicate_of_source"], d["duplicate_of"])])
        assert dropped.get(second[1]) == "dedup: exact_duplicates"
        assert first[1] in kept
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dedup"]["exact"]["duplicates"] >= len(exact)


def test_bad_input_is_reported_with_file_and_line_and_other_shards_finish(tmp_path, sample_copy):
    bad = sample_copy / "wiki" / "0000.jsonl.gz"
    docs = read_gz_jsonl(bad)
    write_docs(bad, docs[:2], raw_lines=[b'{"id": "broken", "text": "oops"\n', b'{"id": "nt", "source": "wiki"}\n'])
    mix = write_mix(tmp_path / "bad.yaml", ["wiki", "flan"], data_root=sample_copy)
    out = tmp_path / "out"
    proc = run_cli("run", str(mix), "--output", str(out), "--workers", "2", "-q")
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "2 bad input records were rejected" in proc.stderr
    rejects = [json.loads(line) for line in (out / "rejects" / "read" / "wiki" / "0000.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"].split(":")[0]) for r in rejects] == [(3, "not valid JSON"), (4, "missing field 'text'")]
    assert all(r["file"].endswith("wiki/0000.jsonl.gz") for r in rejects)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rejected"] == 2
    assert manifest["sources"]["wiki"]["stages"]["read"]["documents"] == 2 + len(read_gz_jsonl(sample_copy / "wiki" / "0001.jsonl.gz"))
    assert manifest["sources"]["flan"]["documents"] > 0


def test_user_errors_are_one_line_without_traceback(tmp_path):
    mix = write_mix(tmp_path / "m.yaml", ["no_such_source"])
    proc = run_cli("run", str(mix), "--output", str(tmp_path / "o"))
    assert proc.returncode == 2
    assert "match no document files" in proc.stderr and "check data_root" in proc.stderr and "Traceback" not in proc.stderr
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    proc = run_cli("run", str(write_mix(tmp_path / "w.yaml", ["wiki"])), "--output", str(ro / "sub"))
    if proc.returncode != 2:  # root ignores permissions; use a path under a file instead
        proc = run_cli("run", str(write_mix(tmp_path / "w.yaml", ["wiki"])), "--output", str(tmp_path / "m.yaml" / "x"))
    assert proc.returncode == 2 and "cannot be written" in proc.stderr and "Traceback" not in proc.stderr


def test_every_task_records_its_cpu_time(anneal_run):
    """Shard tasks' done markers and each dedup kind's timing file (beside its counts-only
    marker, never in the manifest) hold task CPU-seconds: what benchmarks/e2e.py charges each
    step, against the floor."""
    out, _ = anneal_run
    for step in ("tag", "select", "tokenize"):
        markers = [json.loads(p.read_text()) for p in (out / "_state" / step).rglob("*.json")]
        assert markers and all(0 < m["_cpu_s"] <= m["_seconds"] * 4 for m in markers), step
    timing = json.loads((out / "_state" / "dedup" / "timing" / "exact.json").read_text())
    assert set(timing["rounds"]) == {"stages.map", "stages.reduce", "stages.write"}
    assert timing["tasks"] == sum(r["tasks"] for r in timing["rounds"].values()) > 0
    assert timing["_cpu_s"] == round(sum(r["task_cpu_s"] for r in timing["rounds"].values()), 3) > 0
    assert "_cpu_s" not in (out / "manifest.json").read_text()
