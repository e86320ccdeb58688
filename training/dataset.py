"""The dataset a training run reads, chosen by its config: plain token arrays, a read-time mixture, remapped ids.

Above both ways of reading a run output (training/data.py, OLMo's MemMapDataset; training/mixture.py,
a seeded mixture of its sources, which builds on data.py's token files), so neither imports the other
back; `DataOrder` (data.py) then orders whichever dataset this returns.
"""

from __future__ import annotations

import numpy as np

from .config import TrainConfig
from .data import MemMapDataset, read_run_output, token_files
from .mixture import MixtureDataset


def build_dataset(config: TrainConfig):
    """The run's dataset: the token files as MemMapDataset, or (with `data.mixture.shares`) a
    MixtureDataset over the run output's sources; ids remapped when `data.id_map` is set."""
    data, seq_len = config.data, config.model.max_sequence_length
    mix = data.mixture
    if mix.shares:
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
        )
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
