"""Train a fastText document classifier (quality, toxicity, language...) from labelled sources.

    from dolma_prep.taggers.train_classifier import train_classifier
    summary = train_classifier("quality.yaml")   # CLI: dolma-prep train-classifier quality.yaml

The YAML names the labels and, for each, the sources whose documents (Dolma JSONL, globs)
carry it. Relative paths are relative to the YAML file's folder (or to `root`).

    name: cc_multi_bin_sample
    seed: 1234
    output: models/quality.bin        # the model; its card goes to models/quality.json
    labels:                           # or `positive:` / `negative:` (labels hq / lq)
      hq:
        - {name: wiki, documents: ["sample/documents/wiki/*.jsonl.gz"]}
        - "sample/documents/books/*.jsonl.gz"      # a bare glob: source named by its folder
      lq:
        - {name: cc_en_head, documents: ["sample/documents/cc_en_head/*.jsonl.gz"], max_docs: 500}
    data:        {held_out: 0.2, balance: true, max_words: 1000, min_words: 1}
    fasttext:    {lr: 0.5, epoch: 25, dim: 32, wordNgrams: 2, loss: softmax, bucket: 200000}

Each source's documents are shuffled with the seed and split: a `held_out` fraction (at
least one document when a source has two or more) is kept for evaluation. With `balance`,
training documents of smaller labels are repeated until every label has as many as the
largest. Texts are whitespace-normalised exactly as the `cc_multi_bin` tagger does at
prediction time, then cut to `max_words` words.

Training is deterministic for a seed: documents are ordered by the seed and fastText runs on
one thread (`thread: 1`) with that seed, so the same config gives the same model.

Settings: fastText's defaults (dim 100, lr 0.1, 5 epochs, 2M hash buckets) barely learn from
a few thousand documents and write an 800 MB model. The defaults here are dim 32, lr 0.5,
25 epochs, word bigrams, softmax, 200k buckets, documents cut to 1000 words. The
"Encountered NaN" seen on this project's machines is not a learning-rate problem but
uninitialised memory in fastText 0.9.2 with fewer than 10 threads (see `train_fasttext`);
training therefore runs in a fresh interpreter set up so that memory is zeroed. Should NaN
still occur, training is retried with half the learning rate (up to 3 times) and the card
records it. tests/test_taggers_classifier.py trains several seeds in one process.

Printed and returned: per-label precision / recall / F1 on the held-out documents, accuracy,
and (two labels) ROC AUC of the first label's probability. The JSON card records the config,
sources and document counts, fastText settings, metrics, fastText version and the model's
SHA-256.
"""
from __future__ import annotations

import glob
import hashlib
import importlib.util
import io
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

from ._text import whitespace_join

DEFAULT_FASTTEXT = {"lr": 0.5, "epoch": 25, "dim": 32, "wordNgrams": 2, "loss": "softmax", "minCount": 1,
                    "bucket": 200_000, "ws": 5, "minn": 0, "maxn": 0, "neg": 5, "lrUpdateRate": 100, "t": 1e-4}
DEFAULT_DATA = {"held_out": 0.2, "balance": True, "max_words": 1000, "min_words": 1, "max_docs_per_source": None}
_FASTTEXT_KEYS = set(DEFAULT_FASTTEXT) | {"thread", "seed", "verbose", "pretrainedVectors"}


class ConfigError(ValueError):
    """The YAML does not describe a training run: says which file, which field, what is wrong."""


@dataclass
class Source:
    label: str
    name: str
    patterns: list[str]
    max_docs: int | None = None
    files: list[str] = field(default_factory=list)


# ---------------------------------------------------------------------------------------- config
def _err(path: str, where: str, msg: str) -> ConfigError:
    return ConfigError(f"{path}: {where}: {msg}")


def load_config(config_path: str) -> dict[str, Any]:
    import yaml

    with open(config_path, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    if not isinstance(raw, dict):
        raise _err(config_path, "top level", f"expected a mapping, found {type(raw).__name__}")
    root = raw.get("root") or os.path.dirname(os.path.abspath(config_path))
    root = os.path.join(os.path.dirname(os.path.abspath(config_path)), root)

    def resolve(p: str) -> str:
        return p if os.path.isabs(p) else os.path.normpath(os.path.join(root, p))

    if "labels" in raw:
        labels = raw["labels"]
        if not isinstance(labels, dict) or len(labels) < 2:
            raise _err(config_path, "labels", "expected a mapping of at least two labels to lists of sources")
    elif "positive" in raw and "negative" in raw:
        labels = {raw.get("positive_label", "hq"): raw["positive"], raw.get("negative_label", "lq"): raw["negative"]}
    else:
        raise _err(config_path, "labels", "missing: give `labels:` or both `positive:` and `negative:`")

    sources: list[Source] = []
    for label, items in labels.items():
        if not isinstance(label, str) or not label or any(c.isspace() for c in label):
            raise _err(config_path, f"labels.{label}", "a label must be a non-empty word")
        if not isinstance(items, list) or not items:
            raise _err(config_path, f"labels.{label}", "expected a non-empty list of sources")
        for i, item in enumerate(items):
            where = f"labels.{label}[{i}]"
            if isinstance(item, str):
                item = {"documents": [item]}
            if not isinstance(item, dict) or "documents" not in item:
                raise _err(config_path, where, "expected a glob or a mapping with `documents`")
            pats = item["documents"]
            pats = [pats] if isinstance(pats, str) else pats
            if not isinstance(pats, list) or not all(isinstance(p, str) for p in pats):
                raise _err(config_path, f"{where}.documents", "expected a glob or a list of globs")
            pats = [resolve(p) for p in pats]
            files = sorted({f for p in pats for f in glob.glob(p, recursive=True)})
            if not files:
                raise _err(config_path, f"{where}.documents", f"no file matches {pats}")
            name = item.get("name") or os.path.basename(os.path.dirname(files[0]))
            sources.append(Source(label, str(name), pats, item.get("max_docs"), files))

    data = {**DEFAULT_DATA, **(raw.get("data") or {})}
    if not 0 < float(data["held_out"]) < 1:
        raise _err(config_path, "data.held_out", f"expected a fraction in (0, 1), found {data['held_out']}")
    ft = {**DEFAULT_FASTTEXT, **(raw.get("fasttext") or {})}
    unknown = set(ft) - _FASTTEXT_KEYS
    if unknown:
        raise _err(config_path, "fasttext", f"unknown settings {sorted(unknown)}; known: {sorted(_FASTTEXT_KEYS)}")
    output = raw.get("output")
    if not output:
        raise _err(config_path, "output", "missing: where to write the model (.bin)")
    output = resolve(output)
    card = resolve(raw["card"]) if raw.get("card") else os.path.splitext(output)[0] + ".json"
    return {"name": raw.get("name") or os.path.splitext(os.path.basename(config_path))[0],
            "seed": int(raw.get("seed", 0)), "sources": sources, "data": data, "fasttext": ft,
            "output": output, "card": card, "config_path": os.path.abspath(config_path)}


# ------------------------------------------------------------------------------------------ data
def _read_texts(files: list[str]) -> list[tuple[str, str]]:
    from dolma_prep.core import io  # the one reader: same validity rules as every stage

    return [(str(rec.doc["id"]), rec.doc["text"]) for path in files for rec in io.read_documents(path) if rec.ok]


def _prepare(text: str, max_words: int) -> str:
    words = whitespace_join(text).split(" ")
    return " ".join(words[:max_words]) if max_words else " ".join(words)


def split_data(cfg: dict[str, Any]) -> tuple[list[tuple[str, str]], list[tuple[str, str, str]], list[dict]]:
    """(train [(label, text)], held-out [(label, source, text)], per-source counts)."""
    rng = random.Random(cfg["seed"])
    data = cfg["data"]
    train: dict[str, list[str]] = {}
    held: list[tuple[str, str, str]] = []
    counts = []
    for src in cfg["sources"]:
        docs = [(i, _prepare(t, int(data["max_words"] or 0))) for i, t in _read_texts(src.files)]
        docs = [(i, t) for i, t in docs if len(t.split()) >= int(data["min_words"])]
        docs.sort()
        rng.shuffle(docs)
        limit = src.max_docs or data["max_docs_per_source"]
        if limit:
            docs = docs[: int(limit)]
        n_held = round(len(docs) * float(data["held_out"]))
        if len(docs) >= 2:
            n_held = min(max(n_held, 1), len(docs) - 1)
        held += [(src.label, src.name, t) for _, t in docs[:n_held]]
        train.setdefault(src.label, []).extend(t for _, t in docs[n_held:])
        counts.append({"label": src.label, "source": src.name, "files": len(src.files), "documents": len(docs),
                       "train": len(docs) - n_held, "held_out": n_held, "documents_globs": src.patterns})
    for label in list(train):
        if not train[label]:
            raise ConfigError(f"{cfg['config_path']}: labels.{label}: no training documents left after the split")
    lines = [(label, t) for label, texts in train.items() for t in texts]
    if data["balance"]:
        target = max(len(v) for v in train.values())
        for label, texts in train.items():
            lines += [(label, texts[k % len(texts)]) for k in range(target - len(texts))]
    rng.shuffle(lines)
    return lines, held, counts


# --------------------------------------------------------------------------------------- metrics
def roc_auc(scores: list[float], positive: list[bool]) -> float | None:
    """Probability that a random positive outranks a random negative (ties count half)."""
    pos = sum(positive)
    neg = len(positive) - pos
    if not pos or not neg:
        return None
    order = sorted(range(len(scores)), key=lambda i: scores[i])
    ranks = [0.0] * len(scores)
    i = 0
    while i < len(order):
        j = i
        while j + 1 < len(order) and scores[order[j + 1]] == scores[order[i]]:
            j += 1
        for k in range(i, j + 1):
            ranks[order[k]] = (i + j) / 2 + 1
        i = j + 1
    rank_sum = sum(r for r, p in zip(ranks, positive) if p)
    return (rank_sum - pos * (pos + 1) / 2) / (pos * neg)


def evaluate(model: Any, held: list[tuple[str, str, str]], labels: list[str]) -> dict[str, Any]:
    from . import _fasttext

    preds = []
    for label, _, text in held:
        probs = dict((lab.replace("__label__", ""), p) for lab, p in _fasttext.predict(model, text))
        preds.append((label, max(probs, key=probs.get) if probs else None, probs))
    per_label = {}
    for lab in labels:
        tp = sum(1 for g, p, _ in preds if g == lab and p == lab)
        fp = sum(1 for g, p, _ in preds if g != lab and p == lab)
        fn = sum(1 for g, p, _ in preds if g == lab and p != lab)
        prec = tp / (tp + fp) if tp + fp else 0.0
        rec = tp / (tp + fn) if tp + fn else 0.0
        per_label[lab] = {"precision": prec, "recall": rec, "f1": 2 * prec * rec / (prec + rec) if prec + rec else 0.0,
                          "support": tp + fn}
    out = {"held_out_documents": len(preds), "accuracy": sum(g == p for g, p, _ in preds) / max(len(preds), 1),
           "per_label": per_label}
    if len(labels) == 2:
        out["auc"] = roc_auc([pr.get(labels[0], 0.0) for _, _, pr in preds], [g == labels[0] for g, _, _ in preds])
        out["auc_label"] = labels[0]
    return out


def format_report(name: str, metrics: dict[str, Any]) -> str:
    buf = io.StringIO()
    buf.write(f"{name}: held-out documents {metrics['held_out_documents']}, accuracy {metrics['accuracy']:.3f}")
    if metrics.get("auc") is not None:
        buf.write(f", AUC({metrics['auc_label']}) {metrics['auc']:.3f}")
    buf.write("\n  label        precision  recall     f1  support\n")
    for lab, m in metrics["per_label"].items():
        buf.write(f"  {lab:<12} {m['precision']:9.3f} {m['recall']:7.3f} {m['f1']:6.3f} {m['support']:8d}\n")
    return buf.getvalue()


# ---------------------------------------------------------------------------------------- train
# fastText's training, run in a fresh interpreter: see `train_fasttext`
_TRAIN_SCRIPT = """
import json, sys
import fasttext
job = json.loads(sys.argv[1])
fasttext.train_supervised(input=job["input"], **job["params"]).save_model(job["output"])
"""
# every block of 32 KiB or more (fastText's matrices) comes straight from fresh, zeroed pages
_ZEROED_ALLOCATIONS = {"MALLOC_MMAP_THRESHOLD_": "32768", "GLIBC_TUNABLES": "glibc.malloc.mmap_threshold=32768"}


class TrainingError(RuntimeError):
    """fastText failed; the message carries its error output."""


def _run_training(train_path: str, output: str, settings: dict[str, Any]) -> None:
    env = {**os.environ, **_ZEROED_ALLOCATIONS}
    job = json.dumps({"input": train_path, "output": output, "params": settings})
    proc = subprocess.run([sys.executable, "-c", _TRAIN_SCRIPT, job], env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        raise TrainingError(proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}")


def train_fasttext(lines: list[tuple[str, str]], output: str, seed: int, params: dict[str, Any],
                   max_nan_retries: int = 3) -> tuple[Any, dict[str, Any]]:
    """Train on (label, text) pairs and save to `output`; returns (model, settings used).
    Also handy for building tiny test models (language id, toxicity) from a few lines.

    Why a subprocess: fastText 0.9.2 initialises its input matrix block by block, one block
    per training thread, and with fewer than 10 threads part of the matrix is never written.
    Where the allocator hands out recycled memory those rows hold garbage, and training stops
    with "Encountered NaN" (or, worse, silently starts from garbage). That is the NaN seen on
    this project's 2-core machines (fastText's default is cpu_count - 1 = 1 thread there); it
    comes and goes with the same settings and learning rate. A fresh interpreter whose
    allocator serves large blocks as new zeroed pages makes the unwritten rows zeros, every
    time, so training is deterministic for a seed at thread=1 and never sees garbage."""
    if importlib.util.find_spec("fasttext") is None:  # fail here, with a clear message
        raise ImportError("training needs the fastText bindings: pip install fasttext-numpy2-wheel")
    from . import _fasttext

    settings = {**DEFAULT_FASTTEXT, **params, "thread": 1, "seed": seed, "verbose": 0}
    output = os.path.abspath(output)
    os.makedirs(os.path.dirname(output), exist_ok=True)
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False, encoding="utf-8") as f:
        for label, text in lines:
            f.write(f"__label__{label} {text.replace(chr(10), ' ')}\n")
        train_path = f.name
    retries = []
    try:
        for attempt in range(max_nan_retries + 1):
            try:
                _run_training(train_path, output, settings)
                break
            except TrainingError as e:
                if "nan" not in str(e).lower() or attempt == max_nan_retries:
                    raise
                retries.append({"lr": settings["lr"], "error": str(e)})
                settings["lr"] = settings["lr"] / 2
    finally:
        os.unlink(train_path)
    _fasttext._MODELS.pop(output, None)  # a model cached under the same path is stale now
    return _fasttext.load_model(output, "train_fasttext"), {**settings, "nan_retries": retries}


def _sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def train_classifier(config_path: str, quiet: bool = False) -> dict[str, Any]:
    """Train, evaluate on held-out documents, save the model and its card; return the card."""
    t0 = time.time()
    cfg = load_config(config_path)
    labels = list(dict.fromkeys(s.label for s in cfg["sources"]))
    lines, held, counts = split_data(cfg)
    model, settings = train_fasttext(lines, cfg["output"], cfg["seed"], cfg["fasttext"])
    metrics = evaluate(model, held, labels)
    try:
        from importlib.metadata import version

        ft_version = next((f"{d} {version(d)}" for d in ("fasttext-numpy2-wheel", "fasttext-wheel", "fasttext")
                           if _has_dist(d)), "unknown")
    except Exception:  # noqa: BLE001 pragma: no cover (only the card's version line)
        ft_version = "unknown"
    card = {
        "name": cfg["name"],
        "model": cfg["output"],
        "model_sha256": _sha256(cfg["output"]),
        "model_bytes": os.path.getsize(cfg["output"]),
        "labels": labels,
        "trained_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.time() - t0, 2),
        "config": cfg["config_path"],
        "seed": cfg["seed"],
        "data": cfg["data"],
        "sources": counts,
        "train_lines": len(lines),
        "train_lines_per_label": {lab: sum(1 for label, _ in lines if label == lab) for lab in labels},
        "preprocessing": "whitespace split and rejoined with single spaces (as the cc_multi_bin tagger), "
                         f"first {cfg['data']['max_words']} words",
        "fasttext": settings,
        "fasttext_version": ft_version,
        "metrics": metrics,
        "use": f"tagger cc_multi_bin (or jigsaw_*/ft_lang_id_* for such labels) with model_path={cfg['output']}",
    }
    os.makedirs(os.path.dirname(cfg["card"]) or ".", exist_ok=True)
    with open(cfg["card"], "w", encoding="utf-8") as f:
        json.dump(card, f, indent=2)
    if not quiet:
        print(format_report(cfg["name"], metrics), end="")
        print(f"model: {cfg['output']} ({card['model_bytes']:,} bytes), card: {cfg['card']}")
    return card


def _has_dist(name: str) -> bool:
    from importlib.metadata import PackageNotFoundError, version

    try:
        version(name)
        return True
    except PackageNotFoundError:
        return False
