"""`dolma-prep show`: sample documents with the rule that kept or removed them, sampling included.

Uses the run shared with tests/test_stats.py; every claim printed is checked against the files
(dropped/, kept/, the indexes, the attribute files, the input) and the sampling formula.
"""
from __future__ import annotations

import csv
import gzip
import json
from collections import Counter

import pytest
from conftest import read_gz_jsonl, run_cli
from test_stats import BAD_LINE, EXP, LENGTH, input_records, inspect_run, unit

pytestmark = pytest.mark.slow  # one shared pipeline run on a local Ray (~25 s)


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    return inspect_run(tmp_path_factory)


def show(out, *args) -> dict:
    proc = run_cli("show", str(out), *args, "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def index_counts(out, source) -> Counter:
    c = Counter()
    for idx in (out / "tokens" / source).glob("*.csv.gz"):
        with gzip.open(idx, "rt") as f:
            c.update(row[2] for row in csv.reader(f))
    return c


def input_line(docs, rel, line):
    raw = gzip.open(docs / rel).read().splitlines()[line - 1]
    return json.loads(raw)


def test_dropped_spreads_over_rules_and_sampling_and_each_claim_holds(run_out):
    docs, out = run_out
    res = show(out, "--source", "reddit", "--dropped", "-n", "6", "--chars", "100000")
    got = res["documents"]
    assert len(got) == 6
    # round-robin over the deciding rules: the exclude rule, min_text_length and sampling all appear
    kinds = {d["decided_by"] for d in got}
    assert kinds == {"filters", "min_text_length", "sampling"}, kinds
    dropped = {d["id"]: d["reason"] for p in (out / "dropped" / "reddit").glob("*.jsonl.gz") for d in read_gz_jsonl(p)}
    kept = {d["id"]: d for p in (out / "kept" / "reddit").glob("*.jsonl.gz") for d in read_gz_jsonl(p)}
    in_index = index_counts(out, "reddit")
    for d in got:
        doc = input_line(docs, d["file"], d["line"])
        assert doc["id"] == d["id"]  # line = the input line, found through the aligned attribute file
        assert d["attributes"][LENGTH][0][2] == len(doc["text"])
        if d["status"] == "dropped":
            assert dropped[d["id"]] == d["reason"] and d["text"] == doc["text"]
            if d["decided_by"] == "filters":
                assert len(doc["text"]) < 60 and "replayed on this document: same decision" in d["explanation"]
            else:
                assert 60 <= len(doc["text"].strip()) < 120
        else:
            # kept by select, not drawn: u >= threshold with whole = 0, and absent from the token arrays
            assert d["status"] == "sampled out" and d["id"] in kept and d["id"] not in dropped
            assert d["u"] == pytest.approx(unit("reddit", d["id"])) and d["u"] >= 0.5
            assert d["copies"] == 0 == d["index_copies"] == in_index[d["id"]]
            assert "u = unit_hash(seed, source, id)" in d["explanation"] and ">= threshold 0.500000" in d["explanation"]


def test_reason_filter_finds_the_planted_duplicates(run_out):
    docs, out = run_out
    res = show(out, "--source", "cc_en_tail", "--reason", "exact_duplicates", "-n", "10", "--chars", "40")
    assert sorted(d["id"] for d in res["documents"]) == ["cc_en_tail-00210", "cc_en_tail-00213"]
    for d in res["documents"]:
        assert d["reason"] == "dedup: exact_duplicates" and d["attributes"]["exact_duplicates"]
        doc = input_line(docs, d["file"], d["line"])
        assert d["chars"] == len(doc["text"]) and d["text"] == doc["text"][:40] + "…"


def test_bad_records_are_shown_with_their_line_and_reason(run_out):
    _, out = run_out
    res = show(out, "--source", "flan", "--reason", "rejected", "-n", "5")
    (d,) = res["documents"]
    assert d["status"] == "rejected" and d["file"] == "flan/0000.jsonl.gz" and d["line"] == BAD_LINE
    assert d["reason"].startswith("rejected at read: not valid JSON") and d["text"].startswith('{"id": "broken"')


def test_kept_documents_show_their_copies(run_out):
    docs, out = run_out
    res = show(out, "--source", "wiki", "-n", "3")
    counts = index_counts(out, "wiki")
    assert len(res["documents"]) == 3
    for d in res["documents"]:
        assert d["status"] == "written" and d["copies"] == 2 == counts[d["id"]] == d["index_copies"]
        assert d["rule"] == {"whole": 2, "threshold": 0.0}
    # reddit at 0.5: written documents have u < 0.5, one copy each
    red = index_counts(out, "reddit")
    for d in show(out, "--source", "reddit", "-n", "4")["documents"]:
        assert d["u"] == pytest.approx(unit("reddit", d["id"])) and d["u"] < 0.5
        assert d["copies"] == 1 == red[d["id"]]


def test_one_document_by_id_and_text_output(run_out):
    docs, out = run_out
    flan = [r for r in input_records(docs, "flan") if r is not None]
    short = next(r for r in flan if len(r["text"]) <= 100)
    res = show(out, "--source", "flan", "--id", short["id"])
    (d,) = res["documents"]
    assert d["reason"] == "include: no rule matched" and d["status"] == "dropped"
    assert f"{EXP}__whitespace_tokenizer_v1__length" in d["attributes"]
    proc = run_cli("show", str(out), "--source", "flan", "--id", short["id"], env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert short["id"] in proc.stdout and "no include rule of the source matched" in proc.stdout
    proc = run_cli("show", str(out), "--source", "reddit", "--dropped", "-n", "3", env={"COLUMNS": "200"})
    assert "sampled out" in proc.stdout and "copies = 0 + 0 = 0" in proc.stdout
    for args in (["--source", "nope"], ["--source", "flan", "--id", "no-such-doc"]):
        proc = run_cli("show", str(out), *args)
        assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
