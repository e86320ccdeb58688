"""Data safety (issue 33): every case here lost data or wasted a run before, and each test
fails on the code before the fix.

1. a name in the mix file cannot write outside the output: refused at load, the inputs'
   bytes unchanged; and the write guard itself refuses any path outside the output;
2. a typo in an attribute key is refused at preflight (exit 2);
3. an edited input file reruns its shard: the new document is there, and the rerun's bytes
   equal a cold run's on the edited input;
4. a rule that raises is an error of that rule: exit 3, the rule named, counted per source;
5. an output inside the input glob never feeds on itself;
6. a damaged output is detected by `stats` (exit 4) and repaired by a rerun;
7. bounds: --workers 0, --scale -1, proportion over the limit without --yes;
8. messages: the changed fields named, an empty source fails (exit 3), a closed pipe is not a
   traceback, `report OUT` writes OUT/report.html, `tag` reruns still report rejects.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from conftest import CLI, SAMPLE, run_cli

from dolma_prep.core import io

SOURCES = ("wiki", "books", "c4")


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def corpus(tmp_path: Path) -> Path:
    data = tmp_path / "data"
    for s in SOURCES:
        shutil.copytree(SAMPLE / s, data / s)
    return data


def mix(tmp_path: Path, data: Path, extra: str = "", body: str | None = None, name: str = "safety") -> Path:
    p = tmp_path / f"{name}.yaml"
    p.write_text(body if body is not None else (
        f"name: {name}\nseed: 3\ndata_root: {data}\nexperiment: t\ntaggers: [char_length_v1]\n"
        "dedup:\n  exact: {}\n" + extra + "sources:\n"
        + "".join(f"  - {{name: {s}, documents: ['{s}/*.jsonl.gz']}}\n" for s in SOURCES)))
    return p


def tokens_bytes(out: Path) -> dict[str, str]:
    return tree_digest(out / "tokens")


def finished_run(tmp_path: Path) -> tuple[Path, Path, Path]:
    """(data root, mix file, output) of one finished run over a private copy of the corpus."""
    data = corpus(tmp_path)
    p = mix(tmp_path, data)
    out = tmp_path / "out"
    run_cli("run", str(p), "--output", str(out), "-q", check=True)
    return data, p, out


# ------------------------------------------------------------------------------------ 1. traversal
@pytest.mark.parametrize("extra", [
    "dedup:\n  exact: {attribute: ../../data, key: text}\n",
    "experiment: ../../data\n",
    "taggers:\n  - {name: char_length_v1, experiment: ../../../data}\n",
])
def test_a_name_that_leaves_the_output_is_refused_and_inputs_stay_unchanged(tmp_path, extra):
    data = corpus(tmp_path)
    before = tree_digest(data)
    body = (f"name: esc\nseed: 3\ndata_root: {data}\n" + extra
            + ("" if "taggers" in extra else "taggers: [char_length_v1]\n")
            + "sources:\n  - {name: wiki, documents: ['wiki/*.jsonl.gz']}\n")
    p = mix(tmp_path, data, body=body)
    r = run_cli("run", str(p), "--output", str(tmp_path / "run" / "out"), "-q")
    assert r.returncode == 2, r.stderr
    assert "error:" in r.stderr and "Traceback" not in r.stderr
    assert tree_digest(data) == before
    assert not (tmp_path / "run" / "out").exists() or not any((tmp_path / "run" / "out").rglob("*.jsonl.gz"))


def test_the_write_guard_refuses_paths_outside_the_output_and_onto_inputs(tmp_path):
    out, data = tmp_path / "out", tmp_path / "data"
    data.mkdir()
    (data / "doc.jsonl").write_text("original\n")
    old = io.set_write_policy(io.write_policy([str(out)], protect=[str(data)]))
    try:
        for bad in (str(out / ".." / "data" / "doc.jsonl"), str(tmp_path / "elsewhere.txt"), str(data / "new.txt")):
            with pytest.raises(io.UnsafeWriteError):
                io.write_text_atomic(bad, "x")
            with pytest.raises(io.UnsafeWriteError):
                io.remove(bad)
        io.write_text_atomic(str(out / "ok" / "f.txt"), "fine")  # inside: allowed
        assert (out / "ok" / "f.txt").read_text() == "fine"
        # an output folder inside the data root may be written, the rest of the data root not
        inner = data / "runs" / "o"
        io.set_write_policy(io.write_policy([str(inner)], protect=[str(data)]))
        io.write_text_atomic(str(inner / "a.txt"), "a")
        with pytest.raises(io.UnsafeWriteError):
            io.write_text_atomic(str(data / "doc.jsonl"), "overwritten")
    finally:
        io.set_write_policy(old)
    assert (data / "doc.jsonl").read_text() == "original\n"


# ---------------------------------------------------------------------------------- 2. attribute typo
def test_a_typo_in_an_attribute_key_exits_2_at_preflight(tmp_path):
    data = corpus(tmp_path)
    p = mix(tmp_path, data, "filters:\n  exclude: ['.attributes.t__char_length_v1__lenght[0][2] < 50']\n")
    t0 = time.perf_counter()
    r = run_cli("run", str(p), "--output", str(tmp_path / "out"), "-q")
    assert r.returncode == 2, r.stderr
    assert "t__char_length_v1__length" in r.stderr  # the suggestion
    assert time.perf_counter() - t0 < 30
    assert not (tmp_path / "out" / "tokens").exists()


# --------------------------------------------------------------------- 3, 5, 6: reruns (one Ray each)
@pytest.mark.slow
def test_an_edited_input_reruns_its_shard_and_matches_a_cold_run(tmp_path):
    data, p, out = finished_run(tmp_path)
    target = data / "wiki" / "0000.jsonl.gz"
    with gzip.open(target, "rt") as f:
        lines = f.read().splitlines()
    new = {"id": "added-after-the-first-run", "source": "wiki", "text": "Zebras graze on the savanna at dawn. " * 30}
    with gzip.open(target, "wt") as f:
        f.write("\n".join(lines + [json.dumps(new)]) + "\n")
    run_cli("run", str(p), "--output", str(out), "-q", check=True)
    with gzip.open(out / "kept" / "wiki" / "0000.jsonl.gz", "rt") as f:
        kept_ids = [json.loads(line)["id"] for line in f]
    assert "added-after-the-first-run" in kept_ids
    # the incremental rerun ends with the bytes a cold run on the edited input writes
    cold = tmp_path / "cold"
    run_cli("run", str(p), "--output", str(cold), "-q", check=True)
    assert tokens_bytes(out) == tokens_bytes(cold)
    assert (out / "manifest.json").read_bytes() == (cold / "manifest.json").read_bytes()
    assert run_cli("stats", str(out)).returncode == 0


@pytest.mark.slow
def test_an_output_inside_the_input_glob_never_reads_itself(tmp_path):
    data = corpus(tmp_path)
    body = (f"name: nested\nseed: 3\ndata_root: {data}\nexperiment: t\ntaggers: [char_length_v1]\n"
            "sources:\n  - {name: all, documents: ['**/*.jsonl.gz']}\n")
    p = mix(tmp_path, data, body=body)
    out = data / "runs" / "nested"
    first = run_cli("run", str(p), "--output", str(out), "-q", check=True)
    m1 = json.loads((out / "manifest.json").read_text())
    second = run_cli("run", str(p), "--output", str(out), "-q")
    assert second.returncode == 0, second.stderr
    assert "left out" in second.stderr and "output folder" in second.stderr
    m2 = json.loads((out / "manifest.json").read_text())
    assert [i["path"] for i in m2["inputs"]] == [i["path"] for i in m1["inputs"]]
    assert all(not i["path"].startswith("runs/") for i in m2["inputs"])
    assert m2["total_tokens"] == m1["total_tokens"] and m2["rejected"] == 0
    assert "left out" not in first.stderr


@pytest.mark.slow
def test_a_damaged_output_is_detected_and_a_rerun_repairs_it(tmp_path):
    data, p, out = finished_run(tmp_path)
    good = {**tree_digest(out / "kept"), **tokens_bytes(out)}
    (out / "kept" / "wiki" / "0000.jsonl.gz").unlink()
    attr = out / "attributes" / "t" / "books" / "0000.jsonl.gz"
    attr.write_bytes(attr.read_bytes()[:40])
    npy = sorted((out / "tokens" / "c4").glob("*.npy"))[0]
    npy.write_bytes(npy.read_bytes()[:-8])
    st = run_cli("stats", str(out))
    assert st.returncode == 4, st.stdout + st.stderr
    said = st.stdout.replace("\n", " ") + st.stderr
    assert "kept/wiki/0000.jsonl.gz: missing" in said
    assert "attributes/t/books/0000.jsonl.gz" in said
    assert "Traceback" not in st.stderr
    run_cli("run", str(p), "--output", str(out), "-q", check=True)
    assert {**tree_digest(out / "kept"), **tokens_bytes(out)} == good
    assert attr.stat().st_size > 40
    assert run_cli("stats", str(out)).returncode == 0


# ---------------------------------------------------------------------------------- 4. raising rule
@pytest.mark.slow
@pytest.mark.parametrize("rule", ['.text | error("boom")', ".text + 1", ".text | tonumber"])
def test_a_rule_that_raises_exits_3_naming_it(tmp_path, rule):
    data = corpus(tmp_path)
    p = mix(tmp_path, data, f"filters:\n  exclude: [{json.dumps(rule)}]\n")
    out = tmp_path / "out"
    r = run_cli("run", str(p), "--output", str(out), "-q")
    assert r.returncode == 3, r.stderr
    assert rule in r.stderr and "raised on" in r.stderr
    m = json.loads((out / "manifest.json").read_text())
    # every document that reached the filters raised: computed from the documents, not the run
    for s in SOURCES:
        st = m["sources"][s]["stages"]
        asked = st["read"]["documents"] - st["deduplicated"]["removed"]
        assert sum(st["filtered"]["rule_errors"].values()) == asked > 0
    shown = run_cli("stats", str(out)).stdout.replace("\n", " ")
    assert "rule error" in shown and "raised on" in shown
    assert run_cli("run", str(p), "--output", str(out), "-q", "--max-rule-error-rate", "1").returncode == 0


# ------------------------------------------------------------------------------------- 7. bounds
@pytest.mark.parametrize("args, needle", [
    (["--workers", "0"], "--workers"),
    (["--scale", "-1"], "scale"),
    (["--scale", "nan"], "scale"),
])
def test_bad_numbers_on_the_command_line_exit_2(tmp_path, args, needle):
    data = corpus(tmp_path)
    r = run_cli("run", str(mix(tmp_path, data)), "--output", str(tmp_path / "out"), "-q", *args)
    assert r.returncode == 2, r.stderr
    assert needle in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "out" / "tokens").exists()


def test_a_source_written_many_times_over_needs_yes(tmp_path):
    data = corpus(tmp_path)
    body = (f"name: big\ndata_root: {data}\nsources:\n  - {{name: wiki, documents: ['wiki/*.jsonl.gz'], "
            "proportion: 50}\n")
    r = run_cli("run", str(mix(tmp_path, data, body=body)), "--output", str(tmp_path / "out"), "-q")
    assert r.returncode == 2 and "--yes" in r.stderr and "wiki" in r.stderr


# ----------------------------------------------------------------------------------- 8. messages
@pytest.mark.slow
def test_messages_changed_fields_empty_source_pipe_and_report(tmp_path):
    data, p, out = finished_run(tmp_path)
    # a changed configuration is refused naming the field that changed, old and new value
    p2 = mix(tmp_path, data, "min_text_length: 77\n", name="safety")
    r = run_cli("run", str(p2), "--output", str(out), "-q")
    assert r.returncode == 2 and "min_text_length: 0 -> 77" in r.stderr, r.stderr
    # report OUT writes OUT/report.html
    rep = run_cli("report", str(out))
    assert rep.returncode == 0, rep.stderr
    assert (out / "report.html").stat().st_size > 1000
    # a closed pipe is not a traceback
    proc = subprocess.run(" ".join(CLI) + f" plan {p} --cost --json | head -c 10", shell=True, capture_output=True,
                          text=True, timeout=120)
    assert "Traceback" not in proc.stderr and "BrokenPipe" not in proc.stderr, proc.stderr
    # a source that ends with 0 tokens fails the run (exit 3), unless --allow-empty names it
    body = (f"name: empty\nseed: 3\ndata_root: {data}\nexperiment: t\ntaggers: [char_length_v1]\n"
            "sources:\n  - {name: wiki, documents: ['wiki/*.jsonl.gz']}\n"
            "  - {name: books, documents: ['books/*.jsonl.gz'], filters: {exclude: ['.attributes.t__char_length_v1__length[0][2] > 0']}}\n")
    pe = mix(tmp_path, data, body=body, name="empty")
    r = run_cli("run", str(pe), "--output", str(tmp_path / "e"), "-q")
    assert r.returncode == 3 and "source books ends with 0 tokens" in r.stderr, r.stderr
    assert "source wiki" not in r.stderr
    r = run_cli("run", str(pe), "--output", str(tmp_path / "e"), "-q", "--allow-empty", "books")
    assert r.returncode == 0, r.stderr


@pytest.mark.slow
def test_tag_reports_rejects_on_a_rerun_and_warns_on_an_empty_file(tmp_path):
    docs = tmp_path / "ds" / "documents"
    docs.mkdir(parents=True)
    with gzip.open(docs / "a.jsonl.gz", "wt") as f:
        f.write(json.dumps({"id": "1", "source": "s", "text": "fine text"}) + "\nnot json\n")
    with gzip.open(docs / "empty.jsonl.gz", "wt"):
        pass
    args = ("tag", "--documents", str(docs / "*.jsonl.gz"), "--taggers", "char_length_v1", "--experiment", "e",
            "-w", "1", "-q")
    first = run_cli(*args)
    assert first.returncode == 3 and "empty.jsonl.gz holds no documents" in first.stderr, first.stderr
    again = run_cli(*args)
    assert again.returncode == 3 and "1 bad records" in again.stderr, again.stderr


@pytest.mark.slow
def test_the_tokenize_command_reruns_a_changed_input_or_changed_settings(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(SAMPLE / "wiki", docs)
    out = tmp_path / "tok"
    args = ("tokenize", "--documents", str(docs / "*.jsonl.gz"), "--output", str(out), "-w", "1", "-q")
    run_cli(*args, check=True)
    target = docs / "0000.jsonl.gz"
    with gzip.open(target, "rt") as f:
        lines = f.read().splitlines()
    with gzip.open(target, "wt") as f:
        f.write("\n".join(lines + [json.dumps({"id": "late", "source": "wiki", "text": "A late document."})]) + "\n")
    again = run_cli(*args, check=True)
    assert f"{sum(1 for _ in lines) + 1 + sum(1 for _ in gzip.open(docs / '0001.jsonl.gz', 'rt')):,} documents" \
        in again.stdout, again.stdout
    # another seed: the markers of the first seed do not count; the bytes equal a cold run's
    run_cli(*args, "--seed", "5", check=True)
    cold = tmp_path / "cold"
    run_cli("tokenize", "--documents", str(docs / "*.jsonl.gz"), "--output", str(cold), "-w", "1", "-q", "--seed", "5",
            check=True)
    def arrays(root: Path) -> dict[str, str]:
        return {k: v for k, v in tree_digest(root).items() if not k.startswith("_state")}

    assert arrays(out) == arrays(cold) and any(k.endswith(".npy") for k in arrays(cold))
