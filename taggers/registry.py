"""The tagger registry: a tagger is one class in one file, registered by name.

    from dolma_prep.taggers.registry import Tagger, register

    @register("char_length_v1")
    class CharLength(Tagger):
        def predict(self, doc):
            return {"length": [[0, len(doc.text), float(len(doc.text))]]}

`predict` returns `{field: [[start, end, score], ...]}`. The runtime owns everything else:
naming keys `<experiment>__<tagger>__<field>` exactly as `dolma tag` does, rounding scores to
5 decimals, batching, parallelism and output. Taggers are pure functions of a document: no
Ray, no I/O beyond loading a model in `__init__`.

Every module in this package is imported on first use, so adding a tagger means adding one
file; users load their own with `--tagger-modules my_taggers.py` (see `load_modules`).
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import pkgutil
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar

Spans = list[list[float]]


@dataclass
class Document:
    id: str
    text: str
    source: str = ""
    metadata: dict[str, Any] = field(default_factory=dict)


class Tagger:
    """Base class. Override `predict`; override `predict_batch` when batching is faster."""

    name: ClassVar[str] = ""
    # The field names `predict` may return (before `variable_name`), so that the preflight can
    # refuse a filter rule that reads a key no tagger writes (pipeline/attributes_known.py): a
    # missing key is null to jq, and `null < 50` is true. None: not known before the run (a
    # model's labels, one field per language); the key prefix `<exp>__<tagger>__` is still
    # checked. Believed only where declared at or below the class whose `predict` /
    # `predict_batch` runs, so a subclass that overrides `predict` without declaring its own
    # is unknown rather than wrongly known. A tagger whose fields follow from its options and a
    # small file may instead define a classmethod `output_fields_for(options)` (hf_classifier_v1
    # reads its model's config.json).
    output_fields: ClassVar[tuple[str, ...] | None] = None

    def __init__(self, **options: Any) -> None:
        self.options = options

    def predict(self, doc: Document) -> dict[str, Spans]:
        raise NotImplementedError

    def predict_batch(self, docs: list[Document]) -> list[dict[str, Spans]]:
        return [self.predict(d) for d in docs]


_REGISTRY: dict[str, type[Tagger]] = {}
_discovered = False


def register(name: str) -> Callable[[type[Tagger]], type[Tagger]]:
    def wrap(cls: type[Tagger]) -> type[Tagger]:
        if name in _REGISTRY and _REGISTRY[name] is not cls:
            raise ValueError(f"tagger {name!r} registered twice ({_REGISTRY[name].__module__} and {cls.__module__})")
        cls.name = name
        _REGISTRY[name] = cls
        return cls

    return wrap


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    pkg = sys.modules[__package__]
    for mod in pkgutil.iter_modules(pkg.__path__):
        if mod.name != "registry" and not mod.name.startswith("_"):
            importlib.import_module(f"{__package__}.{mod.name}")


def load_modules(paths: Iterable[str]) -> None:
    """Import user tagger modules (file paths or dotted module names) so they register."""
    for p in paths:
        if p.endswith(".py") or os.path.sep in p:
            if not os.path.exists(p):
                raise FileNotFoundError(f"tagger module {p} does not exist")
            name = "dolma_prep_user_taggers_" + os.path.splitext(os.path.basename(p))[0]
            loaded = sys.modules.get(name)
            if loaded is not None and os.path.abspath(getattr(loaded, "__file__", "") or "") == os.path.abspath(p):
                continue  # already imported in this process (the CLI's preflight, then the run)
            spec = importlib.util.spec_from_file_location(name, p)
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        else:
            importlib.import_module(p)


def available() -> list[str]:
    _discover()
    return sorted(_REGISTRY)


def get(name: str, **options: Any) -> Tagger:
    _discover()
    if name not in _REGISTRY:
        raise KeyError(f"unknown tagger {name!r}; known: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name](**options)


_NOT_IDENT = re.compile(r"[^a-zA-Z0-9_]")


def variable_name(name: str) -> str:
    """`dolma tag` puts experiment, tagger and field names through this before joining them:
    every character outside [a-zA-Z0-9_] becomes `_` (so tagger `dolma17-quality` writes keys
    `<exp>__dolma17_quality__<field>`). Identity for ordinary names."""
    return _NOT_IDENT.sub("_", name)


def key_prefix(experiment: str, tagger_name: str) -> str:
    """`dolma tag` naming: `<experiment>__<tagger>__`."""
    return f"{variable_name(experiment)}__{variable_name(tagger_name)}__"


def format_output(experiment: str, tagger_name: str, result: dict[str, Spans]) -> dict[str, Spans]:
    """Name keys and round scores to 5 decimals, as `dolma tag` writes them.

    Like dolma, fields with an empty name are dropped and names are made identifier-safe."""
    prefix = key_prefix(experiment, tagger_name)
    out: dict[str, Spans] = {}
    for fld, spans in result.items():
        if not fld:
            continue
        out[prefix + variable_name(fld)] = [[int(s), int(e), round(float(v), 5)] for s, e, v in spans]
    return out
