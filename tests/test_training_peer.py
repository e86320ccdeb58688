"""Parity with OLMo's own reader (ai2-olmo's MemMapDataset + IterableDataset), run from the peer
virtual environment that scripts/setup_peer_olmo.sh builds (skipped when it is absent)."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import numpy as np
import pytest

from dolma_prep.training.data import DataOrder, MemMapDataset, TokenFile

ROOT = Path(__file__).resolve().parents[1]
VENV = Path(os.environ.get("PEER_OLMO_VENV", ROOT / ".peer-venvs" / "olmo"))

OLMO_SIDE = r"""
import json, sys
import numpy as np
from olmo.data.iterable_dataset import IterableDataset
from olmo.data.memmap_dataset import MemMapDataset

spec = json.loads(sys.argv[1])
ds = MemMapDataset(*spec["paths"], chunk_size=spec["seq_len"], memmap_dtype=np.dtype(spec["dtype"]).type,
                   label_mask_paths=spec["masks"], include_instance_metadata=False)
out = {"len": len(ds), "runs": []}
for world, start, epoch, drop_last in spec["runs"]:
    for rank in range(world):
        it = IterableDataset(ds, spec["global_batch"], seed=spec["seed"], epoch=epoch, start_index=start,
                             shuffle=True, drop_last=drop_last, world_size=world, rank=rank, fs_local_rank=0,
                             num_threads=0)
        items = list(it)
        out["runs"].append({
            "index": [int(x["index"]) for x in items],
            "input_ids": [x["input_ids"].tolist() for x in items],
            "label_mask": [x["label_mask"].tolist() for x in items],
        })
print(json.dumps(out))
"""


@pytest.mark.peer
@pytest.mark.skipif(not (VENV / ".dolma-prep-ready").is_file(), reason="run scripts/setup_peer_olmo.sh")
def test_same_instances_and_order_as_olmo(tmp_path):
    rng = np.random.default_rng(0)
    sizes = [1000, 333, 64, 2049, 50]  # remainders dropped, one exact instance, one file too short
    paths, masks = [], []
    for i, n in enumerate(sizes):
        paths.append(tmp_path / f"part-{i}.npy")
        masks.append(tmp_path / f"part-{i}.mask")
        rng.integers(0, 50280, n).astype(np.uint16).tofile(paths[-1])
        (rng.random(n) < 0.8).tofile(masks[-1])
    seq_len, global_batch, seed = 64, 12, 6198
    runs = [(1, 0, 0, True), (2, 0, 0, True), (4, 24, 1, True), (3, 0, 0, False), (3, 36, 2, True)]
    spec = {
        "paths": [str(p) for p in paths], "masks": [str(m) for m in masks], "dtype": "uint16",
        "seq_len": seq_len, "global_batch": global_batch, "seed": seed, "runs": runs,
    }
    done = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", OLMO_SIDE, json.dumps(spec)], capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 0, done.stderr[-3000:]
    olmo = json.loads(done.stdout.strip().splitlines()[-1])

    files = [TokenFile(p, "uint16", label_mask=m) for p, m in zip(paths, masks)]
    ours = MemMapDataset(files, seq_len)
    assert len(ours) == olmo["len"] == sum(n // seq_len for n in sizes)
    got = iter(olmo["runs"])
    for world, start, epoch, drop_last in runs:
        for rank in range(world):
            theirs = next(got)
            order = DataOrder(ours, global_batch, seed=seed, rank=rank, world_size=world, drop_last=drop_last)
            # OLMo streams the rest of the epoch; we serve it one step at a time
            n_steps = len(theirs["index"]) // (global_batch // world)
            steps = range(start // global_batch, start // global_batch + n_steps)
            index = np.concatenate([order.rank_indices(epoch, s) for s in steps]).tolist() if n_steps else []
            assert index and index == theirs["index"][: len(index)], (world, rank, start, epoch)
            for i, idx in enumerate(index):
                item = ours[idx]
                assert item["input_ids"].tolist() == theirs["input_ids"][i]
                assert item["label_mask"].tolist() == theirs["label_mask"][i]
