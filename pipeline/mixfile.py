"""The mix-file schema: a YAML file, validated by pydantic, that declares one whole run.

A mix file is data. It is parsed with `yaml.safe_load` (no Python tags) and validated here;
filters are jq / JSONPath expressions run by their own engines, never by Python's `eval`.
Relative paths (`data_root`, `output`, model paths) resolve against the mix file's folder.
"""
from __future__ import annotations

import difflib
import hashlib
import json
import os
import re
from typing import Any, Literal, get_args

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


class ExactDedup(Strict):
    """Exact dedup (`dedup/exact.py` run_exact)."""

    attribute: str = "exact_duplicates"
    key: str = "text"  # "text" or a dotted field such as "metadata.url"
    partitions: int | None = Field(default=None, ge=1)  # default: one per GiB of input files, 1..256
    against: str | None = None  # an index (`dolma-prep index build`): also duplicates of indexed documents


class ParagraphsDedup(Strict):
    """Paragraph n-gram dedup (`dedup/paragraphs.py` run_paragraphs; defaults: Dolma 1.7's
    `dd_ngram` run). The defaults here must equal that module's DEFAULTS (tested)."""

    attribute: str = "bff_duplicate_paragraph_spans"
    ngram_length: int = Field(default=13, ge=1)
    stride: int = Field(default=1, ge=1)
    overlap_threshold: float = Field(default=0.5, ge=0, le=1)
    threshold: float | None = Field(default=None, ge=0, le=1, description="alias of overlap_threshold")
    skip_short_paragraphs: bool = False
    paragraph_separator: str = "\n"
    min_length: int = Field(default=0, ge=0)
    min_words: int = Field(default=0, ge=0)
    skip_empty: bool = True
    # dolma's Bloom filter sizing, accepted for its configs; unused: membership here is exact
    expected_count: int | None = Field(default=None, ge=1, description="accepted for dolma configs; unused")
    false_positive_rate: float = Field(default=1e-6, gt=0, lt=1, description="accepted for dolma configs; unused")
    bloom_partitions: int = Field(default=8, ge=1, description="a power of two: key-space pieces, one task each")
    keep_work: bool = False
    against: str | None = None  # an index (`dolma-prep index build`): also duplicates of indexed documents

    @field_validator("bloom_partitions")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"must be a power of two (1, 2, 4, 8 ...), got {v}")
        return v


class MinHashDedup(Strict):
    """MinHash-LSH document dedup (`dedup/minhash.py` run_minhash); defaults equal that
    module's DEFAULTS (tested)."""

    attribute: str = "minhash_duplicates"
    ngram: int = Field(default=5, ge=1)
    num_perm: int | None = Field(default=None, ge=1, description="default bands * rows")
    bands: int = Field(default=16, ge=1)
    rows: int = Field(default=7, ge=1)
    threshold: float = Field(default=0.8, ge=0, le=1)
    verify: Literal["exact", "none"] = "exact"
    seed: int = 1
    hash_family: Literal["multiply_shift", "mersenne"] = "multiply_shift"
    memory_budget_mb: int = Field(default=1024, ge=64)
    partitions: int | None = Field(default=None, ge=1)
    clusters_path: str | None = None
    keep_work: bool = False
    against: str | None = None  # an index (`dolma-prep index build`): also duplicates of indexed documents

    @model_validator(mode="after")
    def _enough_permutations(self) -> "MinHashDedup":
        if self.num_perm is not None and self.num_perm < self.bands * self.rows:
            raise ValueError(f"num_perm={self.num_perm} < bands*rows={self.bands * self.rows}")
        return self


class DecontaminateDedup(Strict):
    """Decontamination against evaluation sets (`dedup/decontam.py` run_decontaminate);
    defaults equal that module's DEFAULTS (tested)."""

    attribute: str = "decontamination_spans"
    eval_sets: list[str] | None = Field(default=None, min_length=1,
                                        description="files, globs, folders or hf:NAME[:CONFIG][@SPLIT]")
    eval_index: str | None = Field(default=None, description="an evaluation registry INDEX[@VERSION]")
    ngram: int = Field(default=13, ge=1)
    text_field: str = "text"
    separator: str = "\n"
    min_score: float | None = Field(default=None, ge=0, le=1)
    threshold: float | None = Field(default=None, ge=0, le=1, description="alias of min_score")
    keep_work: bool = False

    @field_validator("eval_sets", mode="before")
    @classmethod
    def _one_or_many(cls, v):
        return [v] if isinstance(v, str) else v

    @model_validator(mode="after")
    def _one_source(self) -> "DecontaminateDedup":
        if (self.eval_sets is None) == (self.eval_index is None):
            raise ValueError("give eval_sets (files, globs, hf: datasets) or eval_index (a registry built by "
                             "`dolma-prep index build --kinds ngram`), not both or neither")
        return self


class SubstringsDedup(Strict):
    """Exact-substring dedup with suffix arrays (`dedup/substrings.py` run_substrings);
    defaults equal that module's DEFAULTS (tested)."""

    attribute: str = "duplicate_substring_spans"
    min_length: int = Field(default=100, ge=1, description="K: substrings of >= K units repeated anywhere")
    unit: Literal["bytes", "tokens"] = "bytes"
    part_size: int = Field(default=1 << 26, ge=1, description="units per suffix-array part (~14 B per unit)")
    tokenizer: str | None = None  # with unit=tokens; default the bundled OLMo tokenizer
    buckets: int | None = Field(default=None, ge=1)
    verify: Literal["fingerprints", "units"] = "fingerprints"
    keep_work: bool = False


DEDUP_OPTIONS: dict[str, type[Strict]] = {
    "exact": ExactDedup, "paragraphs": ParagraphsDedup, "minhash": MinHashDedup, "decontaminate": DecontaminateDedup,
    "substrings": SubstringsDedup,
}


class DedupConfig(Strict):
    exact: ExactDedup | None = None
    paragraphs: ParagraphsDedup | None = None
    minhash: MinHashDedup | None = None
    decontaminate: DecontaminateDedup | None = None
    substrings: SubstringsDedup | None = None  # exact-substring spans (suffix arrays)


def dedup_options(kind: str, params: dict, where: str) -> dict:
    """Validate `dolma-prep dedup KIND --params JSON` options with the mix file's models:
    InputError naming `where`, the key and the known keys. Returns the options the user gave
    (the `attribute` key is the command's own)."""
    model = DEDUP_OPTIONS[kind]
    try:
        model.model_validate({**params})
    except ValidationError as e:
        raise InputError(_format_error(where, {}, e, root=model)) from None
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
        same documents locally or on S3 give the same outputs) nor where outputs go, nor the
        resources tasks ask for."""
        d = self.model_dump(mode="json", exclude={"output": True, "description": True, "data_root": True,
                                                  "taggers": {"__all__": {"num_gpus"}}})
        return hashlib.sha256(json.dumps(d, sort_keys=True).encode()).hexdigest()[:16]


def _resolve(base_dir: str, path: str) -> str:
    if is_remote(path) or os.path.isabs(path):
        return path
    return os.path.normpath(os.path.join(base_dir, path))


def _model_at(root: type[BaseModel], loc: tuple) -> type[BaseModel] | None:
    """The pydantic model that holds the last key of `loc` (list indices skipped)."""
    cls: Any = root
    for part in loc[:-1]:
        if isinstance(part, int):
            continue
        field = getattr(cls, "model_fields", {}).get(part)
        if field is None:
            return None
        found = None
        todo = [field.annotation]
        while todo and found is None:
            t = todo.pop()
            if isinstance(t, type) and issubclass(t, BaseModel):
                found = t
            else:
                todo.extend(get_args(t))
        if found is None:
            return None
        cls = found
    return cls


def _format_error(path: str, raw: dict, err: ValidationError, root: type[BaseModel] | None = None) -> str:
    root = root or MixFile
    lines = [f"{path}: invalid {'mix file' if root is MixFile else 'options'} "
             f"({err.error_count()} error{'s' if err.error_count() > 1 else ''})"]
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
            model = _model_at(root, e["loc"])
            if model is not None:
                known = [k for k in model.model_fields]
                close = difflib.get_close_matches(str(e["loc"][-1]), known, n=1)
                msg += f"; did you mean {close[0]!r}?" if close else ""
                msg += f" known keys: {', '.join(known)}"
        found = e.get("input")
        found_s = "" if isinstance(found, (dict, list)) else f"; found {found!r}"
        if e["type"] == "extra_forbidden":
            found_s = ""
        lines.append(f"  - {loc}: {msg}{found_s}")
    return "\n".join(lines)


def _check_filters(path: str, mix: "MixFile", raw: dict) -> None:
    """Compile every filter rule now, so that a rule that is not valid jq / JSONPath or that
    reaches outside the document (see filters.py) stops the run before anything starts."""
    from .filters import compile_expression

    groups = [("filters", mix.filters)]
    for i, src in enumerate(mix.sources):
        if src.filters is not None:
            groups.append((f"sources[{i}] ({src.name}).filters", src.filters))
    for where, f in groups:
        for kind in ("include", "exclude"):
            for j, rule in enumerate(getattr(f, kind)):
                compile_expression(rule, f"{path}: {where}.{kind}[{j}]")


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
    dc = mix.dedup.decontaminate
    if dc is not None:  # evaluation sets resolve against the mix file too (hf: names are not paths)
        if dc.eval_sets is not None:
            dc.eval_sets = [e if e.startswith("hf:") else _resolve(base, e) for e in dc.eval_sets]
        if dc.eval_index is not None:
            dc.eval_index = _resolve(base, dc.eval_index)
    for kind in ("exact", "paragraphs", "minhash"):  # an index to dedup against resolves against the mix file too
        cfg = getattr(mix.dedup, kind)
        if cfg is not None and cfg.against is not None:
            cfg.against = _resolve(base, cfg.against)
    for src in mix.sources:
        ds = src.dataset
        if ds is not None:
            if ds.path.startswith(".") or os.path.isdir(_resolve(base, ds.path)):
                ds.path = _resolve(base, ds.path)
            if ds.data_files:
                ds.data_files = [_resolve(base, f) for f in ds.data_files]
    return mix
