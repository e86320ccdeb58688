"""The OLMo 1.7 transformer, readable top to bottom.

One file, nanoGPT style: a config dataclass, a non-parametric LayerNorm, rotary embeddings, one
transformer block, the model. The architecture is OLMo 1.7-7B's (docs/REFERENCE.md section 3):

- token embedding (vocab 50280 padded to 50304 rows), no positional embedding;
- n_layers sequential blocks:  x = x + attn(ln(x));  x = x + mlp(ln(x));
- attention: one fused projection to q, k, v; each element clamped to [-clip_qkv, clip_qkv];
  RoPE (theta 10,000) on q and k; causal scaled_dot_product_attention; output projection;
- MLP: SwiGLU, projected up to `mlp_hidden_size` and split in halves (OLMo's convention:
  `x, gate = ff_proj(x).chunk(2, -1); ff_out(silu(gate) * x)`);
- LayerNorm without scale or bias (eps 1e-5) before attention, MLP and the output head;
- untied output head; no biases anywhere.

Speed levers (none changes the maths; each is tested on CPU in tests/test_training_levers.py):
`Block.attention_impl` ("sdpa", or "manual" for the explicit softmax reference), activation
checkpointing policies (`set_activation_checkpointing`: none, full, one_in_two, selected_ops),
and float8 matmuls in the blocks (`float8.py`, `convert_to_float8`).

Parameter names follow OLMo's checkpoints (`transformer.wte`, `transformer.blocks.{i}.att_proj`,
`attn_out`, `ff_proj`, `ff_out`, `transformer.ff_out`), so conversion to Hugging Face's
`OlmoForCausalLM` is a renaming plus two splits (see `export_hf.py`).
"""

from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from torch.utils.checkpoint import CheckpointPolicy, checkpoint, create_selective_checkpoint_contexts

# Activation checkpointing policies (names as OLMo-core's ActivationCheckpointingMode where they match):
#   none          keep every activation;
#   full          recompute every block in backward (keep only each block's input);
#   one_in_two    recompute blocks 0, 2, 4, ... (half the saving, half the extra forward);
#   selected_ops  per block, keep the outputs of matmuls and attention, recompute the cheap
#                 element-wise ops (norms, RoPE, SiLU, clamps) in backward.
AC_POLICIES = ("none", "full", "one_in_two", "selected_ops")


def _saved_ops() -> set:
    """The ops whose outputs `selected_ops` keeps: matmuls and every SDPA kernel this torch has."""
    names = [
        "mm", "addmm", "bmm",
        "_scaled_dot_product_flash_attention", "_scaled_dot_product_efficient_attention",
        "_scaled_dot_product_cudnn_attention", "_scaled_dot_product_flash_attention_for_cpu",
        "_scaled_mm",
    ]
    return {getattr(torch.ops.aten, n).default for n in names if hasattr(torch.ops.aten, n)}


SAVED_OPS = _saved_ops()


def _selected_ops_policy(ctx, op, *args, **kwargs) -> CheckpointPolicy:
    return CheckpointPolicy.MUST_SAVE if op in SAVED_OPS else CheckpointPolicy.PREFER_RECOMPUTE


def _selected_ops_context():
    return create_selective_checkpoint_contexts(_selected_ops_policy)


def normalize_ac_policy(value: bool | str | None) -> str:
    """`true` means full, `false`/null none (the config's old boolean form)."""
    if value is True:
        return "full"
    if value is False or value is None:
        return "none"
    if value not in AC_POLICIES:
        raise ValueError(f"activation_checkpointing: expected one of {', '.join(AC_POLICIES)} (or true/false), found {value!r}")
    return value


@dataclass
class ModelConfig:
    """Model shape. The defaults are OLMo 1.7-7B."""

    d_model: int = 4096
    n_heads: int = 32
    n_layers: int = 32
    mlp_hidden_size: int = 22016  # width of the up-projection; SwiGLU halves it (11008)
    vocab_size: int = 50280  # ids the tokenizer can produce
    embedding_size: int = 50304  # rows of the embedding / output head (vocab padded to 128)
    max_sequence_length: int = 4096
    rope_theta: float = 10_000.0
    clip_qkv: float | None = 8.0
    layer_norm_eps: float = 1e-5
    eos_token_id: int = 50279
    pad_token_id: int = 1

    def __post_init__(self) -> None:
        if self.d_model % self.n_heads:
            raise ValueError(f"model: d_model {self.d_model} is not divisible by n_heads {self.n_heads}")
        if self.head_dim % 2:
            raise ValueError(f"model: head size {self.head_dim} must be even for RoPE")
        if self.mlp_hidden_size % 2:
            raise ValueError(f"model: mlp_hidden_size {self.mlp_hidden_size} must be even (SwiGLU halves it)")
        if self.embedding_size < self.vocab_size:
            raise ValueError(
                f"model: embedding_size {self.embedding_size} is smaller than vocab_size {self.vocab_size}"
            )
        if self.clip_qkv is not None and self.clip_qkv <= 0:
            raise ValueError(f"model: clip_qkv must be positive or null, found {self.clip_qkv}")

    @property
    def head_dim(self) -> int:
        return self.d_model // self.n_heads

    def num_params(self, include_embedding: bool = True) -> int:
        """Parameter count from the shape alone (works without building the model)."""
        d, h = self.d_model, self.mlp_hidden_size
        per_block = d * 3 * d + d * d + d * h + (h // 2) * d  # att_proj, attn_out, ff_proj, ff_out
        head = self.embedding_size * d  # untied output projection
        embedding = self.embedding_size * d if include_embedding else 0
        return embedding + self.n_layers * per_block + head

    def flops_per_token(self, seq_len: int | None = None) -> float:
        """Training FLOPs per token (forward + backward), the way OLMo counts them for MFU.

        6 x (parameters that do matmuls: everything but the embedding lookup), plus attention
        scores and values: 2 matmuls x 2 flops x d_model x seq_len per layer forward, times 3 for
        forward + backward (the causal mask is not discounted, as in OLMo and PaLM).
        """
        seq_len = seq_len or self.max_sequence_length
        dense = 6 * self.num_params(include_embedding=False)
        attention = 3 * self.n_layers * 2 * 2 * self.d_model * seq_len
        return float(dense + attention)


class LayerNorm(nn.Module):
    """LayerNorm with no learnable scale or bias (OLMo's `layer_norm_with_affine: false`)."""

    def __init__(self, eps: float):
        super().__init__()
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.layer_norm(x, (x.shape[-1],), weight=None, bias=None, eps=self.eps)


def rope_tables(seq_len: int, head_dim: int, theta: float, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos and sin tables of shape (seq_len, head_dim), float32, in the "rotate half" layout."""
    inv_freq = 1.0 / (theta ** (torch.arange(0, head_dim, 2, device=device, dtype=torch.float32) / head_dim))
    positions = torch.arange(seq_len, device=device, dtype=torch.float32)
    freqs = torch.outer(positions, inv_freq)
    angles = torch.cat((freqs, freqs), dim=-1)
    return angles.cos(), angles.sin()


def apply_rope(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate (batch, heads, seq, head_dim) by position, in float32 like OLMo's `rope_full_precision`."""
    x32 = x.float()
    x1, x2 = x32.chunk(2, dim=-1)
    rotated = torch.cat((-x2, x1), dim=-1)
    return (x32 * cos + rotated * sin).type_as(x)


def manual_causal_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """softmax(q k^T / sqrt(d) + causal mask) v, the softmax in float32 (as transformers' eager
    attention). Materialises the (T, T) scores: a reference for the SDPA kernels, not for speed."""
    T = q.shape[-2]
    scores = (q @ k.transpose(-2, -1)).float() / math.sqrt(q.shape[-1])
    mask = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    probs = scores.masked_fill(~mask, float("-inf")).softmax(dim=-1).to(v.dtype)
    return probs @ v


def _no_context():
    return contextlib.nullcontext(), contextlib.nullcontext()


class Block(nn.Module):
    """One sequential transformer block: x + attn(ln(x)), then + mlp(ln(.))."""

    def __init__(self, config: ModelConfig, layer_id: int):
        super().__init__()
        self.config = config
        self.layer_id = layer_id
        d = config.d_model
        self.attn_norm = LayerNorm(config.layer_norm_eps)
        self.att_proj = nn.Linear(d, 3 * d, bias=False)  # fused q, k, v
        self.attn_out = nn.Linear(d, d, bias=False)
        self.ff_norm = LayerNorm(config.layer_norm_eps)
        self.ff_proj = nn.Linear(d, config.mlp_hidden_size, bias=False)  # value and gate halves
        self.ff_out = nn.Linear(config.mlp_hidden_size // 2, d, bias=False)
        self.attention_impl = "sdpa"  # or "manual": explicit masked softmax (reference, slow)
        self.checkpoint_mode = "none"  # none | full | selected_ops (set by OLMo.set_activation_checkpointing)

    def forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        # Checkpointing happens inside forward, so that a compiled forward traces it and FSDP2's
        # hooks (on the module) stay outside it, as torchtitan's per-block wrapping does.
        if self.checkpoint_mode == "none" or not (self.training and torch.is_grad_enabled()):
            return self._forward(x, cos, sin)
        context_fn = _selected_ops_context if self.checkpoint_mode == "selected_ops" else _no_context
        return checkpoint(self._forward, x, cos, sin, use_reentrant=False, context_fn=context_fn)

    def _forward(self, x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        x = x + self.attention(self.attn_norm(x), cos, sin)
        x = x + self.mlp(self.ff_norm(x))
        return x

    def attention(self, h: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
        B, T, C = h.shape
        qkv = self.att_proj(h)
        if self.config.clip_qkv is not None:
            qkv = qkv.clamp(min=-self.config.clip_qkv, max=self.config.clip_qkv)
        # (B, T, C) each -> (B, n_heads, T, head_dim)
        q, k, v = (t.view(B, T, self.config.n_heads, self.config.head_dim).transpose(1, 2) for t in qkv.split(C, -1))
        q, k = apply_rope(q, cos, sin), apply_rope(k, cos, sin)
        if self.attention_impl == "manual":
            y = manual_causal_attention(q, k, v)
        else:
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        return self.attn_out(y.transpose(1, 2).reshape(B, T, C))

    def mlp(self, h: torch.Tensor) -> torch.Tensor:
        x, gate = self.ff_proj(h).chunk(2, dim=-1)
        return self.ff_out(F.silu(gate) * x)


class OLMo(nn.Module):
    """Decoder-only language model. `forward(input_ids)` returns logits over `embedding_size`."""

    def __init__(self, config: ModelConfig):
        super().__init__()
        self.config = config
        self.activation_checkpointing = "none"  # see AC_POLICIES; set through set_activation_checkpointing
        self.transformer = nn.ModuleDict(
            dict(
                wte=nn.Embedding(config.embedding_size, config.d_model),
                blocks=nn.ModuleList(Block(config, i) for i in range(config.n_layers)),
                ln_f=LayerNorm(config.layer_norm_eps),
                ff_out=nn.Linear(config.d_model, config.embedding_size, bias=False),  # untied head
            )
        )

    @torch.no_grad()
    def init_weights(self) -> None:
        """OLMo's "mitchell" init: truncated normal (cut at 3 std) with std 1/sqrt(fan_in);
        the two residual output projections of block i are further divided by sqrt(2 (i + 1))."""

        def trunc_normal(weight: torch.Tensor, std: float) -> None:
            nn.init.trunc_normal_(weight, mean=0.0, std=std, a=-3 * std, b=3 * std)

        d = self.config.d_model
        trunc_normal(self.transformer.wte.weight, 1 / math.sqrt(d))
        trunc_normal(self.transformer.ff_out.weight, 1 / math.sqrt(d))
        for block in self.transformer.blocks:
            depth = math.sqrt(2 * (block.layer_id + 1))
            trunc_normal(block.att_proj.weight, 1 / math.sqrt(d))
            trunc_normal(block.ff_proj.weight, 1 / math.sqrt(d))
            trunc_normal(block.attn_out.weight, 1 / math.sqrt(d) / depth)
            trunc_normal(block.ff_out.weight, 1 / math.sqrt(block.ff_out.in_features) / depth)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        T = input_ids.shape[-1]
        x = self.transformer.wte(input_ids)
        cos, sin = rope_tables(T, self.config.head_dim, self.config.rope_theta, x.device)
        for block in self.transformer.blocks:
            x = block(x, cos, sin)
        return self.transformer.ff_out(self.transformer.ln_f(x))

    def set_activation_checkpointing(self, policy: bool | str | None) -> None:
        """Choose which blocks recompute what in backward (AC_POLICIES); applies in training mode."""
        policy = normalize_ac_policy(policy)
        self.activation_checkpointing = policy
        for block in self.transformer.blocks:
            if policy == "one_in_two":
                block.checkpoint_mode = "full" if block.layer_id % 2 == 0 else "none"
            else:
                block.checkpoint_mode = policy

    def set_attention(self, impl: str) -> None:
        if impl not in ("sdpa", "manual"):
            raise ValueError(f"attention: expected sdpa or manual, found {impl!r}")
        for block in self.transformer.blocks:
            block.attention_impl = impl

    def num_params(self, include_embedding: bool = True) -> int:
        skip = {id(self.transformer.wte.weight)} if not include_embedding else set()
        return sum(p.numel() for p in self.parameters() if id(p) not in skip)

    @torch.no_grad()
    def generate_greedy(self, input_ids: torch.Tensor, max_new_tokens: int) -> torch.Tensor:
        """Greedy decoding without a KV cache (recomputes the prefix; meant for checks, not serving).
        Argmax runs over all `embedding_size` logits, as Hugging Face's generate() does."""
        for _ in range(max_new_tokens):
            logits = self(input_ids[:, -self.config.max_sequence_length :])
            next_id = logits[:, -1, :].argmax(dim=-1, keepdim=True)
            input_ids = torch.cat((input_ids, next_id), dim=1)
        return input_ids
