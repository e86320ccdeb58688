"""Training data: token arrays from a `dolma-prep run` output (or `dolma tokens`), read as OLMo does.

The contract with the pipeline is the array format (docs/REFERENCE.md section 4; core/tokens.py, which
both sides import) and the run manifest:

- a token file is a RAW memmap (no .npy header) of uint16 or uint32 ids, documents concatenated;
- `manifest.json` lists them under `outputs.tokens` as objects with `path` (relative to the output
  folder), `dtype`, `tokens` and `source` (optional: `label_mask`, a bool memmap of the same
  length). Without a manifest, `tokens/**/part-*.npy` is globbed and the configured dtype used.

Reading follows OLMo's MemMapDataset + IterableDataset exactly:

- each file is cut into floor(n_tokens / seq_len) instances; the remainder is dropped and an
  instance never crosses files; instance ids run over the files in the order given;
- the epoch's global order is `arange(N)` shuffled by `np.random.Generator(PCG64(seed + epoch))`,
  then (drop_last) truncated, or (not drop_last) padded by repeating its head, to a multiple of
  the world size;
- step s of an epoch uses global positions [s * B, (s + 1) * B) (B = global batch) and rank r takes
  every world_size-th of them starting at r, which equals OLMo's `indices[start:][r::world]`
  read in device batches; a restart skips the consumed `s * B` positions.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ..core.tokens import ARRAY_SUFFIX, DTYPES, PART_GLOB, part_stem
from .config import DataConfig


@dataclass(frozen=True)
class TokenFile:
    """One raw token array and what is known about it."""

    path: Path
    dtype: str = "uint16"
    source: str = ""
    label_mask: Path | None = None

    @property
    def num_tokens(self) -> int:
        return self.path.stat().st_size // np.dtype(DTYPES[self.dtype]).itemsize


def read_run_output(folder: str | Path, default_dtype: str = "uint16") -> list[TokenFile]:
    """Token files of a run output folder, from `manifest.json` or, failing that, a glob."""
    folder = Path(folder)
    manifest_path = folder / "manifest.json"
    entries = None
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        entries = (manifest.get("outputs") or {}).get("tokens") if isinstance(manifest, dict) else None
    if entries is None:
        paths = sorted(folder.glob(f"tokens/**/{PART_GLOB}"))
        if not paths:
            raise FileNotFoundError(
                f"{folder}: no token arrays: no manifest.json with outputs.tokens, "
                "and tokens/**/part-*.npy matched nothing"
            )
        dtype = _check_dtype(default_dtype, "data.dtype")
        sources = [p.parent.relative_to(folder / "tokens").as_posix() for p in paths]
        return [TokenFile(p, dtype, source="" if s == "." else s) for p, s in zip(paths, sources)]
    if not isinstance(entries, list):
        raise ValueError(f"{manifest_path}: outputs.tokens: expected a list, found {type(entries).__name__}")
    files = []
    for i, entry in enumerate(entries):
        where = f"{manifest_path}: outputs.tokens[{i}]"
        if not isinstance(entry, dict) or "path" not in entry:
            raise ValueError(f"{where}: expected an object with a 'path', found {entry!r}")
        path = folder / entry["path"]
        if not path.is_file():
            raise FileNotFoundError(f"{where}.path: {path} does not exist")
        mask = entry.get("label_mask")
        file = TokenFile(
            path,
            _check_dtype(entry.get("dtype", default_dtype), f"{where}.dtype"),
            source=str(entry.get("source", "")),
            label_mask=folder / mask if mask else None,
        )
        if "tokens" in entry and int(entry["tokens"]) != file.num_tokens:
            raise ValueError(f"{where}.tokens: manifest says {entry['tokens']}, {path} holds {file.num_tokens}")
        files.append(file)
    return files


def _check_dtype(dtype: str, where: str) -> str:
    if dtype not in DTYPES:
        raise ValueError(f"{where}: dtype must be one of {sorted(DTYPES)}, found {dtype!r}")
    return dtype


def token_files(config: DataConfig) -> list[TokenFile]:
    """All token files of a data config, repetitions applied, in instance order."""
    files: list[TokenFile] = []
    if config.run_output:
        found = read_run_output(config.run_output, config.dtype)
        unknown = sorted(set(config.source_repeats) - {f.source for f in found})
        if unknown:
            sources = ", ".join(sorted({f.source for f in found}))
            raise ValueError(f"data.source_repeats: no source {unknown[0]!r} in {config.run_output} ({sources})")
        for file in found:
            files.extend([file] * config.source_repeats.get(file.source, 1))
    masks = config.label_mask_paths
    if masks is not None and len(masks) != len(config.paths):
        raise ValueError(f"data.label_mask_paths: {len(masks)} paths for {len(config.paths)} data.paths")
    for i, path in enumerate(config.paths):
        files.append(
            TokenFile(Path(path), _check_dtype(config.dtype, "data.dtype"), "", Path(masks[i]) if masks else None)
        )
    if not files:
        raise ValueError("data: no token files; set data.run_output (or --data) or data.paths")
    return files


class MemMapDataset:
    """Fixed-length instances cut from raw token files (OLMo's MemMapDataset)."""

    def __init__(self, files: Sequence[TokenFile], seq_len: int):
        self.files = list(files)
        self.seq_len = seq_len
        counts = []
        for f in self.files:
            if not f.path.is_file():
                raise FileNotFoundError(f"token file {f.path} does not exist")
            if f.label_mask is not None and f.label_mask.stat().st_size != f.num_tokens:
                raise ValueError(f"label mask {f.label_mask} should hold {f.num_tokens} bools, like {f.path}")
            counts.append(f.num_tokens // seq_len)
        self.ends = np.cumsum(counts, dtype=np.int64)
        self.has_label_masks = any(f.label_mask is not None for f in self.files)
        if len(self) == 0:
            raise ValueError(f"{len(self.files)} token files hold no complete instance of {seq_len} tokens")

    def __len__(self) -> int:
        return int(self.ends[-1]) if len(self.ends) else 0

    def locate(self, index: int) -> tuple[int, int]:
        """(file number, instance number inside that file) of a global instance id."""
        if not 0 <= index < len(self):
            raise IndexError(f"instance {index} out of range for {len(self)} instances")
        file_idx = int(np.searchsorted(self.ends, index, side="right"))
        start = int(self.ends[file_idx - 1]) if file_idx else 0
        return file_idx, index - start

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        file_idx, local = self.locate(int(index))
        f = self.files[file_idx]
        dtype = DTYPES[f.dtype]
        offset = local * self.seq_len
        ids = np.fromfile(f.path, dtype=dtype, count=self.seq_len, offset=offset * np.dtype(dtype).itemsize)
        item = {"input_ids": ids.astype(np.int64)}
        if f.label_mask is not None:
            item["label_mask"] = np.fromfile(f.label_mask, dtype=np.bool_, count=self.seq_len, offset=offset)
        elif self.has_label_masks:  # other files have masks: keep batches stackable
            item["label_mask"] = np.ones(self.seq_len, dtype=np.bool_)
        return item


def global_indices(
    num_instances: int, world_size: int, seed: int, epoch: int, shuffle: bool = True, drop_last: bool = True
) -> np.ndarray:
    """The epoch's global instance order, exactly as OLMo's `IterableDataset._build_global_indices`."""
    assert num_instances < np.iinfo(np.uint32).max
    if drop_last and num_instances % world_size != 0:
        total_size = math.ceil((num_instances - world_size) / world_size) * world_size
    else:
        total_size = math.ceil(num_instances / world_size) * world_size
    indices = np.arange(num_instances, dtype=np.uint32)
    if shuffle:
        rng = np.random.Generator(np.random.PCG64(seed=seed + epoch))
        rng.shuffle(indices)
    if not drop_last:
        padding = total_size - len(indices)
        parts = [indices]
        while padding > 0:
            parts.append(indices[: min(padding, len(indices))])
            padding -= len(parts[-1])
        indices = np.concatenate(parts)
    else:
        indices = indices[:total_size]
    return indices


class DataOrder:
    """Which instances each rank trains on at (epoch, step of the epoch)."""

    def __init__(
        self,
        dataset: MemMapDataset,
        global_batch_size: int,
        *,
        seed: int,
        rank: int = 0,
        world_size: int = 1,
        shuffle: bool = True,
        drop_last: bool = True,
    ):
        if global_batch_size % world_size:
            raise ValueError(f"global batch {global_batch_size} is not divisible by world size {world_size}")
        self.dataset, self.global_batch_size = dataset, global_batch_size
        self.seed, self.rank, self.world_size = seed, rank, world_size
        self.shuffle, self.drop_last = shuffle, drop_last
        self._cache: tuple[int, np.ndarray] | None = None
        self.batches_per_epoch = len(self.epoch_indices(0)) // global_batch_size
        if self.batches_per_epoch == 0:
            raise ValueError(f"{len(dataset)} instances do not fill one global batch of {global_batch_size}")

    def epoch_indices(self, epoch: int) -> np.ndarray:
        if self._cache is None or self._cache[0] != epoch:
            order = global_indices(len(self.dataset), self.world_size, self.seed, epoch, self.shuffle, self.drop_last)
            self._cache = (epoch, order)
        return self._cache[1]

    def rank_indices(self, epoch: int, step_in_epoch: int) -> np.ndarray:
        start = step_in_epoch * self.global_batch_size
        step_indices = self.epoch_indices(epoch)[start : start + self.global_batch_size]
        return step_indices[self.rank :: self.world_size]

    def batch(self, epoch: int, step_in_epoch: int) -> dict[str, torch.Tensor]:
        """This rank's device batch: input_ids (and label_mask), plus the instance ids."""
        indices = self.rank_indices(epoch, step_in_epoch)
        items = [self.dataset[int(i)] for i in indices]
        batch = {key: torch.from_numpy(np.stack([it[key] for it in items])) for key in items[0]}
        batch["index"] = torch.from_numpy(indices.astype(np.int64))
        return batch


def write_run_output(folder: str | Path, arrays: dict[str, Sequence[np.ndarray]], dtype: str = "uint16") -> Path:
    """Write token arrays in the run-output layout (`tokens/<source>/part-0-0000k.npy` raw memmaps
    and a `manifest.json` listing them); for tests, demos and benchmarks."""
    folder = Path(folder)
    entries = []
    for source, parts in arrays.items():
        for k, part in enumerate(parts):
            rel = Path("tokens") / source / (part_stem(0, k) + ARRAY_SUFFIX)
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            np.asarray(part).astype(DTYPES[_check_dtype(dtype, "dtype")]).tofile(folder / rel)
            entries.append({"path": rel.as_posix(), "dtype": dtype, "tokens": int(len(part)), "source": source})
    manifest = {"outputs": {"tokens": entries}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder
