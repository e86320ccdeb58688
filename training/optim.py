"""AdamW with OLMo's parameter groups, its LR schedules in token units, and gradient clipping.

The schedules are pure functions of the training position (tokens or steps seen, counting the
batch being trained, as OLMo does), so the scheduler has no state of its own to checkpoint: the
trainer's token count is its state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn
from torch.distributed.tensor import DTensor

from .config import OptimizerConfig, SchedulerConfig
from .model import LayerNorm


@dataclass
class Scheduler:
    """LR and max grad norm at a position `t` (in `config.units`)."""

    config: SchedulerConfig
    learning_rate: float
    t_max_default: int | None = None  # the run's length, used when config.t_max is unset

    @property
    def t_max(self) -> int:
        t_max = self.config.t_max if self.config.t_max is not None else self.t_max_default
        if t_max is None:
            raise ValueError("scheduler: t_max is unset and the run has no max_tokens to default to")
        return t_max

    def lr(self, t: int) -> float:
        c, lr = self.config, self.learning_rate
        if c.name == "constant":
            return lr
        if c.name not in ("cosine_with_warmup", "linear_with_warmup"):
            raise ValueError(f"scheduler.name: unknown schedule {c.name!r}")
        eta_min = lr * c.alpha_f
        if t < c.t_warmup:
            warmup_min = c.warmup_min_lr if c.warmup_min_lr is not None else 0.1 * lr
            return warmup_min + (lr - warmup_min) * t / c.t_warmup
        if t >= self.t_max:
            return eta_min
        progress = (t - c.t_warmup) / (self.t_max - c.t_warmup)
        if c.name == "cosine_with_warmup":
            return eta_min + (lr - eta_min) * (1 + math.cos(math.pi * progress)) / 2
        return lr - (lr - eta_min) * progress

    def max_grad_norm(self, max_grad_norm: float | None, t: int) -> float | None:
        """`grad_clip_warmup_factor` x the norm up to `grad_clip_warmup_steps`, then the norm."""
        c = self.config
        if max_grad_norm is None or c.grad_clip_warmup_steps is None or c.grad_clip_warmup_factor is None:
            return max_grad_norm
        return max_grad_norm * c.grad_clip_warmup_factor if t <= c.grad_clip_warmup_steps else max_grad_norm


def param_groups(model: nn.Module, config: OptimizerConfig) -> list[dict]:
    """Decay and no-decay groups, decided as OLMo's `get_param_groups`."""
    decay, no_decay = {}, {}
    for module_name, module in model.named_modules():
        for name, param in module.named_parameters(recurse=False):
            full = f"{module_name}.{name}" if module_name else name
            if name.endswith("bias") or isinstance(module, (LayerNorm, nn.LayerNorm)):
                target = decay if config.decay_norm_and_bias else no_decay
            elif isinstance(module, nn.Embedding):
                target = decay if config.decay_embeddings else no_decay
            else:
                target = decay
            target[full] = param
    groups = []
    if decay:
        groups.append({"params": [decay[k] for k in sorted(decay)], "param_names": sorted(decay)})
    if no_decay:
        names = sorted(no_decay)
        groups.append({"params": [no_decay[k] for k in names], "param_names": names, "weight_decay": 0.0})
    return groups


def build_optimizer(model: nn.Module, config: OptimizerConfig) -> torch.optim.AdamW:
    """AdamW over OLMo's groups; `config.fused` picks torch's fused kernel (one launch for all
    parameters' updates) instead of the default multi-tensor (foreach) implementation."""
    kwargs = {} if config.fused is None else {"fused": config.fused}
    return torch.optim.AdamW(
        param_groups(model, config),
        lr=config.learning_rate,
        betas=config.betas,
        eps=config.eps,
        weight_decay=config.weight_decay,
        **kwargs,
    )


def apply_hyperparameters(optimizer: torch.optim.Optimizer, config: OptimizerConfig) -> None:
    """Re-apply the config's betas, eps and weight decay (a loaded optimizer state carries its own)."""
    for group in optimizer.param_groups:
        group["betas"], group["eps"] = config.betas, config.eps
        group["weight_decay"] = 0.0 if group.get("weight_decay", 0.0) == 0.0 else config.weight_decay


@torch.no_grad()
def clip_grad_norm(parameters: list[nn.Parameter], max_norm: float | None) -> torch.Tensor:
    """Global L2 norm of all gradients (over every shard of every rank), then scale by
    min(1, max_norm / (norm + 1e-6)) as OLMo does. Returns the norm before clipping."""
    grads = [p.grad for p in parameters if p.grad is not None]
    local = [g.to_local() if isinstance(g, DTensor) else g for g in grads]
    if local:
        norm_sq = torch.stack([g.float().pow(2).sum() for g in local]).sum()
    else:
        norm_sq = torch.zeros((), device=parameters[0].device)
    if any(isinstance(g, DTensor) for g in grads) and dist.is_initialized():
        dist.all_reduce(norm_sq)
    norm = norm_sq.sqrt()
    if max_norm is not None and local:
        coef = torch.clamp(max_norm / (norm + 1e-6), max=1.0)
        torch._foreach_mul_(local, coef.to(local[0].dtype))
    return norm
