"""`dolma-prep tag`: attribute files beside the documents, in dolma's layout, resumable."""
import gzip
import json
import shutil

import pytest
from conftest import SAMPLE, read_gz_jsonl, run_cli, write_docs


@pytest.mark.slow  # starts a local Ray
def test_tag_writes_aligned_attributes_beside_documents(tmp_path):
    docs_dir = tmp_path / "ds" / "documents" / "wiki"
    shutil.copytree(SAMPLE / "wiki", docs_dir)
    bad = docs_dir / "0001.jsonl.gz"
    write_docs(bad, read_gz_jsonl(bad)[:1], raw_lines=[b"not json\n"])
    proc = run_cli("tag", "--documents", str(docs_dir / "*.jsonl.gz"), "--taggers", "char_length_v1",
                   "--experiment", "exp", "--workers", "2", "-q")
    assert proc.returncode == 3, proc.stderr  # one line rejected
    assert "0001.jsonl.gz:2: not valid JSON" in proc.stderr
    for f in ("0000.jsonl.gz", "0001.jsonl.gz"):
        docs_lines = (docs_dir / f)
        attrs = read_gz_jsonl(tmp_path / "ds" / "attributes" / "exp" / "wiki" / f)
        n_lines = sum(1 for _ in __import__("gzip").open(docs_lines))
        assert len(attrs) == n_lines
    attrs = read_gz_jsonl(tmp_path / "ds" / "attributes" / "exp" / "wiki" / "0000.jsonl.gz")
    docs = read_gz_jsonl(docs_dir / "0000.jsonl.gz")
    for a, d in zip(attrs, docs):
        assert a == {"id": d["id"], "attributes": {"exp__char_length_v1__length": [[0, len(d["text"]), float(len(d["text"]))]]},
                     "source": d["source"]}
    assert read_gz_jsonl(tmp_path / "ds" / "attributes" / "exp" / "wiki" / "0001.jsonl.gz")[1] == \
        {"id": None, "attributes": {}, "source": None}
    again = run_cli("tag", "--documents", str(docs_dir / "*.jsonl.gz"), "--taggers", "char_length_v1",
                    "--experiment", "exp", "--workers", "1", "-q")
    assert "(2 already done)" in again.stdout


def test_unknown_tagger_is_a_user_error(tmp_path):
    proc = run_cli("tag", "--documents", str(SAMPLE / "wiki" / "*.jsonl.gz"), "--taggers", "nope_v9", "--experiment", "e")
    assert proc.returncode == 2 and "unknown tagger(s) nope_v9" in proc.stderr


@pytest.mark.slow  # starts a local Ray
def test_user_tagger_module_from_the_command_line(tmp_path):
    module = tmp_path / "my_taggers.py"
    module.write_text(
        "from dolma_prep.taggers.registry import Tagger, register\n\n"
        "@register('vowel_count_v1')\n"
        "class Vowels(Tagger):\n"
        "    def predict(self, doc):\n"
        "        n = sum(c in 'aeiou' for c in doc.text)\n"
        "        return {'vowels': [[0, len(doc.text), float(n)]]}\n")
    mix = tmp_path / "m.yaml"
    mix.write_text(f"name: u\ndata_root: {SAMPLE}\nexperiment: u\ntaggers: [vowel_count_v1]\n"
                   "filters:\n  exclude: ['.attributes.u__vowel_count_v1__vowels[0][2] < 5000']\n"
                   "sources:\n  - {name: wiki, documents: ['wiki/*.jsonl.gz']}\n")
    out = tmp_path / "out"
    proc = run_cli("run", str(mix), "--output", str(out), "--tagger-modules", str(module), "-q", "--workers", "1")
    assert proc.returncode == 0, proc.stderr
    attrs = read_gz_jsonl(out / "attributes" / "u" / "wiki" / "0000.jsonl.gz")
    docs = read_gz_jsonl(SAMPLE / "wiki" / "0000.jsonl.gz")
    assert [a["attributes"]["u__vowel_count_v1__vowels"][0][2] for a in attrs] == \
        [float(sum(c in "aeiou" for c in d["text"])) for d in docs]


@pytest.mark.slow  # starts a local Ray
def test_relative_dataset_paths_as_in_dolma(tmp_path):
    """Typed inside a dataset folder, `documents/...` works for tag and dedup as for dolma."""
    import os
    import subprocess

    from conftest import CLI

    ds = tmp_path / "ds"
    shutil.copytree(SAMPLE / "cc_en_tail", ds / "documents" / "cc")
    env = {**os.environ, "PYTHONWARNINGS": "ignore"}
    for args in (["tag", "--taggers", "char_length_v1", "--experiment", "len", "-q"],
                 ["dedup", "exact", "--attribute", "dups"]):
        proc = subprocess.run([*CLI, *args, "--documents", "documents/*/*.jsonl.gz", "--workers", "1"],
                              cwd=ds, env=env, capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stderr
    for name in ("len", "dups"):
        got = sorted(p.relative_to(ds / "attributes" / name) for p in (ds / "attributes" / name).rglob("*.jsonl.gz"))
        assert got == sorted(p.relative_to(ds / "documents") for p in (ds / "documents").rglob("*.jsonl.gz"))
    dups = [json.loads(x)["attributes"]["dups"] for p in sorted((ds / "attributes" / "dups").rglob("*.jsonl.gz"))
            for x in gzip.decompress(p.read_bytes()).splitlines()]
    assert sum(1 for d in dups if d) == 1  # cc_en_tail holds one exact duplicate pair (sample/SOURCES.md)
