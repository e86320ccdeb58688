"""Cheap proxy models for mix search (`dolma-prep mix-search`), and how they are evaluated.

A proxy is a small model trained by the bundled trainer (`Trainer`) on one candidate mixture of
a pool (`data.mixture`), then scored on held-out text. What makes it cheap:

- a reduced vocabulary: the `k` most frequent ids of the pool's training documents keep their
  own row (ids 0..k-1, most frequent first), every other id maps to one bucket id `k`. The
  model's embedding and output head have k + 1 rows instead of 50,304, which is what dominates
  a tiny model's cost (`data.id_map` remaps the arrays as they are read);
- the model and sequence length of the proxy config (default `tiny`), trained for a few hundred
  thousand tokens, one Ray task (one core, or a GPU) per proxy.

Honest scores. The proxy's distribution over the full vocabulary is
    p(t) = p_model(t)                          for a kept id t,
    p(t) = p_model(bucket) x q(t | bucket)     for a bucketed id t,
where q is a fixed unigram over the bucketed ids, counted on the pool's training documents
(add-one smoothed over every bucketed id of the vocabulary). That is a proper distribution over
all ids, so its loss (nats per token of the real tokenization) and bits per byte are the code
length of the text and can be compared with any model's, not a loss over an easier task.
Bits per byte = sum of the losses of the predicted tokens / ln 2 / UTF-8 bytes of those tokens
(byte-level BPE: each token's bytes are known exactly; special tokens such as EOS count 0 bytes
but their loss is counted). Evaluation streams are cut into windows of the model's sequence
length; the first token of each window is context only.
"""

from __future__ import annotations

import math
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np

from ..core.tokens import DTYPES
from .config import MixtureConfig, load_config
from .data import TokenFile
from .mixture import SourceDocuments
from .train import Trainer

COUNT_TOKENS_MAX = 50_000_000  # tokens read to count id frequencies (a deterministic prefix per source)


def count_ids(files: list[TokenFile], docs: dict[str, SourceDocuments], vocab_size: int) -> np.ndarray:
    """How often each id occurs in the training documents (up to COUNT_TOKENS_MAX per source)."""
    counts = np.zeros(vocab_size, dtype=np.int64)
    arrays: dict[int, np.ndarray] = {}
    for name in sorted(docs):
        d, seen = docs[name], 0
        for f, s, n in zip(d.file.tolist(), d.start.tolist(), d.length.tolist()):
            if seen >= COUNT_TOKENS_MAX:
                break
            if f not in arrays:
                arrays[f] = np.memmap(files[f].path, dtype=DTYPES[files[f].dtype], mode="r")
            ids = np.asarray(arrays[f][s : s + n], dtype=np.int64)
            if len(ids) and int(ids.max()) >= vocab_size:
                raise ValueError(f"{files[f].path}: id {int(ids.max())} is outside the vocabulary of {vocab_size}")
            counts += np.bincount(ids, minlength=vocab_size)
            seen += n
    return counts


def reduced_vocabulary(counts: np.ndarray, k: int, keep: tuple[int, ...] = ()) -> tuple[np.ndarray, np.ndarray]:
    """(id_map, rare_logq): the k most frequent ids (ties: the lower id; `keep` ids always kept)
    map to 0..k-1, every other id to the bucket k; rare_logq[t] = log q(t | bucket) for bucketed
    ids, 0 for kept ones. k = 0 or k >= the vocabulary: the identity map, no bucket."""
    vocab = len(counts)
    if k <= 0 or k >= vocab:
        return np.arange(vocab, dtype=np.int32), np.zeros(vocab, dtype=np.float64)
    order = np.lexsort((np.arange(vocab), -counts))  # by count descending, then id
    forced = [t for t in keep if 0 <= t < vocab]
    kept = [t for t in forced] + [int(t) for t in order if int(t) not in forced][: k - len(forced)]
    id_map = np.full(vocab, k, dtype=np.int32)
    id_map[np.array(kept)] = np.arange(k, dtype=np.int32)
    rare = id_map == k
    rare_counts = counts[rare].astype(np.float64) + 1.0
    rare_logq = np.zeros(vocab, dtype=np.float64)
    rare_logq[rare] = np.log(rare_counts / rare_counts.sum())
    return id_map, rare_logq


def bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte-level alphabet: the character that stands for each byte in BPE tokens."""
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1)) + list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return dict(zip(bs, (chr(c) for c in cs)))


def token_byte_lengths(tokenizer, vocab_size: int) -> np.ndarray:
    """UTF-8 bytes each id stands for (byte-level BPE: one alphabet character per byte; added
    tokens such as runs of spaces: their text); special tokens (EOS) count 0 bytes."""
    alphabet = set(bytes_to_unicode().values())
    special = {int(i) for i, t in tokenizer.get_added_tokens_decoder().items() if t.special}
    out = np.zeros(vocab_size, dtype=np.int64)
    for i in range(min(vocab_size, tokenizer.get_vocab_size(with_added_tokens=True))):
        piece = tokenizer.id_to_token(i)
        if piece is None or i in special:
            continue
        if all(c in alphabet for c in piece):
            out[i] = len(piece)
        else:  # not a byte-level token: its decoded text
            out[i] = len(tokenizer.decode([i]).encode("utf-8"))
    return out


def evaluate(model, stream: np.ndarray, id_map: np.ndarray, rare_logq: np.ndarray, token_bytes: np.ndarray,
             seq_len: int, device: Any = "cpu", batch_size: int = 32) -> dict[str, float]:
    """Loss (nats per token, full-vocabulary code length) and bits per byte of `stream` (full ids)."""
    import torch

    stream = np.asarray(stream, dtype=np.int64)
    starts = list(range(0, max(len(stream) - 1, 0), seq_len))
    nll, tokens, nbytes = 0.0, 0, 0
    model.eval()
    with torch.no_grad():
        for b in range(0, len(starts), batch_size):
            windows = [stream[s : s + seq_len] for s in starts[b : b + batch_size]]
            for length in sorted({len(w) for w in windows}):  # a short last window goes on its own
                group = np.stack([w for w in windows if len(w) == length])
                if length < 2:
                    continue
                x = torch.from_numpy(id_map[group].astype(np.int64)).to(device)
                logp = torch.log_softmax(model(x)[:, :-1].float(), dim=-1)
                target = x[:, 1:]
                picked = logp.gather(-1, target.unsqueeze(-1)).squeeze(-1).double().cpu().numpy()
                full_target = group[:, 1:]
                nll += float(-(picked + rare_logq[full_target]).sum())
                tokens += full_target.size
                nbytes += int(token_bytes[full_target].sum())
    return {"loss": nll / max(tokens, 1), "bpb": nll / math.log(2) / max(nbytes, 1), "tokens": tokens, "bytes": nbytes}


def train_proxy(spec: dict) -> dict:
    """Train one proxy and score it on every evaluation stream (a Ray task of mix search).

    `spec`: config (name or YAML path), overrides (key=value), pool, shares, tokens, seed,
    max_repetition (per source), holdout, holdout_seed, prep (folder with id_map.npy,
    rare_logq.npy, token_bytes.npy, eval.npz), vocab (k + 1 rows, or 0 for the full vocabulary),
    save_folder, threads, device."""
    import torch

    torch.set_num_threads(int(spec.get("threads", 1)))
    config = load_config(spec["config"], list(spec.get("overrides", [])))
    prep = Path(spec["prep"])
    config.data.run_output, config.data.paths, config.data.label_mask_paths = spec["pool"], [], None
    config.data.source_repeats = {}
    config.data.mixture = MixtureConfig(
        shares=dict(spec["shares"]), total_tokens=int(spec["tokens"]), max_repetition=1.0,
        source_max_repetition=dict(spec["max_repetition"]), seed=int(spec["seed"]),
        holdout=float(spec["holdout"]), holdout_seed=int(spec["holdout_seed"]),
        eos_token_id=config.model.eos_token_id,  # the arrays' EOS, before the model's ids are remapped
    )
    id_map = np.load(prep / "id_map.npy")
    if spec.get("vocab"):
        config.data.id_map = str(prep / "id_map.npy")
        m = config.model
        m.eos_token_id, m.pad_token_id = int(id_map[m.eos_token_id]), int(id_map[m.pad_token_id])
        m.vocab_size = m.embedding_size = int(spec["vocab"])
    config.seed = int(spec["seed"])
    config.max_tokens, config.max_steps = int(spec["tokens"]), None
    config.save_folder = spec["save_folder"]
    config.save_interval, config.save_final, config.log_interval = 0, False, 10**9
    if spec.get("device"):
        config.device = spec["device"]
    shutil.rmtree(config.save_folder, ignore_errors=True)  # a retried task starts afresh
    trainer = Trainer(config)
    history = trainer.fit()
    rare_logq, token_bytes = np.load(prep / "rare_logq.npy"), np.load(prep / "token_bytes.npy")
    metrics = {}
    with np.load(prep / "eval.npz") as streams:
        for name in sorted(streams.files):
            metrics[name] = evaluate(trainer.model, streams[name], id_map, rare_logq, token_bytes,
                                     config.model.max_sequence_length, trainer.rt.device)
    dataset = trainer.dataset.dataset if hasattr(trainer.dataset, "id_map") else trainer.dataset
    last = [h["loss"] for h in history[-10:]]
    seconds = sum(h["step_time_s"] for h in history)
    return {
        "metrics": metrics, "steps": len(history), "train_tokens": int(trainer.state["tokens"]),
        "train_loss_last10": float(np.mean(last)) if last else None,
        "train_tokens_per_s": trainer.state["tokens"] / seconds if seconds else None,
        "mixture": dataset.report, "params": trainer.model.num_params(), "threads": torch.get_num_threads(),
        "device": str(trainer.rt.device), "pid": os.getpid(),
    }
