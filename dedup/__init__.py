"""Deduplication and decontamination that write Dolma attribute files.

A dedup kind is one module that registers one record (`kinds.DedupKind`: its typed options, its
entry function, document- or span-level, its index), so the pipeline (mix files, the dedup
step, select, the CLI) iterates over `kinds.all_kinds()` and names no kind. One entry function
per kind, all with the same shape::

    run_<kind>(shards: list[tuple[documents_path, attributes_path]], attribute: str,
               work_dir: str, *, workers=None, **params) -> dict  # statistics

- `run_exact`          (exact.py)      whole-document exact duplicates
- `run_paragraphs`     (paragraphs.py) Dolma 1.7 paragraph 13-gram Bloom-filter dedup
- `run_minhash`        (minhash.py)    MinHash-LSH fuzzy document dedup, distributed clustering
- `run_decontaminate`  (decontam.py)   n-gram overlap with evaluation sets
- `run_substrings`     (substrings.py) exact repeated substrings (suffix arrays)

Every `run_<kind>` checks its `**params` with `kinds.checked()`: the kind's typed options, the
same ones mix files and `dedup --params` use, so all three refuse alike.

Ray must be initialised by the caller; these functions submit Ray tasks. See README.md.
"""

from .kinds import available, get


def __getattr__(name: str):
    """`run_<kind>` of every registered kind, imported on first use."""
    if name.startswith("run_") and name[4:] in available():
        return get(name[4:]).run
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
