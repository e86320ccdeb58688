"""Deduplication and decontamination that write Dolma attribute files.

One entry function per kind, all with the same shape::

    run_<kind>(shards: list[tuple[documents_path, attributes_path]], attribute: str,
               work_dir: str, *, workers=None, **params) -> dict  # statistics

- `run_exact`          (exact.py)      whole-document exact duplicates
- `run_paragraphs`     (paragraphs.py) Dolma 1.7 paragraph 13-gram Bloom-filter dedup
- `run_minhash`        (minhash.py)    MinHash-LSH fuzzy document dedup, distributed clustering
- `run_decontaminate`  (decontam.py)   n-gram overlap with evaluation sets
- `run_substrings`     (substrings.py) exact repeated substrings (suffix arrays)

Every `run_<kind>` checks its `**params` with `checked()`: the typed options that mix files and
`dedup --params` use too (pipeline/mixfile.py DEDUP_OPTIONS), so all three refuse alike.

Ray must be initialised by the caller; these functions submit Ray tasks. See README.md.
"""

from importlib import import_module

_ENTRY = {
    "run_exact": "exact",
    "run_paragraphs": "paragraphs",
    "run_minhash": "minhash",
    "run_decontaminate": "decontam",
    "run_substrings": "substrings",
}


def checked(kind: str, params: dict, defaults: dict) -> dict:
    """`params` over the kind's DEFAULTS, validated by the kind's typed options: an InputError
    naming each bad or unknown key (with the known keys)."""
    from dolma_prep.pipeline.mixfile import DEDUP_OPTIONS, dedup_options

    dedup_options(kind, params, f"run_{kind}")
    valid = DEDUP_OPTIONS[kind].model_validate(params)  # coerced as a mix file's would be
    return {**defaults, **{k: getattr(valid, k) for k in params}}

__all__ = sorted(_ENTRY)


def __getattr__(name: str):
    if name in _ENTRY:
        return getattr(import_module(f".{_ENTRY[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
