"""Bundled configs reproduce docs/REFERENCE.md section 3; schedules; config loading and errors."""

from __future__ import annotations

import pytest
import torch

from dolma_prep.training.checkpoint import checkpoint_name
from dolma_prep.training.config import ConfigError, load_config
from dolma_prep.training.model import OLMo
from dolma_prep.training.optim import Scheduler, build_optimizer

STAGE1, ANNEAL = "olmo-1.7-7b", "olmo-1.7-7b-anneal"


@pytest.mark.parametrize("name", [STAGE1, ANNEAL])
def test_7b_configs_match_reference_section_3(name):
    c = load_config(name)
    m = c.model
    assert (m.d_model, m.n_heads, m.n_layers, m.mlp_hidden_size) == (4096, 32, 32, 22016)
    assert (m.vocab_size, m.embedding_size, m.max_sequence_length) == (50280, 50304, 4096)
    assert (m.clip_qkv, m.rope_theta, m.layer_norm_eps) == (8.0, 10_000.0, 1e-5)
    assert (m.eos_token_id, m.pad_token_id) == (50279, 1)
    o = c.optimizer
    assert (o.betas, o.eps, o.weight_decay) == ((0.9, 0.95), 1e-5, 0.1)
    assert o.decay_norm_and_bias and o.decay_embeddings
    assert (c.global_batch_size, m.max_sequence_length, c.tokens_per_step) == (1024, 4096, 4_194_304)
    assert c.micro_batch_size == 2 and c.max_grad_norm == 1.0 and c.save_interval == 1000
    assert c.init_device == "meta" and c.precision == "auto"
    with torch.device("meta"):
        model = OLMo(m)
    assert model.num_params() == 6_888_095_744
    assert [len(g["params"]) for g in build_optimizer(model, o).param_groups] == [2 + 4 * 32]  # all decayed


def test_stage1_schedule():
    c = load_config(STAGE1)
    s = c.scheduler
    assert c.optimizer.learning_rate == 3e-4
    assert (s.name, s.units, s.t_warmup, s.t_max, s.alpha_f) == (
        "cosine_with_warmup",
        "tokens",
        10_485_760_000,
        3e12,
        0.1,
    )
    assert s.t_warmup == 2500 * c.tokens_per_step
    assert (s.grad_clip_warmup_steps, s.grad_clip_warmup_factor) == (2_097_152_000, 5.0)
    assert c.max_tokens == pytest.approx(2e12, rel=1e-3)  # 2T tokens (477,000 steps)
    sched = Scheduler(s, c.optimizer.learning_rate, c.max_tokens)
    assert sched.lr(0) == pytest.approx(3e-5)  # OLMo warms up from 10% of the LR
    assert sched.lr(s.t_warmup // 2) == pytest.approx(1.65e-4)
    assert sched.lr(s.t_warmup) == pytest.approx(3e-4)
    assert sched.lr(3_000_000_000_000) == pytest.approx(3e-5)
    assert sched.lr(c.max_tokens) == pytest.approx(9.785e-5, rel=1e-4)  # the anneal's starting LR
    assert sched.max_grad_norm(1.0, 2_097_152_000) == 5.0
    assert sched.max_grad_norm(1.0, 2_097_152_000 + c.tokens_per_step) == 1.0


def test_anneal_config():
    c = load_config(ANNEAL)
    s = c.scheduler
    assert c.optimizer.learning_rate == 9.785e-5
    assert (s.name, s.t_warmup, s.alpha_f, s.t_max) == ("linear_with_warmup", 0, 0.0, 50_000_000_000)
    assert c.max_tokens == 50_000_000_000
    assert c.reset_trainer_state and not c.reset_optimizer_state
    assert (c.data.run_output, load_config(STAGE1).data.run_output) == ("out/anneal", "out/general")
    stage1 = load_config(STAGE1)
    assert c.load_path == f"{stage1.save_folder}/{checkpoint_name(477_000, stage1.max_tokens)}"
    assert c.load_path.endswith("step477000-tokens2001B")
    sched = Scheduler(s, c.optimizer.learning_rate)
    assert sched.lr(0) == pytest.approx(9.785e-5)
    assert sched.lr(25_000_000_000) == pytest.approx(9.785e-5 / 2)
    assert sched.lr(50_000_000_000) == 0.0
    assert sched.max_grad_norm(1.0, 0) == 1.0


def test_checkpoint_names():
    assert checkpoint_name(1000, 1000 * 4_194_304) == "step1000-tokens4B"
    assert checkpoint_name(477_000, 477_000 * 4_194_304) == "step477000-tokens2001B"
    assert checkpoint_name(3, 1536) == "step3-tokens0B"


def test_small_configs_load():
    tiny, one_b = load_config("tiny"), load_config("1b")
    assert tiny.model.num_params() < 10_000_000
    assert 1.2e9 < one_b.model.num_params() < 1.4e9 and one_b.model.max_sequence_length == 4096


def test_overrides_and_errors(tmp_path):
    c = load_config("tiny", ["optimizer.learning_rate=1e-2", "model.n_layers=3", "max_tokens=2e6", "run_name=x"])
    assert (c.optimizer.learning_rate, c.model.n_layers, c.max_tokens, c.save_folder) == (1e-2, 3, 2_000_000, "runs/x")
    with pytest.raises(ConfigError, match="unknown field 'optimizer.lr'"):
        load_config("tiny", ["optimizer.lr=1"])
    with pytest.raises(ConfigError, match="field 'global_batch_size': expected int, found 'many'"):
        load_config("tiny", ["global_batch_size=many"])
    with pytest.raises(ConfigError, match="field 'max_tokens': expected int, found 1.5"):
        load_config("tiny", ["max_tokens=1.5"])
    bad = tmp_path / "bad.yaml"
    bad.write_text("model:\n  d_model: 10\n  n_heads: 3\n")
    with pytest.raises(ConfigError, match="bad.yaml: model: d_model 10 is not divisible"):
        load_config(bad)
    with pytest.raises(ConfigError, match="not a bundled config"):
        load_config("nope")
