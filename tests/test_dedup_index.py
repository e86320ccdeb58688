"""Dedup against a persistent index (dedup/index.py): release 1 is indexed, release 2 is
deduplicated against it; the marks must equal a joint dedup of both restricted to release 2.
MinHash quality is measured against brute-force Jaccard computed here; verification scratch is
recomputed here from the candidates' texts. One Ray instance for the module."""

from __future__ import annotations

import glob
import gzip
import hashlib
import itertools
import json
import os
import random
import shutil
from collections import defaultdict

import numpy as np
import pytest
import xxhash

ray = pytest.importorskip("ray")

from conftest import run_cli  # noqa: E402
from test_dedup_ray import _edit_words, brute_force_pairs, build_planted_corpus, found_pairs  # noqa: E402

from dolma_prep.core.io import InputError  # noqa: E402
from dolma_prep.dedup import index as dindex  # noqa: E402
from dolma_prep.dedup import minhash as dminhash  # noqa: E402
from dolma_prep.dedup.exact import run_exact  # noqa: E402
from dolma_prep.dedup.minhash import run_minhash  # noqa: E402
from dolma_prep.dedup.text import normalized_words  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE = os.path.join(ROOT, "sample", "documents")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]  # conftest: a local Ray


# ----------------------------------------------------------------------------- data


def read_jsonl(path):
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            try:
                out.append(json.loads(line))
            except ValueError:
                out.append(None)
    return out


def write_jsonl(path, docs, raw=()):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    lines = [json.dumps(d) for d in docs]
    for pos, r in raw:
        lines.insert(pos, r)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def read_attr(path, name):
    return [json.loads(line) for line in gzip.open(path, "rt", encoding="utf-8")]


def make_releases(dst, seed=0):
    """Release 1: the bundled sample's 0000 files. Release 2: its 0001 files plus a file of
    exact copies and edited copies of release-1 documents (and of each other)."""
    rng = random.Random(seed)
    r1 = sorted(glob.glob(os.path.join(SAMPLE, "*", "0000.jsonl.gz")))
    r2 = sorted(glob.glob(os.path.join(SAMPLE, "*", "0001.jsonl.gz")))
    old = [d for p in r1 for d in read_jsonl(p) if d]
    vocab = sorted({w for d in old[::5] for w in normalized_words(d["text"])[:100] if w.isalpha()})
    long = [d for d in old if 150 <= len(normalized_words(d["text"])) <= 5000]
    picks = rng.sample(long, 90)
    copies = []
    for i, d in enumerate(picks):
        rate = [0.0, 0.0, 0.005, 0.01, 0.02, 0.03, 0.05, 0.08, 0.12][i % 9]
        text = d["text"] if rate == 0 else _edit_words(d["text"], int(len(normalized_words(d["text"])) * rate),
                                                      vocab, rng)
        copies.append({"id": f"r2-copy-{i}", "text": text, "source": "r2"})
    copies += [{"id": f"r2-again-{i}", "text": c["text"], "source": "r2"} for i, c in enumerate(copies[5:15])]
    extra = write_jsonl(os.path.join(dst, "r2", "copies.jsonl.gz"), copies, raw=[(4, "{not json")])
    return r1, r2 + [extra]


@pytest.fixture(scope="module")
def releases(tmp_path_factory):
    root = tmp_path_factory.mktemp("releases")
    r1, r2 = make_releases(str(root))
    return root, r1, r2


def pairs_for(paths, out_dir):
    return [(p, os.path.join(out_dir, f"{i:03d}.jsonl.gz")) for i, p in enumerate(paths)]


def marks(shards, name):
    """Per shard, per line: the attribute's spans (the kind's own key)."""
    return [[a["attributes"][name] for a in read_attr(o, name)] for _, o in shards]


def file_hashes(folder):
    return {p: hashlib.sha256(open(p, "rb").read()).hexdigest()
            for p in glob.glob(os.path.join(folder, "**", "*"), recursive=True) if os.path.isfile(p)}


# ----------------------------------------------------------------------------- exact


def test_exact_partitions_come_from_input_size_and_do_not_change_the_marks(releases, tmp_path, monkeypatch):
    """The default partition count follows the input's bytes (one per PARTITION_BYTES), not the
    shard or worker count; any count marks the same documents."""
    from dolma_prep.dedup import exact as dexact

    root, r1, r2 = releases
    size = sum(os.path.getsize(p) for p in r1 + r2)
    runs = {}
    for name, part_bytes, forced in (("default", dexact.PARTITION_BYTES, None), ("small", size // 3 + 1, None),
                                     ("forced", dexact.PARTITION_BYTES, 5)):
        monkeypatch.setattr(dexact, "PARTITION_BYTES", part_bytes)
        pairs = pairs_for(r1 + r2, str(tmp_path / name))
        stats = run_exact(pairs, "exact", str(tmp_path / f"work-{name}"), partitions=forced)
        runs[name] = (stats, marks(pairs, "exact"))
    assert len(r1 + r2) > 1 and runs["default"][0]["partitions"] == 1  # a small corpus: one partition, not shards
    assert runs["small"][0]["partitions"] == 3 and runs["forced"][0]["partitions"] == 5
    assert runs["default"][1] == runs["small"][1] == runs["forced"][1]
    assert runs["default"][0]["duplicates"] == runs["small"][0]["duplicates"] >= 15


def test_exact_against_index_equals_joint_dedup_restricted_to_release_2(releases, tmp_path):
    root, r1, r2 = releases
    idx = str(tmp_path / "index")
    built = dindex.build(idx, r1, {"exact": {"key": "text"}})
    joint = pairs_for(r1 + r2, str(tmp_path / "joint"))
    run_exact(joint, "exact", str(tmp_path / "work-joint"))
    new = pairs_for(r2, str(tmp_path / "new"))
    stats = run_exact(new, "exact", str(tmp_path / "work-new"), against=idx)
    expect = marks(joint[len(r1):], "exact")
    got = marks(new, "exact")
    assert got == expect
    assert stats["duplicates"] == sum(bool(s) for f in got for s in f) >= 15  # 20 exact copies, natural dups
    # the matched id is an indexed document with the same text, found independently here
    text_of = {d["id"]: d["text"] for p in r1 for d in read_jsonl(p) if d}
    first_id_of_text = {}
    for p in r1:
        for d in read_jsonl(p):
            if d:
                first_id_of_text.setdefault(d["text"], d["id"])
    matched = 0
    for (doc_path, attr_path) in new:
        for d, a in zip(read_jsonl(doc_path), read_attr(attr_path, "exact")):
            attrs = a["attributes"]
            if d is not None and d["text"] in first_id_of_text:
                matched += 1
                assert attrs["exact__matched_id"] == [[0, len(d["text"]), first_id_of_text[d["text"]]]]
                assert attrs["exact__matched_version"] == [[0, len(d["text"]), 1]]
                assert text_of[attrs["exact__matched_id"][0][2]] == d["text"]
            else:
                assert set(attrs) == {"exact"}
    assert matched == stats["matched_indexed"] >= 20
    assert built["documents"] == sum(1 for p in r1 for d in read_jsonl(p) if d)


# ----------------------------------------------------------------------------- minhash


def shingle_sets(paths, n=5):
    """{(file, position): set of 5-gram strings} for every document, computed here."""
    out = {}
    for fi, p in enumerate(paths):
        for pos, d in enumerate(read_jsonl(p)):
            if d is None:
                continue
            w = normalized_words(d["text"])
            if w:
                out[(fi, pos)] = {" ".join(w[i:i + n]) for i in range(len(w) - n + 1)} if len(w) >= n else {" ".join(w)}
    return out


def true_duplicates(sets, threshold=0.8):
    """Documents with an earlier document (in corpus order) at Jaccard >= threshold."""
    inv = defaultdict(list)
    for k, s in sets.items():
        for g in s:
            inv[g].append(k)
    inter = defaultdict(int)
    for ks in inv.values():
        if 1 < len(ks) < 200:
            for a, b in itertools.combinations(sorted(ks), 2):
                inter[(a, b)] += 1
    dup = {}
    for (a, b), c in inter.items():
        j = c / (len(sets[a]) + len(sets[b]) - c)
        if j >= threshold:
            dup[b] = min(dup.get(b, a), a)  # the earliest such document
    return dup


def test_minhash_against_index_equals_joint_and_brute_force(releases, tmp_path):
    root, r1, r2 = releases
    idx = str(tmp_path / "index")
    dindex.build(idx, r1, {"minhash": {}})
    joint = pairs_for(r1 + r2, str(tmp_path / "joint"))
    run_minhash(joint, "mh", str(tmp_path / "work-joint"), memory_budget_mb=512)
    new = pairs_for(r2, str(tmp_path / "new"))
    stats = run_minhash(new, "mh", str(tmp_path / "work-new"), memory_budget_mb=512, against=idx)
    got = marks(new, "mh")
    assert got == marks(joint[len(r1):], "mh")  # the same edges, the same components
    # against brute force: a release-2 document with an earlier document at Jaccard >= 0.8
    sets = shingle_sets(r1 + r2)
    earlier = true_duplicates(sets)
    truth = {k for k in earlier if k[0] >= len(r1)}
    truth_indexed = {k for k in truth if earlier[k][0] < len(r1)}
    found = {(len(r1) + fi, pos) for fi, f in enumerate(got) for pos, s in enumerate(f) if s}
    tp = len(found & truth)
    precision, recall = tp / len(found), tp / len(truth)
    assert len(truth) >= 60 and precision >= 0.95 and recall >= 0.95, (len(truth), precision, recall)
    # matched ids: indexed documents similar to the marked one
    key_of_id = {d["id"]: (fi, pos) for fi, p in enumerate(r1) for pos, d in enumerate(read_jsonl(p)) if d}
    sims = []
    for fi, (_doc_path, attr_path) in enumerate(new):
        for pos, a in enumerate(read_attr(attr_path, "mh")):
            if "mh__matched_id" in a["attributes"]:
                x, y = sets[(len(r1) + fi, pos)], sets[key_of_id[a["attributes"]["mh__matched_id"][0][2]]]
                sims.append(len(x & y) / len(x | y))
                assert a["attributes"]["mh__matched_version"][0][2] == 1
    # documents whose first similar document is indexed: matched to an indexed one (recall 0.95)
    assert len(sims) == stats["matched_indexed"] >= 0.95 * len(truth_indexed) >= 40, (len(sims), len(truth_indexed))
    assert sum(s >= 0.8 for s in sims) / len(sims) >= 0.95
    assert stats["params"]["bands"] == 16 and stats["params"]["rows"] == 7


def test_mismatched_parameters_are_refused(releases, tmp_path):
    root, r1, r2 = releases
    idx = str(tmp_path / "index")
    dindex.build(idx, r1[:2], {"minhash": {"bands": 20, "rows": 6}, "exact": {"key": "metadata.url"}})
    new = pairs_for(r2[:1], str(tmp_path / "new"))
    with pytest.raises(InputError) as e:
        run_minhash(new, "mh", str(tmp_path / "w"), against=idx, bands=16, rows=7)
    msg = str(e.value)
    assert "bands=16 (index: 20)" in msg and "rows=7 (index: 6)" in msg and "seed=1" in msg
    with pytest.raises(InputError, match=r"key='text' \(index: 'metadata.url'\)"):
        run_exact(new, "exact", str(tmp_path / "w"), against=idx)
    with pytest.raises(InputError, match="no dedup index here"):
        run_exact(new, "exact", str(tmp_path / "w"), against=str(tmp_path / "nothing"))
    # parameters left out are the index's
    stats = run_minhash(new, "mh", str(tmp_path / "w2"), against=idx)
    assert (stats["params"]["bands"], stats["params"]["rows"]) == (20, 6)


def test_minhash_default_bands_recall_and_candidate_only_verification_scratch(tmp_path):
    paths = build_planted_corpus(str(tmp_path / "docs"))
    truth, jac = brute_force_pairs(paths, 0.8)
    shards = pairs_for(paths, str(tmp_path / "attrs"))
    clusters = str(tmp_path / "clusters.parquet")
    stats = run_minhash(shards, "mh", str(tmp_path / "work"), clusters_path=clusters, keep_work=True,
                        memory_budget_mb=512)
    found = found_pairs(clusters)
    tp = len(found & truth)
    assert tp / len(truth) >= 0.95 and tp / len(found) >= 0.95, (tp / len(truth), tp / len(found))
    # scratch: the shingle sets of candidate documents only, recomputed here from their texts
    store = str(tmp_path / "work" / "minhash" / "store")
    texts = [read_jsonl(p) for p in paths]
    cand_bytes = all_bytes = 0
    candidates = 0
    for s, docs in enumerate(texts):
        for d in docs:
            if d is not None:
                all_bytes += 4 * len(low32_shingles(d["text"]))
        idx_path = os.path.join(store, f"{s}.idx.npz")
        if os.path.exists(idx_path):
            lines = np.load(idx_path)["lines"]
            candidates += len(lines)
            cand_bytes += sum(4 * len(low32_shingles(docs[i]["text"])) + 16 for i in lines)
            assert os.path.getsize(os.path.join(store, f"{s}.u32")) + 16 * len(lines) == sum(
                4 * len(low32_shingles(docs[i]["text"])) + 16 for i in lines)
    assert stats["verify_store_bytes"] == cand_bytes and stats["candidate_documents"] == candidates
    # every document of a true pair is a candidate; the store is a fraction of a full one
    in_truth = {k for p in truth for k in p}
    assert candidates >= len(in_truth) * 0.95
    assert cand_bytes < 0.5 * all_bytes, (cand_bytes, all_bytes)
    print(f"\nverification scratch: {cand_bytes:,} B for {candidates} candidate documents of "
          f"{stats['documents']}; a store of every document: {all_bytes:,} B")


def low32_shingles(text, n=5):
    w = [x.encode() for x in normalized_words(text)]
    grams = [b" ".join(w[i:i + n]) for i in range(len(w) - n + 1)] if len(w) >= n else ([b" ".join(w)] if w else [])
    return {xxhash.xxh64_intdigest(g) & 0xFFFFFFFF for g in grams}


def test_default_bands_s_curve_at_threshold():
    b, r = dminhash.DEFAULTS["bands"], dminhash.DEFAULTS["rows"]
    assert 1 - (1 - 0.8**r) ** b >= 0.95 and b * r <= 128


# ----------------------------------------------------------------------------- versions, info, memory


def test_index_add_keeps_old_versions_and_info_reports_them(releases, tmp_path):
    root, r1, r2 = releases
    idx = str(tmp_path / "index")
    dindex.build(idx, r1, {"exact": {}, "minhash": {}})
    before = file_hashes(os.path.join(idx, "v0001"))
    manifest_v1 = json.load(open(os.path.join(idx, "index.json")))
    added = dindex.add(idx, r2)
    assert added["version"] == 2
    assert sorted(os.listdir(idx)) == ["index.json", "v0001", "v0002"]  # no work files left
    assert file_hashes(os.path.join(idx, "v0001")) == before  # old shards untouched
    m = json.load(open(os.path.join(idx, "index.json")))
    assert m["versions"][0] == manifest_v1["versions"][0]
    for v in m["versions"]:  # the manifest's checksums are the files'
        for e in [f["ids"] for f in v["files"]] + [t for ts in v["tables"].values() for t in ts]:
            assert hashlib.sha256(open(os.path.join(idx, v["dir"], e["file"]), "rb").read()).hexdigest() == e["sha256"]
    with pytest.raises(InputError, match="already indexed"):
        dindex.add(idx, r2[:1])
    with pytest.raises(InputError, match="already exists"):
        dindex.build(idx, r1, {"exact": {}})
    info = dindex.info(idx, verify=True)
    n1 = sum(1 for p in r1 for d in read_jsonl(p) if d)
    n2 = sum(1 for p in r2 for d in read_jsonl(p) if d)
    assert [v["documents"] for v in info["versions"]] == [n1, n2]
    assert [v["files"] for v in info["versions"]] == [len(r1), len(r2)]
    distinct1 = len({d["text"] for p in r1 for d in read_jsonl(p) if d})
    assert info["versions"][0]["rows"]["exact"] == distinct1
    signed1 = sum(1 for p in r1 for d in read_jsonl(p) if d and normalized_words(d["text"]))
    assert info["versions"][0]["rows"]["minhash"] == 16 * signed1
    assert info["kinds"]["minhash"] == {"ngram": 5, "num_perm": 112, "bands": 16, "rows": 7, "seed": 1,
                                        "hash_family": "multiply_shift"}
    assert info["checksum_errors"] == []
    text = dindex.render_info(info)
    assert f"v1: {len(r1)} files, {n1:,} documents" in text and f"v2: {len(r2)} files, {n2:,} documents" in text
    # a damaged shard is reported
    part = os.path.join(idx, "v0001", m["versions"][0]["tables"]["exact"][0]["file"])
    with open(part, "ab") as f:
        f.write(b"x")
    assert dindex.info(idx, verify=True)["checksum_errors"] == [part]


def test_bucket_task_rows_stay_flat_as_the_index_grows_4x(releases, tmp_path):
    """The index is read by key range: as it grows 4x, the rows a bucket task holds stay
    under the budget's bound (more tasks instead), and so does the worker's memory."""
    root, r1, r2 = releases
    copies = []
    for v in range(4):  # four releases of the same size (copies of release 1 under other names)
        folder = tmp_path / f"rel{v}"
        folder.mkdir()
        paths = []
        for i, p in enumerate(r1):
            dst = folder / f"{i:03d}.jsonl.gz"
            shutil.copy(p, dst)
            paths.append(str(dst))
        copies.append(paths)
    idx = str(tmp_path / "index")
    dindex.build(idx, copies[0], {"minhash": {}})
    budget = 200  # MB: the smallest bound the planner allows (32 MB usable)
    bound = (32 << 20) // 16 // 160
    new = pairs_for(r2, str(tmp_path / "new"))
    one = run_minhash(new, "mh", str(tmp_path / "w1"), against=idx, memory_budget_mb=budget)
    marks_one = marks(new, "mh")
    for paths in copies[1:]:
        dindex.add(idx, paths)
    four = run_minhash(new, "mh", str(tmp_path / "w4"), against=idx, memory_budget_mb=budget)
    assert marks(new, "mh") == marks_one  # copies of indexed documents change nothing
    assert four["index_rows_read"] == 4 * one["index_rows_read"] > bound
    assert four["partitions"] > one["partitions"]
    assert one["max_rows_per_bucket_task"] <= 1.3 * bound and four["max_rows_per_bucket_task"] <= 1.3 * bound
    print(f"\nindex 1x: {one['partitions']} bucket tasks, max {one['max_rows_per_bucket_task']} rows, "
          f"peak {one['stages']['buckets']['peak_worker_rss_mb']} MB; 4x: {four['partitions']} tasks, max "
          f"{four['max_rows_per_bucket_task']} rows, peak {four['stages']['buckets']['peak_worker_rss_mb']} MB")
    assert four["stages"]["buckets"]["peak_worker_rss_mb"] < one["stages"]["buckets"]["peak_worker_rss_mb"] + 64


# ----------------------------------------------------------------------------- mix file, CLI, S3


def test_mix_file_dedup_against_index(releases, tmp_path):
    """`dedup: {exact: {against: INDEX}, minhash: {against: INDEX}}` (relative to the mix file)
    runs the dedup step against the index: the same marks as the direct calls."""
    from dolma_prep.pipeline.mixfile import load_mix
    from dolma_prep.pipeline.run import discover_shards
    from dolma_prep.pipeline.stages.dedup import run_dedup

    root, r1, r2 = releases
    dindex.build(str(tmp_path / "idx"), r1, {"exact": {}, "minhash": {}})
    ev = os.path.join(ROOT, "tests", "fixtures", "dedup", "eval")
    dindex.build(str(tmp_path / "registry"), sorted(glob.glob(os.path.join(ev, "*.jsonl.gz"))), {"ngram": {}})
    data = tmp_path / "data" / "new"
    data.mkdir(parents=True)
    for i, p in enumerate(r2[-4:] + [p for p in r2 if "/flan/" in p]):
        shutil.copy(p, data / f"{i}.jsonl.gz")
    mix = tmp_path / "mix.yaml"
    mix.write_text(f"name: m\ndata_root: {tmp_path / 'data'}\noutput: {tmp_path / 'out'}\n"
                   "dedup:\n  exact: {against: idx}\n  minhash: {against: idx, memory_budget_mb: 512}\n"
                   "  decontaminate: {eval_index: registry@1}\n"
                   "sources:\n  - {name: new, documents: ['new/*.jsonl.gz']}\n")
    m = load_mix(str(mix))
    assert m.dedup.exact.against == str(tmp_path / "idx") and m.dedup.minhash.against == str(tmp_path / "idx")
    assert m.dedup.decontaminate.eval_index == str(tmp_path / "registry@1")
    shards = discover_shards(m)
    res = run_dedup(m, shards, {"work": str(tmp_path / "work")})
    direct_e = [(s.path, str(tmp_path / "de" / f"{i}.gz")) for i, s in enumerate(shards)]
    direct_m = [(s.path, str(tmp_path / "dm" / f"{i}.gz")) for i, s in enumerate(shards)]
    e = run_exact(direct_e, "exact_duplicates", str(tmp_path / "w1"), against=str(tmp_path / "idx"))
    mh = run_minhash(direct_m, "minhash_duplicates", str(tmp_path / "w2"), against=str(tmp_path / "idx"),
                     memory_budget_mb=512)
    for _kind, name, direct in (("exact", "exact_duplicates", direct_e), ("minhash", "minhash_duplicates", direct_m)):
        staged = [read_attr(str(tmp_path / "out" / "attributes" / name / s.rel), name) for s in shards]
        assert staged == [read_attr(o, name) for _, o in direct]
    from dolma_prep.dedup.decontam import run_decontaminate

    direct_d = [(s.path, str(tmp_path / "dd" / f"{i}.gz")) for i, s in enumerate(shards)]
    dc = run_decontaminate(direct_d, "decontamination_spans", str(tmp_path / "w3"),
                           eval_sets=sorted(glob.glob(os.path.join(ev, "*.jsonl.gz"))))
    staged = [read_attr(str(tmp_path / "out" / "attributes" / "decontamination_spans" / s.rel), "x") for s in shards]
    assert [[a["attributes"]["decontamination_spans"] for a in f] for f in staged] == \
        [[a["attributes"]["decontamination_spans"] for a in read_attr(o, "x")] for _, o in direct_d]
    assert res["decontaminate"]["contaminated_documents"] == dc["contaminated_documents"] > 0
    assert res["decontaminate"]["eval_registry_version"] == 1
    assert res["exact"]["matched_indexed"] == e["matched_indexed"] > 0
    assert res["minhash"]["matched_indexed"] == mh["matched_indexed"] > e["matched_indexed"]


def test_cli_index_build_info_add_and_dedup_against(releases, tmp_path):
    root, r1, r2 = releases
    idx = str(tmp_path / "idx")
    docs = tmp_path / "rel2" / "documents"
    docs.mkdir(parents=True)
    shutil.copy(r2[-1], docs / "copies.jsonl.gz")
    b = run_cli("index", "build", "--documents", *r1[:6], "--kinds", "exact,minhash", "--output", idx,
                "--params", '{"minhash": {"bands": 20, "rows": 6}}', "--workers", "2")
    assert b.returncode == 0, b.stderr
    assert json.loads(b.stdout)["version"] == 1
    info = run_cli("index", "info", idx)
    n1 = sum(1 for p in r1[:6] for d in read_jsonl(p) if d)
    assert info.returncode == 0 and f"1 version(s), {n1:,} documents" in info.stdout, info.stdout
    assert "minhash: bands=20, hash_family=multiply_shift, ngram=5, num_perm=120, rows=6, seed=1" in info.stdout
    bad = run_cli("dedup", "minhash", "--documents", str(docs / "*.jsonl.gz"), "--attribute", "mh", "--against", idx,
                  "--params", '{"bands": 16}')
    assert bad.returncode == 2 and "bands=16 (index: 20)" in bad.stderr and "Traceback" not in bad.stderr, bad.stderr
    d = run_cli("dedup", "exact", "--documents", str(docs / "*.jsonl.gz"), "--attribute", "ex", "--against", idx,
                "--workers", "2")
    assert d.returncode == 0, d.stderr
    attrs = read_attr(str(tmp_path / "rel2" / "attributes" / "ex" / "copies.jsonl.gz"), "ex")
    old = {d["text"]: d["id"] for p in reversed(r1[:6]) for d in reversed(read_jsonl(p)) if d}
    expect = [old.get(x["text"]) if x else None for x in read_jsonl(r2[-1])]
    assert [a["attributes"].get("ex__matched_id", [[0, 0, None]])[0][2] for a in attrs] == expect
    assert sum(e is not None for e in expect) >= 2
    a = run_cli("index", "add", idx, "--documents", str(docs / "*.jsonl.gz"), "--workers", "2")
    assert a.returncode == 0, a.stderr
    info = json.loads(run_cli("index", "info", idx, "--json", "--verify").stdout)
    assert [v["version"] for v in info["versions"]] == [1, 2] and info["checksum_errors"] == []
    assert info["versions"][1]["corpus"] == [str(docs / "copies.jsonl.gz")]


def test_index_on_s3(releases, tmp_path):
    """Index and indexed documents on S3 (moto's server); dedup of local documents against it
    equals the same dedup against a local index of local copies."""
    s3fs = pytest.importorskip("s3fs")
    moto_server = pytest.importorskip("moto.server")
    import socket

    root, r1, r2 = releases
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        endpoint = f"http://127.0.0.1:{port}"
        env = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_DEFAULT_REGION": "us-east-1",
               "AWS_ENDPOINT_URL": endpoint, "FSSPEC_S3_ENDPOINT_URL": endpoint}
        fs = s3fs.S3FileSystem(endpoint_url=endpoint, key="testing", secret="testing")
        fs.mkdir("index-bucket")  # moto keeps buckets per process: one name per test module
        local_r1 = tmp_path / "r1"
        local_r1.mkdir()
        for i, p in enumerate(r1[:6]):
            fs.put(p, f"index-bucket/r1/{i}.jsonl.gz")
            shutil.copy(p, local_r1 / f"{i}.jsonl.gz")
        docs = tmp_path / "rel2" / "documents"
        docs.mkdir(parents=True)
        shutil.copy(r2[-1], docs / "copies.jsonl.gz")
        b = run_cli("index", "build", "--documents", "s3://index-bucket/r1/*.jsonl.gz", "--output", "s3://index-bucket/idx",
                    "--workers", "2", env=env)
        assert b.returncode == 0, b.stderr
        for kind in ("exact", "minhash"):
            d = run_cli("dedup", kind, "--documents", str(docs / "*.jsonl.gz"), "--attribute", kind, "--against",
                        "s3://index-bucket/idx", "--workers", "2", env=env)
            assert d.returncode == 0, d.stderr
        fs.invalidate_cache()
        assert sorted(p.rsplit("/", 1)[-1] for p in fs.ls("index-bucket/idx")) == ["index.json", "v0001"]
        assert not [p for p in fs.find("index-bucket/idx") if ".tmp-" in p or "_work" in p]
    finally:
        server.stop()
    local_idx = str(tmp_path / "idx")
    dindex.build(local_idx, sorted(str(p) for p in local_r1.glob("*.jsonl.gz")), {"exact": {}, "minhash": {}})
    for kind, fn in (("exact", run_exact), ("minhash", run_minhash)):
        out = str(tmp_path / f"local-{kind}.jsonl.gz")
        stats = fn([(str(docs / "copies.jsonl.gz"), out)], kind, str(tmp_path / f"w-{kind}"), against=local_idx)
        remote = read_attr(str(tmp_path / "rel2" / "attributes" / kind / "copies.jsonl.gz"), kind)
        assert remote == read_attr(out, kind)
        assert stats["matched_indexed"] > 0


# ----------------------------------------------------------------------------- evaluation registry


def test_decontamination_registry_versions(tmp_path):
    """Evaluation sets as a versioned index: version 1 (two sets), version 2 (a third). A
    corpus checked against "registry v1" / "v2" gets the spans of a direct run over the same
    evaluation files, and contaminated lines record the registry version."""
    from dolma_prep.dedup.decontam import run_decontaminate

    ev = os.path.join(ROOT, "tests", "fixtures", "dedup", "eval")
    v1 = [os.path.join(ev, "arc_challenge.jsonl.gz"), os.path.join(ev, "arc_easy.jsonl.gz")]
    v2 = [os.path.join(ev, "boolq.jsonl.gz")]
    reg = str(tmp_path / "registry")
    dindex.build(reg, v1, {"ngram": {}})
    dindex.add(reg, v2)
    info = dindex.info(reg, verify=True)
    assert [v["eval"]["tasks"] for v in info["versions"]] == [["arc_challenge", "arc_easy"], ["boolq"]]
    assert info["checksum_errors"] == []
    docs = sorted(glob.glob(os.path.join(SAMPLE, "flan", "*.jsonl.gz"))) + sorted(
        glob.glob(os.path.join(SAMPLE, "wiki", "*.jsonl.gz")))
    for version, files in ((1, v1), (2, v1 + v2)):
        direct = pairs_for(docs, str(tmp_path / f"direct-{version}"))
        d = run_decontaminate(direct, "dc", str(tmp_path / "w"), eval_sets=files)
        viareg = pairs_for(docs, str(tmp_path / f"registry-{version}"))
        spec = reg if version == 2 else f"{reg}@1"
        r = run_decontaminate(viareg, "dc", str(tmp_path / "w"), eval_index=spec)
        assert r["documents_per_task"] == d["documents_per_task"] and r["eval_registry_version"] == version
        assert sum(r["documents_per_task"].values()) > 0
        contaminated = 0
        for (_, a), (_, b) in zip(direct, viareg):
            for x, y in zip(read_attr(a, "dc"), read_attr(b, "dc")):
                assert y["attributes"]["dc"] == x["attributes"]["dc"]
                if x["attributes"]["dc"]:
                    contaminated += 1
                    assert y["attributes"]["dc__eval_version"][0][2] == version
                else:
                    assert set(y["attributes"]) == {"dc"}
        assert contaminated == r["contaminated_documents"] == d["contaminated_documents"]
    with pytest.raises(InputError, match=r"ngram=8 \(index: 13\)"):
        run_decontaminate(pairs_for(docs[:1], str(tmp_path / "x")), "dc", str(tmp_path / "w"), eval_index=reg, ngram=8)
    with pytest.raises(InputError, match=r"versions 1\.\.2, not 3"):
        run_decontaminate(pairs_for(docs[:1], str(tmp_path / "x")), "dc", str(tmp_path / "w"), eval_index=f"{reg}@3")


# ----------------------------------------------------------------------------- paragraphs


def test_paragraphs_against_index_equals_joint_dedup_restricted_to_release_2(releases, tmp_path):
    from dolma_prep.dedup.paragraphs import run_paragraphs

    root, r1, r2 = releases
    idx = str(tmp_path / "index")
    dindex.build(idx, r1, {"paragraphs": {}})
    joint = pairs_for(r1 + r2, str(tmp_path / "joint"))
    run_paragraphs(joint, "bff", str(tmp_path / "wj"), false_positive_rate=1e-9)
    new = pairs_for(r2, str(tmp_path / "new"))
    stats = run_paragraphs(new, "bff", str(tmp_path / "wn"), false_positive_rate=1e-9, against=idx)
    got = marks(new, "bff")
    assert got == marks(joint[len(r1):], "bff")
    assert sum(len(s) for f in got for s in f) == stats["duplicate_paragraphs"] > 100
    assert stats["keys_in_index"] > 0 and stats["index_versions"] == [1]
    info = dindex.info(idx)
    # the index holds every distinct paragraph key of release 1: what a run over release 1 inserts
    own = run_paragraphs(pairs_for(r1, str(tmp_path / "r1")), "bff", str(tmp_path / "w1"), false_positive_rate=1e-9)
    assert info["versions"][0]["rows"]["paragraphs"] == own["keys"] - own["keys_seen_before"]
    with pytest.raises(InputError, match=r"ngram_length=8 \(index: 13\)"):
        run_paragraphs(new, "bff", str(tmp_path / "wx"), against=idx, ngram_length=8)


def test_format_1_indexes_are_read_unless_they_hold_old_paragraph_keys(releases, tmp_path):
    import json

    root, r1, r2 = releases
    idx = tmp_path / "index"
    dindex.build(str(idx), r1[:1], {"exact": {}})
    m = json.loads((idx / "index.json").read_text())
    assert m["format"] == dindex.FORMAT == "dolma-prep-index/2"
    m["format"] = "dolma-prep-index/1"
    (idx / "index.json").write_text(json.dumps(m))
    assert dindex.read_manifest(str(idx))["format"] == "dolma-prep-index/1"  # exact keys unchanged
    m["kinds"]["paragraphs"] = {}
    (idx / "index.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="paragraph keys hashed the old way; rebuild"):
        dindex.read_manifest(str(idx))
    m["format"] = "dolma-prep-index/0"
    (idx / "index.json").write_text(json.dumps(m))
    with pytest.raises(InputError, match="expected 'dolma-prep-index/2'"):
        dindex.read_manifest(str(idx))
