"""The training loop: one process, or one process per device under torchrun.

    python -m dolma_prep.training.train CONFIG [--data RUN_OUTPUT] [--max-steps N]
        [--save-folder DIR] [--set key=value ...]
    torchrun --nproc_per_node=8 -m dolma_prep.training.train olmo-1.7-7b --data out/general

Without torchrun's environment the model trains in one process with no process group. Under
torchrun the process group is NCCL on GPUs and gloo on CPUs, and the model is sharded with FSDP2
(`fully_shard` on every block, then on the root). On GPU the default precision is bf16 compute
with fp32 gradient reduction and fp32 master weights and AdamW state (FSDP2's
MixedPrecisionPolicy; autocast when there is no process group); on CPU it is plain fp32.

One step (OLMo's train_step): the device batch is split into micro-batches; each one's mean
cross-entropy, divided by the number of micro-batches, is backpropagated (gradients are
reduce-scattered in fp32 after every micro-batch, so accumulation happens in fp32 shards); the
global gradient norm is clipped; LR and max grad norm come from the schedule at the tokens seen
including this batch; AdamW steps. Metrics go to the console and `<save_folder>/metrics.jsonl`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist
import torch.nn.functional as F
from torch.distributed.device_mesh import DeviceMesh, init_device_mesh
from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard
from torch.nn.attention import SDPBackend, sdpa_kernel

from .checkpoint import latest_checkpoint, load_checkpoint, save_checkpoint
from .config import TrainConfig, load_config
from .data import DataOrder
from .dataset import build_dataset
from .float8 import convert_to_float8, float8_supported
from .model import OLMo
from .optim import Scheduler, apply_hyperparameters, build_optimizer, clip_grad_norm

log = logging.getLogger("dolma_prep.training")

# Dense bf16 peak FLOP/s per device, for MFU (SXM parts).
PEAK_FLOPS = {"H200": 989.5e12, "H100": 989.5e12, "A100": 312e12}

# `sdpa_backend` names -> the kernels torch.nn.attention.sdpa_kernel may choose from.
SDPA_BACKENDS = {
    "flash": SDPBackend.FLASH_ATTENTION,
    "efficient": SDPBackend.EFFICIENT_ATTENTION,
    "cudnn": SDPBackend.CUDNN_ATTENTION,
    "math": SDPBackend.MATH,
}


@dataclass
class Runtime:
    """Where this process trains: its rank, the world, its device, the FSDP mesh (if any)."""

    rank: int
    world_size: int
    device: torch.device
    mesh: DeviceMesh | None
    owns_process_group: bool

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_runtime(device: str = "auto") -> Runtime:
    """Join torchrun's process group if launched by torchrun; otherwise a single process."""
    if device not in ("auto", "cpu", "cuda"):
        raise ValueError(f"device: expected auto, cpu or cuda, found {device!r}")
    if device == "cuda" and not torch.cuda.is_available():  # never fall back to the CPU silently
        raise RuntimeError(
            f"device=cuda was asked for, but torch {torch.__version__} sees no CUDA device "
            f"(built with CUDA {torch.version.cuda}, {torch.cuda.device_count()} devices visible)"
        )
    use_cuda = torch.cuda.is_available() if device == "auto" else device == "cuda"
    launched = "RANK" in os.environ and "WORLD_SIZE" in os.environ
    owns = False
    if launched and not dist.is_initialized():
        if use_cuda:
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    if use_cuda:
        dev = torch.device("cuda", torch.cuda.current_device())
    else:
        dev = torch.device("cpu")
    if dist.is_initialized():
        mesh = init_device_mesh(dev.type, (dist.get_world_size(),))
        return Runtime(dist.get_rank(), dist.get_world_size(), dev, mesh, owns)
    return Runtime(0, 1, dev, None, owns)


def sdpa_context(backend: str | None) -> contextlib.AbstractContextManager:
    """Restrict scaled_dot_product_attention to one kernel (`SDPA_BACKENDS`); when that kernel
    cannot run the inputs, SDPA raises instead of falling back to another. None: torch picks."""
    if backend is None:
        return contextlib.nullcontext()
    return sdpa_kernel([SDPA_BACKENDS[backend]])


def compute_dtype(config: TrainConfig, device: torch.device) -> torch.dtype:
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision not in ("bf16", "fp32"):
        raise ValueError(f"precision: expected auto, bf16 or fp32, found {config.precision!r}")
    return torch.bfloat16 if precision == "bf16" else torch.float32


def build_model(config: TrainConfig, rt: Runtime, dtype: torch.dtype) -> OLMo:
    """Build on the meta device, compile blocks if asked, shard with FSDP2 when there is a process
    group, and materialise + initialise the weights: before sharding (every rank computes the
    same full init), or after it with `init_device: meta` on GPUs, for models too big for one
    device. DTensor's random ops are sharding-aware only on GPUs (on a CPU mesh every shard would
    draw the same numbers), so on CPU the full model is always initialised first."""
    with torch.device("meta"):
        model = OLMo(config.model)
    model.set_activation_checkpointing(config.activation_checkpointing)
    model.set_attention(config.attention)
    if config.float8:
        ok, why = float8_supported(rt.device)
        if not ok:
            raise RuntimeError(f"float8: not supported here: {why}")
        convert_to_float8(model)
    init_sharded = config.init_device == "meta" and rt.mesh is not None and rt.device.type != "cpu"

    def materialise() -> None:
        model.to_empty(device=rt.device)
        torch.manual_seed(config.seed)
        model.init_weights()

    if not init_sharded:
        materialise()
    for block in model.transformer.blocks:
        if config.compile:  # compile the forward only: parameter names and FSDP hooks stay as they are
            block.forward = torch.compile(block.forward)
    if rt.mesh is not None:
        mp = MixedPrecisionPolicy(param_dtype=dtype, reduce_dtype=torch.float32)
        reshard = config.reshard_after_forward  # False keeps gathered weights from forward to backward
        for block in model.transformer.blocks:
            fully_shard(block, mesh=rt.mesh, mp_policy=mp, reshard_after_forward=reshard)
        fully_shard(model, mesh=rt.mesh, mp_policy=mp, reshard_after_forward=reshard)
    if init_sharded:
        materialise()
    return model


def peak_flops(config: TrainConfig, device: torch.device) -> float | None:
    if config.peak_flops is not None:
        return config.peak_flops
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
        return next((v for k, v in PEAK_FLOPS.items() if k in name), None)
    return None


class Trainer:
    """Owns the model, optimizer, data order and position of one run; `fit()` trains it."""

    def __init__(self, config: TrainConfig):
        self.config = c = config
        self.rt = init_runtime(c.device)
        self.dtype = compute_dtype(c, self.rt.device)
        if c.sdpa_backend is not None and (c.sdpa_backend not in SDPA_BACKENDS or c.attention != "sdpa"):
            raise ValueError(
                f"sdpa_backend: expected null or one of {', '.join(SDPA_BACKENDS)} with attention=sdpa, "
                f"found {c.sdpa_backend!r} with attention={c.attention!r}"
            )
        self.save_folder = Path(c.save_folder)
        self.dataset = build_dataset(c)
        self.order = DataOrder(
            self.dataset, c.global_batch_size, seed=c.seed, rank=self.rt.rank, world_size=self.rt.world_size,
            shuffle=c.data.shuffle, drop_last=c.data.drop_last,
        )
        device_batch = c.global_batch_size // self.rt.world_size
        if device_batch % c.micro_batch_size:
            raise ValueError(f"device batch {device_batch} is not divisible by micro_batch_size {c.micro_batch_size}")
        self.model = build_model(c, self.rt, self.dtype)
        self.optimizer = build_optimizer(self.model, c.optimizer)
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.state = {"step": 0, "tokens": 0, "epoch": 0, "examples_seen_this_epoch": 0}
        self.total_steps = self._total_steps()
        if c.scheduler.units not in ("tokens", "steps"):
            raise ValueError(f"scheduler.units: expected tokens or steps, found {c.scheduler.units!r}")
        run_length = c.max_tokens  # the schedule's default t_max, in its units (never from max_steps)
        if c.max_tokens is not None and c.scheduler.units == "steps":
            run_length = math.ceil(c.max_tokens / c.tokens_per_step)
        self.scheduler = Scheduler(c.scheduler, c.optimizer.learning_rate, run_length)
        self.peak_flops = peak_flops(c, self.rt.device)
        self.restore()

    def _total_steps(self) -> int:
        c = self.config
        limits = [c.max_steps] if c.max_steps is not None else []
        if c.max_tokens is not None:
            limits.append(math.ceil(c.max_tokens / c.tokens_per_step))
        if not limits:
            raise ValueError("set max_tokens (the run's length) or max_steps")
        return min(limits)

    def restore(self) -> None:
        """Resume from the newest checkpoint in save_folder; else start from load_path if set."""
        c = self.config
        latest = latest_checkpoint(self.save_folder)
        if latest is not None:
            self.state.update(load_checkpoint(latest, self.model, self.optimizer))
            self.log_main(f"resumed from {latest} at step {self.state['step']}")
        elif c.load_path:
            optimizer = None if c.reset_optimizer_state else self.optimizer
            loaded = load_checkpoint(c.load_path, self.model, optimizer, restore_rng=not c.reset_trainer_state)
            if not c.reset_trainer_state:
                self.state.update(loaded)
            self.log_main(
                f"loaded {c.load_path} (optimizer {'reset' if optimizer is None else 'kept'}, "
                f"trainer state {'reset' if c.reset_trainer_state else 'kept'})"
            )
        apply_hyperparameters(self.optimizer, c.optimizer)
        self.state["world_size"] = self.rt.world_size

    def log_main(self, message: str) -> None:
        if self.rt.is_main:
            log.info(message)

    def next_batch(self) -> dict[str, torch.Tensor]:
        s = self.state
        step_in_epoch = s["examples_seen_this_epoch"] // self.config.global_batch_size
        if step_in_epoch >= self.order.batches_per_epoch:
            s["epoch"], s["examples_seen_this_epoch"], step_in_epoch = s["epoch"] + 1, 0, 0
            self.log_main(f"starting epoch {s['epoch']}")
        return self.order.batch(s["epoch"], step_in_epoch)

    def autocast(self) -> contextlib.AbstractContextManager:
        """bf16 autocast for unsharded GPU training; FSDP2's policy does it when sharded."""
        if self.dtype == torch.float32 or self.rt.mesh is not None:
            return contextlib.nullcontext()
        return torch.autocast(self.rt.device.type, dtype=self.dtype)

    def attention_kernels(self) -> contextlib.AbstractContextManager:
        return sdpa_context(self.config.sdpa_backend)

    def train_step(self, batch: dict[str, torch.Tensor], tokens_after: int) -> dict[str, float]:
        c = self.config
        self.optimizer.zero_grad(set_to_none=True)
        input_ids = batch["input_ids"].to(self.rt.device, non_blocking=True)
        labels = input_ids.clone()
        if "label_mask" in batch:
            labels.masked_fill_(~batch["label_mask"].to(self.rt.device), -100)
        labels = labels[:, 1:]
        n_micro = input_ids.shape[0] // c.micro_batch_size
        total_loss = torch.zeros((), device=self.rt.device)
        for ids, lab in zip(input_ids.split(c.micro_batch_size), labels.split(c.micro_batch_size)):
            with self.autocast(), self.attention_kernels():
                logits = self.model(ids)
            loss = F.cross_entropy(logits[:, :-1].flatten(0, 1).float(), lab.flatten(), ignore_index=-100)
            loss = loss / n_micro
            loss.backward()
            total_loss += loss.detach()
        max_norm = self.scheduler.max_grad_norm(c.max_grad_norm, self._position(tokens_after))
        grad_norm = clip_grad_norm(self.params, max_norm)
        lr = self.scheduler.lr(self._position(tokens_after))
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        self.optimizer.step()
        if dist.is_initialized():
            dist.all_reduce(total_loss)
            total_loss /= self.rt.world_size
        loss_value = total_loss.item()
        if not math.isfinite(loss_value):
            raise FloatingPointError(f"loss is {loss_value} at step {self.state['step'] + 1}")
        return {"loss": loss_value, "lr": lr, "grad_norm": grad_norm.item(), "max_grad_norm": max_norm}

    def _position(self, tokens: int) -> int:
        """Scheduler position after this step, in the scheduler's units."""
        if self.config.scheduler.units == "steps":
            return self.state["step"] + 1
        return tokens

    def fit(self) -> list[dict[str, Any]]:
        c, s = self.config, self.state
        if self.rt.is_main:
            self.save_folder.mkdir(parents=True, exist_ok=True)
        self.log_main(
            f"{self.model.num_params() / 1e6:.1f}M parameters, world size {self.rt.world_size}, "
            f"{self.dtype}, {len(self.dataset):,} instances of {c.model.max_sequence_length} tokens "
            f"from {len(self.dataset.files)} files, {self.order.batches_per_epoch} steps per epoch, "
            f"training steps {s['step'] + 1}..{self.total_steps}"
        )
        flops_per_token = c.model.flops_per_token(c.model.max_sequence_length)
        history = []
        self.model.train()
        while s["step"] < self.total_steps:
            start = time.perf_counter()
            batch = self.next_batch()
            tokens_after = s["tokens"] + c.tokens_per_step
            metrics = self.train_step(batch, tokens_after)
            elapsed = time.perf_counter() - start
            s["step"] += 1
            s["tokens"] = tokens_after
            s["examples_seen_this_epoch"] += c.global_batch_size
            per_device = c.tokens_per_step / self.rt.world_size / elapsed
            metrics = {
                "step": s["step"], "tokens": s["tokens"], "epoch": s["epoch"], **metrics,
                "step_time_s": elapsed, "tokens_per_s": c.tokens_per_step / elapsed,
                "tokens_per_s_per_device": per_device,
                "mfu": per_device * flops_per_token / self.peak_flops if self.peak_flops else None,
            }
            if self.rt.device.type == "cuda":
                metrics["max_memory_gb"] = torch.cuda.max_memory_allocated(self.rt.device) / 2**30
            history.append(metrics)
            if c.log_data_indices:
                self.write_indices(batch["index"])
            if s["step"] % c.log_interval == 0 or s["step"] == self.total_steps:
                self.log_metrics(metrics)
            if (c.save_interval and s["step"] % c.save_interval == 0) or (
                c.save_final and s["step"] == self.total_steps
            ):
                path = save_checkpoint(self.save_folder, self.model, self.optimizer, dict(s), c)
                self.log_main(f"saved {path}")
        self.close()
        return history

    def log_metrics(self, m: dict[str, Any]) -> None:
        if not self.rt.is_main:
            return
        mfu = f" | mfu {100 * m['mfu']:.1f}%" if m["mfu"] is not None else ""
        log.info(
            f"step {m['step']}/{self.total_steps} | loss {m['loss']:.4f} | lr {m['lr']:.3e} | "
            f"grad_norm {m['grad_norm']:.3f} | tokens {m['tokens'] / 1e9:.3f}B | "
            f"tok/s {m['tokens_per_s']:,.0f}{mfu}"
        )
        with open(self.save_folder / "metrics.jsonl", "a") as f:
            f.write(json.dumps(m) + "\n")

    def write_indices(self, indices: torch.Tensor) -> None:
        folder = self.save_folder / "data_indices"
        folder.mkdir(parents=True, exist_ok=True)
        record = {"step": self.state["step"], "epoch": self.state["epoch"], "indices": indices.tolist()}
        with open(folder / f"rank{self.rt.rank}.jsonl", "a") as f:
            f.write(json.dumps(record) + "\n")

    def close(self) -> None:
        if self.rt.owns_process_group and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()


def add_train_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("config", help="YAML file, or a bundled config: tiny, 1b, olmo-1.7-7b, olmo-1.7-7b-anneal")
    parser.add_argument("--data", metavar="RUN_OUTPUT", help="dolma-prep run output folder (replaces data.*)")
    parser.add_argument("--max-steps", type=int, help="stop after this many steps (the schedule is unchanged)")
    parser.add_argument("--save-folder", help="checkpoints and metrics.jsonl go here (default runs/<run_name>)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config field")


def config_from_args(args: argparse.Namespace) -> TrainConfig:
    config = load_config(args.config, args.set)
    if args.data:
        config.data.run_output, config.data.paths, config.data.label_mask_paths = args.data, [], None
    if args.max_steps is not None:
        config.max_steps = args.max_steps
    if args.save_folder:
        config.save_folder = args.save_folder
    return config


def setup_logging() -> None:
    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")


def train(config: TrainConfig) -> list[dict[str, Any]]:
    """Train one run (or resume it); returns this process's metrics, one dict per step."""
    return Trainer(config).fit()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dolma_prep.training.train", description=__doc__.split("\n")[0])
    add_train_arguments(parser)
    args = parser.parse_args(argv)
    setup_logging()
    train(config_from_args(args))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
