"""The mix-file schema: a YAML file, validated by pydantic, that declares one whole run.

A mix file is data. It is parsed by a bounded `yaml.SafeLoader` (no Python tags; at most
MAX_MIX_BYTES, and at most MAX_YAML_NODES / MAX_YAML_CHARS once aliases are expanded) and
validated here; filters are jq / JSONPath expressions run by their own engines, never by
Python's `eval`. Relative paths (`data_root`, `output`, model paths) resolve against the mix
file's folder. Names that become folders under the output (mix name, experiments, source
names, dedup attributes) are single safe path components, one writer per attribute folder;
numbers are finite and within the bounds below. The `dedup:` section has one key per registered
dedup kind, holding that kind's options as its module defines them (dedup/kinds.py).
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from typing import Annotated, Any, Literal

import yaml
from pydantic import AfterValidator, BaseModel, Field, ValidationError, create_model, field_validator, model_validator

from ..core.io import InputError, is_remote
from ..core.schema import Strict, error_lines, safe_name
from ..dedup import kinds
from ..dedup.kinds import DedupKind, DedupOptions

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUNDLED_TOKENIZER = os.path.join(HERE, "resources", "allenai_gpt-neox-olmo-dolma-v1_5.json")
BUNDLED_SAMPLE = os.path.join(REPO, "sample", "documents")

# -- bounds -------------------------------------------------------------------------------------
# A mix file is a few KiB (the bundled ones are under 10 KiB); 1 MiB leaves room for thousands of
# explicit document paths while a file that is not a mix (a data file passed by mistake) stops here.
MAX_MIX_BYTES = 1 << 20
# Aliases let a tiny file stand for a huge document ("billion laughs": 9 aliases of 9 aliases ...
# nine deep is 9**9 nodes): the composed document, counted as if every alias were written out, may
# hold at most this many nodes and scalar characters. Real mixes are far below both (general.yaml:
# ~300 nodes, ~3,500 characters; 20,000 explicit document paths: ~20,000 nodes); above them the run
# would copy the expansion into every dump, hash and task (the constructed data shares aliased
# objects, `model_dump` and `json.dumps` do not).
MAX_YAML_NODES = 200_000
MAX_YAML_CHARS = 4 * MAX_MIX_BYTES
MAX_YAML_DEPTH = 64  # nesting; a mix is ~6 deep, and the YAML composer recurses per level
# Token counts: the largest public corpora hold ~1e13-1e14 tokens; 1e15 is above any real source
# yet below 2**53, so counts stay exact in a float and products with a proportion stay finite.
MAX_TOKENS = 1e15
MAX_DOCUMENTS = MAX_TOKENS  # every document holds at least one token
# A proportion above 1 up-samples (repeats) a source: OLMo / Dolma mixes repeat a source at most a
# few times (past ~4 epochs repeats help less and less: Muennighoff et al. 2023); 100 is far past
# any sensible value and still catches a typo such as a token count written as a proportion.
MAX_PROPORTION = 100.0
# `scale` multiplies every token target (0.01 for a smoke run, 2 for a bigger one); above 1e6 it is
# a typo, and with MAX_TOKENS the scaled targets (<= 1e21) stay finite.
MAX_SCALE = 1e6
# a name that becomes a path under the output (a dedup kind's attribute: dedup.kinds.DedupOptions)
ExperimentName = Annotated[str, AfterValidator(lambda v: safe_name(v, "experiment"))]
RunName = Annotated[str, AfterValidator(lambda v: safe_name(v, "mix name"))]


class TaggerSpec(Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    # attribute folder and key prefix; default: the mix's `experiment`. Dolma 1.7's filters
    # name e.g. `cc_multi_bin__cc_multi_bin__hq`: experiment cc_multi_bin, tagger cc_multi_bin
    experiment: ExperimentName | None = None
    # GPUs each tag task asks Ray for (e.g. 1 for hf_classifier_v1 on a GPU node; fractions share one)
    num_gpus: float = Field(default=0.0, ge=0)


class Filters(Strict):
    """dolma mixer filters: kept when any include matches (or none given) and no exclude does.
    Each expression is jq (e.g. `.attributes.x[0][2] > 0.5`) or JSONPath (starts with `$`)."""

    include: list[str] = Field(default_factory=list)
    exclude: list[str] = Field(default_factory=list)


class SpanReplacement(Strict):
    """Replace (or delete, with an empty replacement) the text inside spans of `attribute`
    whose score lies in [min_score, max_score]."""

    attribute: str
    replacement: str = ""
    min_score: float | None = None  # None: unbounded
    max_score: float | None = None


# Kinds whose absence a mix's dump has always held, as null: the config hashes earlier runs recorded
# include them. Any other kind (a new one, a user's) is dumped only when configured, so that
# registering a kind does not change the hash of a mix that does not use it.
_DUMPED_WHEN_OFF = ("exact", "paragraphs", "minhash", "decontaminate", "substrings")


class _Dedup(Strict):
    """The `dedup:` section: one optional field per registered kind (`_dedup_config`), holding
    that kind's options (dedup/kinds.py; each kind's module defines them)."""

    def configured(self) -> list[tuple[DedupKind, DedupOptions]]:
        """The kinds this mix runs, with their options, in the registry's order."""
        return [(k, cfg) for k in kinds.all_kinds() if (cfg := getattr(self, k.name, None)) is not None]


def _dedup_config() -> type[_Dedup]:
    """DedupConfig from the registry: an unknown kind is an unknown key, named with the known ones."""
    fields: dict[str, Any] = {}
    for k in kinds.all_kinds():
        off = {} if k.name in _DUMPED_WHEN_OFF else {"exclude_if": lambda v: v is None}
        fields[k.name] = (k.options | None, Field(default=None, **off))
    return create_model("DedupConfig", __base__=_Dedup, __module__=__name__, **fields)


DedupConfig = _dedup_config()


def dedup_options(kind: str, params: dict, where: str) -> dict:
    """Validate `dolma-prep dedup KIND --params JSON` options with the kind's typed options (the
    mix file's): InputError naming `where`, the key and the known keys. Returns the options the
    user gave (the `attribute` key is the command's own)."""
    kinds.validate(kind, params, where)
    return dict(params)


class TokenizerConfig(Strict):
    path: str = "bundled"
    eos_token_id: int | None = 50279
    bos_token_id: int | None = None
    pad_token_id: int = 1
    dtype: Literal["auto", "uint16", "uint32"] = "auto"
    max_tokens_per_file: int = Field(default=512 * 1024 * 1024, gt=0)
    batch_size: int = Field(default=512, gt=0)


class HFDataset(Strict):
    """A Hugging Face dataset read through the `datasets` library (streaming by default):
    a hub id with name/config and split (e.g. `allenai/dolma`, `v1_7`), a builder over local
    files (`path: json` or `parquet` with `data_files`), or a folder written by `save_to_disk`."""

    path: str
    name: str | None = None
    split: str = "train"
    data_files: list[str] | None = None
    streaming: bool = True


class Source(Strict):
    name: str
    documents: list[str] = Field(default_factory=list)
    dataset: HFDataset | None = None
    proportion: float | None = Field(default=None, ge=0, le=MAX_PROPORTION)
    tokens: float | None = Field(default=None, ge=0, le=MAX_TOKENS)
    tokens_available: float | None = Field(default=None, ge=0, le=MAX_TOKENS,
                                           description="declared size of the source, for `plan`")
    documents_available: float | None = Field(default=None, ge=0, le=MAX_DOCUMENTS)
    filters: Filters | None = None
    span_replacement: list[SpanReplacement] | None = None
    min_text_length: int | None = Field(default=None, ge=0)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        return safe_name(v, "source name")

    @model_validator(mode="after")
    def _one_input(self) -> Source:
        if bool(self.documents) == (self.dataset is not None):
            raise ValueError(f"source {self.name!r}: give either 'documents' (globs) or 'dataset', exactly one")
        return self

    @model_validator(mode="after")
    def _one_target(self) -> Source:
        if self.proportion is not None and self.tokens is not None:
            raise ValueError(f"source {self.name!r}: give either 'proportion' or 'tokens', not both")
        return self


class MixFile(Strict):
    name: RunName  # the default output folder is out/<name>
    description: str = ""
    data_root: str | None = None
    output: str | None = None
    seed: int = 0
    experiment: ExperimentName = "dolma_prep"
    taggers: list[TaggerSpec] = Field(default_factory=list)  # a bare name stands for {name: NAME}
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    filters: Filters = Field(default_factory=Filters)
    span_replacement: list[SpanReplacement] = Field(default_factory=list)
    min_text_length: int = Field(default=0, ge=0)
    total_tokens: float | None = Field(default=None, gt=0, le=MAX_TOKENS, description="run-level token budget")
    scale: float | Literal["auto"] = Field(default=1.0, description="multiply token targets; 'auto': the largest "
                                           "scale <= 1 the data can deliver, keeping the planned shares")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    sources: list[Source] = Field(min_length=1)

    @field_validator("taggers", mode="before")
    @classmethod
    def _taggers(cls, v):
        """Bare names become specs before validation, so an error names `taggers.0.experiment`
        once, not once per member of a `TaggerSpec | str` union."""
        return [{"name": t} if isinstance(t, str) else t for t in v] if isinstance(v, list) else v

    @field_validator("sources")
    @classmethod
    def _unique(cls, v: list[Source]) -> list[Source]:
        names = [s.name for s in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dup)}")
        return v

    @field_validator("scale", mode="before")
    @classmethod
    def _scale(cls, v):
        return _scale_value(v, "")

    @model_validator(mode="after")
    def _one_writer_per_folder(self) -> MixFile:
        """Every tagger experiment and every dedup kind writes `attributes/<name>/` under the output:
        two producers with one name would overwrite each other's files (or, resumed, read the other's
        as their own). Names differing only in case collide on case-insensitive file systems too."""
        writers: dict[str, str] = {}
        producers = [(exp, f"taggers (experiment {exp!r})") for exp in self.tagger_groups()]
        producers += [(cfg.attribute, f"dedup.{kind.name}.attribute") for kind, cfg in self.dedup.configured()]
        for name, who in producers:
            other = writers.setdefault(name.casefold(), who)
            if other != who:
                raise ValueError(f"{other} and {who} would both write the attribute folder attributes/{name}/ under "
                                 "the output; give each its own name")
        return self

    # -- derived ---------------------------------------------------------------------------
    def tagger_groups(self) -> dict[str, list[tuple[str, dict]]]:
        """Taggers by the experiment (attribute folder) they write to, in order."""
        groups: dict[str, list[tuple[str, dict]]] = {}
        for t in self.taggers:
            groups.setdefault(t.experiment or self.experiment, []).append((t.name, t.options))
        return groups

    def source_filters(self, src: Source) -> Filters:
        """A source's filters extend the mix-level ones."""
        extra = src.filters or Filters()
        return Filters(include=self.filters.include + extra.include, exclude=self.filters.exclude + extra.exclude)

    def source_replacements(self, src: Source) -> list[SpanReplacement]:
        return self.span_replacement + (src.span_replacement or [])

    def config_hash(self) -> str:
        """Hash of everything that decides the outputs: not where inputs are read from (the
        same documents locally or on S3 give the same outputs) nor where outputs go, nor the
        resources tasks ask for."""
        d = deciding_config(self.model_dump(mode="json"))
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def deciding_config(dumped: dict) -> dict:
    """The part of a dumped mix (`model_dump(mode="json")`, or one recorded by an earlier run)
    that decides the outputs and that `config_hash` covers: without where inputs are read from,
    where outputs go, the description, and the GPUs tagger tasks ask for."""
    d = {k: v for k, v in dumped.items() if k not in ("output", "description", "data_root")}
    if "taggers" in d:
        d["taggers"] = [{k: v for k, v in t.items() if k != "num_gpus"} if isinstance(t, dict) else t
                        for t in d["taggers"]]
    return d


def _scale_value(value, where: str) -> float | str:
    """'auto', or a finite number in (0, MAX_SCALE] (a string from the command line included);
    ValueError otherwise. A scale of 0 or below plans nothing, nan compares false with every
    measured count and inf asks for infinite tokens."""
    if value == "auto":
        return "auto"
    try:
        if isinstance(value, bool):
            raise TypeError
        s = float(value)
    except (TypeError, ValueError, OverflowError):
        s = math.nan
    if not (math.isfinite(s) and 0 < s <= MAX_SCALE):
        got = f", got {value!r}" if where else ""  # in a mix file the error list shows the value itself
        raise ValueError(f"{where}must be 'auto' or a finite number > 0 and <= {MAX_SCALE:g} (MAX_SCALE){got}")
    return s


def check_scale(value, where: str = "--scale") -> float | str:
    """The command line's `--scale`: 'auto' or a finite number in (0, MAX_SCALE], the same rule as
    the mix file's `scale`; InputError (exit 2) otherwise."""
    try:
        return _scale_value(value, f"{where} ")
    except ValueError as e:
        raise InputError(str(e)) from None


def check_name(value, where: str) -> str:
    """A command-line name that becomes a folder (`tag --experiment`, `dedup --attribute`): the
    rule of safe_name; InputError (exit 2) otherwise."""
    try:
        return safe_name(value, where)
    except ValueError as e:
        raise InputError(str(e)) from None


def check_workers(n, where: str = "--workers") -> int:
    """The command line's `--workers`: a whole number >= 1 (a string of digits included);
    InputError (exit 2) otherwise. Callers keep their own default for an option not given."""
    if isinstance(n, bool) or isinstance(n, float) and not n.is_integer():
        raise InputError(f"{where} must be a whole number >= 1, got {n!r}")
    try:
        k = int(n)
    except (TypeError, ValueError, OverflowError):
        raise InputError(f"{where} must be a whole number >= 1, got {n!r}") from None
    if k < 1:
        raise InputError(f"{where} must be a whole number >= 1, got {n!r}")
    return k


_ABSENT = object()


def _short(value: Any, limit: int = 60) -> str:
    s = "<absent>" if value is _ABSENT else json.dumps(value, sort_keys=True, default=str)
    return s if len(s) <= limit else s[:limit - 3] + "..."


def _by_name(items: list) -> dict | None:
    """{name: item} when every item is a dict with a distinct string "name" (sources, taggers)."""
    if not all(isinstance(x, dict) and isinstance(x.get("name"), str) for x in items):
        return None
    names = [x["name"] for x in items]
    return dict(zip(names, items)) if len(set(names)) == len(names) else None


def _same(a: Any, b: Any) -> bool:
    return a == b and type(a) is type(b) or (isinstance(a, (int, float)) and isinstance(b, (int, float))
                                             and not isinstance(a, bool) and not isinstance(b, bool) and a == b)


def config_diff(old: dict, new: dict) -> list[str]:
    """The fields that differ between two `MixFile.model_dump(mode="json")` dicts, one line each:
    `sources[books].proportion: 1.0 -> 2.0` (values as JSON, shortened to ~60 characters; a
    field on one side only shows `<absent>`). Dicts recurse by key, lists by index, except lists
    of dicts with distinct names (sources, taggers), which pair items by name. So a rerun that
    finds another configuration can say what changed, not only that the hash did."""
    out: list[str] = []

    def walk(path: str, a: Any, b: Any) -> None:
        if isinstance(a, dict) and isinstance(b, dict):
            for k in list(a) + [k for k in b if k not in a]:
                walk(f"{path}.{k}" if path else str(k), a.get(k, _ABSENT), b.get(k, _ABSENT))
        elif isinstance(a, list) and isinstance(b, list):
            na, nb = _by_name(a), _by_name(b)
            if na is not None and nb is not None:
                for k in list(na) + [k for k in nb if k not in na]:
                    walk(f"{path}[{k}]", na.get(k, _ABSENT), nb.get(k, _ABSENT))
            else:
                for i in range(max(len(a), len(b))):
                    walk(f"{path}[{i}]", a[i] if i < len(a) else _ABSENT, b[i] if i < len(b) else _ABSENT)
        elif not _same(a, b):
            out.append(f"{path or '<root>'}: {_short(a)} -> {_short(b)}")

    walk("", old, new)
    return out


def _resolve(base_dir: str, path: str) -> str:
    if is_remote(path) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


def _format_error(path: str, raw: dict, err: ValidationError, root: type[BaseModel] | None = None) -> str:
    root = root or MixFile

    def where(loc: tuple) -> str | None:
        """Source names instead of list indices where we can."""
        if loc[:1] == ("sources",) and len(loc) > 1 and isinstance(loc[1], int):
            try:
                name = raw["sources"][loc[1]].get("name", "?")
                return f"sources[{loc[1]}] ({name})." + ".".join(str(x) for x in loc[2:])
            except (KeyError, IndexError, AttributeError, TypeError):
                pass
        return None

    n, what = err.error_count(), "mix file" if root is MixFile else "options"
    return "\n".join([f"{path}: invalid {what} ({n} error{'s' if n > 1 else ''})", *error_lines(err, root, where)])


def _check_filters(path: str, mix: MixFile, raw: dict) -> None:
    """Compile every filter rule now, so that a rule that is not valid jq / JSONPath or that
    reaches outside the document (see filters.py) stops the run before anything starts."""
    from .filters import compile_expression

    groups = [("filters", mix.filters)]
    for i, src in enumerate(mix.sources):
        if src.filters is not None:
            groups.append((f"sources[{i}] ({src.name}).filters", src.filters))
    compiled: set[str] = set()  # a rule reused by many sources (a YAML anchor) compiles once; errors name its first use
    for where, f in groups:
        for kind in ("include", "exclude"):
            for j, rule in enumerate(getattr(f, kind)):
                if rule not in compiled:
                    compile_expression(rule, f"{path}: {where}.{kind}[{j}]")
                    compiled.add(rule)


class _TooBig(yaml.YAMLError):
    """A bound of _BoundedLoader crossed, at `mark` (the alias or node that crossed it)."""

    def __init__(self, problem: str, mark):
        super().__init__(problem)
        self.problem, self.problem_mark = problem, mark


class _BoundedLoader(yaml.SafeLoader):
    """SafeLoader that counts the document as if every alias were written out, while composing
    (before anything is constructed): each node adds 1 node and its scalar's length, each alias
    the size of the node it names (memoised, so counting is linear in the file). Crossing
    MAX_YAML_NODES / MAX_YAML_CHARS / MAX_YAML_DEPTH, or an alias inside its own anchor (a
    recursive structure that no dump or hash can expand), stops at that alias's line."""

    def __init__(self, stream):
        super().__init__(stream)
        self._size: dict[int, tuple[int, int]] = {}  # id(node) -> (nodes, chars) expanded; nodes live until the end
        self._nodes = self._chars = self._depth = 0

    def _add(self, nodes: int, chars: int, mark, what: str) -> None:
        self._nodes += nodes
        self._chars += chars
        if self._nodes > MAX_YAML_NODES or self._chars > MAX_YAML_CHARS:
            raise _TooBig(f"{what} expands the mix file past {MAX_YAML_NODES:,} YAML nodes or {MAX_YAML_CHARS:,} "
                          "characters with every alias written out (MAX_YAML_NODES, MAX_YAML_CHARS; an alias bomb?)",
                          mark)

    def compose_node(self, parent, index):
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()
            target = self.anchors.get(event.anchor)
            if target is not None:  # an undefined alias: the composer's own error
                size = self._size.get(id(target))
                if size is None:
                    raise _TooBig(f"alias *{event.anchor} is used inside its own anchor &{event.anchor} (a recursive "
                                  "structure has no finite expansion)", event.start_mark)
                self._add(*size, event.start_mark, f"alias *{event.anchor}")
            return super().compose_node(parent, index)
        mark = self.peek_event().start_mark
        self._depth += 1
        try:
            if self._depth > MAX_YAML_DEPTH:
                raise _TooBig(f"nested more than {MAX_YAML_DEPTH} levels deep (MAX_YAML_DEPTH)", mark)
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        if isinstance(node, yaml.ScalarNode):
            size = (1, len(node.value))
            self._add(*size, mark, "this value")
        else:
            children = [c for kv in node.value for c in kv] if isinstance(node, yaml.MappingNode) else node.value
            sizes = [self._size[id(c)] for c in children]
            size = (1 + sum(n for n, _ in sizes), sum(c for _, c in sizes))
            self._add(1, 0, mark, "this value")
        self._size[id(node)] = size
        return node


def _read_yaml(path: str) -> Any:
    """The mix file's data: at most MAX_MIX_BYTES of UTF-8, parsed by _BoundedLoader."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_MIX_BYTES + 1)  # not stat: a pipe or /dev/zero has no size
    except FileNotFoundError:
        raise InputError(f"{path}: mix file not found") from None
    except OSError as e:
        raise InputError(f"{path}: cannot read the mix file: {e.strerror or e}") from None
    if len(data) > MAX_MIX_BYTES:
        raise InputError(f"{path}: larger than {MAX_MIX_BYTES:,} bytes (MAX_MIX_BYTES); a mix file is a few KiB of "
                         "YAML: is this a data file?")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise InputError(f"{path}: not UTF-8 text (byte {e.start}); a mix file is YAML in UTF-8") from None
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_mix(path: str, data_root: str | None = None, output: str | None = None) -> MixFile:
    """Read and validate a mix file; raise InputError with a precise message on any problem."""
    try:
        raw = _read_yaml(path)
    except _TooBig as e:
        mark = e.problem_mark
        raise InputError(f"{path}:{mark.line + 1}:{mark.column + 1}: {e.problem}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}:{mark.column + 1}" if mark else ""
        raise InputError(f"{path}{where}: not valid YAML: {getattr(e, 'problem', e)}") from None
    if not isinstance(raw, dict):
        raise InputError(f"{path}: a mix file must be a YAML mapping, found {type(raw).__name__}")
    try:
        mix = MixFile.model_validate(raw)
    except ValidationError as e:
        raise InputError(_format_error(path, raw, e)) from None
    _check_filters(path, mix, raw)
    base = os.path.dirname(os.path.abspath(path))
    if data_root:
        mix.data_root = data_root if is_remote(data_root) else os.path.abspath(data_root)
    elif mix.data_root:
        mix.data_root = _resolve(base, mix.data_root)
    else:
        mix.data_root = BUNDLED_SAMPLE
    if output:
        mix.output = output if is_remote(output) else os.path.abspath(output)
    else:
        mix.output = os.path.abspath(mix.output or os.path.join("out", mix.name))
    if mix.tokenizer.path == "bundled":
        mix.tokenizer.path = BUNDLED_TOKENIZER
    elif not is_remote(mix.tokenizer.path) and (mix.tokenizer.path.startswith(".") or os.sep in mix.tokenizer.path):
        mix.tokenizer.path = _resolve(base, mix.tokenizer.path)
    for t in mix.taggers:  # model, tokenizer and list files resolve against the mix file too
        for k, v in list(t.options.items()):
            if k.endswith("_path") and isinstance(v, str):
                t.options[k] = _resolve(base, v)  # URLs and absolute paths stay as they are
            elif k.endswith("_path") and isinstance(v, list):  # several files (e.g. two Adblock lists)
                t.options[k] = [_resolve(base, x) if isinstance(x, str) else x for x in v]
    for _, cfg in mix.dedup.configured():  # an index to dedup against, evaluation sets: against the mix file too
        cfg.resolve_paths(lambda p: _resolve(base, p))
    for src in mix.sources:
        ds = src.dataset
        if ds is not None:
            if ds.path.startswith(".") or os.path.isdir(_resolve(base, ds.path)):
                ds.path = _resolve(base, ds.path)
            if ds.data_files:
                ds.data_files = [_resolve(base, f) for f in ds.data_files]
    return mix


def _rebuild_dedup_config() -> None:
    """A kind registered after this module was imported (a test, a notebook) joins the schema:
    MixFile is rebuilt in place, so every module holding the class validates with the new one."""
    global DedupConfig
    DedupConfig = _dedup_config()
    field = MixFile.model_fields["dedup"]
    field.annotation, field.default_factory = DedupConfig, DedupConfig
    MixFile.model_rebuild(force=True)


kinds.watch(_rebuild_dedup_config)
