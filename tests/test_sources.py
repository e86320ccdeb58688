"""Sources beyond Dolma JSONL files: parquet files go through the same stages."""
import json

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from conftest import SAMPLE, read_gz_jsonl, run_cli
from test_crash import tree_hashes

pytestmark = pytest.mark.slow  # pipeline runs on a local Ray


def test_parquet_source_equals_jsonl_source(tmp_path):
    root = tmp_path / "docs"
    for f in sorted((SAMPLE / "flan").glob("*.jsonl.gz")):
        docs = read_gz_jsonl(f)
        (root / "flan").mkdir(parents=True, exist_ok=True)
        pq.write_table(pa.Table.from_pylist([{k: d[k] for k in ("id", "text", "source")} for d in docs]),
                       root / "flan" / f.name.replace(".jsonl.gz", ".parquet"), row_group_size=25)
    bad = pa.Table.from_pylist([{"id": "x", "text": None, "source": "flan"}, {"id": "y", "text": "fine text", "source": "flan"}])
    pq.write_table(bad, root / "flan" / "0002.parquet")
    mix = tmp_path / "m.yaml"
    mix.write_text(f"name: pq\ndata_root: {root}\ntaggers: [char_length_v1]\nsources:\n"
                   "  - {name: flan, documents: ['flan/*.parquet']}\n")
    out = tmp_path / "out"
    proc = run_cli("run", str(mix), "--output", str(out), "-q", "--workers", "2")
    assert proc.returncode == 3, proc.stderr  # the row with a null text is rejected
    rej = [json.loads(line) for line in (out / "rejects" / "read" / "flan" / "0002.parquet.jsonl").read_text().splitlines()]
    assert [(r["line"], r["reason"]) for r in rej] == [(1, "field 'text' must be a string, found NoneType")]
    m = json.loads((out / "manifest.json").read_text())
    n = sum(len(read_gz_jsonl(f)) for f in (SAMPLE / "flan").glob("*.jsonl.gz"))
    assert m["sources"]["flan"]["documents"] == n + 1
    assert [i["path"] for i in m["inputs"]] == ["flan/0000.parquet", "flan/0001.parquet", "flan/0002.parquet"]
    # the same documents as JSONL give the same token arrays
    mix2 = tmp_path / "m2.yaml"
    mix2.write_text(f"name: js\ndata_root: {SAMPLE}\ntaggers: [char_length_v1]\nsources:\n"
                    "  - {name: flan, documents: ['flan/*.jsonl.gz']}\n")
    out2 = tmp_path / "out2"
    run_cli("run", str(mix2), "--output", str(out2), "-q", "--workers", "2", check=True)
    a, b = tree_hashes(out), tree_hashes(out2)
    for k in ("tokens/flan/part-0-00000.npy", "tokens/flan/part-1-00000.npy"):
        assert a[k] == b[k]


def test_hf_dataset_sources_streaming_and_from_disk(tmp_path):
    datasets = __import__("pytest").importorskip("datasets")
    docs = [{k: d[k] for k in ("id", "text", "source")} for f in sorted((SAMPLE / "flan").glob("*.jsonl.gz"))
            for d in read_gz_jsonl(f)]
    disk = tmp_path / "flan_disk"
    datasets.Dataset.from_list(docs).save_to_disk(str(disk))
    files = sorted(str(f) for f in (SAMPLE / "flan").glob("*.jsonl.gz"))
    mix = tmp_path / "m.yaml"
    mix.write_text("name: hf\ntaggers: [char_length_v1]\ndedup:\n  exact: {}\nsources:\n"
                   f"  - {{name: streamed, dataset: {{path: json, data_files: {json.dumps(files)}, split: train}}}}\n"
                   f"  - {{name: saved, dataset: {{path: {disk}, streaming: false}}}}\n")
    out = tmp_path / "out"
    # `saved` holds the same documents as `streamed`: exact dedup removes all of them, on purpose
    proc = run_cli("run", str(mix), "--output", str(out), "-q", "--workers", "2", "--allow-empty", "saved")
    assert proc.returncode == 0, proc.stderr
    m = json.loads((out / "manifest.json").read_text())
    assert m["sources"]["streamed"]["stages"]["read"]["documents"] == len(docs)
    assert m["sources"]["saved"]["stages"]["read"]["documents"] == len(docs)
    # the two copies are exact duplicates of each other: dedup keeps the first source's
    assert m["sources"]["saved"]["stages"]["deduplicated"]["removed"] == len(docs)
    assert len(m["inputs"]) == 3  # two streamed files + one block from disk
