"""The dedup-kind registry: a kind is one module of this package (or a user's), registered by name.

    from dolma_prep.dedup.kinds import DedupKind, DedupOptions, register

    class ToyOptions(DedupOptions):
        attribute: str = "toy_hits"
        word: str = "toy"

    def run_toy(shards, attribute, work_dir, *, workers=None, **params) -> dict: ...

    register(DedupKind("toy", ToyOptions, run_toy, level="document"))

A record says everything the rest of the pipeline needs: the typed options (a mix file's
`dedup: {NAME: {...}}`, `dolma-prep dedup NAME --params`, and `run_<kind>`'s own check: one
definition, one set of defaults), the entry function, whether any span of its attribute drops the
document in select (`level="document"`) or only marks spans for span replacement ("span"), and
how `dolma-prep index build` / `--against` make and read its index (`IndexSpec`).

Which modules register: the package's own, in BUILTIN order (the order the dedup step runs
them: adding a kind to the package is its module and one entry of BUILTIN), then every module
named in the environment variable DOLMA_PREP_DEDUP_MODULES (file paths or dotted module names,
separated by os.pathsep). The CLI reads it before the mix file is validated, and `init_ray`
hands every `DOLMA_PREP_*` variable to the Ray workers, so the workers (which validate the
mix again) know the same kinds. Imports nothing of the package at import time: the kinds
import this module.
"""
from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from pydantic import ValidationError, field_validator

from dolma_prep.core.errors import InputError
from dolma_prep.core.schema import Strict, format_error, safe_name

# the package's kinds, in the order the registry lists them and the dedup step runs them
BUILTIN = ("exact", "paragraphs", "minhash", "decontam", "substrings")
ENV_MODULES = "DOLMA_PREP_DEDUP_MODULES"


class DedupOptions(Strict):
    """The base of every kind's options. A subclass gives `attribute` its default (the attribute
    folder and key the kind writes); the name rule of folders under the output holds for all."""

    attribute: str

    @field_validator("attribute")
    @classmethod
    def _safe_attribute(cls, v: str) -> str:
        return safe_name(v, "attribute")

    @classmethod
    def defaults(cls, *run_arguments: str) -> dict[str, Any]:
        """The defaults as `run_<kind>(**params)` sees them: every option but `attribute` and the
        keyword arguments `run_<kind>` names itself (`run_arguments`, e.g. keep_work)."""
        return {k: f.get_default(call_default_factory=True) for k, f in cls.model_fields.items()
                if k != "attribute" and k not in run_arguments}

    def from_index(self) -> str | None:
        """The index this run takes its parameters from (`against`), or None."""
        return getattr(self, "against", None)

    def run_params(self) -> dict[str, Any]:
        """What the dedup step hands to `run_<kind>`: every option, except that a run against an
        index gets only the options given, so that those left out come from the index."""
        return self.model_dump(exclude_unset=True) if self.from_index() else self.model_dump()

    def resolve_paths(self, resolve: Callable[[str], str]) -> None:
        """Make the options that are paths resolve against the mix file's folder (`resolve`):
        `against`, where the kind has it."""
        if getattr(self, "against", None) is not None:
            self.against = resolve(self.against)

    def extra_attributes(self) -> tuple[str, ...]:
        """Keys written beside `attribute` with these options, as suffixes (`<attribute>__<suffix>`)."""
        return ()


@dataclass(frozen=True)
class SortedRuns:
    """What a kind's index build leaves for the index builder to compact: run files (`glob`)
    sorted by `key`, with `columns` (the reference column last), `rows` rows in all; with
    `first_only`, only the first row of each distinct key tuple is kept."""

    glob: str
    key: str
    columns: list[str]
    first_only: bool
    rows: int
    tasks: list[dict]  # the task results, for the statistics


@dataclass(frozen=True)
class IndexParts:
    """A table a kind's index build wrote itself (no compaction): the manifest's part entries,
    the statistics of its stages and what the version records beside them."""

    parts: list[dict]
    stages: dict
    version: dict = field(default_factory=dict)


@dataclass(frozen=True)
class IndexSpec:
    """How `dolma-prep index build --kinds NAME` makes a kind's table and how a run reads it.

    - `name`: the index kind (the dedup kind's name, or its own: decontaminate's is `ngram`);
    - `keeps`: the parameters an index records; a run against it must use the same values;
    - `params(given) -> dict`: the recorded parameters from those given (defaults, checks);
    - `build(files, params, version_dir, work, workers) -> SortedRuns | IndexParts`, files
      [(g, path)] numbered across the index's versions;
    - `use(index, params) -> params`: the options of a run against INDEX, checked before Ray
      starts (`dolma-prep dedup KIND --against INDEX`);
    - `documents`: its matches name indexed documents (the index keeps their ids). False for a
      table of evaluation sets, which is built alone;
    - `outdated`: {index format: why this version cannot read its tables of this kind}."""

    name: str
    keeps: tuple[str, ...]
    params: Callable[[dict], dict]
    build: Callable[..., SortedRuns | IndexParts]
    use: Callable[[str, dict], dict]
    documents: bool = True
    outdated: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True, repr=False)
class DedupKind:
    """One dedup kind. `run(shards, attribute, work_dir, *, workers=None, **options) -> dict`
    (statistics) takes [(documents_path, attributes_path)] and writes one attribute line per
    document line. `cli_check(params)`: what `dolma-prep dedup NAME` lacks, in the command's
    terms, or None."""

    name: str
    options: type[DedupOptions]
    run: Callable[..., dict]
    level: Literal["document", "span"]
    index: IndexSpec | None = None
    cli_check: Callable[[dict], str | None] | None = None

    @property
    def default_attribute(self) -> str:
        return self.options.model_fields["attribute"].default

    @property
    def module(self) -> str:
        return self.run.__module__

    def __repr__(self) -> str:
        return f"DedupKind({self.name!r}, {self.level}, {self.module})"


_REGISTRY: dict[str, DedupKind] = {}
_WATCHERS: list[Callable[[], None]] = []
_discovered = False


def register(kind: DedupKind) -> DedupKind:
    """Add `kind` (a module's last line). Registering another kind under a taken name is an error;
    the same module registering again (a reload) replaces its record."""
    if kind.level not in ("document", "span"):
        raise ValueError(f"dedup kind {kind.name!r}: level must be 'document' or 'span', got {kind.level!r}")
    if not isinstance(kind.default_attribute, str):
        raise ValueError(f"dedup kind {kind.name!r}: its options must give `attribute` a default")
    old = _REGISTRY.get(kind.name)
    if old is not None and old.module != kind.module:
        raise ValueError(f"dedup kind {kind.name!r} registered twice ({old.module} and {kind.module})")
    _REGISTRY[kind.name] = kind
    _changed()
    return kind


def unregister(name: str) -> None:
    """Remove a kind (tests, notebooks)."""
    if _REGISTRY.pop(name, None) is not None:
        _changed()


def watch(fn: Callable[[], None]) -> None:
    """Call `fn()` after every change of the registry: the mix-file schema is built from it."""
    _WATCHERS.append(fn)


def _changed() -> None:
    for fn in _WATCHERS:
        fn()


def _discover() -> None:
    global _discovered
    if _discovered:
        return
    _discovered = True
    for name in BUILTIN:
        importlib.import_module(f"{__package__}.{name}")
    named = [p.strip() for p in os.environ.get(ENV_MODULES, "").split(os.pathsep) if p.strip()]
    named = [os.path.abspath(p) if _is_file(p) else p for p in named]
    if named:  # absolute before Ray starts and hands the variable on: a worker's folder is not the driver's
        os.environ[ENV_MODULES] = os.pathsep.join(named)
    load_modules(named)


def _is_file(p: str) -> bool:
    return p.endswith(".py") or os.path.sep in p


def load_modules(paths: Iterable[str]) -> None:
    """Import user modules of dedup kinds (file paths or dotted module names) so they register.
    A file's functions travel to Ray workers by value (it is no module a worker can import)."""
    for p in paths:
        p = p.strip()
        if not _is_file(p):
            importlib.import_module(p)
            continue
        if not os.path.exists(p):
            raise InputError(f"dedup module {p} does not exist ({ENV_MODULES})")
        name = "dolma_prep_user_dedup_" + os.path.splitext(os.path.basename(p))[0]
        loaded = sys.modules.get(name)
        if loaded is not None and os.path.abspath(getattr(loaded, "__file__", "") or "") == os.path.abspath(p):
            continue  # already imported in this process
        spec = importlib.util.spec_from_file_location(name, p)
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module
        import ray.cloudpickle  # heavy: only for a user's file

        ray.cloudpickle.register_pickle_by_value(module)
        spec.loader.exec_module(module)


def all_kinds() -> list[DedupKind]:
    """Every kind: the package's in BUILTIN order (however their modules were first imported),
    then the others in the order they registered."""
    _discover()
    rank = {f"{__package__}.{m}": i for i, m in enumerate(BUILTIN)}
    return sorted(_REGISTRY.values(), key=lambda k: rank.get(k.module, len(rank)))


def available() -> list[str]:
    return [k.name for k in all_kinds()]


def get(name: str) -> DedupKind:
    _discover()
    if name not in _REGISTRY:
        raise KeyError(f"unknown dedup kind {name!r}; known: {', '.join(available())}")
    return _REGISTRY[name]


def index_specs() -> list[IndexSpec]:
    """The index kinds (`index build --kinds`), in the order of their dedup kinds."""
    return [k.index for k in all_kinds() if k.index is not None]


def index_spec(name: str) -> IndexSpec | None:
    return next((s for s in index_specs() if s.name == name), None)


def validate(kind: str, params: dict, where: str) -> DedupOptions:
    """`params` checked by the kind's options: InputError `WHERE: invalid options` naming each
    bad or unknown key (with the known keys) otherwise."""
    model = get(kind).options
    try:
        return model.model_validate({**params})
    except ValidationError as e:
        raise InputError(format_error(where, e, model)) from None


def checked(kind: str, params: dict, defaults: dict) -> dict:
    """`params` over the kind's `defaults`, validated and coerced by its options as a mix file's
    would be (`run_<kind>: invalid options ...` otherwise)."""
    valid = validate(kind, params, f"run_{kind}")
    return {**defaults, **{k: getattr(valid, k) for k in params}}
