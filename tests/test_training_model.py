"""The OLMo model: numerical parity with transformers' OlmoForCausalLM, init, shapes, sizes."""

from __future__ import annotations

import math

import pytest
import torch

from dolma_prep.training.config import load_config
from dolma_prep.training.export_hf import save_hf
from dolma_prep.training.model import Block, ModelConfig, OLMo

TINY = dict(d_model=64, n_heads=4, n_layers=3, mlp_hidden_size=256, max_sequence_length=64)


def random_model(seed: int = 0, **overrides) -> OLMo:
    model = OLMo(ModelConfig(**{**TINY, **overrides}))
    torch.manual_seed(seed)
    model.init_weights()
    return model.eval()


@pytest.mark.parametrize("clip_qkv, rope_theta", [(0.5, 10_000.0), (None, 500_000.0)])
def test_logits_match_transformers_olmo(tmp_path, clip_qkv, rope_theta):
    transformers = pytest.importorskip("transformers")
    model = random_model(clip_qkv=clip_qkv, rope_theta=rope_theta)
    save_hf(model.state_dict(), model.config, tmp_path / "hf")
    hf = transformers.OlmoForCausalLM.from_pretrained(tmp_path / "hf", dtype=torch.float32).eval()
    assert hf.config.clip_qkv == clip_qkv

    clipped = []  # how many q/k/v elements the clamp changes, per layer
    if clip_qkv is not None:
        for block in model.transformer.blocks:
            block.att_proj.register_forward_hook(lambda m, i, out: clipped.append(int((out.abs() > clip_qkv).sum())))

    tokens = torch.randint(0, model.config.vocab_size, (2, 48), generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = model(tokens)
        theirs = hf(tokens).logits
    max_diff = (ours - theirs).abs().max().item()
    print(f"clip_qkv={clip_qkv} rope_theta={rope_theta}: max |logit diff| = {max_diff:.3e}")
    assert ours.shape == theirs.shape == (2, 48, 50304)
    assert max_diff <= 1e-4
    if clip_qkv is not None:
        assert len(clipped) == model.config.n_layers and all(n > 0 for n in clipped), clipped
        # and the clip matters: without it the logits move by far more than the tolerance
        model.config.clip_qkv = None
        with torch.no_grad():
            assert (model(tokens) - theirs).abs().max().item() > 1e-2


def test_7b_parameter_count_on_meta():
    config = load_config("olmo-1.7-7b").model
    with torch.device("meta"):
        model = OLMo(config)
    assert model.num_params() == config.num_params() == 6_888_095_744  # ~6.9B, as OLMo-7B
    assert model.num_params(include_embedding=False) == 6_888_095_744 - 50304 * 4096
    assert model.transformer.blocks[0].ff_out.in_features == 11008
    assert not any(isinstance(m, torch.nn.Linear) and m.bias is not None for m in model.modules())
    assert model.transformer.wte.weight is not model.transformer.ff_out.weight  # untied


def test_mitchell_init():
    model = random_model(d_model=256, n_heads=4, n_layers=4, mlp_hidden_size=1024, vocab_size=4000, embedding_size=4096)
    d = 256

    def check(weight: torch.Tensor, std: float) -> None:
        assert weight.abs().max().item() <= 3 * std + 1e-6
        # a normal truncated at 3 std has std 0.986 x std
        assert weight.std().item() == pytest.approx(0.986 * std, rel=0.05)

    check(model.transformer.wte.weight, 1 / math.sqrt(d))
    check(model.transformer.ff_out.weight, 1 / math.sqrt(d))
    for i, block in enumerate(model.transformer.blocks):
        check(block.att_proj.weight, 1 / math.sqrt(d))
        check(block.ff_proj.weight, 1 / math.sqrt(d))
        check(block.attn_out.weight, 1 / math.sqrt(d) / math.sqrt(2 * (i + 1)))
        check(block.ff_out.weight, 1 / math.sqrt(512) / math.sqrt(2 * (i + 1)))


def test_meta_build_then_init_equals_direct_init():
    direct = random_model(seed=3)
    with torch.device("meta"):
        late = OLMo(direct.config)
    late.to_empty(device="cpu")
    torch.manual_seed(3)
    late.init_weights()
    for (name, a), b in zip(direct.state_dict().items(), late.state_dict().values()):
        assert torch.equal(a, b), name


def test_swiglu_halves_and_causality():
    config = ModelConfig(**TINY, clip_qkv=None)
    torch.manual_seed(0)
    block = Block(config, 0)
    h = torch.randn(1, 5, 64)
    x, gate = block.ff_proj(h).chunk(2, dim=-1)  # first half is the value, second the gate
    assert torch.allclose(block.mlp(h), block.ff_out(torch.nn.functional.silu(gate) * x))

    model = random_model()
    tokens = torch.randint(0, 50280, (1, 20))
    changed = tokens.clone()
    changed[0, 10:] = (changed[0, 10:] + 1) % 50280
    with torch.no_grad():
        a, b = model(tokens), model(changed)
    assert torch.allclose(a[:, :10], b[:, :10])  # no position sees the future
    assert not torch.allclose(a[:, 10:], b[:, 10:])


def test_flops_per_token_and_config_checks():
    config = ModelConfig()  # 7B
    n = config.num_params(include_embedding=False)
    assert config.flops_per_token(4096) == 6 * n + 12 * 32 * 4096 * 4096
    with pytest.raises(ValueError, match="divisible"):
        ModelConfig(d_model=100, n_heads=3)
    with pytest.raises(ValueError, match="embedding_size"):
        ModelConfig(vocab_size=50304, embedding_size=50280)


def test_sharded_bf16_export_loads(tmp_path):
    transformers = pytest.importorskip("transformers")
    model = random_model()
    save_hf(model.state_dict(), model.config, tmp_path, dtype="bfloat16", max_shard_bytes=2**21)
    assert len(list(tmp_path.glob("model-*-of-*.safetensors"))) > 2
    assert (tmp_path / "model.safetensors.index.json").is_file()
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path)
    assert hf.dtype == torch.bfloat16
    assert torch.equal(hf.lm_head.weight, model.transformer.ff_out.weight.to(torch.bfloat16))
