"""Training configuration: dataclasses, YAML loading, `key=value` overrides.

A config file is YAML whose keys are the fields of `TrainConfig` (nested for `model`,
`optimizer`, `scheduler`, `data`). Unknown keys and values of the wrong type are errors that
name the file and the field. Numbers may be written as YAML reads them or as strings such as
`3e12` (PyYAML reads a float without a dot as a string). Bundled configs live in
`training/configs/` and can be named by their stem (`tiny`, `1b`, `olmo-1.7-7b`, ...).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .model import ModelConfig

CONFIG_DIR = Path(__file__).parent / "configs"


@dataclass
class OptimizerConfig:
    """AdamW settings (OLMo 1.7-7B defaults)."""

    learning_rate: float = 3e-4
    betas: tuple[float, float] = (0.9, 0.95)
    eps: float = 1e-5
    weight_decay: float = 0.1
    fused: bool | None = None  # torch's fused AdamW kernel; null = torch's default (foreach)
    decay_norm_and_bias: bool = True  # OLMo 1.7 has no norm weights or biases; kept for other shapes
    decay_embeddings: bool = True


@dataclass
class SchedulerConfig:
    """Learning-rate and gradient-clipping schedule, as OLMo's `scheduler` section.

    `name`: cosine_with_warmup | linear_with_warmup | constant. All `t_*` values and
    `grad_clip_warmup_steps` are in `units` (tokens or steps). Warmup is linear from
    `warmup_min_lr` (default: 10% of the learning rate, as OLMo) to the learning rate; then cosine
    or linear decay to `alpha_f` x learning rate at `t_max` (default: the run's `max_tokens`).
    """

    name: str = "cosine_with_warmup"
    units: str = "tokens"
    t_warmup: int = 10_485_760_000
    t_max: int | None = 3_000_000_000_000
    alpha_f: float = 0.1
    warmup_min_lr: float | None = None
    grad_clip_warmup_steps: int | None = 2_097_152_000
    grad_clip_warmup_factor: float | None = 5.0


@dataclass
class MixtureConfig:
    """Mixing at read time (training/mixture.py): draw whole documents of `run_output`'s sources
    to these token shares instead of reading every array once.

    `shares`: source -> weight (normalised to sum to 1); empty: no mixing. `total_tokens`: tokens
    to draw (default: the run's length, max_tokens or max_steps x tokens per step).
    `max_repetition`: how many times a source's tokens may be drawn at most
    (`source_max_repetition` overrides it per source). `seed`: of the draw (default: the run's).
    `holdout`: fraction of each source's documents set aside for evaluation, chosen by a hash
    seeded with `holdout_seed`, never drawn. `eos_token_id`: the EOS id in the arrays, which cuts
    an array without a `.csv.gz` index into documents (default: model.eos_token_id).
    """

    shares: dict[str, float] = field(default_factory=dict)
    total_tokens: int | None = None
    max_repetition: float = 1.0
    source_max_repetition: dict[str, float] = field(default_factory=dict)
    seed: int | None = None
    holdout: float = 0.0
    holdout_seed: int = 0
    eos_token_id: int | None = None


@dataclass
class DataConfig:
    """Where the token arrays come from: a `dolma-prep run` output folder or explicit paths.

    `run_output`: folder with `manifest.json` (or `tokens/**/part-*.npy`); `paths`: raw memmap
    files, listed more than once to repeat them; `source_repeats`: repeat every file of a
    manifest source n times. `dtype` is used where the manifest does not give one.
    `mixture`: draw the run output's sources to token shares (MixtureConfig). `id_map`: a .npy
    array (np.save) mapping every token id of the arrays to the model's id, for models with a
    reduced vocabulary (mix-search proxies, training/proxy.py).
    """

    run_output: str | None = None
    paths: list[str] = field(default_factory=list)
    label_mask_paths: list[str] | None = None
    dtype: str = "uint16"
    source_repeats: dict[str, int] = field(default_factory=dict)
    shuffle: bool = True
    drop_last: bool = True
    mixture: MixtureConfig = field(default_factory=MixtureConfig)
    id_map: str | None = None


@dataclass
class TrainConfig:
    """Everything one training run needs. Batch sizes are in sequences of `max_sequence_length`."""

    run_name: str = "olmo"
    seed: int = 6198
    model: ModelConfig = field(default_factory=ModelConfig)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = field(default_factory=SchedulerConfig)
    data: DataConfig = field(default_factory=DataConfig)
    global_batch_size: int = 1024
    micro_batch_size: int = 2  # per device and forward pass; the rest is gradient accumulation
    max_tokens: int | None = None  # length of the run; the schedule's t_max defaults to it
    max_steps: int | None = None  # stop early after this many steps (does not change the schedule)
    max_grad_norm: float | None = 1.0
    save_folder: str | None = None  # default runs/<run_name>
    save_interval: int = 1000  # steps; 0 saves only at the end
    save_final: bool = True
    load_path: str | None = None  # checkpoint to start from when save_folder has none yet
    reset_trainer_state: bool = False  # with load_path: restart step, tokens and data at 0
    reset_optimizer_state: bool = False  # with load_path: fresh AdamW moments
    precision: str = "auto"  # auto (bf16 on GPU, fp32 on CPU) | bf16 | fp32
    device: str = "auto"  # auto | cpu | cuda
    init_device: str = "auto"  # meta: build on meta, shard, then initialise the shards
    compile: bool = False  # torch.compile each block
    # none | full | one_in_two | selected_ops (model.AC_POLICIES); true = full, false = none
    activation_checkpointing: bool | str = False
    attention: str = "sdpa"  # sdpa | manual (explicit softmax; a slow reference)
    sdpa_backend: str | None = None  # force one SDPA kernel: flash | efficient | cudnn | math; null = torch picks
    reshard_after_forward: bool = True  # FSDP2: free each block's gathered weights after forward (re-gather in backward)
    float8: bool = False  # float8 matmuls in the blocks (training/float8.py); needs a GPU of compute capability >= 8.9
    log_interval: int = 1
    log_data_indices: bool = False  # write each rank's instance indices to data_indices/rank{r}.jsonl
    peak_flops: float | None = None  # per device, for MFU; default from the GPU name

    def __post_init__(self) -> None:
        if self.save_folder is None:
            self.save_folder = f"runs/{self.run_name}"

    @property
    def tokens_per_step(self) -> int:
        return self.global_batch_size * self.model.max_sequence_length


class ConfigError(ValueError):
    """A config value is missing, unknown or of the wrong type."""


def resolve_config_path(name_or_path: str | Path) -> Path:
    """A path to a YAML file, or the stem of a bundled config (`tiny`, `olmo-1.7-7b`, ...)."""
    path = Path(name_or_path)
    if path.is_file():
        return path
    bundled = CONFIG_DIR / f"{name_or_path}.yaml"
    if bundled.is_file():
        return bundled
    names = ", ".join(sorted(p.stem for p in CONFIG_DIR.glob("*.yaml")))
    raise ConfigError(f"config {name_or_path!r}: no such file, and not a bundled config ({names})")


def load_config(name_or_path: str | Path, overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config and apply `key.sub=value` overrides (values parsed as YAML)."""
    path = resolve_config_path(name_or_path)
    raw = yaml.safe_load(path.read_text()) or {}
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level, found {type(raw).__name__}")
    for item in overrides or []:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. optimizer.learning_rate=1e-3")
        set_dotted(raw, key.strip(), yaml.safe_load(value))
    return from_dict(TrainConfig, raw, source=str(path))


def set_dotted(raw: dict, key: str, value: Any) -> None:
    node = raw
    *parents, last = key.split(".")
    for part in parents:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part!r} is not a section")
    node[last] = value


def from_dict(cls: type, raw: dict, source: str = "<dict>", prefix: str = "") -> Any:
    """Build dataclass `cls` from a mapping, checking names and coercing types."""
    if not isinstance(raw, dict):
        raise ConfigError(f"{source}: field '{prefix.rstrip('.') or '<root>'}': expected a mapping, found {raw!r}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise ConfigError(
            f"{source}: unknown field '{prefix}{unknown[0]}'; expected one of: {', '.join(sorted(names))}"
        )
    kwargs = {k: _coerce(v, hints[k], source, prefix + k) for k, v in raw.items()}
    try:
        return cls(**kwargs)
    except ValueError as e:
        raise ConfigError(f"{source}: {e}") from e


def _coerce(value: Any, tp: Any, source: str, name: str) -> Any:
    def fail() -> ConfigError:
        return ConfigError(f"{source}: field '{name}': expected {_type_name(tp)}, found {value!r}")

    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        arms = [a for a in args if a is not type(None)]
        for arm in arms[:-1]:  # the first type that takes the value; the last one's error otherwise
            try:
                return _coerce(value, arm, source, name)
            except ConfigError:
                pass
        try:
            return _coerce(value, arms[-1], source, name)
        except ConfigError:
            if len(arms) == 1:
                raise
            raise fail() from None
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, source, name + ".")
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise fail()
    if tp in (int, float):
        if isinstance(value, bool):
            raise fail()
        if isinstance(value, str):
            try:
                value = float(value.replace("_", ""))
            except ValueError:
                raise fail() from None
        if not isinstance(value, (int, float)):
            raise fail()
        if tp is int:
            if float(value) != int(value):
                raise fail()
            return int(value)
        return float(value)
    if tp is str:
        if isinstance(value, str):
            return value
        raise fail()
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise fail()
        if origin is tuple and len(args) == 2 and args[1] is not Ellipsis:
            if len(value) != len(args):
                raise fail()
            return tuple(_coerce(v, a, source, f"{name}[{i}]") for i, (v, a) in enumerate(zip(value, args)))
        item = args[0] if args else Any
        items = [_coerce(v, item, source, f"{name}[{i}]") if item is not Any else v for i, v in enumerate(value)]
        return tuple(items) if origin is tuple else items
    if origin is dict:
        if not isinstance(value, dict):
            raise fail()
        kt, vt = args
        return {_coerce(k, kt, source, name): _coerce(v, vt, source, f"{name}.{k}") for k, v in value.items()}
    return value


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", None) or str(tp).replace("typing.", "")


def to_dict(config: Any) -> dict:
    """Plain mapping (lists instead of tuples), suitable for YAML or JSON."""

    def plain(x: Any) -> Any:
        if isinstance(x, (list, tuple)):
            return [plain(v) for v in x]
        if isinstance(x, dict):
            return {k: plain(v) for k, v in x.items()}
        return x

    return plain(dataclasses.asdict(config))
