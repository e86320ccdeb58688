"""A transformer classifier tagger: any Hugging Face sequence-classification or regression
model from a local folder (`hf_classifier_v1`).

    taggers:
      - name: hf_classifier_v1
        options: {model_path: models/fineweb-edu-classifier, batch_size: 32}

The folder is what `save_pretrained` writes (config.json, weights, tokenizer files); it is
loaded with `AutoTokenizer` / `AutoModelForSequenceClassification` with `local_files_only`,
so nothing is ever downloaded. Needs `torch` and `transformers` (the `train` extra).

Fields, each a document span `[0, len(text), value]`:
- regression models (`num_labels == 1` or `problem_type: regression`, e.g. FineWeb-Edu's
  educational-value classifier): `score`, the raw output; with the option `int_score: true`
  also `int_score` = round(clamp(score, 0, int_score_max)) (FineWeb-Edu: max 5, keep >= 3);
- single-label classifiers: one field per label of `config.id2label` (e.g. `LABEL_0`, or
  `High`/`Medium`/`Low`), its softmax probability, in label-id order;
- `problem_type: multi_label_classification`: one field per label, its sigmoid.
Field names go through dolma's key sanitising (`[^A-Za-z0-9_]` -> `_`).

Texts are tokenized with truncation to `max_length` (default: the tokenizer's
`model_max_length`, capped at the model's `max_position_embeddings`), padded per batch;
documents are scored in batches of `batch_size` (default 16), sorted by length inside the
runner's batch so padding stays small, and returned in input order.

Device: `device: auto` (default) uses CUDA when torch sees a GPU (on Ray, only tasks that were
given a GPU see one, because Ray sets CUDA_VISIBLE_DEVICES), else the CPU; `device: cpu` or
`device: cuda:N` force one. `dtype: float32` (default), `float16` or `bfloat16`.

FineWeb-Edu, where the Hugging Face hub is reachable (once, on a machine with access):

    python -c "from transformers import AutoTokenizer, AutoModelForSequenceClassification as M; \\
      n='HuggingFaceFW/fineweb-edu-classifier'; \\
      AutoTokenizer.from_pretrained(n).save_pretrained('fwedu'); M.from_pretrained(n).save_pretrained('fwedu')"

then `options: {model_path: fwedu, int_score: true}` and filter on `<exp>__hf_classifier_v1__int_score`.
NeMo Curator's quality and domain classifiers are DeBERTa models with their own head class
(not `AutoModelForSequenceClassification` checkpoints); they need a tagger module of their
own (`--tagger-modules`), which can subclass this one and override `load_model`.
"""
from __future__ import annotations

import json
import os
from typing import Any

from ._text import replace_surrogates
from .registry import Document, Spans, Tagger, register


@register("hf_classifier_v1")
class HFClassifier(Tagger):
    """Scores of a local Hugging Face sequence-classification / regression model (`model_path`)."""

    def __init__(self, model_path: str | None = None, batch_size: int = 16, max_length: int | None = None,
                 device: str = "auto", dtype: str = "float32", int_score: bool = False, int_score_max: int = 5,
                 **options: Any):
        super().__init__(model_path=model_path, batch_size=batch_size, max_length=max_length, device=device,
                         dtype=dtype, int_score=int_score, int_score_max=int_score_max, **options)
        if not model_path:
            raise ValueError(f"tagger {self.name!r} needs a local model folder: pass model_path=/path/to/model "
                             "(models are never downloaded)")
        if not os.path.isdir(model_path) or not os.path.isfile(os.path.join(model_path, "config.json")):
            raise ValueError(f"tagger {self.name!r}: model_path {model_path!r} is not a folder with a config.json")
        try:
            import torch
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"tagger {self.name!r} needs torch and transformers: pip install 'dolma-prep[train]'") from e
        self.torch = torch
        self.batch_size = int(batch_size)
        self.int_score, self.int_score_max = bool(int_score), int(int_score_max)
        if device == "auto":
            device = "cuda" if torch.cuda.is_available() else "cpu"
        self.device = torch.device(device)
        self.tokenizer, self.model = self.load_model(model_path, getattr(torch, dtype))
        self.model.to(self.device).eval()
        cfg = self.model.config
        limits = [x for x in (max_length, getattr(self.tokenizer, "model_max_length", None),
                              getattr(cfg, "max_position_embeddings", None)) if x]
        self.max_length = int(max_length) if max_length else min(limits) if limits else 512
        n = cfg.num_labels
        self.mode = ("regression" if n == 1 or cfg.problem_type == "regression"
                     else "multi" if cfg.problem_type == "multi_label_classification" else "single")
        self.labels = [str(cfg.id2label.get(i, f"LABEL_{i}")) for i in range(n)]

    @classmethod
    def output_fields_for(cls, options: dict[str, Any]) -> tuple[str, ...] | None:
        """The fields `predict` will write with these options, read from the model folder's
        config.json without torch, as `__init__` derives them: for the preflight's check that
        every attribute a filter reads is written. None where that file does not tell: no
        readable config, or a subclass that loads its model or names its fields its own way."""
        if cls.load_model is not HFClassifier.load_model or cls.fields is not HFClassifier.fields:
            return None
        try:
            with open(os.path.join(options["model_path"], "config.json"), encoding="utf-8") as f:
                cfg = json.load(f)
            id2label = {int(k): str(v) for k, v in (cfg.get("id2label") or {}).items()}
            n = len(id2label) if id2label else int(cfg.get("num_labels", 2))
        except (OSError, KeyError, TypeError, ValueError, AttributeError):
            return None
        if n == 1 or cfg.get("problem_type") == "regression":
            return ("score", "int_score") if options.get("int_score") else ("score",)
        return tuple(id2label.get(i, f"LABEL_{i}") for i in range(n))

    def load_model(self, model_path: str, dtype):
        try:
            from transformers import AutoModelForSequenceClassification, AutoTokenizer
        except ImportError as e:  # pragma: no cover - depends on the environment
            raise ImportError(f"tagger {self.name!r} needs transformers: pip install 'dolma-prep[train]'") from e
        tokenizer = AutoTokenizer.from_pretrained(model_path, local_files_only=True)
        import transformers

        # transformers >= 4.56 names the argument `dtype` (and warns about `torch_dtype`)
        major, minor = (int(x) for x in transformers.__version__.split(".")[:2])
        key = "dtype" if (major, minor) >= (4, 56) else "torch_dtype"
        model = AutoModelForSequenceClassification.from_pretrained(model_path, local_files_only=True, **{key: dtype})
        return tokenizer, model

    def scores(self, texts: list[str]) -> list[list[float]]:
        """One row of model outputs per text (after softmax / sigmoid for classifiers)."""
        torch = self.torch
        enc = self.tokenizer([replace_surrogates(t) for t in texts], truncation=True, max_length=self.max_length,
                             padding=True, return_tensors="pt")
        with torch.inference_mode():
            logits = self.model(**{k: v.to(self.device) for k, v in enc.items()}).logits.float()
        if self.mode == "single":
            logits = torch.softmax(logits, dim=-1)
        elif self.mode == "multi":
            logits = torch.sigmoid(logits)
        return logits.cpu().tolist()

    def fields(self, row: list[float], n: int) -> dict[str, Spans]:
        if self.mode == "regression":
            out = {"score": [[0, n, row[0]]]}
            if self.int_score:
                out["int_score"] = [[0, n, float(int(round(max(0.0, min(row[0], self.int_score_max)))))]]
            return out
        return {label: [[0, n, p]] for label, p in zip(self.labels, row)}

    def predict(self, doc: Document) -> dict[str, Spans]:
        return self.predict_batch([doc])[0]

    def predict_batch(self, docs: list[Document]) -> list[dict[str, Spans]]:
        order = sorted(range(len(docs)), key=lambda i: len(docs[i].text))
        results: list[dict[str, Spans]] = [{} for _ in docs]
        for k in range(0, len(order), self.batch_size):
            idx = order[k:k + self.batch_size]
            for i, row in zip(idx, self.scores([docs[i].text for i in idx])):
                results[i] = self.fields(row, len(docs[i].text))
        return results
