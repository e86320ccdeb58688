"""The trainer's speed levers on CPU: each one's code path runs here and leaves the maths alone.

What each lever must do is measured on a GPU by benchmarks/train_gpu.sh; these tests check that
the code behind it is right: SDPA equals explicit attention and runs the kernel it was told to,
every activation checkpointing policy gives the same gradients while recomputing what it says,
fused AdamW runs the fused kernel and steps as the foreach one does, FSDP2's
reshard-after-forward flag keeps or frees the gathered weights, float8 matmuls equal their
emulation and train, compiled blocks equal eager ones, and asking for CUDA without one fails
(the benchmark script's refusal is in test_training_bench.py).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from torch.profiler import ProfilerActivity, profile
from torch.utils._python_dispatch import TorchDispatchMode

from dolma_prep.training.config import ConfigError, OptimizerConfig, load_config
from dolma_prep.training.float8 import E4M3, E5M2, Float8Linear, convert_to_float8, float8_supported, to_float8
from dolma_prep.training.model import ModelConfig, OLMo, manual_causal_attention
from dolma_prep.training.optim import build_optimizer
from dolma_prep.training.train import SDPA_BACKENDS, Trainer, init_runtime

ROOT = Path(__file__).resolve().parents[1]
SMALL = dict(d_model=64, n_heads=4, n_layers=2, mlp_hidden_size=256, max_sequence_length=32, vocab_size=1000, embedding_size=1024)


@pytest.fixture(scope="module")
def run_output(tmp_path_factory) -> Path:
    """Real token ids (three sample sources, bundled OLMo tokenizer) in the run-output layout."""
    import gzip

    import numpy as np
    from tokenizers import Tokenizer

    from dolma_prep.training.data import write_run_output

    tok = Tokenizer.from_file(str(ROOT / "pipeline" / "resources" / "allenai_gpt-neox-olmo-dolma-v1_5.json"))
    arrays = {}
    for source in ("books", "c4", "wiki"):
        with gzip.open(ROOT / "sample" / "documents" / source / "0000.jsonl.gz", "rt") as f:
            texts = [json.loads(line)["text"].strip() for line in f]
        arrays[source] = [np.array([i for e in tok.encode_batch(texts) for i in (*e.ids, 50279)])]
    return write_run_output(tmp_path_factory.mktemp("run") / "out", arrays)


def tiny(run_output: Path, save_folder: Path, *overrides: str):
    config = load_config("tiny", ["save_final=false", *overrides])
    config.data.run_output, config.save_folder = str(run_output), str(save_folder)
    return config


def small_model(seed: int = 0, **overrides) -> OLMo:
    model = OLMo(ModelConfig(**{**SMALL, **overrides}))
    torch.manual_seed(seed)
    model.init_weights()
    return model


def tokens(batch: int = 2, length: int = 32, seed: int = 1) -> torch.Tensor:
    return torch.randint(0, 1000, (batch, length), generator=torch.Generator().manual_seed(seed))


def grads_of(model: OLMo, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    model.zero_grad(set_to_none=True)
    logits = model(ids)
    F.cross_entropy(logits[:, :-1].flatten(0, 1), ids[:, 1:].flatten()).backward()
    return {n: p.grad.clone() for n, p in model.named_parameters()}


def op_names(fn) -> set[str]:
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        fn()
    return {e.key for e in prof.key_averages()}


# --- SDPA ------------------------------------------------------------------------------------


def test_sdpa_matches_manual_attention_forward_and_backward():
    q, k, v = (torch.randn(2, 4, 24, 16, generator=torch.Generator().manual_seed(s)) for s in range(3))
    expected = F.softmax((q @ k.transpose(-2, -1)) / 4.0 + torch.full((24, 24), float("-inf")).triu(1), dim=-1) @ v
    assert torch.allclose(manual_causal_attention(q, k, v), expected, atol=1e-6)

    model = small_model()
    ids = tokens()
    sdpa_logits, sdpa_grads = model(ids), grads_of(model, ids)
    model.set_attention("manual")
    manual_logits, manual_grads = model(ids), grads_of(model, ids)
    assert (sdpa_logits - manual_logits).abs().max().item() < 1e-5
    for name, g in sdpa_grads.items():
        assert torch.allclose(g, manual_grads[name], atol=1e-6, rtol=1e-4), name
    with pytest.raises(ValueError, match="sdpa or manual"):
        model.set_attention("flash")


def test_sdpa_backend_forces_the_kernel_and_never_falls_back(tmp_path):
    """`sdpa_backend` runs exactly the chosen kernel (read from the profiler, as train_gpu.py does
    on the GPU); a kernel that cannot run these inputs is an error, not a silent fallback."""
    from dolma_prep.training.train import sdpa_context

    model = small_model().eval()
    ids = tokens()
    with torch.no_grad():
        reference = model(ids)
    kernels = {}
    for backend in ("math", "flash"):
        with sdpa_context(backend), torch.no_grad():
            names = op_names(lambda: model(ids))
            assert (model(ids) - reference).abs().max().item() < 1e-5
        kernels[backend] = {n for n in names if "scaled_dot_product" in n and n != "aten::scaled_dot_product_attention"}
    assert kernels["math"] == {"aten::_scaled_dot_product_attention_math"}, kernels
    assert kernels["flash"] == {"aten::_scaled_dot_product_flash_attention_for_cpu"}, kernels
    with sdpa_context("efficient"), pytest.raises(RuntimeError, match="No viable backend|No available kernel"):
        model(ids)  # the memory-efficient kernel is CUDA-only
    assert set(SDPA_BACKENDS) == {"flash", "efficient", "cudnn", "math"}


# --- activation checkpointing ----------------------------------------------------------------


class CountMatmuls(TorchDispatchMode):
    """Counts aten.mm calls (nn.Linear on 3-d inputs runs one mm forward and two in backward)."""

    def __init__(self):
        super().__init__()
        self.count = 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        if func is torch.ops.aten.mm.default:
            self.count += 1
        return func(*args, **(kwargs or {}))


def backward_matmuls(model: OLMo, ids: torch.Tensor) -> tuple[int, int, dict]:
    model.zero_grad(set_to_none=True)
    with CountMatmuls() as fwd:
        loss = F.cross_entropy(model(ids)[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
    with CountMatmuls() as bwd:
        loss.backward()
    return fwd.count, bwd.count, {n: p.grad.clone() for n, p in model.named_parameters()}


def test_activation_checkpointing_policies_same_gradients_and_recompute_what_they_say():
    model = small_model(n_layers=4).train()
    ids = tokens()
    fwd, bwd, reference = backward_matmuls(model, ids)
    assert fwd == 4 * 4 + 1  # att_proj, attn_out, ff_proj, ff_out per block, + the output head
    # Recomputation stops once every tensor backward needs is back (torch's non-reentrant
    # checkpoint "early stop"): ff_out's output is not needed, so a block recomputes 3 matmuls.
    per_block = 3
    expected_recomputed = {"none": 0, "full": 4 * per_block, "one_in_two": 2 * per_block, "selected_ops": 0}
    for policy, recomputed in expected_recomputed.items():
        model.set_activation_checkpointing(policy)
        _, policy_bwd, grads = backward_matmuls(model, ids)
        # full recomputes every block's matmuls, one_in_two those of blocks 0 and 2; selected_ops
        # keeps matmul outputs, so its backward runs no extra matmul (it recomputes norms, RoPE, SiLU)
        assert policy_bwd - bwd == recomputed, (policy, policy_bwd, bwd)
        for name, g in reference.items():
            assert torch.allclose(g, grads[name], atol=1e-7, rtol=1e-6), (policy, name)
    assert [b.checkpoint_mode for b in model.transformer.blocks] == ["selected_ops"] * 4
    model.set_activation_checkpointing(True)
    assert model.activation_checkpointing == "full"
    with pytest.raises(ValueError, match="one_in_two"):
        model.set_activation_checkpointing("some")


def test_selected_ops_recomputes_elementwise_work():
    """selected_ops is not 'none' in disguise: its backward re-runs the cheap ops (the SiLU)."""
    model = small_model(n_layers=1).train()
    ids = tokens()

    def silu_calls(policy: str) -> int:
        model.set_activation_checkpointing(policy)
        loss = model(ids).sum()
        names = []
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            loss.backward()
        names = [e.key for e in prof.events() if e.key == "aten::silu"]
        return len(names)

    assert silu_calls("none") == 0
    assert silu_calls("selected_ops") > 0
    assert silu_calls("full") > 0


# --- fused AdamW -----------------------------------------------------------------------------


def test_fused_adamw_runs_the_fused_kernel_and_matches_foreach():
    runs = {}
    for fused in (None, True):
        model = small_model()
        optimizer = build_optimizer(model, OptimizerConfig(learning_rate=1e-2, fused=fused))
        assert optimizer.defaults["fused"] == fused
        for step in range(3):
            grads_of(model, tokens(seed=step))
            names = op_names(optimizer.step)
        assert ("aten::_fused_adamw_" in names) is bool(fused), sorted(n for n in names if "adam" in n.lower())
        runs[fused] = {n: p.detach().clone() for n, p in model.named_parameters()}
    moved = max((runs[None][n] - small_model().state_dict()[n]).abs().max().item() for n in runs[None])
    assert moved > 1e-2  # the steps did something (lr 1e-2: up to ~1e-2 per step)
    # the two kernels order their float32 arithmetic differently: after 3 steps they agree to
    # within 1e-5 (measured: <= 4.2e-6, on embedding rows with tiny gradients; <= 7.5e-7 elsewhere)
    for name, p in runs[None].items():
        assert (p - runs[True][name]).abs().max().item() < 1e-5, name


# --- FSDP2 reshard after forward -------------------------------------------------------------


def _reshard_worker(rank: int, world: int, store: str, out: str) -> None:
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    from dolma_prep.training.train import Runtime, build_model

    dist.init_process_group("gloo", init_method=f"file://{store}", rank=rank, world_size=world)
    try:
        from torch.distributed.device_mesh import init_device_mesh

        rt = Runtime(rank, world, torch.device("cpu"), init_device_mesh("cpu", (world,)), False)
        result = {}
        for reshard in (True, False):
            config = load_config("tiny", [f"reshard_after_forward={str(reshard).lower()}"])
            config.model = ModelConfig(**SMALL)
            model = build_model(config, rt, torch.float32)
            ids = tokens(batch=2, seed=rank)
            loss = F.cross_entropy(model(ids)[:, :-1].flatten(0, 1), ids[:, 1:].flatten())
            weight = model.transformer.blocks[0].att_proj.weight  # between forward and backward
            state = {"dtensor": isinstance(weight, DTensor), "shape": list(weight.shape)}
            if isinstance(weight, DTensor):
                state["local_shape"] = list(weight.to_local().shape)
            loss.backward()
            grad = model.transformer.blocks[0].att_proj.weight.grad
            state["grad_norm"] = float(grad.full_tensor().norm()) if isinstance(grad, DTensor) else float(grad.norm())
            result[str(reshard)] = state
        if rank == 0:
            Path(out).write_text(json.dumps(result))
    finally:
        dist.destroy_process_group()


def check_reshard(result: dict, world: int) -> None:
    d = SMALL["d_model"]
    # resharded after forward: the block holds its sharded DTensor (rows split over the ranks)
    assert result["True"] == {**result["True"], "dtensor": True, "shape": [3 * d, d], "local_shape": [3 * d // world, d]}
    # kept: the block still holds the gathered, unsharded weight when backward starts
    assert result["False"]["dtensor"] is False and result["False"]["shape"] == [3 * d, d]
    assert result["True"]["grad_norm"] == pytest.approx(result["False"]["grad_norm"], rel=1e-6)


def test_reshard_after_forward_in_process(tmp_path):
    _reshard_worker(0, 1, str(tmp_path / "store"), str(tmp_path / "out.json"))
    check_reshard(json.loads((tmp_path / "out.json").read_text()), world=1)


@pytest.mark.slow  # two spawned processes over gloo: 160 s at load average ~20
def test_reshard_after_forward_two_ranks(tmp_path):
    import torch.multiprocessing as mp

    mp.spawn(_reshard_worker, args=(2, str(tmp_path / "store"), str(tmp_path / "out.json")), nprocs=2, join=True)
    check_reshard(json.loads((tmp_path / "out.json").read_text()), world=2)


# --- float8 ----------------------------------------------------------------------------------


def test_float8_matmuls_equal_their_emulation():
    assert float8_supported(torch.device("cpu")) == (True, "")
    g = torch.Generator().manual_seed(0)
    x = torch.randn(32, 64, generator=g, requires_grad=True)
    layer = torch.nn.Linear(64, 48, bias=False)
    layer.__class__ = Float8Linear
    out = layer(x)
    grad_out = torch.randn(32, 48, generator=g)
    out.backward(grad_out)

    def emulate(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
        q, inv = to_float8(t, dtype)
        return q.float() * inv  # what _scaled_mm multiplies: the float8 values, un-scaled

    w = layer.weight.detach()
    xe, we, ge = emulate(x.detach(), E4M3), emulate(w, E4M3), emulate(grad_out, E5M2)
    assert torch.allclose(out, xe @ we.t(), rtol=1e-5, atol=1e-5)
    assert torch.allclose(x.grad, ge @ we, rtol=1e-5, atol=1e-5)
    assert torch.allclose(layer.weight.grad, ge.t() @ xe, rtol=1e-5, atol=1e-5)
    # and float8 is really coarser than fp32 (3 mantissa bits): the result is near, not equal
    exact = x.detach() @ w.t()
    rel = ((out - exact).norm() / exact.norm()).item()
    assert 1e-3 < rel < 0.1, rel
    q, inv = to_float8(torch.tensor([1.0, -3.0, 0.5]), E4M3)
    assert q.float().abs().max().item() == 448.0 and inv.item() == pytest.approx(3.0 / 448.0)


def test_float8_conversion_keeps_parameters_and_trains(run_output, tmp_path):
    model = small_model()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    assert convert_to_float8(model) == 4 * 2
    assert all(type(b.ff_proj) is Float8Linear for b in model.transformer.blocks)
    assert type(model.transformer.ff_out) is torch.nn.Linear  # the output head stays in high precision
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())

    # through the trainer (the config flag), on real token ids: float8 tracks fp32
    losses = {}
    for flag in ("false", "true"):
        trainer = Trainer(tiny(run_output, tmp_path / flag, "max_steps=3", f"float8={flag}"))
        assert (type(trainer.model.transformer.blocks[1].attn_out) is Float8Linear) is (flag == "true")
        losses[flag] = [m["loss"] for m in trainer.fit()]
    assert losses["true"] != losses["false"]  # float8 really ran
    assert losses["true"] == pytest.approx(losses["false"], abs=0.05)


@pytest.mark.slow  # two torch.compile runs on 2 CPU cores: 880 s at load average ~20 (other jobs)
def test_compiled_blocks_with_checkpointing_match_eager(run_output, tmp_path):
    """compile=true compiles each block's forward (a checkpointed one included); the losses
    equal the eager run's, and the blocks' forwards are compiled functions."""
    eager = [m["loss"] for m in Trainer(tiny(run_output, tmp_path / "eager", "max_steps=2")).fit()]
    trainer = Trainer(tiny(run_output, tmp_path / "compiled", "max_steps=2", "compile=true",
                           "activation_checkpointing=selected_ops"))
    assert all(hasattr(b.forward, "_torchdynamo_orig_callable") for b in trainer.model.transformer.blocks)
    compiled = [m["loss"] for m in trainer.fit()]
    assert compiled == pytest.approx(eager, abs=1e-5)


def test_cuda_asked_for_and_absent_fails_loudly(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(RuntimeError, match="device=cuda was asked for"):
        init_runtime("cuda")
    with pytest.raises(ValueError, match="auto, cpu or cuda"):
        init_runtime("gpu")


def test_lever_config_fields():
    config = load_config("tiny", [
        "activation_checkpointing=selected_ops", "sdpa_backend=flash", "reshard_after_forward=false",
        "float8=true", "optimizer.fused=true", "attention=sdpa",
    ])
    assert (config.activation_checkpointing, config.sdpa_backend, config.reshard_after_forward) == ("selected_ops", "flash", False)
    assert config.float8 is True and config.optimizer.fused is True
    assert load_config("tiny", ["activation_checkpointing=true"]).activation_checkpointing is True
    assert load_config("tiny").optimizer.fused is None
    with pytest.raises(ConfigError, match="activation_checkpointing"):
        load_config("tiny", ["activation_checkpointing=3"])
