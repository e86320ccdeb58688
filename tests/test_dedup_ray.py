"""Dedup stages end to end on Ray: paragraphs, MinHash (quality, determinism, memory),
connected components, decontamination. One Ray instance for the whole module."""

from __future__ import annotations

import glob
import gzip
import itertools
import json
import os
import random
import re
import unicodedata
from collections import defaultdict

import numpy as np
import pyarrow.parquet as pq
import pytest
import regex

ray = pytest.importorskip("ray")

from dolma_prep.dedup import components  # noqa: E402
from dolma_prep.dedup.decontam import run_decontaminate  # noqa: E402
from dolma_prep.dedup.minhash import run_minhash  # noqa: E402
from dolma_prep.dedup.paragraphs import run_paragraphs  # noqa: E402
from dolma_prep.dedup.text import normalized_words  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SAMPLE_DOCS = sorted(glob.glob(os.path.join(ROOT, "sample", "documents", "*", "000[01].jsonl.gz")))
FIXTURES = os.path.join(ROOT, "tests", "fixtures", "dedup")

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("ray_session")]  # conftest: a local Ray


# ----------------------------------------------------------------------------- helpers


def write_docs(path, docs, extra_lines=()):
    """docs: [(id, text)]; extra_lines: [(position, raw line)] inserted as-is."""
    lines = [json.dumps({"id": i, "text": t, "source": "test"}) for i, t in docs]
    for pos, raw in extra_lines:
        lines.insert(pos, raw)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with gzip.open(path, "wt", encoding="utf-8") as f:
        f.write("\n".join(lines) + "\n")
    return path


def read_attr(path, name):
    out = []
    with gzip.open(path, "rt", encoding="utf-8") as f:
        for line in f:
            obj = json.loads(line)
            assert set(obj) == {"id", "attributes"} and set(obj["attributes"]) == {name}
            out.append((obj["id"], obj["attributes"][name]))
    return out


def read_texts(path):
    with gzip.open(path, "rt", encoding="utf-8") as f:
        return [json.loads(line) for line in f]


def shards_for(doc_paths, out_dir):
    return [(d, os.path.join(out_dir, f"{i:03d}-{os.path.basename(d)}")) for i, d in enumerate(doc_paths)]


def file_bytes(shards):
    return [open(o, "rb").read() for _, o in shards]


# ----------------------------------------------------------------------------- paragraphs


_UAX29_BOUNDARY = regex.compile(r"\b", flags=regex.WORD | regex.V1)
_BLANK = regex.compile(r"\p{White_Space}*")


def _dolma_paragraphs(text):
    """dolma 1.2.1 deduper.rs: paragraphs split on "\n"; the end offset steps over the
    separator while it is below the text's UTF-8 byte length minus one (its quirk: a char
    offset compared with a byte length)."""
    byte_length = len(text.encode("utf-8", "surrogatepass"))
    offset = 0
    for p in text.split("\n"):
        start = offset
        offset += len(p)
        if offset < byte_length - 1:
            offset += 1
        yield start, offset, p


def _uax29_tokens(p):
    """wimbd's tokenize: UAX #29 word-boundary segments that are not only white space (the
    full rules through `regex`, not the implementation's ASCII shortcut)."""
    return [t for t in _UAX29_BOUNDARY.split(p) if t and not _BLANK.fullmatch(t)]


def reference_paragraph_dedup(doc_paths, ngram=13, threshold=0.5):
    """dolma 1.2.1's paragraph loop written from scratch in plain Python, with an exact set
    instead of the Bloom filter (no false positives) and none of the implementation's helpers."""
    seen = set()
    result = []
    for path in doc_paths:
        for obj in read_texts(path):
            text = obj["text"]
            spans = []
            for start, end, p in (_dolma_paragraphs(text) if text else []):
                if _BLANK.fullmatch(p):
                    continue
                toks = _uax29_tokens(p)
                count = dup = 0
                for i in range(len(toks) - ngram + 1):
                    key = ("g",) + tuple(toks[i : i + ngram])
                    count += 1
                    if key in seen:
                        dup += 1
                    else:
                        seen.add(key)
                if count < 2:
                    key = ("p", p)
                    score = 1.0 if key in seen else 0.0
                    seen.add(key)
                else:
                    score = float(np.float32(dup) / np.float32(count))
                if np.float32(score) >= np.float32(threshold):
                    spans.append([start, end, score])
            result.append((obj["id"], spans))
    return result


def test_paragraphs_match_reference_on_bundled_sample(tmp_path):
    shards = shards_for(SAMPLE_DOCS, str(tmp_path / "attrs"))
    stats = run_paragraphs(shards, "bff_duplicate_paragraph_spans", str(tmp_path / "work"), false_positive_rate=1e-9)
    ours = [x for _, o in shards for x in read_attr(o, "bff_duplicate_paragraph_spans")]
    ref = reference_paragraph_dedup(SAMPLE_DOCS)
    assert [i for i, _ in ours] == [i for i, _ in ref]
    assert ours == ref
    assert stats["duplicate_paragraphs"] == sum(len(s) for _, s in ref) > 1000
    assert stats["documents"] == len(ref)
    assert not os.path.exists(tmp_path / "work" / "paragraphs")


def test_paragraphs_do_not_depend_on_pieces_or_rounds(tmp_path, monkeypatch):
    from dolma_prep.dedup import paragraphs

    monkeypatch.setattr(paragraphs, "KEYS_PER_ROUND", 100_000)
    shards = shards_for(SAMPLE_DOCS, str(tmp_path / "attrs"))
    stats = run_paragraphs(shards, "bff_duplicate_paragraph_spans", str(tmp_path / "work"), bloom_partitions=1)
    rounds = stats["membership"]["rounds"]
    assert rounds >= 4 and rounds * 50_000 < stats["keys"] <= rounds * 100_000 and stats["membership"]["pieces"] == 1
    ours = [x for _, o in shards for x in read_attr(o, "bff_duplicate_paragraph_spans")]
    assert ours == reference_paragraph_dedup(SAMPLE_DOCS)


def test_paragraphs_small_example_and_alignment(tmp_path):
    para = "The quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat."
    d1 = write_docs(str(tmp_path / "docs" / "a.jsonl.gz"), [("a1", f"{para}\nHome\n\nunique words here")])
    d2 = write_docs(
        str(tmp_path / "docs" / "b.jsonl.gz"),
        [("b1", f"Intro line that is new.\n{para}\nHome"), ("b2", ""), ("b3", "Home")],
        extra_lines=[(1, "{broken json"), (3, '{"id": "no text"}')],
    )
    shards = [(d1, str(tmp_path / "out" / "a.jsonl.gz")), (d2, str(tmp_path / "out" / "b.jsonl.gz"))]
    stats = run_paragraphs(shards, "dup", str(tmp_path / "work"))
    assert read_attr(shards[0][1], "dup") == [("a1", [])]
    p_start = len("Intro line that is new.\n")
    got = read_attr(shards[1][1], "dup")
    assert got == [
        ("b1", [[p_start, p_start + len(para) + 1, 1.0], [p_start + len(para) + 1, p_start + len(para) + 5, 1.0]]),
        (None, []),
        ("b2", []),
        (None, []),
        ("b3", [[0, 4, 1.0]]),
    ]
    assert stats["invalid_lines"] == 2 and stats["documents"] == 4


def test_paragraphs_identical_at_one_and_two_workers(tmp_path):
    docs = SAMPLE_DOCS[:12]
    a = shards_for(docs, str(tmp_path / "w1"))
    b = shards_for(docs, str(tmp_path / "w2"))
    run_paragraphs(a, "dup", str(tmp_path / "k1"), workers=1)
    run_paragraphs(b, "dup", str(tmp_path / "k2"), workers=2)
    assert file_bytes(a) == file_bytes(b)


# ----------------------------------------------------------------------------- components


def union_find_components(edges, nodes):
    parent = {n: n for n in nodes}

    def find(x):
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    comps = defaultdict(list)
    for n in nodes:
        comps[find(n)].append(n)
    return {n: min(c) for c in comps.values() for n in c if len(c) > 1 and n != min(c)}


@pytest.mark.parametrize("partitions", [1, 3])
def test_connected_components_against_union_find(tmp_path, partitions):
    rng = random.Random(partitions)
    nodes = [rng.randrange(1 << 40) for _ in range(3000)]
    edges = [(rng.choice(nodes), rng.choice(nodes)) for _ in range(1500)]
    chain = sorted(rng.sample(nodes, 400), key=lambda _: rng.random())  # a long path, random labels
    edges += list(zip(chain, chain[1:]))
    edges = [(a, b) for a, b in edges if a != b]
    a = np.array([e[0] for e in edges], dtype=np.uint64)
    b = np.array([e[1] for e in edges], dtype=np.uint64)
    first = str(tmp_path / "first")
    components.write_partitioned(np.concatenate([a, b]), np.concatenate([b, a]), first, 0, partitions)
    res = components.connected_components(first, str(tmp_path / "cc"), partitions, workers=2)
    node, root = components.read_members(res["result_dir"], 0, 1 << 63)
    got = dict(zip(node.tolist(), root.tolist()))
    expect = union_find_components(edges, set(itertools.chain.from_iterable(edges)))
    assert got == expect
    assert res["members"] == len(expect)
    assert res["clusters"] == len(set(expect.values()))


# ----------------------------------------------------------------------------- minhash


def test_minhash_finds_planted_duplicates_of_bundled_sample(tmp_path):
    shards = shards_for(SAMPLE_DOCS, str(tmp_path / "attrs"))
    stats = run_minhash(shards, "minhash", str(tmp_path / "work"), memory_budget_mb=512)
    ref_of = {}
    removed = set()
    for si, (d, o) in enumerate(shards):
        for line, (obj, (aid, spans)) in enumerate(zip(read_texts(d), read_attr(o, "minhash"))):
            assert obj["id"] == aid
            ref_of[aid] = (si, line)
            if spans:
                assert spans == [[0, len(obj["text"]), 1]]
                removed.add(aid)
    planted = json.load(open(os.path.join(ROOT, "sample", "duplicates.json")))["planted"]
    assert len(planted) == 11
    for p in planted:
        later = max(p["id"], p["duplicate_of"], key=ref_of.__getitem__)
        assert later in removed, p
    assert stats["duplicates"] == len(removed)
    assert stats["peak_worker_rss_mb"] < 512


def _edit_words(text, n_edits, vocab, rng):
    parts = re.split(r"(\w+)", text)
    word_positions = list(range(1, len(parts), 2))
    for pos in rng.sample(word_positions, min(n_edits, len(word_positions))):
        parts[pos] = rng.choice(vocab)
    return "".join(parts)


def build_planted_corpus(dst, seed=0):
    """The bundled sample plus edited copies of 150 of its documents, in 4 shards."""
    rng = random.Random(seed)
    docs = [(o["id"], o["text"]) for p in SAMPLE_DOCS for o in read_texts(p)]
    vocab = sorted({w for _, t in docs[::7] for w in normalized_words(t)[:200] if w.isalpha()})
    candidates = [d for d in docs if 120 <= len(normalized_words(d[1])) <= 6000]
    originals = rng.sample(candidates, 150)
    copies = []
    for i, (doc_id, text) in enumerate(originals):
        n_words = len(normalized_words(text))
        # edit rates spread the copies' Jaccard similarity over ~0.4 .. 1.0
        rate = [0.0, 0.003, 0.006, 0.01, 0.014, 0.018, 0.022, 0.027, 0.033, 0.04, 0.05, 0.065, 0.08, 0.1][i % 14]
        new = _edit_words(text, int(round(rate * n_words)), vocab, rng)
        if i % 5 == 1:  # drop the last paragraph as well
            new = new.rsplit("\n", 1)[0] if "\n" in new else new
        copies.append((f"copy-of-{doc_id}", new))
    half = len(docs) // 2
    paths = [
        write_docs(os.path.join(dst, "s0.jsonl.gz"), docs[:half]),
        write_docs(os.path.join(dst, "s1.jsonl.gz"), copies[::2], extra_lines=[(3, "not json")]),
        write_docs(os.path.join(dst, "s2.jsonl.gz"), docs[half:]),
        write_docs(os.path.join(dst, "s3.jsonl.gz"), copies[1::2]),
    ]
    return paths


def brute_force_pairs(paths, threshold, n=5):
    """Exact Jaccard of 5-gram shingle sets for every pair sharing a shingle."""
    sets, keys = [], []
    for si, path in enumerate(paths):
        line = -1
        with gzip.open(path, "rt", encoding="utf-8") as f:
            for line, raw in enumerate(f):
                try:
                    obj = json.loads(raw)
                except ValueError:
                    continue
                w = normalized_words(obj["text"])
                sh = {" ".join(w[i : i + n]) for i in range(len(w) - n + 1)} if len(w) >= n else {" ".join(w)}
                if w:
                    sets.append(sh)
                    keys.append((si, line))
    index = defaultdict(list)
    for d, sh in enumerate(sets):
        for s in sh:
            index[s].append(d)
    inter = defaultdict(int)
    for ds in index.values():
        if len(ds) > 1:
            for a, b in itertools.combinations(ds, 2):
                inter[(a, b)] += 1
    jac = {}
    for (a, b), c in inter.items():
        jac[(keys[a], keys[b])] = c / (len(sets[a]) + len(sets[b]) - c)
    return {p for p, j in jac.items() if j >= threshold}, jac


def found_pairs(clusters_path):
    t = pq.read_table(clusters_path).to_pylist()
    groups = defaultdict(set)
    for r in t:
        root = (r["root_shard"], r["root_line"])
        groups[root] |= {root, (r["shard"], r["line"])}
    return {tuple(sorted(p)) for g in groups.values() for p in itertools.combinations(sorted(g), 2)}


@pytest.fixture(scope="module")
def planted(tmp_path_factory):
    root = tmp_path_factory.mktemp("planted")
    paths = build_planted_corpus(str(root / "docs"))
    truth, jac = brute_force_pairs(paths, 0.8)
    return root, paths, truth, jac


def _precision_recall(found, truth):
    tp = len(found & truth)
    return tp / max(1, len(found)), tp / max(1, len(truth))


def test_minhash_quality_against_brute_force_jaccard(planted):
    root, paths, truth, jac = planted
    copies_j = [j for (a, b), j in jac.items() if a[0] in (1, 3) or b[0] in (1, 3)]
    assert len(truth) >= 80 and min(copies_j) < 0.6  # similarities spread around the threshold
    params = dict(threshold=0.8, bands=20, rows=6, memory_budget_mb=512)
    outs = {}
    for workers, parts in ((1, None), (2, None), (2, 3)):
        shards = shards_for(paths, str(root / f"attrs-{workers}"))
        clusters = str(root / f"clusters-{workers}.parquet")
        stats = run_minhash(shards, "fuzzy", str(root / f"work-{workers}"), workers=workers, clusters_path=clusters,
                            partitions=parts, **params)
        outs[workers, parts] = (file_bytes(shards), pq.read_table(clusters).to_pylist(), stats)
    a, b, c = outs[1, None], outs[2, None], outs[2, 3]
    assert a[0] == b[0] == c[0]  # byte-identical attributes
    assert a[1] == b[1] == c[1]  # identical clusters
    assert c[2]["partitions"] == 3  # result independent of P ...
    counts = lambda st: {k: v for k, v in st.items() if isinstance(v, int)}  # noqa: E731
    assert counts(a[2]) == counts(b[2])  # ... and the statistics (the manifest) independent of the worker count
    precision, recall = _precision_recall(found_pairs(str(root / "clusters-2.parquet")), truth)  # P = 3
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)
    # aligned attribute lines, including the broken one
    attrs = read_attr(shards_for(paths, str(root / "attrs-2"))[1][1], "fuzzy")
    assert attrs[3] == (None, [])


def test_minhash_default_bands_s_curve(planted):
    """datasketch's 9 x 13 (the default before 16 x 7) without verification: what the S-curve
    promises on the same corpus."""
    root, paths, truth, jac = planted
    shards = shards_for(paths, str(root / "attrs-default"))
    clusters = str(root / "clusters-default.parquet")
    run_minhash(shards, "fuzzy", str(root / "work-default"), verify="none", clusters_path=clusters, bands=9, rows=13)
    found = found_pairs(clusters)
    high = {p for p in truth if jac[p] >= 0.95}
    precision, _ = _precision_recall(found, {p for p, j in jac.items() if j >= 0.6})
    assert len(found & high) / len(high) >= 0.95  # P(candidate | s=0.95) = 0.998
    assert precision >= 0.95  # no candidate far below the threshold


# ----------------------------------------------------------------------------- decontamination


def _plain_words(text):
    """Lower case, every Unicode punctuation character (category P*) a space, split on white
    space: written here from the documented rule, without the implementation's helpers."""
    return "".join(" " if unicodedata.category(c).startswith("P") else c for c in text.lower()).split()


def _strings(v):
    if isinstance(v, str):
        return [v]
    if isinstance(v, dict):
        return [s for x in v.values() for s in _strings(x)]
    if isinstance(v, list):
        return [s for x in v for s in _strings(x)]
    return []


def brute_force_decontamination(doc_paths, eval_paths, n=13):
    """Exact n-gram overlap with Python tuples (no hashing, no prefilter): per document, the
    tasks it shares an n-gram with and one [start, end, covered/words] span per "\n"-paragraph
    holding a covered word."""
    task_grams = defaultdict(set)
    for path in eval_paths:
        for obj in read_texts(path):
            text = obj["text"] if isinstance(obj.get("text"), str) else "\n".join(_strings(obj))
            w = _plain_words(text)
            task_grams[os.path.basename(path).split(".")[0]].update(tuple(w[i : i + n]) for i in range(len(w) - n + 1))
    result = []
    for path in doc_paths:
        for obj in read_texts(path):
            text = obj["text"]
            paragraphs, pos = [], 0
            for part in text.split("\n"):
                end = min(len(text), pos + len(part) + 1)
                paragraphs.append((pos, end, _plain_words(part)))
                pos = end
            words = [(w, k) for k, (_, _, ws) in enumerate(paragraphs) for w in ws]
            covered, tasks = set(), set()
            for i in range(len(words) - n + 1):
                gram = tuple(w for w, _ in words[i : i + n])
                hit = {t for t, grams in task_grams.items() if gram in grams}
                if hit:
                    tasks |= hit
                    covered.update(range(i, i + n))
            per_par = defaultdict(int)
            for i in covered:
                per_par[words[i][1]] += 1
            spans = [[paragraphs[k][0], paragraphs[k][1], round(c / len(paragraphs[k][2]), 5)]
                     for k, c in sorted(per_par.items())]
            result.append((obj, spans, tasks))
    return result


def test_decontaminate_bundled_sample_with_bundled_eval_sets(tmp_path):
    shards = shards_for(SAMPLE_DOCS, str(tmp_path / "attrs"))
    eval_paths = sorted(glob.glob(os.path.join(FIXTURES, "eval", "*.jsonl.gz")))
    stats = run_decontaminate(
        shards, "decontam", str(tmp_path / "work"), eval_sets=[os.path.join(FIXTURES, "eval", "*.jsonl.gz")]
    )
    expected = brute_force_decontamination([d for d, _ in shards], eval_paths)
    per_task = defaultdict(int)
    by_source = defaultdict(int)
    for _, spans, tasks in expected:
        for t in tasks:
            per_task[t] += 1
        if spans:
            by_source[_["source"]] += 1
    assert sum(by_source.values()) > 50 and len(per_task) == 3  # the fixture does contaminate the sample
    assert stats["documents_per_task"] == dict(per_task)
    got = [(obj, spans) for (d, o) in shards for obj, (_, spans) in zip(read_texts(d), read_attr(o, "decontam"))]
    assert [o["id"] for o, _ in got] == [o["id"] for o, _, _ in expected]
    assert [s for _, s in got] == [s for _, s, _ in expected]
    assert stats["contaminated_documents"] == sum(by_source.values())
    assert set(by_source) == {"flan"}  # only the flan prompts hold evaluation items


def test_decontaminate_span_scores(tmp_path):
    item = "one two three four five six seven eight nine ten eleven twelve thirteen fourteen"
    evals = write_docs(str(tmp_path / "eval" / "toy.jsonl.gz"), [("e1", item), ("e2", "too short item")])
    text = "Unrelated first paragraph.\nOne, two three four five six\nseven eight nine ten eleven twelve thirteen plus more"
    docs = write_docs(str(tmp_path / "docs" / "d.jsonl.gz"), [("d1", text), ("d2", "nothing here")])
    shards = [(docs, str(tmp_path / "out.jsonl.gz"))]
    stats = run_decontaminate(shards, "c", str(tmp_path / "work"), eval_sets=[evals])
    (d1, spans1), (d2, spans2) = read_attr(shards[0][1], "c")
    p1 = len("Unrelated first paragraph.\n")
    p2 = p1 + len("One, two three four five six\n")
    assert spans1 == [[p1, p2, 1.0], [p2, len(text), round(7 / 9, 5)]]
    assert spans2 == []
    assert stats["eval_items_too_short"] == 1 and stats["contaminated_documents"] == 1
