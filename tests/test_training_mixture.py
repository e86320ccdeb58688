"""Mixing at read time (training/mixture.py): shares within one document of the target, the
repetition limit, held-out documents, determinism for a seed, and exact resume (the rebuilt
dataset and order give the same instances; a resumed Trainer the same losses)."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pytest

from dolma_prep.training.config import load_config
from dolma_prep.training.data import DataOrder, read_run_output, write_run_output
from dolma_prep.training.dataset import build_dataset
from dolma_prep.training.mixture import MixtureDataset, draw_source, pool_documents, split_pool

EOS = 50279


def _documents(rng: np.random.Generator, n: int, lo: int, hi: int, base: int) -> list[np.ndarray]:
    """n documents of random lengths, each ending with EOS; ids identify the source (base)."""
    return [np.append(rng.integers(base, base + 500, size=int(rng.integers(lo, hi)) - 1), EOS) for _ in range(n)]


@pytest.fixture
def pool(tmp_path: Path) -> Path:
    """Three sources of different sizes and document lengths, two arrays each (no indexes: EOS cuts)."""
    rng = np.random.default_rng(0)
    arrays = {}
    for k, (name, n, lo, hi) in enumerate([("a", 120, 5, 60), ("b", 40, 50, 300), ("c", 300, 2, 20)]):
        docs = _documents(rng, n, lo, hi, 1000 * (k + 1))
        half = n // 2
        arrays[name] = [np.concatenate(docs[:half]), np.concatenate(docs[half:])]
    return write_run_output(tmp_path / "pool", arrays)


def _source_of(ids: np.ndarray) -> np.ndarray:
    return np.where(ids == EOS, -1, ids // 1000)


def test_documents_come_from_eos_or_the_index(pool, tmp_path):
    files = read_run_output(pool)
    docs = pool_documents(files, EOS)
    assert sorted(docs) == ["a", "b", "c"] and len(docs["a"].ids) == 120 and len(docs["c"].ids) == 300
    assert sum(d.tokens for d in docs.values()) == sum(f.num_tokens for f in files)
    # every document ends with EOS and holds no other EOS
    f0 = files[0]
    arr = np.fromfile(f0.path, dtype=np.uint16)
    d = docs[f0.source]
    for s, n in zip(d.start[d.file == 0][:20], d.length[d.file == 0][:20]):
        assert arr[s + n - 1] == EOS and not (arr[s : s + n - 1] == EOS).any()
    # with a .csv.gz index beside the array, its rows are the documents (and their ids the keys)
    with gzip.open(f0.path.with_name(f0.path.name[:-4] + ".csv.gz"), "wt") as f:
        w = csv.writer(f)
        w.writerow([0, 10, "first", "x", 1])
        w.writerow([10, f0.num_tokens, "rest", "x", 2])
    docs = pool_documents(read_run_output(pool), EOS)
    assert docs["a"].ids[:2] == ["first", "rest"] and docs["a"].length[:2].tolist() == [10, f0.num_tokens - 10]


@pytest.mark.parametrize("seed", [1, 2])
def test_shares_are_met_within_one_document(pool, seed):
    files = read_run_output(pool)
    shares = {"a": 0.5, "b": 0.3, "c": 0.2}
    ds = MixtureDataset(files, 32, shares, 20_000, seed=seed, max_repetition=4.0)
    docs = pool_documents(files, EOS)
    total = ds.total_tokens
    assert total >= 20_000 and total % 32 == 0
    for name, share in shares.items():
        r = ds.report[name]
        longest = int(docs[name].length.max())
        assert 0 <= r["tokens"] - share * total < longest, (name, r, longest)
    # the stream really holds those tokens: count ids by source over every instance
    ids = np.concatenate([ds[i]["input_ids"] for i in range(len(ds))])
    assert len(ids) == len(ds) * 32 and len(ds) == ds.total_tokens // 32 < ds.stream_tokens / 32  # overshoot unused
    stream = ds.tokens(0, ds.stream_tokens)
    counted = {name: int((_source_of(stream) == k + 1).sum()) for k, name in enumerate("abc")}
    eos_free = {n: ds.report[n]["tokens"] - ds.report[n]["documents"] for n in shares}
    assert counted == eos_free


def test_repetition_passes_and_limit(pool):
    files = read_run_output(pool)
    docs = pool_documents(files, EOS)["b"]
    picked = draw_source(docs, 2.5 * docs.tokens, seed=3, max_repetition=3.0)
    # two full passes (each document twice), then part of a third, every pass in its own order
    counts = np.bincount(picked, minlength=len(docs.ids))
    assert counts.min() >= 2 and counts.max() == 3
    n = len(docs.ids)
    assert sorted(picked[:n].tolist()) == list(range(n)) and picked[:n].tolist() != picked[n : 2 * n].tolist()
    with pytest.raises(ValueError, match=r"source 'b'.*2.50x repetition exceeds the maximum of 2x"):
        draw_source(docs, 2.5 * docs.tokens, seed=3, max_repetition=2.0)
    with pytest.raises(ValueError, match="exceeds the maximum"):
        MixtureDataset(files, 32, {"b": 1.0}, 2 * docs.tokens, seed=0, max_repetition={"b": 1.5})


def test_same_seed_same_instances_other_seed_other_draw(pool):
    files = read_run_output(pool)
    kw = dict(seed=5, max_repetition=4.0)
    one = MixtureDataset(files, 32, {"a": 2, "c": 1}, 8_000, **kw)
    two = MixtureDataset(files, 32, {"a": 2, "c": 1}, 8_000, **kw)
    other = MixtureDataset(files, 32, {"a": 2, "c": 1}, 8_000, seed=6, max_repetition=4.0)
    assert one.shares == {"a": 2 / 3, "c": 1 / 3}
    assert len(one) == len(two)
    assert all(np.array_equal(one[i]["input_ids"], two[i]["input_ids"]) for i in range(len(one)))
    assert not all(np.array_equal(one[i]["input_ids"], other[i]["input_ids"]) for i in range(min(len(one), len(other))))


def test_one_seed_keeps_common_documents_in_order_across_mixtures(pool):
    """Common random numbers for mix search: two mixtures drawn with one seed have the same number
    of instances (so one training seed gives them the same instance order), and the documents
    they share come in the same relative order in both streams (the old seeded permutation of
    all documents reshuffled everything when one document was added)."""
    files = read_run_output(pool)
    one = MixtureDataset(files, 32, {"a": 0.5, "b": 0.3, "c": 0.2}, 8_000, seed=5, max_repetition=4.0)
    two = MixtureDataset(files, 32, {"a": 0.4, "b": 0.3, "c": 0.3}, 8_000, seed=5, max_repetition=4.0)
    assert len(one) == len(two) == 250 and one.stream_tokens != two.stream_tokens

    def docs(ds):  # (file, start, copy) of each document in stream order
        seen: dict = {}
        out = []
        for f, st in zip(ds.doc_file.tolist(), ds.doc_start.tolist()):
            seen[(f, st)] = seen.get((f, st), 0) + 1
            out.append((f, st, seen[(f, st)]))
        return out

    a, b = docs(one), docs(two)
    common = set(a) & set(b)
    assert len(common) > 0.6 * max(len(a), len(b))
    assert [d for d in a if d in common] == [d for d in b if d in common]


def test_held_out_documents_are_never_drawn(pool):
    files = read_run_output(pool)
    train, held = split_pool(files, EOS, 0.25, holdout_seed=9)
    for name in "abc":
        assert len(held[name].ids) > 0 and len(train[name].ids) > 0
        assert set(held[name].ids).isdisjoint(train[name].ids)
    ds = MixtureDataset(files, 32, {"a": 1, "b": 1, "c": 1}, 30_000, seed=0, max_repetition=10.0,
                        holdout=0.25, holdout_seed=9)
    drawn = {(int(f), int(s)) for f, s in zip(ds.doc_file, ds.doc_start)}
    for name in "abc":
        assert drawn.isdisjoint(zip(held[name].file.tolist(), held[name].start.tolist()))
    assert {n: r["available_tokens"] for n, r in ds.report.items()} == {n: train[n].tokens for n in "abc"}


def test_unknown_source_and_bad_shares_are_named(pool):
    files = read_run_output(pool)
    with pytest.raises(ValueError, match=r"no token arrays for source 'wiki' \(the pool has: a, b, c\)"):
        MixtureDataset(files, 32, {"a": 1, "wiki": 1}, 1000, seed=0, where=f"data.mixture over {pool}")
    with pytest.raises(ValueError, match="finite and >= 0"):
        MixtureDataset(files, 32, {"a": -1}, 1000, seed=0)


def _config(pool: Path, save: Path, *overrides: str):
    c = load_config("tiny", ["model.vocab_size=4096", "model.embedding_size=4096", "model.eos_token_id=4095",
                             "model.pad_token_id=0", "global_batch_size=4", "micro_batch_size=4",
                             "model.max_sequence_length=32", *overrides])
    c.data.run_output, c.save_folder = str(pool), str(save)
    c.data.mixture.shares = {"a": 0.6, "b": 0.4}
    c.data.mixture.max_repetition = 4.0
    c.data.mixture.eos_token_id = EOS  # the arrays' EOS; the model's (remapped) is 4095
    return c


@pytest.mark.slow  # trains three short runs
def test_resume_gives_the_same_instances_and_losses(pool, tmp_path):
    from dolma_prep.training.train import train

    id_map = np.arange(65536, dtype=np.int64) % 4095
    id_map[EOS] = 4095
    np.save(tmp_path / "map.npy", id_map)
    overrides = ["max_tokens=1280", f"data.id_map={tmp_path / 'map.npy'}", "save_final=false"]
    # the dataset the Trainer builds: ids remapped, order independent of the process
    c = _config(pool, tmp_path / "x", *overrides)
    d1, d2 = build_dataset(c), build_dataset(c)
    o1, o2 = DataOrder(d1, 4, seed=c.seed), DataOrder(d2, 4, seed=c.seed)
    for step in range(o1.batches_per_epoch):
        assert np.array_equal(o1.batch(0, step)["input_ids"], o2.batch(0, step)["input_ids"])
    assert int(o1.batch(0, 0)["input_ids"].max()) <= 4095
    full = train(_config(pool, tmp_path / "full", *overrides, "max_steps=8"))
    train(_config(pool, tmp_path / "resumed", *overrides, "max_steps=4", "save_interval=4"))
    resumed = train(_config(pool, tmp_path / "resumed", *overrides, "max_steps=8"))
    assert [m["step"] for m in resumed] == [5, 6, 7, 8]
    assert [m["loss"] for m in resumed] == [m["loss"] for m in full[4:]]


def test_mix_search_bounds_leave_room_for_whole_instances(pool):
    """A candidate at its repetition bound must be drawable: the dataset rounds the tokens up
    to whole instances, so the search's bound uses the rounded count (a 4.00x > 4x refusal
    stopped the first benchmark run)."""
    from dolma_prep.pipeline import mix_search as ms

    files = read_run_output(pool)
    train = {n: d.tokens for n, d in pool_documents(files, EOS).items()}
    opts = ms.SearchOptions(output="x", tokens_per_proxy=5_001, max_repetition=1.0)
    seq = load_config(opts.proxy_config).model.max_sequence_length
    drawn = ms.drawn_tokens(opts)
    assert drawn % seq == 0 and opts.tokens_per_proxy <= drawn < opts.tokens_per_proxy + seq
    names = sorted(train)
    base = np.full(len(names), 1 / len(names))
    _, hi = ms.bounds(names, base, train, opts, "m.yaml", drawn)
    i = int(np.argmin(hi))  # the tightest source, at its bound; the rest share what is left
    assert hi[i] < 1  # the repetition limit binds
    shares = {n: (hi[i] if j == i else (1 - hi[i]) / (len(names) - 1)) for j, n in enumerate(names)}
    ds = MixtureDataset(files, seq, shares, opts.tokens_per_proxy, seed=0, max_repetition=1.0, eos_token_id=EOS)
    assert ds.report[names[i]]["tokens"] >= hi[i] * drawn * 0.999
    _, hi_raw = ms.bounds(names, base, train, opts, "m.yaml")  # unrounded: 5,001 tokens
    assert hi_raw[i] > hi[i]  # the rounding moves the bound (what the unrounded one missed)


def test_a_target_at_the_repetition_limit_within_float_rounding_is_drawn(pool):
    docs = pool_documents(read_run_output(pool), EOS)["a"]
    limit = 2.0 * docs.tokens
    picked = draw_source(docs, limit * (1 + 1e-9), seed=0, max_repetition=2.0)  # float noise, not a breach
    assert docs.length[picked].sum() >= limit
    with pytest.raises(ValueError, match="2.00x repetition exceeds the maximum of 2x"):
        draw_source(docs, limit * 1.001, seed=0, max_repetition=2.0)
