"""A new dedup kind is one module and one line: the module below (written to a temporary folder,
no file of the project edited) registers a document-level kind, and DOLMA_PREP_DEDUP_MODULES=PATH
(in this process: `kinds.load_modules([PATH])`, what the variable runs) makes every part of the
pipeline know it: the mix-file schema and its messages, the preflight's attribute keys, select
(its attribute drops documents), the dedup step of a real run and `dolma-prep dedup`."""
from __future__ import annotations

import json
import sys

import pytest
from conftest import read_gz_jsonl, run_cli, write_docs

from dolma_prep.core.io import InputError
from dolma_prep.dedup import kinds
from dolma_prep.pipeline.mixfile import load_mix

TOY = '''"""A toy dedup kind: marks every document whose text contains a word."""
from dolma_prep.core import io
from dolma_prep.core.runtime import run_tasks
from dolma_prep.dedup.kinds import DedupKind, DedupOptions, checked, register


class ToyOptions(DedupOptions):
    attribute: str = "toy_hits"
    word: str = "toy"


def mark(doc_path, attr_path, attribute, word):
    n = hits = 0
    with io.AttributeWriter(attr_path, attribute) as w:
        for _, doc in io.iter_documents(doc_path):
            hit = doc is not None and word in doc["text"].split()
            n += doc is not None
            hits += hit
            w.document(doc, io.whole_span(doc["text"]) if hit else "[]")
    return {"documents": n, "hits": hits}


def run_toy(shards, attribute, work_dir, *, workers=None, **params):
    p = checked("toy", params, ToyOptions.defaults())
    res = run_tasks("toy:mark", mark, [(d, o, attribute, p["word"]) for d, o in shards], max_in_flight=workers)
    return {"kind": "toy", "documents": sum(r["documents"] for r in res), "hits": sum(r["hits"] for r in res)}


register(DedupKind("toy", ToyOptions, run_toy, level="document"))
'''
MODULE = "dolma_prep_user_dedup_toy_kind"  # the name kinds.load_modules gives a file toy_kind.py
TEXTS = [["a banana split", "plain text here", "no fruit", "banana"], ["more plain text", "banana bread", "last one"]]


def _toy_file(tmp_path):
    path = tmp_path / "toy_kind.py"
    path.write_text(TOY)
    return path


@pytest.fixture
def toy(tmp_path):
    path = _toy_file(tmp_path)
    kinds.load_modules([str(path)])
    yield path
    kinds.unregister("toy")
    sys.modules.pop(MODULE, None)


def _corpus(root):
    for i, texts in enumerate(TEXTS):
        write_docs(root / "documents" / "s" / f"{i:04d}.jsonl.gz",
                   [{"id": f"{i}-{j}", "text": t, "source": "s"} for j, t in enumerate(texts)])
    return root / "documents"


def _mix(tmp_path, dedup: str, data_root=None) -> str:
    path = tmp_path / "mix.yaml"
    path.write_text(f"name: toy\ndata_root: {data_root or tmp_path / 'docs'}\nexperiment: exp\n{dedup}"
                    "sources:\n  - {name: s, documents: ['s/*.jsonl.gz']}\n")
    return str(path)


def _refused(path) -> str:
    with pytest.raises(InputError) as e:
        load_mix(path)
    return str(e.value)


def test_the_registered_kind_joins_the_registry_after_the_built_in_ones(toy):
    assert kinds.available() == ["exact", "paragraphs", "minhash", "decontaminate", "substrings", "toy"]
    toy_kind = kinds.get("toy")
    assert (toy_kind.level, toy_kind.default_attribute, toy_kind.module, toy_kind.index) == \
        ("document", "toy_hits", MODULE, None)
    with pytest.raises(ValueError, match="registered twice"):  # a name is one kind
        kinds.register(kinds.DedupKind("toy", toy_kind.options, lambda *a, **k: {}, level="span"))


def test_the_mix_file_schema_takes_the_new_kind_with_its_options_and_messages(tmp_path):
    plain = load_mix(_mix(tmp_path, "dedup:\n  exact: {}\n"))
    assert "toy" in _refused(_mix(tmp_path, "dedup:\n  toy: {word: banana}\n"))  # not a kind yet
    kinds.load_modules([str(_toy_file(tmp_path))])
    try:
        mix = load_mix(_mix(tmp_path, "dedup:\n  exact: {}\n  toy: {word: banana}\n"))
        assert mix.dedup.toy.word == "banana" and mix.dedup.toy.attribute == "toy_hits"
        assert [k.name for k, _ in mix.dedup.configured()] == ["exact", "toy"]
        # a kind the mix does not use leaves its dump and hash as they were (no `toy: null`)
        again = load_mix(_mix(tmp_path, "dedup:\n  exact: {}\n"))
        assert again.config_hash() == plain.config_hash() and "toy" not in again.model_dump()["dedup"]
        msg = _refused(_mix(tmp_path, "dedup:\n  toy: {wrod: banana}\n"))
        assert "dedup.toy.wrod: unknown key (typo?); did you mean 'word'? known keys: attribute, word" in msg, msg
        msg = _refused(_mix(tmp_path, "dedup:\n  toi: {}\n"))
        assert "dedup.toi: unknown key (typo?); did you mean 'toy'?" in msg and "substrings, toy" in msg, msg
        msg = _refused(_mix(tmp_path, "dedup:\n  toy: {attribute: '../../data'}\n"))  # the base's name rule
        assert "  - dedup.toy.attribute: " in msg and "becomes a folder name under the output" in msg, msg
        msg = _refused(_mix(tmp_path, "dedup:\n  exact: {attribute: dups}\n  toy: {attribute: dups}\n"))
        assert "dedup.exact.attribute and dedup.toy.attribute" in msg, msg
    finally:
        kinds.unregister("toy")
        sys.modules.pop(MODULE, None)
    assert "toy" in _refused(_mix(tmp_path, "dedup:\n  toy: {}\n"))  # gone with its record


def test_select_drops_what_the_new_kind_marks_and_the_preflight_knows_its_key(tmp_path, toy):
    from dolma_prep.core.runtime import Shard
    from dolma_prep.pipeline.attributes_known import known_attributes
    from dolma_prep.pipeline.stages import select

    docs = _corpus(tmp_path)
    out = tmp_path / "out"
    mix = load_mix(_mix(tmp_path, "dedup:\n  toy: {word: banana}\n", data_root=docs), output=str(out))
    assert known_attributes(mix).knows("toy_hits") and select.document_level_attributes(mix) == ["toy_hits"]
    ctx = {"output": str(out), "work": str(out / "_work"), "mix": mix.model_dump_json()}
    mark = sys.modules[MODULE].mark  # the kind's own task, without Ray
    for i, texts in enumerate(TEXTS):
        rel = f"s/{i:04d}.jsonl.gz"
        mark(str(docs / rel), str(out / "attributes" / "toy_hits" / rel), "toy_hits", "banana")
        r = select.run_shard(Shard("s", i, str(docs / rel), rel), ctx)
        hits = sum("banana" in t.split() for t in texts)
        assert r["dropped"] == {"dedup: toy_hits": hits} and r["documents_kept"] == len(texts) - hits, r
        kept = [d["text"] for d in read_gz_jsonl(out / "kept" / rel)]
        assert kept == [t for t in texts if "banana" not in t.split()]


@pytest.mark.slow
def test_a_real_run_and_the_dedup_command_run_the_new_kind(tmp_path):
    """Only the environment variable: the CLI validates the mix with it, the Ray workers load it."""
    toy_path = _toy_file(tmp_path)
    env = {"DOLMA_PREP_DEDUP_MODULES": str(toy_path)}
    docs = _corpus(tmp_path)
    out = tmp_path / "out"
    proc = run_cli("run", _mix(tmp_path, "dedup:\n  exact: {}\n  toy: {word: banana}\n", data_root=docs),
                   "--output", str(out), "--workers", "1", "-q", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["dedup"]["toy"]["hits"] == 3 and manifest["dedup"]["toy"]["attribute"] == "toy_hits"
    kept = [d["text"] for i in range(len(TEXTS)) for d in read_gz_jsonl(out / "kept" / "s" / f"{i:04d}.jsonl.gz")]
    assert kept == [t for texts in TEXTS for t in texts if "banana" not in t.split()]
    assert run_cli("run", _mix(tmp_path, "dedup:\n  toy: {}\n", data_root=docs), "--output", str(out)).returncode == 2

    shard = docs / "s" / "0000.jsonl.gz"
    proc = run_cli("dedup", "toy", "--documents", str(shard), "--attribute", "fruit", "--params", '{"word": "banana"}',
                   "--workers", "1", env=env)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert json.loads(proc.stdout)["hits"] == 2
    lines = read_gz_jsonl(tmp_path / "attributes" / "fruit" / "s" / "0000.jsonl.gz")
    assert [bool(x["attributes"]["fruit"]) for x in lines] == ["banana" in t.split() for t in TEXTS[0]]
