"""The run is a declared list of steps (pipeline/stages STEPS): a new step is one module and one
line, and the run, the manifest, `stats` and the report pick it up with no other edit. Tagger failures
are counted per source and make the run exit 3."""
import gzip
import json
import sys

import pytest
from conftest import SAMPLE, run_cli, write_mix

pytestmark = pytest.mark.slow  # every test here starts Ray


def count_vowels(shard, ctx):
    """An extra shard step, as a new stage module would define it: counts the vowels of the
    kept documents. Reads through the one reader, like every stage."""
    from dolma_prep.core import io
    from dolma_prep.pipeline.stages.common import kept_path

    n_docs = vowels = 0
    for rec in io.read_documents(kept_path(ctx, shard)):
        if rec.ok:
            n_docs += 1
            vowels += sum(c in "aeiou" for c in rec.doc["text"])
    return {"documents_in": n_docs, "vowels": vowels}


def test_a_new_step_is_one_declaration(tmp_path, monkeypatch):
    import ray.cloudpickle

    from dolma_prep.core.runtime import shutdown_ray
    from dolma_prep.pipeline import stages
    from dolma_prep.pipeline.mixfile import load_mix
    from dolma_prep.pipeline.report import build
    from dolma_prep.pipeline.run import run
    from dolma_prep.pipeline.stats_render import steps_rows
    from dolma_prep.pipeline.steps import Step

    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])  # Ray workers cannot import tests/
    extra = Step("vowels", reads="kept/", writes="nothing", counters=("documents_in", "vowels"), run_shard=count_vowels)
    i = [s.name for s in stages.STEPS].index("select")
    # the one line a new stage adds: the run reads the list when it starts and hands it to the manifest
    monkeypatch.setattr(stages, "STEPS", stages.STEPS[: i + 1] + [extra] + stages.STEPS[i + 1:])
    mix_path = write_mix(tmp_path / "mix.yaml", ["wiki", "flan"])
    mix = load_mix(str(mix_path), output=str(tmp_path / "out"))
    try:
        manifest = run(mix, workers=1, progress=False)
    finally:
        shutdown_ray()
    # the expected values, computed here from the kept documents on disk
    want = {}
    for src in ("wiki", "flan"):
        docs = [json.loads(x) for p in sorted((tmp_path / "out" / "kept" / src).glob("*.jsonl.gz"))
                for x in gzip.decompress(p.read_bytes()).splitlines()]
        want[src] = {"documents_in": len(docs), "vowels": sum(sum(c in "aeiou" for c in d["text"]) for d in docs)}
    steps = {s["step"]: s for s in manifest["steps"]}
    assert steps["vowels"]["counters"] == want
    assert want["wiki"]["vowels"] > 0
    assert [s["step"] for s in manifest["steps"]] == ["tag", "dedup", "select", "vowels", "sample", "tokenize"]
    # the declared counters of the built-in steps agree with the manifest's funnel
    for src, info in manifest["sources"].items():
        assert steps["select"]["counters"][src]["documents_kept"] == info["stages"]["selected"]["documents"]
        assert steps["tokenize"]["counters"][src]["tokens"] == info["tokens"]
    header, rows = steps_rows(manifest["steps"])
    assert "vowels" in header
    row = next(r for r in rows if r[0] == "vowels")
    assert row[header.index("vowels")] == f"{want['wiki']['vowels'] + want['flan']['vowels']:,}"
    page, _ = build(str(tmp_path / "out"))
    steps_html = page[page.index("<h2>Steps of this run</h2>"):page.index("<h2>Funnel per source</h2>")]
    assert "<td>vowels</td>" in steps_html and f"{want['wiki']['vowels'] + want['flan']['vowels']:,}" in steps_html


def test_stats_prints_every_declared_step(tmp_path):
    mix = write_mix(tmp_path / "mix.yaml", ["wiki"])
    run_cli("run", str(mix), "--output", str(tmp_path / "out"), "--workers", "1", "-q", check=True)
    got = json.loads(run_cli("stats", str(tmp_path / "out"), "--json", check=True).stdout)
    names = [s["step"] for s in got["steps"]]
    assert names == ["tag", "dedup", "select", "sample", "tokenize"]  # in run order; no token targets: no count
    table = run_cli("stats", str(tmp_path / "out"), check=True).stdout
    table = table[table.index("steps of this run"):]
    assert [n for n in names if n in table] == names
    assert table.index("select") < table.index("tokenize")


def test_tagger_errors_are_counted_per_source_and_exit_3(tmp_path):
    module = tmp_path / "flaky.py"
    module.write_text(
        "from dolma_prep.taggers.registry import Tagger, register\n\n"
        "@register('flaky_v1')\n"
        "class Flaky(Tagger):\n"
        "    def predict(self, doc):\n"
        "        if 'e' not in doc.text[:40]:\n"
        "            raise RuntimeError('no e early on')\n"
        "        return {'len': [[0, len(doc.text), float(len(doc.text))]]}\n")
    mix = tmp_path / "m.yaml"
    mix.write_text(f"name: f\ndata_root: {SAMPLE}\nexperiment: f\ntaggers: [flaky_v1]\n"
                   "sources:\n  - {name: wiki, documents: ['wiki/*.jsonl.gz']}\n"
                   "  - {name: starcoder, documents: ['starcoder/*.jsonl.gz']}\n")
    docs = {src: [json.loads(x) for p in sorted((SAMPLE / src).glob("*.jsonl.gz"))
                  for x in gzip.decompress(p.read_bytes()).splitlines()] for src in ("wiki", "starcoder")}
    want = {src: sum("e" not in d["text"][:40] for d in ds) for src, ds in docs.items()}
    assert sum(want.values()) > 0
    out = tmp_path / "out"
    proc = run_cli("run", str(mix), "--output", str(out), "--tagger-modules", str(module), "-q", "--workers", "1")
    assert proc.returncode == 3, proc.stderr
    assert "taggers raised on" in proc.stderr
    manifest = json.loads((out / "manifest.json").read_text())
    tag = next(s for s in manifest["steps"] if s["step"] == "tag")
    assert {s: c["tagger_errors"] for s, c in tag["counters"].items()} == want
    rate = sum(want.values()) / sum(len(d) for d in docs.values())
    proc = run_cli("run", str(mix), "--output", str(out), "--tagger-modules", str(module), "-q", "--workers", "1",
                   "--max-tagger-error-rate", str(rate + 0.01))
    assert proc.returncode == 0, proc.stderr


def test_task_totals_adds_up_every_round_of_a_global_step():
    from dolma_prep.core.runtime import summarise, task_totals

    a = [{"_rss_mb": 100.0, "_seconds": 2.0, "_cpu_s": 1.5}, {"_rss_mb": 300.0, "_seconds": 1.0, "_cpu_s": 0.25}]
    b = [{"_rss_mb": 200.0, "_seconds": 4.0, "_cpu_s": 3.0}]
    stats = {"kind": "x", "documents": 7, "stages": {"one": summarise(a), "two": summarise(b)},
             "signatures": summarise([]), "membership": {"pieces": 8}}
    t = task_totals(stats)
    assert (t["tasks"], t["_seconds"], t["_cpu_s"], t["_rss_mb"]) == (3, 7.0, 4.75, 300.0)
    assert sorted(t["rounds"]) == ["signatures", "stages.one", "stages.two"]
    assert t["rounds"]["stages.one"]["task_cpu_s"] == 1.75
    assert t["_rss_growth_mb"] == 0.0  # these results carry no start figure: no growth claimed


def test_a_tasks_peak_memory_is_its_own():
    """A Ray worker runs many tasks; each task's `_rss_mb` is measured from its own start
    (VmHWM reset), so a big earlier task does not show up as a later task's peak."""
    import numpy as np

    from dolma_prep.core.runtime import peak_rss_mb, reset_peak_rss

    big = np.ones(300 * 2**20 // 8)  # 300 MiB, touched
    high = peak_rss_mb()
    del big
    assert reset_peak_rss()
    assert peak_rss_mb() < high - 200
