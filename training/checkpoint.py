"""Sharded checkpoints with torch.distributed.checkpoint (DCP).

A checkpoint is a directory `step{N}-tokens{M}B` (M = tokens seen in billions, rounded, as
OLMo's released revisions) holding:

- the DCP files of `{"model": ..., "optim": ...}`: every rank writes its own shards, and any
  world size (one process without torch.distributed included) can load them back;
- `trainer.json`: step, tokens, epoch and position in the epoch's data order, world size;
- `config.yaml`: the full training config (the model shape is read from it when exporting);
- `rng/rank{r}.pt`: each rank's Python, NumPy and torch (and CUDA) RNG states.

It is written under a `.tmp` name and renamed when complete, so a directory with the final
name is always loadable.
"""

from __future__ import annotations

import contextlib
import json
import random
import re
import shutil
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
import torch.distributed.checkpoint as dcp
import yaml
from torch.distributed.checkpoint.state_dict import (
    get_model_state_dict,
    get_state_dict,
    set_model_state_dict,
    set_state_dict,
)

from .config import TrainConfig, from_dict, to_dict
from .model import OLMo

CHECKPOINT_RE = re.compile(r"^step(\d+)-tokens(\d+)B$")


def checkpoint_name(step: int, tokens: int) -> str:
    """`step1000-tokens4B` for step 1000 after 4,194,304,000 tokens."""
    return f"step{step}-tokens{round(tokens / 1e9)}B"


def latest_checkpoint(folder: str | Path) -> Path | None:
    """The complete checkpoint with the highest step in `folder`, if any."""
    folder = Path(folder)
    if not folder.is_dir():
        return None
    found = [
        (int(m.group(1)), p)
        for p in folder.iterdir()
        if (m := CHECKPOINT_RE.match(p.name)) and (p / "trainer.json").is_file()
    ]
    return max(found)[1] if found else None


@contextlib.contextmanager
def _single_process_ok() -> Iterator[None]:
    """DCP warns that it assumes one process when there is no process group: that is intended."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def _rank() -> int:
    return dist.get_rank() if dist.is_initialized() else 0


def _barrier() -> None:
    if dist.is_initialized():
        dist.barrier()


def rng_state() -> dict[str, Any]:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict[str, Any]) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def save_checkpoint(
    folder: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer,
    trainer_state: dict[str, Any],
    config: TrainConfig,
) -> Path:
    """Write a checkpoint for `trainer_state["step"]` into `folder`; collective over all ranks."""
    final = Path(folder) / checkpoint_name(trainer_state["step"], trainer_state["tokens"])
    tmp = final.with_name(final.name + ".tmp")
    if _rank() == 0 and tmp.exists():
        shutil.rmtree(tmp)
    _barrier()
    model_sd, optim_sd = get_state_dict(model, optimizer)
    with _single_process_ok():
        dcp.save({"model": model_sd, "optim": optim_sd}, checkpoint_id=tmp)
    (tmp / "rng").mkdir(parents=True, exist_ok=True)
    torch.save(rng_state(), tmp / "rng" / f"rank{_rank()}.pt")
    _barrier()
    if _rank() == 0:
        (tmp / "trainer.json").write_text(json.dumps(trainer_state, indent=2) + "\n")
        (tmp / "config.yaml").write_text(yaml.safe_dump(to_dict(config), sort_keys=False))
        if final.exists():
            shutil.rmtree(final)
        tmp.rename(final)
    _barrier()
    return final


def load_checkpoint(
    path: str | Path,
    model: torch.nn.Module,
    optimizer: torch.optim.Optimizer | None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Load model (and optimizer, unless None) from `path` at any world size; returns trainer state."""
    path = Path(path)
    if not (path / "trainer.json").is_file():
        raise FileNotFoundError(f"{path}: not a checkpoint (no trainer.json)")
    if optimizer is None:
        model_sd = get_model_state_dict(model)
        with _single_process_ok():
            dcp.load({"model": model_sd}, checkpoint_id=path)
        set_model_state_dict(model, model_sd)
    else:
        model_sd, optim_sd = get_state_dict(model, optimizer)
        with _single_process_ok():
            dcp.load({"model": model_sd, "optim": optim_sd}, checkpoint_id=path)
        set_state_dict(model, optimizer, model_state_dict=model_sd, optim_state_dict=optim_sd)
    rng_file = path / "rng" / f"rank{_rank()}.pt"
    if restore_rng and rng_file.is_file():
        set_rng_state(torch.load(rng_file, weights_only=False))
    return json.loads((path / "trainer.json").read_text())


def checkpoint_config(path: str | Path) -> TrainConfig:
    """The training config stored with a checkpoint."""
    config_file = Path(path) / "config.yaml"
    return from_dict(TrainConfig, yaml.safe_load(config_file.read_text()), source=str(config_file))


def load_model(path: str | Path, device: str | torch.device = "cpu") -> OLMo:
    """The model of a checkpoint, unsharded on one device, in float32 (no process group needed)."""
    config = checkpoint_config(path)
    with torch.device("meta"):
        model = OLMo(config.model)
    model.to_empty(device=device)
    model_sd = model.state_dict()
    with _single_process_ok():
        dcp.load({"model": model_sd}, checkpoint_id=Path(path))
    model.load_state_dict(model_sd)
    return model.eval()
