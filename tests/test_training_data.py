"""Token arrays and OLMo's MemMapDataset / IterableDataset semantics."""

from __future__ import annotations

import json

import numpy as np
import pytest

from dolma_prep.training.config import DataConfig
from dolma_prep.training.data import (
    DataOrder,
    MemMapDataset,
    TokenFile,
    global_indices,
    read_run_output,
    token_files,
    write_run_output,
)


def raw(path, values, dtype="uint16"):
    path.parent.mkdir(parents=True, exist_ok=True)
    np.asarray(values, dtype=dtype).tofile(path)
    return path


def test_instances_never_cross_files_and_remainders_are_dropped(tmp_path):
    a = raw(tmp_path / "a.npy", np.arange(10))  # 3 instances of 3, 1 token dropped
    b = raw(tmp_path / "b.npy", np.arange(100, 107), "uint32")  # 2 instances, 1 dropped
    ds = MemMapDataset([TokenFile(a, "uint16"), TokenFile(b, "uint32")], seq_len=3)
    assert len(ds) == 5
    got = [ds[i]["input_ids"].tolist() for i in range(5)]
    assert got == [[0, 1, 2], [3, 4, 5], [6, 7, 8], [100, 101, 102], [103, 104, 105]]
    assert ds[0]["input_ids"].dtype == np.int64
    with pytest.raises(IndexError):
        ds[5]


def test_uint32_ids_above_uint16(tmp_path):
    path = raw(tmp_path / "big.npy", [70000, 100277, 5, 6], "uint32")
    assert MemMapDataset([TokenFile(path, "uint32")], 2)[0]["input_ids"].tolist() == [70000, 100277]


def test_global_order_is_olmos_pcg64_shuffle():
    expected = np.arange(1000, dtype=np.uint32)
    np.random.Generator(np.random.PCG64(seed=6198 + 2)).shuffle(expected)
    assert np.array_equal(global_indices(1000, 1, seed=6198, epoch=2), expected)
    assert not np.array_equal(global_indices(1000, 1, seed=6198, epoch=3), expected)
    assert np.array_equal(global_indices(5, 1, seed=0, epoch=0, shuffle=False), np.arange(5))


def test_drop_last_and_padding_follow_olmo():
    # drop_last: total = ceil((N - world) / world) * world (PyTorch DistributedSampler's rule)
    assert len(global_indices(10, 3, 0, 0, drop_last=True)) == 9
    assert len(global_indices(9, 3, 0, 0, drop_last=True)) == 9
    assert len(global_indices(11, 3, 0, 0, drop_last=True)) == 9
    padded = global_indices(10, 4, 0, 0, drop_last=False)  # padded with the head of the order
    assert len(padded) == 12 and np.array_equal(padded[10:], padded[:2])


def test_ranks_take_disjoint_strided_slices_and_restart_skips(tmp_path):
    path = raw(tmp_path / "t.npy", np.arange(4 * 50))
    ds = MemMapDataset([TokenFile(path)], 4)
    orders = [DataOrder(ds, 8, seed=1, rank=r, world_size=4) for r in range(4)]
    assert orders[0].batches_per_epoch == 50 // 8
    full = global_indices(50, 4, 1, 0)
    for step in range(orders[0].batches_per_epoch):
        per_rank = [o.rank_indices(0, step) for o in orders]
        assert all(len(p) == 2 for p in per_rank)
        # the same as OLMo's indices[start:][rank::world] read in device batches of 2
        for r, p in enumerate(per_rank):
            assert np.array_equal(p, full[step * 8 :][r::4][:2])
        assert sorted(np.concatenate(per_rank)) == sorted(full[step * 8 : step * 8 + 8])
    batch = orders[1].batch(0, 3)
    assert batch["input_ids"].shape == (2, 4)
    assert batch["input_ids"][0, 0].item() == 4 * batch["index"][0].item()


def test_label_masks(tmp_path):
    tokens = raw(tmp_path / "t.npy", np.arange(8))
    mask = raw(tmp_path / "t.mask", [1, 0, 1, 1, 0, 0, 1, 1], "bool")
    other = raw(tmp_path / "u.npy", np.arange(4))
    ds = MemMapDataset([TokenFile(tokens, label_mask=mask), TokenFile(other)], 4)
    assert ds[1]["label_mask"].tolist() == [False, False, True, True]
    assert ds[2]["label_mask"].tolist() == [True] * 4  # files without a mask train on every token
    bad = raw(tmp_path / "bad.mask", [1, 0], "bool")
    with pytest.raises(ValueError, match="label mask"):
        MemMapDataset([TokenFile(tokens, label_mask=bad)], 4)


def test_manifest_and_repeats(tmp_path):
    write_run_output(tmp_path, {"wiki": [np.arange(40)], "c4": [np.arange(30), np.arange(20)]})
    files = read_run_output(tmp_path)
    assert [(f.source, f.path.name, f.num_tokens) for f in files] == [
        ("wiki", "part-0-00000.npy", 40),
        ("c4", "part-0-00000.npy", 30),
        ("c4", "part-0-00001.npy", 20),
    ]
    repeated = token_files(DataConfig(run_output=str(tmp_path), source_repeats={"wiki": 2}))
    assert [f.source for f in repeated] == ["wiki", "wiki", "c4", "c4"]
    explicit = token_files(DataConfig(paths=[str(files[0].path)] * 3))
    assert len(MemMapDataset(explicit, 10)) == 12


def test_manifest_errors_and_glob_fallback(tmp_path):
    write_run_output(tmp_path / "run", {"wiki": [np.arange(40)]})
    manifest = json.loads((tmp_path / "run" / "manifest.json").read_text())
    manifest["outputs"]["tokens"][0]["tokens"] = 41
    (tmp_path / "run" / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match=r"outputs.tokens\[0\].tokens: manifest says 41"):
        read_run_output(tmp_path / "run")

    # no usable manifest: glob tokens/**/part-*.npy with the configured dtype
    (tmp_path / "run" / "manifest.json").write_text(json.dumps({"outputs": {}}))
    raw(tmp_path / "run" / "tokens" / "c4" / "part-1-00000.npy", np.arange(10), "uint32")
    files = read_run_output(tmp_path / "run", default_dtype="uint32")
    assert [(f.source, f.dtype) for f in files] == [("c4", "uint32"), ("wiki", "uint32")]

    with pytest.raises(FileNotFoundError, match="no token arrays"):
        read_run_output(tmp_path / "empty")
    with pytest.raises(ValueError, match="dtype must be one of"):
        read_run_output(tmp_path / "run", default_dtype="int8")


def test_unknown_source_repeat_is_an_error(tmp_path):
    write_run_output(tmp_path, {"wiki": [np.arange(40)]})
    with pytest.raises(ValueError, match="source_repeats: no source 'wikki'"):
        token_files(DataConfig(run_output=str(tmp_path), source_repeats={"wikki": 2}))
