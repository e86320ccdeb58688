"""Loading and querying fastText models, shared by the fastText-based taggers.

Models come from the `model_path` option, a local file or any fsspec URL (s3://..., read once
into a temporary file that is deleted after loading: every node of a cluster can reach the
model where the data is); each is loaded once per process. We call
the binding's low-level `predict` (what `fasttext.FastText._FastText.predict` wraps), which
returns plain floats: this works with every fastText wheel whatever the numpy version, and
gives the same probabilities as dolma's `classifier.predict(text, k=-1)`.
"""
from __future__ import annotations

import os
import threading
from typing import Any

from ._text import replace_surrogates

_MODELS: dict[str, Any] = {}
_LOCK = threading.Lock()


class ModelError(ValueError):
    """A fastText tagger was configured without a usable model."""


def load_model(model_path: str | os.PathLike | None, tagger: str) -> Any:
    if not model_path:
        raise ModelError(
            f"tagger {tagger!r} needs a local fastText model: pass the option model_path=/path/to/model.bin "
            "(models are never downloaded)")
    from dolma_prep.core import io

    path = os.fspath(model_path)
    if not (io.exists(path) if io.is_remote(path) else os.path.isfile(path)):
        raise ModelError(f"tagger {tagger!r}: model_path {path!r} does not exist")
    with _LOCK:
        model = _MODELS.get(path)
        if model is None:
            try:
                from fasttext.FastText import _FastText
            except ImportError as e:  # pragma: no cover - depends on the environment
                raise ModelError(f"tagger {tagger!r} needs the fastText bindings: pip install fasttext-numpy2-wheel") from e
            with io.local_copy(path) as local:
                model = _MODELS[path] = _FastText(model_path=local)
    return model


def predict(model: Any, text: str, k: int = -1, threshold: float = 0.0) -> list[tuple[str, float]]:
    """(label, probability) pairs, most probable first. `text` must not contain a newline."""
    try:
        pairs = model.f.predict(text + "\n", k, threshold, "strict")
    except (UnicodeError, TypeError):  # lone surrogates cannot be passed to fastText (dolma raises)
        pairs = model.f.predict(replace_surrogates(text) + "\n", k, threshold, "strict")
    return [(label, float(prob)) for prob, label in pairs]
