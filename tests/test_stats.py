"""`dolma-prep stats`: the funnel per source and stage, recounted from the files and cross-checked.

One pipeline run is shared by this module, tests/test_show.py and tests/test_report.py (see
`inspect_run`): five sources of the bundled sample exercising every way a document can leave
the funnel: a bad input record (flan), exact duplicates (cc_en_tail), a global exclude rule
and a min_text_length (reddit), an include rule (flan), sampling at proportion 0.5 (reddit)
and 2.0 (wiki). Every number below is recomputed independently from the input and output files.
"""
from __future__ import annotations

import csv
import gzip
import json
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import xxhash
from conftest import SAMPLE, read_gz_jsonl, run_cli

pytestmark = pytest.mark.slow  # one shared pipeline run on a local Ray (~25 s)

SOURCES = ["cc_en_middle", "cc_en_tail", "reddit", "wiki", "flan"]
SEED = 7
EXP = "t"
LENGTH = f"{EXP}__char_length_v1__length"
MIX = f"""name: inspect
seed: {SEED}
data_root: {{data_root}}
experiment: {EXP}
taggers: [char_length_v1, whitespace_tokenizer_v1, pii_regex_v2]
dedup:
  exact: {{{{}}}}
filters:
  exclude: [".attributes.{LENGTH}[0][2] < 60"]
sources:
  - {{{{name: cc_en_middle, documents: ['cc_en_middle/*.jsonl.gz']}}}}
  - {{{{name: cc_en_tail, documents: ['cc_en_tail/*.jsonl.gz']}}}}
  - {{{{name: reddit, documents: ['reddit/*.jsonl.gz'], proportion: 0.5, min_text_length: 120}}}}
  - {{{{name: wiki, documents: ['wiki/*.jsonl.gz'], proportion: 2.0}}}}
  - name: flan
    documents: ['flan/*.jsonl.gz']
    filters: {{{{include: ["$.attributes[?(@.{LENGTH}[0][2] > 100)]"], exclude: []}}}}
"""
BAD_LINE = 4  # a broken JSON line inserted into flan/0000.jsonl.gz at this (1-based) line


def inspect_run(tmp_path_factory) -> tuple[Path, Path]:
    """(data_root, output) of the shared run; made once per session, reused by the other modules."""
    base = tmp_path_factory.getbasetemp() / "inspect-run"
    docs, out = base / "documents", base / "out"
    if (out / "manifest.json").exists():
        return docs, out
    shutil.rmtree(base, ignore_errors=True)
    for s in SOURCES:
        shutil.copytree(SAMPLE / s, docs / s)
    victim = docs / "flan" / "0000.jsonl.gz"
    lines = gzip.open(victim).read().splitlines(keepends=True)
    lines.insert(BAD_LINE - 1, b'{"id": "broken", "text": "oops"\n')
    with gzip.open(victim, "wb") as f:
        f.writelines(lines)
    mix = base / "inspect.yaml"
    mix.write_text(MIX.format(data_root=docs))
    # RAY_ADDRESS=local: a private local Ray even when another Ray cluster runs on this machine
    proc = run_cli("run", str(mix), "--output", str(out), "--workers", "2", "-q", env={"RAY_ADDRESS": "local"})
    assert proc.returncode == 3, proc.stdout + proc.stderr  # 3: finished, one bad record rejected
    return docs, out


@pytest.fixture(scope="module")
def run_out(tmp_path_factory):
    return inspect_run(tmp_path_factory)


@pytest.fixture(scope="module")
def stats_json(run_out):
    _, out = run_out
    proc = run_cli("stats", str(out), "--json")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return json.loads(proc.stdout)


def unit(source: str, doc_id: str) -> float:
    return xxhash.xxh64_intdigest(f"{SEED}\x1f{source}\x1f{doc_id}".encode()) / 2.0**64


def input_records(docs: Path, source: str) -> list[dict | None]:
    """Every input line of a source (None for the broken one), in shard order."""
    out = []
    for p in sorted((docs / source).glob("*.jsonl.gz")):
        for line in gzip.open(p).read().splitlines():
            try:
                out.append(json.loads(line))
            except json.JSONDecodeError:
                out.append(None)
    return out


def files_view(docs: Path, out: Path, source: str) -> dict:
    """What the files say about one source, computed without dolma_prep."""
    recs = input_records(docs, source)
    valid = [r for r in recs if r is not None]
    dropped = [d for p in sorted((out / "dropped" / source).glob("*.jsonl.gz")) for d in read_gz_jsonl(p)]
    kept = [d for p in sorted((out / "kept" / source).glob("*.jsonl.gz")) for d in read_gz_jsonl(p)]
    rows = []
    tokens = 0
    for idx in sorted((out / "tokens" / source).glob("*.csv.gz")):
        with gzip.open(idx, "rt") as f:
            r = list(csv.reader(f))
        rows += r
        tokens += (idx.parent / idx.name.replace(".csv.gz", ".npy")).stat().st_size // 2
    return {"records": len(recs), "valid": valid, "dropped": dropped, "kept": kept, "rows": rows, "tokens": tokens}


def test_funnel_adds_up_and_equals_the_files(run_out, stats_json):
    docs, out = run_out
    assert stats_json["errors"] == [] and stats_json["verified"]
    for name in SOURCES:
        s = stats_json["sources"][name]
        f = {r["stage"]: r for r in s["funnel"]}
        v = files_view(docs, out, name)
        # read: every input line, minus the bad records
        assert f["read"]["documents_in"] == v["records"]
        assert f["read"]["documents_out"] == len(v["valid"]) == f["tagged"]["documents_out"]
        assert f["read"]["removed"] == v["records"] - len(v["valid"])
        assert f["read"]["chars_out"] == sum(len(d["text"]) for d in v["valid"])
        # dedup and filters: per rule, as many as dropped/ holds with that reason
        by_reason = Counter(d["reason"] for d in v["dropped"])
        dedup = {k.split(": ", 1)[1]: n for k, n in by_reason.items() if k.startswith("dedup: ")}
        assert f["deduplicated"]["removed_by"] == dedup
        filt = Counter()
        for k, n in by_reason.items():
            if not k.startswith("dedup: "):
                filt["min_text_length < " + k.rsplit("<", 1)[1].strip() if k.startswith("min_text_length") else k] += n
        assert f["filtered"]["removed_by"] == dict(filt)
        # read = removed by every rule + kept
        assert f["read"]["documents_out"] == f["deduplicated"]["removed"] + f["filtered"]["removed"] + len(v["kept"])
        assert f["filtered"]["documents_out"] == len(v["kept"])
        assert f["filtered"]["chars_out"] == sum(len(d["text"]) for d in v["kept"])
        # sampling replayed here: copies = whole + [u < threshold]
        rule = s["sampling"]
        want = Counter()
        for d in v["kept"]:
            want[d["id"]] = int(rule["whole"]) + (unit(name, d["id"]) < rule["threshold"])
        got = Counter(r[2] for r in v["rows"])
        assert +want == got
        assert f["sampled"]["documents_unique"] == sum(1 for n in want.values() if n)
        assert f["sampled"]["documents_out"] == f["tokenized"]["documents_out"] == len(v["rows"]) == s["documents"]
        assert f["tokenized"]["tokens_out"] == v["tokens"] == s["tokens"]
        # tokens: measured from selection on, estimated (and flagged) before it
        assert f["filtered"]["tokens_estimated"] is False and f["read"]["tokens_estimated"] is True
        ratio = f["filtered"]["tokens_out"] / f["filtered"]["chars_out"]
        assert f["read"]["tokens_out"] == round(f["read"]["chars_out"] * ratio)
        assert s["tokens_per_char"] == pytest.approx(ratio)
        assert s["repetition"] == pytest.approx(s["tokens"] / f["filtered"]["tokens_out"])


def test_known_fates_of_the_sample(stats_json):
    S = stats_json["sources"]
    fun = {n: {r["stage"]: r for r in S[n]["funnel"]} for n in SOURCES}
    assert fun["flan"]["read"]["removed_by"] == {"bad input record": 1}
    # the two planted exact duplicates inside cc_en_tail (its copy of cc_en_middle-00209, and of cc_en_tail-00114)
    assert fun["cc_en_tail"]["deduplicated"]["removed_by"] == {"exact_duplicates": 2}
    assert fun["flan"]["filtered"]["removed_by"] == {"include: no rule matched": fun["flan"]["filtered"]["removed"]} \
        and fun["flan"]["filtered"]["removed"] > 0
    assert set(fun["reddit"]["filtered"]["removed_by"]) == {"min_text_length < 120",
                                                            f"exclude: .attributes.{LENGTH}[0][2] < 60"}
    assert S["wiki"]["repetition"] == 2.0 and S["wiki"]["copies_per_sampled_document"] == 2.0
    assert S["wiki"]["documents"] == 2 * fun["wiki"]["filtered"]["documents_out"]
    kept = fun["reddit"]["filtered"]["documents_out"]
    assert 0.3 * kept < S["reddit"]["documents"] < 0.7 * kept
    # proportion mode: planned = proportion x the measured tokens of the kept documents
    for name, p in (("reddit", 0.5), ("wiki", 2.0), ("flan", 1.0)):
        assert S[name]["planned_tokens"] == pytest.approx(p * fun[name]["filtered"]["tokens_out"])
    # totals: the sum of the per-source rows; existing keys kept
    tot = {r["stage"]: r for r in stats_json["funnel"]}
    assert tot["read"]["documents_in"] == sum(fun[n]["read"]["documents_in"] for n in SOURCES)
    assert stats_json["total_tokens"] == sum(S[n]["tokens"] for n in SOURCES) == tot["tokenized"]["tokens_out"]
    assert stats_json["total_documents"] == sum(S[n]["documents"] for n in SOURCES)
    assert stats_json["rejected"] == 1
    assert sum(S[n]["share"] for n in SOURCES) == pytest.approx(1.0)


def test_table_shows_every_stage_rule_and_estimate(run_out, stats_json):
    _, out = run_out
    proc = run_cli("stats", str(out), env={"COLUMNS": "250"})
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "tokens per source" in text and "reddit: documents and tokens through the stages" in text
    red = {r["stage"]: r for r in stats_json["sources"]["reddit"]["funnel"]}
    for stage in ("read", "tagged", "deduplicated", "filtered", "sampled", "tokenized"):
        assert stage in text
    assert f"min_text_length < 120: {red['filtered']['removed_by']['min_text_length < 120']}" in text
    assert "exact_duplicates (exact): 2" in text and "include: no rule matched" in text
    assert f"~{red['read']['tokens_out']:,}" in text  # the estimate is marked
    assert "copies = 0 + [u < 0.5]" in text
    assert "checked" in text and "error" not in text


def _attr_values(out: Path, source: str, key: str) -> list[list]:
    vals = []
    for p in sorted((out / "attributes" / EXP / source).glob("*.jsonl.gz")):
        for a in read_gz_jsonl(p):
            if a["id"] is not None:
                vals.append(a["attributes"].get(key, []))
    return vals


def test_attribute_distribution_per_source(run_out):
    docs, out = run_out
    proc = run_cli("stats", str(out), "--attribute", LENGTH, "--json")
    assert proc.returncode == 0, proc.stderr
    summ = json.loads(proc.stdout)["attributes"][LENGTH]
    assert summ["mode"] == "score" and summ["log"] is True  # lengths span > 100x: log-spaced bins
    for name in SOURCES:
        lengths = np.array([len(r["text"]) for r in input_records(docs, name) if r is not None], dtype=float)
        d = summ["sources"][name]
        assert d["documents"] == len(lengths) and d["missing"] == 0
        for q in (0.05, 0.5, 0.95):
            assert d["quantiles"][f"p{round(q * 100)}"] == pytest.approx(np.quantile(lengths, q))
        assert d["min"] == lengths.min() and d["max"] == lengths.max()
        assert sum(d["counts"]) + d["below"] == len(lengths)
        counts, _ = np.histogram(lengths, bins=np.array(summ["edges"]))
        assert abs(counts - np.array(d["counts"])).sum() <= 2  # floating bin edges may move a value by one bin
    # kept vs dropped: the exclude rule removed every document under 60 characters that was not a duplicate
    assert summ["by_status"]["kept"]["min"] >= 60
    # span counts of a PII key that most documents lack (absent key = 0 spans)
    key = f"{EXP}__pii_regex_v2__EMAIL_ADDRESS"
    proc = run_cli("stats", str(out), "-a", key, "--value", "count", "--source", "cc_en_middle", "--json")
    d = json.loads(proc.stdout)["attributes"][key]["sources"]
    assert list(d) == ["cc_en_middle"]
    spans = [len(v) for v in _attr_values(out, "cc_en_middle", key)]
    assert d["cc_en_middle"]["mean"] == pytest.approx(np.mean(spans)) and d["cc_en_middle"]["max"] == max(spans) > 0
    # the text form: quantiles and a histogram per source
    proc = run_cli("stats", str(out), "-a", LENGTH, "--source", "reddit", "--bins", "6", "--bin-scale", "linear",
                   env={"COLUMNS": "200"})
    assert proc.returncode == 0, proc.stderr
    assert "reddit (linear bins, 120 values)" in proc.stdout and "█" in proc.stdout and "p50" in proc.stdout
    proc = run_cli("stats", str(out), "-a", "no_such_key")
    assert proc.returncode == 2 and "known keys" in proc.stderr and "Traceback" not in proc.stderr


def _corrupt_copy(out: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "copy"
    shutil.copytree(out, copy, ignore=shutil.ignore_patterns("_work"))
    return copy


def _errors(copy: Path) -> list[str]:
    proc = run_cli("stats", str(copy), "--json")
    assert proc.returncode == 4, proc.stdout + proc.stderr
    return json.loads(proc.stdout)["errors"]


def test_a_lost_dropped_record_is_an_error(run_out, tmp_path):
    _, out = run_out
    copy = _corrupt_copy(out, tmp_path)
    victim = copy / "dropped" / "cc_en_tail" / "0001.jsonl.gz"
    rows = read_gz_jsonl(victim)
    assert rows, "cc_en_tail/0001 holds the planted duplicates"
    with gzip.open(victim, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[1:])
    errs = _errors(copy)
    assert any("deduplicated.removed_by" in e and "cc_en_tail" in e for e in errs), errs


def test_manifest_edits_are_errors(run_out, tmp_path):
    _, out = run_out
    copy = _corrupt_copy(out, tmp_path)
    m = json.loads((copy / "manifest.json").read_text())
    m["sources"]["reddit"]["sampling"]["threshold"] = 0.25  # not the rule the arrays were written with
    m["sources"]["flan"]["stages"]["filtered"]["removed_by"]["include: no rule matched"] += 1
    m["sources"]["flan"]["stages"]["filtered"]["removed"] += 1
    (copy / "manifest.json").write_text(json.dumps(m))
    errs = _errors(copy)
    assert any("reddit" in e and "sampling rule" in e for e in errs), errs
    assert any("flan" in e and "funnel does not add up" in e for e in errs), errs
    assert any("flan" in e and "filtered.removed_by" in e for e in errs), errs
    assert not any("cc_en_middle" in e or "wiki" in e for e in errs), errs


def test_misaligned_attribute_file_is_an_error(run_out, tmp_path):
    _, out = run_out
    copy = _corrupt_copy(out, tmp_path)
    victim = copy / "attributes" / "exact_duplicates" / "wiki" / "0000.jsonl.gz"
    rows = read_gz_jsonl(victim)
    with gzip.open(victim, "wt") as f:
        f.writelines(json.dumps(r) + "\n" for r in rows[1:] + rows[:1])
    errs = _errors(copy)
    assert any("wiki/0000.jsonl.gz: line 1 does not align with attributes/" in e for e in errs), errs
