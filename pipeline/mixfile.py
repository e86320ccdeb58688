"""The mix-file schema: a YAML file, validated by pydantic, that declares one whole run.

A mix file is data. It is parsed with `yaml.safe_load` (no Python tags) and validated here;
filters are jq / JSONPath expressions run by their own engines, never by Python's `eval`.
Relative paths (`data_root`, `output`, model paths) resolve against the mix file's folder.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .io import InputError, is_remote

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.dirname(HERE)
BUNDLED_TOKENIZER = os.path.join(HERE, "resources", "allenai_gpt-neox-olmo-dolma-v1_5.json")
BUNDLED_SAMPLE = os.path.join(REPO, "sample", "documents")
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class TaggerSpec(Strict):
    name: str
    options: dict[str, Any] = Field(default_factory=dict)
    # attribute folder and key prefix; default: the mix's `experiment`. Dolma 1.7's filters
    # name e.g. `cc_multi_bin__cc_multi_bin__hq`: experiment cc_multi_bin, tagger cc_multi_bin
    experiment: str | None = None


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


class ExactDedup(Strict):
    attribute: str = "exact_duplicates"
    key: str = "text"  # "text" or a dotted field such as "metadata.url"


class DedupConfig(Strict):
    exact: ExactDedup | None = None
    paragraphs: dict[str, Any] | None = None
    minhash: dict[str, Any] | None = None
    decontaminate: dict[str, Any] | None = None
    # exact-substring spans (suffix arrays): {min_length: K, unit: bytes|tokens, part_size: ...}
    substrings: dict[str, Any] | None = None


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
    proportion: float | None = Field(default=None, ge=0)
    tokens: float | None = Field(default=None, ge=0)
    tokens_available: float | None = Field(default=None, ge=0, description="declared size of the source, for `plan`")
    documents_available: float | None = Field(default=None, ge=0)
    filters: Filters | None = None
    span_replacement: list[SpanReplacement] | None = None
    min_text_length: int | None = Field(default=None, ge=0)

    @field_validator("name")
    @classmethod
    def _safe_name(cls, v: str) -> str:
        if not SOURCE_NAME.match(v) or ".." in v:
            raise ValueError(f"source name {v!r} must match {SOURCE_NAME.pattern} and may not contain '..' "
                             "(it becomes a folder name under the output)")
        return v

    @model_validator(mode="after")
    def _one_input(self) -> "Source":
        if bool(self.documents) == (self.dataset is not None):
            raise ValueError(f"source {self.name!r}: give either 'documents' (globs) or 'dataset', exactly one")
        return self

    @model_validator(mode="after")
    def _one_target(self) -> "Source":
        if self.proportion is not None and self.tokens is not None:
            raise ValueError(f"source {self.name!r}: give either 'proportion' or 'tokens', not both")
        return self


class MixFile(Strict):
    name: str
    description: str = ""
    data_root: str | None = None
    output: str | None = None
    seed: int = 0
    experiment: str = "dolma_prep"
    taggers: list[TaggerSpec | str] = Field(default_factory=list)
    dedup: DedupConfig = Field(default_factory=DedupConfig)
    filters: Filters = Field(default_factory=Filters)
    span_replacement: list[SpanReplacement] = Field(default_factory=list)
    min_text_length: int = Field(default=0, ge=0)
    total_tokens: float | None = Field(default=None, gt=0, description="run-level token budget")
    scale: float | Literal["auto"] = Field(default=1.0, description="multiply token targets; 'auto': the largest "
                                           "scale <= 1 the data can deliver, keeping the planned shares")
    tokenizer: TokenizerConfig = Field(default_factory=TokenizerConfig)
    sources: list[Source] = Field(min_length=1)

    @field_validator("taggers")
    @classmethod
    def _taggers(cls, v: list) -> list[TaggerSpec]:
        return [TaggerSpec(name=t) if isinstance(t, str) else t for t in v]

    @field_validator("sources")
    @classmethod
    def _unique(cls, v: list[Source]) -> list[Source]:
        names = [s.name for s in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"source names must be unique; repeated: {', '.join(dup)}")
        return v

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
        same documents locally or on S3 give the same outputs) nor where outputs go."""
        d = self.model_dump(mode="json", exclude={"output", "description", "data_root"})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _resolve(base_dir: str, path: str) -> str:
    if is_remote(path) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


def _format_error(path: str, raw: dict, err: ValidationError) -> str:
    lines = [f"{path}: invalid mix file ({err.error_count()} error{'s' if err.error_count() > 1 else ''})"]
    for e in err.errors():
        loc = ".".join(str(x) for x in e["loc"])
        # show source names instead of list indices where we can
        if e["loc"][:1] == ("sources",) and len(e["loc"]) > 1 and isinstance(e["loc"][1], int):
            try:
                loc = f"sources[{e['loc'][1]}] ({raw['sources'][e['loc'][1]].get('name', '?')})." + ".".join(
                    str(x) for x in e["loc"][2:])
            except (KeyError, IndexError, AttributeError, TypeError):
                pass
        msg = e["msg"]
        if e["type"] == "extra_forbidden":
            msg = "unknown key (typo?)"
        found = e.get("input")
        found_s = "" if isinstance(found, (dict, list)) else f"; found {found!r}"
        lines.append(f"  - {loc}: {msg}{found_s}")
    return "\n".join(lines)


def load_mix(path: str, data_root: str | None = None, output: str | None = None) -> MixFile:
    """Read and validate a mix file; raise InputError with a precise message on any problem."""
    try:
        with open(path, encoding="utf-8") as f:
            raw = yaml.safe_load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: mix file not found") from None
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
            if k.endswith("_path") and isinstance(v, str) and not is_remote(v) and not os.path.isabs(v):
                t.options[k] = _resolve(base, v)
    for src in mix.sources:
        ds = src.dataset
        if ds is not None:
            if ds.path.startswith(".") or os.path.isdir(_resolve(base, ds.path)):
                ds.path = _resolve(base, ds.path)
            if ds.data_files:
                ds.data_files = [_resolve(base, f) for f in ds.data_files]
    return mix
