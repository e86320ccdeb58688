"""Training data: token arrays from a `dolma-prep run` output (or `dolma tokens`), read as OLMo does.

The contract with the pipeline is the array format (docs/REFERENCE.md section 4) and the run manifest:

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
from dataclasses import dataclass
from pathlib import Path
from collections.abc import Sequence

import numpy as np
import torch

from .config import DataConfig, TrainConfig

DTYPES = {"uint16": np.uint16, "uint32": np.uint32}


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
        paths = sorted(folder.glob("tokens/**/part-*.npy"))
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


def build_dataset(config: TrainConfig):
    """The run's dataset: the token files as MemMapDataset, or (with `data.mixture.shares`) a
    MixtureDataset over the run output's sources; ids remapped when `data.id_map` is set."""
    data, seq_len = config.data, config.model.max_sequence_length
    mix = data.mixture
    if mix.shares:
        from .mixture import MixtureDataset

        if not data.run_output or data.paths:
            raise ValueError("data.mixture: needs data.run_output (a run's per-source arrays) and no data.paths")
        if data.source_repeats:
            raise ValueError("data.mixture: give repetition limits as data.mixture.max_repetition, not source_repeats")
        total = mix.total_tokens
        if total is None:
            total = config.max_tokens if config.max_tokens is not None else (config.max_steps or 0) * config.tokens_per_step
        if total <= 0:
            raise ValueError("data.mixture: set data.mixture.total_tokens, max_tokens or max_steps")
        reps = {s: mix.source_max_repetition.get(s, mix.max_repetition) for s in mix.shares}
        eos = config.model.eos_token_id if mix.eos_token_id is None else mix.eos_token_id
        dataset = MixtureDataset(
            read_run_output(data.run_output, data.dtype), seq_len, mix.shares, total,
            seed=config.seed if mix.seed is None else mix.seed, max_repetition=reps, eos_token_id=eos,
            holdout=mix.holdout, holdout_seed=mix.holdout_seed, where=f"data.mixture over {data.run_output}",
        )  # fmt: skip
    else:
        dataset = MemMapDataset(token_files(data), seq_len)
    if data.id_map:
        dataset = RemappedDataset(dataset, np.load(data.id_map), data.id_map)
    return dataset


class RemappedDataset:
    """A dataset whose input ids go through a lookup table (a reduced-vocabulary model)."""

    def __init__(self, dataset, id_map: np.ndarray, where: str = "id_map"):
        self.dataset, self.id_map, self.where = dataset, np.asarray(id_map, dtype=np.int64), where
        self.files = dataset.files

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        item = dict(self.dataset[index])
        ids = item["input_ids"]
        if len(ids) and int(ids.max()) >= len(self.id_map):
            raise ValueError(f"{self.where}: maps {len(self.id_map)} ids, the data holds id {int(ids.max())}")
        item["input_ids"] = self.id_map[ids]
        return item


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
            rel = Path("tokens") / source / f"part-0-{k:05d}.npy"
            (folder / rel).parent.mkdir(parents=True, exist_ok=True)
            np.asarray(part).astype(DTYPES[_check_dtype(dtype, "dtype")]).tofile(folder / rel)
            entries.append({"path": rel.as_posix(), "dtype": dtype, "tokens": int(len(part)), "source": source})
    manifest = {"outputs": {"tokens": entries}}
    (folder / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    return folder
