"""Export to Hugging Face format: `config.json` + safetensors for `OlmoForCausalLM`.

The mapping (the same as transformers' convert_olmo_weights_to_hf.py):

    transformer.wte.weight              -> model.embed_tokens.weight
    transformer.blocks.{i}.att_proj     -> model.layers.{i}.self_attn.{q,k,v}_proj (split in thirds)
    transformer.blocks.{i}.attn_out     -> model.layers.{i}.self_attn.o_proj
    transformer.blocks.{i}.ff_proj      -> model.layers.{i}.mlp.{up,gate}_proj (first half is up:
                                           OLMo computes `x, gate = ff_proj(x).chunk(2)`)
    transformer.blocks.{i}.ff_out       -> model.layers.{i}.mlp.down_proj
    transformer.ff_out.weight           -> lm_head.weight

The HF vocab_size is the padded embedding size (50304), as in allenai/OLMo-7B-hf. Writing needs
only safetensors; loading the result needs transformers.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch

from .model import ModelConfig

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def hf_config(config: ModelConfig, dtype: str = "float32") -> dict:
    """`config.json` for transformers' OlmoConfig (keys for both transformers 4.x and 5.x)."""
    return {
        "architectures": ["OlmoForCausalLM"],
        "model_type": "olmo",
        "hidden_size": config.d_model,
        "intermediate_size": config.mlp_hidden_size // 2,
        "num_hidden_layers": config.n_layers,
        "num_attention_heads": config.n_heads,
        "num_key_value_heads": config.n_heads,
        "hidden_act": "silu",
        "max_position_embeddings": config.max_sequence_length,
        "vocab_size": config.embedding_size,
        "rope_theta": config.rope_theta,
        "rope_parameters": {"rope_type": "default", "rope_theta": config.rope_theta},
        "clip_qkv": config.clip_qkv,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "pad_token_id": config.pad_token_id,
        "eos_token_id": config.eos_token_id,
        "bos_token_id": None,
        "initializer_range": 0.02,
        "use_cache": True,
        "torch_dtype": dtype,
        "dtype": dtype,
    }


def hf_state_dict(state_dict: dict[str, torch.Tensor], config: ModelConfig) -> dict[str, torch.Tensor]:
    """Rename and split our (OLMo) weights into OlmoForCausalLM's."""
    out = {
        "model.embed_tokens.weight": state_dict["transformer.wte.weight"],
        "lm_head.weight": state_dict["transformer.ff_out.weight"],
    }
    for i in range(config.n_layers):
        ours, theirs = f"transformer.blocks.{i}.", f"model.layers.{i}."
        q, k, v = state_dict[ours + "att_proj.weight"].chunk(3, dim=0)
        up, gate = state_dict[ours + "ff_proj.weight"].chunk(2, dim=0)
        out.update(
            {
                theirs + "self_attn.q_proj.weight": q,
                theirs + "self_attn.k_proj.weight": k,
                theirs + "self_attn.v_proj.weight": v,
                theirs + "self_attn.o_proj.weight": state_dict[ours + "attn_out.weight"],
                theirs + "mlp.up_proj.weight": up,
                theirs + "mlp.gate_proj.weight": gate,
                theirs + "mlp.down_proj.weight": state_dict[ours + "ff_out.weight"],
            }
        )
    return out


def save_hf(
    state_dict: dict[str, torch.Tensor],
    config: ModelConfig,
    out: str | Path,
    dtype: str = "float32",
    max_shard_bytes: int = 5 * 2**30,
) -> Path:
    """Write config.json, generation_config.json and model.safetensors (sharded with an index
    file when larger than `max_shard_bytes`) to `out`."""
    from safetensors.torch import save_file

    if dtype not in DTYPES:
        raise ValueError(f"dtype: expected one of {sorted(DTYPES)}, found {dtype!r}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    tensors = {
        k: v.detach().to("cpu", DTYPES[dtype]).contiguous() for k, v in hf_state_dict(state_dict, config).items()
    }
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, tensor in tensors.items():
        nbytes = tensor.numel() * tensor.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][name] = tensor
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], out / "model.safetensors", metadata={"format": "pt"})
    else:
        weight_map = {}
        for n, shard in enumerate(shards, start=1):
            filename = f"model-{n:05d}-of-{len(shards):05d}.safetensors"
            save_file(shard, out / filename, metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, filename))
        total = sum(t.numel() * t.element_size() for t in tensors.values())
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (out / "model.safetensors.index.json").write_text(json.dumps(index, indent=2) + "\n")
    (out / "config.json").write_text(json.dumps(hf_config(config, dtype), indent=2) + "\n")
    generation = {"eos_token_id": config.eos_token_id, "pad_token_id": config.pad_token_id}
    (out / "generation_config.json").write_text(json.dumps(generation, indent=2) + "\n")
    return out


def export_checkpoint(checkpoint: str | Path, out: str | Path, dtype: str = "float32") -> Path:
    """Convert a training checkpoint (any world size) into a Hugging Face model folder."""
    from .checkpoint import load_model

    model = load_model(checkpoint)
    return save_hf(model.state_dict(), model.config, out, dtype=dtype)
