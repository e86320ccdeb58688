"""End-to-end CPU training of the tiny config on real token ids: loss, exact resume, stage-2
style loading, two processes over gloo (FSDP2), export to Hugging Face and generation."""

from __future__ import annotations

import gzip
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dolma_prep.training import cli
from dolma_prep.training.checkpoint import latest_checkpoint, load_model
from dolma_prep.training.config import load_config
from dolma_prep.training.data import global_indices, write_run_output
from dolma_prep.training.train import Trainer, train

# every test here trains the model (in process, ~30-100 s each on 2 cores) or launches torchrun
pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[1]
TOKENIZER = ROOT / "pipeline" / "resources" / "allenai_gpt-neox-olmo-dolma-v1_5.json"
EOS = 50279


@pytest.fixture(scope="module")
def run_output(tmp_path_factory) -> Path:
    """A dolma-prep style run output (manifest.json + raw uint16 arrays) of real token ids."""
    tokenizers = pytest.importorskip("tokenizers")
    tok = tokenizers.Tokenizer.from_file(str(TOKENIZER))
    arrays = {}
    for source in ("books", "c4", "wiki"):
        ids: list[int] = []
        with gzip.open(ROOT / "sample" / "documents" / source / "0000.jsonl.gz", "rt") as f:
            for line in f:
                ids += tok.encode(json.loads(line)["text"].strip()).ids + [EOS]
        arrays[source] = [np.array(ids)]
    return write_run_output(tmp_path_factory.mktemp("run") / "out", arrays)


def tiny(run_output: Path, save_folder: Path, *overrides: str):
    config = load_config("tiny", list(overrides))
    config.data.run_output = str(run_output)
    config.save_folder = str(save_folder)
    return config


@pytest.fixture(scope="module")
def uninterrupted(run_output, tmp_path_factory) -> list[dict]:
    return train(tiny(run_output, tmp_path_factory.mktemp("a"), "max_steps=6", "save_final=false"))


def test_single_process_loss_decreases(uninterrupted):
    losses = [m["loss"] for m in uninterrupted]
    assert len(losses) == 6 and losses[-1] < losses[0] - 0.3, losses
    assert uninterrupted[0]["lr"] == pytest.approx(0.1 * 3e-3 + 0.9 * 3e-3 * 512 / 1024)  # warmup
    assert uninterrupted[-1]["tokens"] == 6 * 8 * 64
    assert all(m["tokens_per_s"] > 0 and m["mfu"] is None for m in uninterrupted)  # no CPU peak known


@pytest.fixture(scope="module")
def three_steps(run_output, tmp_path_factory) -> Path:
    """The tiny run stopped after step 3 (through the CLI), with its checkpoint."""
    folder = tmp_path_factory.mktemp("b")
    args = ["train", "tiny", "--data", str(run_output), "--save-folder", str(folder), "--max-steps", "3"]
    assert cli.main(args) == 0
    return folder


def test_resume_is_exact(run_output, uninterrupted, three_steps, tmp_path):
    checkpoint = latest_checkpoint(three_steps)
    assert checkpoint.name == "step3-tokens0B"
    state = json.loads((checkpoint / "trainer.json").read_text())
    assert state == {"step": 3, "tokens": 1536, "epoch": 0, "examples_seen_this_epoch": 24, "world_size": 1}
    shutil.copytree(three_steps, tmp_path / "run")

    resumed = train(tiny(run_output, tmp_path / "run", "max_steps=6"))
    assert [m["step"] for m in resumed] == [4, 5, 6]
    for a, b in zip(uninterrupted[3:], resumed):
        assert a["loss"] == b["loss"] and a["grad_norm"] == b["grad_norm"] and a["lr"] == b["lr"], (a, b)
    assert latest_checkpoint(tmp_path / "run").name == "step6-tokens0B"


@pytest.mark.parametrize("reset_optimizer", [False, True])
def test_load_path_with_trainer_reset(run_output, three_steps, tmp_path, reset_optimizer):
    """Stage-2 style: start from another run's checkpoint, keep (or reset) AdamW, restart the trainer."""
    stage1 = latest_checkpoint(three_steps)
    config = tiny(
        run_output, tmp_path, "max_steps=2", f"load_path={stage1}", "reset_trainer_state=true",
        f"reset_optimizer_state={str(reset_optimizer).lower()}", "optimizer.learning_rate=1e-3",
        "scheduler.name=linear_with_warmup", "scheduler.t_warmup=0", "scheduler.alpha_f=0", "scheduler.t_max=2048",
    )
    trainer = Trainer(config)
    start = load_model(stage1).state_dict()
    assert all(torch.equal(v, trainer.model.state_dict()[k]) for k, v in start.items())
    history = trainer.fit()
    assert [(m["step"], m["tokens"]) for m in history] == [(1, 512), (2, 1024)]
    assert [m["lr"] for m in history] == pytest.approx([1e-3 * 3 / 4, 1e-3 / 2])
    adam_steps = {int(s["step"]) for s in trainer.optimizer.state.values()}
    assert adam_steps == ({2} if reset_optimizer else {5})
    assert latest_checkpoint(tmp_path).name == "step2-tokens0B"


@pytest.fixture(scope="module")
def two_ranks(run_output, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("ddp")
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
        "-m", "dolma_prep.training.train", "tiny", "--data", str(run_output), "--max-steps", "8",
        "--save-folder", str(folder), "--set", "log_data_indices=true",
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return folder


def test_two_processes_over_gloo(two_ranks, run_output, uninterrupted):
    metrics = [json.loads(line) for line in (two_ranks / "metrics.jsonl").read_text().splitlines()]
    losses = [m["loss"] for m in metrics]
    assert len(losses) == 8 and losses[-1] < losses[0] - 0.5, losses
    # same global batch and order as one process: FSDP2 must give the same losses
    assert losses[:6] == pytest.approx([m["loss"] for m in uninterrupted], abs=1e-5)

    ranks = [
        [json.loads(line) for line in (two_ranks / "data_indices" / f"rank{r}.jsonl").read_text().splitlines()]
        for r in (0, 1)
    ]
    n_instances = sum(
        json.loads((run_output / "manifest.json").read_text())["outputs"]["tokens"][i]["tokens"] // 64 for i in range(3)
    )
    order = global_indices(n_instances, 2, seed=load_config("tiny").seed, epoch=0)
    for step, (r0, r1) in enumerate(zip(*ranks)):
        a, b = set(r0["indices"]), set(r1["indices"])
        assert len(a) == len(b) == 4 and not a & b  # each rank sees half the batch, disjoint
        assert a | b == set(order[step * 8 : step * 8 + 8].tolist())
    checkpoint = latest_checkpoint(two_ranks)
    assert checkpoint.name == "step8-tokens0B"
    assert len(list(checkpoint.glob("*.distcp"))) == 2  # one shard file per rank


def test_export_hf_from_two_rank_checkpoint_and_generate(two_ranks, tmp_path):
    transformers = pytest.importorskip("transformers")
    checkpoint = latest_checkpoint(two_ranks)
    assert cli.main(["export-hf", str(checkpoint), str(tmp_path / "hf")]) == 0
    assert {p.name for p in (tmp_path / "hf").iterdir()} >= {"config.json", "model.safetensors"}
    hf = transformers.AutoModelForCausalLM.from_pretrained(tmp_path / "hf").eval()
    assert type(hf).__name__ == "OlmoForCausalLM"
    ours = load_model(checkpoint)  # resharded from 2 ranks into one process

    prompt = torch.tensor([[510, 5347, 273, 6181, 310, 7785, 15, 733]])
    with torch.no_grad():
        assert (ours(prompt) - hf(prompt).logits).abs().max().item() <= 1e-4
    expected = ours.generate_greedy(prompt, max_new_tokens=12)
    generated = hf.generate(prompt, attention_mask=torch.ones_like(prompt), max_new_tokens=12, do_sample=False)
    assert generated.tolist() == expected.tolist()


def test_fsdp2_bf16_mixed_precision_in_process(run_output, uninterrupted, tmp_path):
    """The GPU recipe on CPU: FSDP2 with bf16 compute, fp32 sharded params, grads and AdamW state."""
    import torch.distributed as dist
    from torch.distributed.tensor import DTensor

    dist.init_process_group("gloo", init_method=f"file://{tmp_path}/store", rank=0, world_size=1)
    try:
        trainer = Trainer(tiny(run_output, tmp_path / "run", "max_steps=2", "precision=bf16"))
        history = trainer.fit()
        seen = []  # dtypes a block computes in: FSDP2 all-gathers bf16 copies of the fp32 shards
        hook = trainer.model.transformer.blocks[0].att_proj.register_forward_hook(
            lambda m, inputs, out: seen.append((m.weight.dtype, out.dtype))
        )
        trainer.model(torch.zeros(1, 8, dtype=torch.long)).sum().backward()
        hook.remove()
        assert seen == [(torch.bfloat16, torch.bfloat16)]
        assert all(isinstance(p, DTensor) and p.dtype == torch.float32 for p in trainer.model.parameters())
        states = list(trainer.optimizer.state.values())
        assert states and all(s["exp_avg"].dtype == s["exp_avg_sq"].dtype == torch.float32 for s in states)
        # bf16 compute tracks the fp32 run closely
        assert [m["loss"] for m in history] == pytest.approx([m["loss"] for m in uninterrupted[:2]], abs=2e-2)
    finally:
        dist.destroy_process_group()
    assert load_model(latest_checkpoint(tmp_path / "run")).num_params() == 6_520_832
