"""Preflight: everything a mix needs from the host, checked in seconds before Ray starts.

`preflight(mix, mix_path)` checks that every tagger's model, tokenizer and list file exists
and loads (fastText models by their header, not by reading gigabytes), that the run's
tokenizer loads, that every evaluation set matches files and its first item parses, that
every source's document globs match files, that every attribute a filter rule or span
replacement reads is one the mix's taggers or dedup kinds write (`attribute_problems`: a typo
reads null, and `null < 50` is true in jq), and that the output folder can be written. It
raises one InputError whose message has one line per problem, each naming the mix file, the
field, the path and the fix (`run "make models" first` for the bundled sample's quality
model). Remote (fsspec URL) paths are left to the stages: checking them needs credentials and
a network this check should not wait on.
"""
from __future__ import annotations

import glob
import json
import os
import struct

import yaml

from ..core import io
from ..core.io import InputError
from .mixfile import REPO, MixFile

FASTTEXT_MAGIC = 793712314  # first int32 of a fastText .bin / .ftz (followed by version 12)
CLASSIFIER_CONFIGS = os.path.join(REPO, "mixes", "classifiers")


def _made_by_us(path: str) -> str | None:
    """The fix for a missing model that one of the bundled classifier configs trains."""
    for cfg in sorted(glob.glob(os.path.join(CLASSIFIER_CONFIGS, "*.yaml"))):
        try:
            with open(cfg, encoding="utf-8") as f:
                out = (yaml.safe_load(f) or {}).get("output")
        except (OSError, yaml.YAMLError, AttributeError):
            continue
        if isinstance(out, str) and os.path.normpath(os.path.join(os.path.dirname(cfg), out)) == os.path.normpath(path):
            rel = os.path.relpath(cfg, REPO)
            if rel == os.path.join("mixes", "classifiers", "quality_sample.yaml"):
                return f'run "make models" first (it runs dolma-prep train-classifier {rel})'
            return f"train it first: dolma-prep train-classifier {rel}"
    return None


def _missing(path: str) -> str:
    return _made_by_us(path) or "check the path (relative paths resolve against the mix file's folder)"


def _check_fasttext(path: str) -> str | None:
    try:
        with open(path, "rb") as f:
            head = f.read(8)
    except OSError as e:
        return f"cannot be read ({e.strerror})"
    if len(head) < 8 or struct.unpack("<ii", head)[0] != FASTTEXT_MAGIC:
        return "is not a fastText model (wrong header); point model_path at a .bin trained by fastText"
    return None


def _check_tokenizer(path: str) -> str | None:
    try:
        from tokenizers import Tokenizer

        Tokenizer.from_file(path)
    except Exception as e:  # noqa: BLE001 - any failure to load is the user's to fix
        return f"does not load as a tokenizers JSON file ({type(e).__name__}: {str(e)[:200]})"
    return None


def _check_first_item(path: str) -> str | None:
    """The first record of a JSONL(.gz/.zst) or parquet evaluation file parses."""
    try:
        if path.endswith(".parquet"):
            import pyarrow.parquet as pq

            pq.read_schema(path)
            return None
        for line_no, raw, err in io.iter_lines(path):
            if err:
                return f"line {line_no}: {err}"
            if raw.strip():
                obj = json.loads(raw)
                if not isinstance(obj, dict):
                    return f"line {line_no}: an evaluation item must be a JSON object"
                return None
        return "is empty"
    except (OSError, ValueError) as e:
        return f"cannot be read ({type(e).__name__}: {str(e)[:200]})"


def _tagger_problems(mix: MixFile, where: str) -> list[str]:
    from dolma_prep.taggers import registry

    out = []
    known = registry.available()
    for i, t in enumerate(mix.taggers):
        at = f"{where}: taggers[{i}] ({t.name})"
        if t.name not in known:
            import difflib

            close = difflib.get_close_matches(t.name, known, n=1)
            out.append(f"{at}: unknown tagger; {'did you mean ' + repr(close[0]) + '? ' if close else ''}"
                       "`dolma-prep tag --help` lists them (own taggers: --tagger-modules)")
            continue
        file_options, before = False, len(out)
        for key, value in t.options.items():
            if not key.endswith("_path") or value is None:
                continue
            file_options = True
            for p in ([value] if isinstance(value, str) else list(value)):
                if not isinstance(p, str) or io.is_remote(p):
                    continue
                if not os.path.isfile(p):
                    out.append(f"{at}.options.{key}: {p} does not exist; {_missing(p)}")
                    continue
                why = None
                if key == "model_path":
                    why = _check_fasttext(p)
                elif key == "tokenizer_path":
                    why = _check_tokenizer(p)
                if why:
                    out.append(f"{at}.options.{key}: {p} {why}")
        if file_options and len(out) == before and not any(k == "model_path" for k in t.options):
            # lists and tokenizers are small: build the tagger as the tag stage will
            try:
                registry.get(t.name, **t.options)
            except Exception as e:  # noqa: BLE001 - a tagger that does not build is a configuration error
                out.append(f"{at}: cannot be built from its options ({type(e).__name__}: {str(e)[:200]})")
    return out


def _eval_set_problems(mix: MixFile, where: str) -> list[str]:
    dc = mix.dedup.decontaminate
    if dc is None:
        return []
    out = []
    if dc.eval_index is not None:  # an evaluation registry: its manifest must be there
        path = dc.eval_index.rsplit("@", 1)[0] if "@" in dc.eval_index.rsplit("/", 1)[-1] else dc.eval_index
        if not io.is_remote(path) and not os.path.exists(os.path.join(path, "index.json")):
            out.append(f"{where}: dedup.decontaminate.eval_index: {path} is not an evaluation registry (no "
                       "index.json); build one with `dolma-prep index build --kinds ngram --documents ... --output`")
    for i, spec in enumerate(dc.eval_sets or []):
        at = f"{where}: dedup.decontaminate.eval_sets[{i}]"
        if spec.startswith("hf:"):
            try:
                import datasets  # noqa: F401
            except ImportError:
                out.append(f"{at}: {spec} needs the `datasets` package: pip install -e '.[hf]'")
            continue
        if io.is_remote(spec):
            continue
        if os.path.isdir(spec):
            files = sorted(f for f in glob.glob(os.path.join(spec, "*"))
                           if f.endswith((".jsonl", ".gz", ".zst", ".parquet", ".json")))
        else:
            files = sorted(glob.glob(spec))
        if not files:
            out.append(f"{at}: {spec} matches no file; check the path (relative paths resolve against the mix file's folder)")
            continue
        for f in files:
            why = _check_first_item(f)
            if why:
                out.append(f"{at}: {f}: {why}")
    return out


def _source_problems(mix: MixFile, where: str) -> list[str]:
    out = []
    for i, src in enumerate(mix.sources):
        at = f"{where}: sources[{i}] ({src.name})"
        if src.dataset is not None:
            ds = src.dataset
            local = [f for f in (ds.data_files or []) if not io.is_remote(f)]
            if local and not any(glob.glob(f) for f in local):
                out.append(f"{at}.dataset.data_files: {local} match no file; check the paths")
            continue
        if io.is_remote(mix.data_root or ""):
            continue
        if not io.expand_globs(mix.data_root, src.documents):
            out.append(f"{at}.documents: {src.documents} match no document files under {mix.data_root}; "
                       "check data_root (or --data-root) and the globs")
    return out


def attribute_problems(mix: MixFile, where: str = "mix file") -> list[str]:
    """One line per attribute key that a filter rule or a span replacement reads and no step of
    the run writes (pipeline/attributes_known.py), with the closest written key. Why here: a
    misspelt key is null to jq, so `.attributes.<typo>[0][2] < 50` excludes every document and
    the run ends with 0 tokens and exit 0; span replacement of a key nobody writes replaces
    nothing. Rules that read `.attributes` only as a whole are not checked."""
    from .attributes_known import known_attributes, rule_attributes

    known = known_attributes(mix)
    reads: list[tuple[str, str, str]] = []  # (where in the mix file, key, what a missing key does)
    rule_groups = [("filters", mix.filters)]
    rule_groups += [(f"sources[{i}] ({s.name}).filters", s.filters) for i, s in enumerate(mix.sources) if s.filters]
    for at, f in rule_groups:
        for kind in ("include", "exclude"):
            for j, rule in enumerate(getattr(f, kind)):
                for key in rule_attributes(rule):
                    reads.append((f"{at}.{kind}[{j}]", key, "the rule reads null there in every document "
                                                             "(in jq `null < 50` is true, `null > 0.5` false)"))
    replacement_groups = [("span_replacement", mix.span_replacement)]
    replacement_groups += [(f"sources[{i}] ({s.name}).span_replacement", s.span_replacement)
                           for i, s in enumerate(mix.sources) if s.span_replacement]
    for at, rules in replacement_groups:
        for j, r in enumerate(rules):
            reads.append((f"{at}[{j}].attribute", r.attribute, "no span would ever be replaced"))
    out = []
    for at, key, effect in reads:
        if known.knows(key):
            continue
        close = known.suggestion(key)
        if close in known.prefixes:  # a tagger whose fields are known only once it runs (a model's labels)
            hint = f"did you mean a key under {close!r} ({known.prefixes[close]}, whose fields its model decides)?"
        else:
            hint = f"did you mean {close!r}?" if close else f"this mix writes {known.describe()}."
        out.append(f"{where}: {at}: attribute {key!r} is written by none of this mix's taggers and dedup kinds, so "
                   f"{effect}; {hint} Fix the name, or add the tagger (own taggers: --tagger-modules) or dedup kind "
                   "that writes it")
    return out


def _output_problems(mix: MixFile, where: str) -> list[str]:
    out = mix.output
    if not out or io.is_remote(out):
        return []
    if os.path.exists(out) and not os.path.isdir(out):
        return [f"{where}: output {out} is a file, not a folder; choose another --output"]
    probe = out
    while not os.path.exists(probe):
        parent = os.path.dirname(probe)
        if parent == probe:
            break
        probe = parent
    if not os.path.isdir(probe):
        return [f"{where}: output {out} cannot be written ({probe} is a file); choose another --output"]
    if not os.access(probe, os.W_OK | os.X_OK):
        return [f"{where}: output {out} cannot be written ({probe} is not writable); choose another --output"]
    return []


def preflight(mix: MixFile, mix_path: str = "mix file") -> None:
    """Raise InputError (one line per problem) unless everything the mix needs is there."""
    problems: list[str] = []
    problems += _tagger_problems(mix, mix_path)
    tok = mix.tokenizer.path
    if not io.is_remote(tok):
        if not os.path.isfile(tok):
            problems.append(f"{mix_path}: tokenizer.path: {tok} does not exist; use `bundled` or a tokenizers JSON file")
        else:
            why = _check_tokenizer(tok)
            if why:
                problems.append(f"{mix_path}: tokenizer.path: {tok} {why}")
    problems += _eval_set_problems(mix, mix_path)
    problems += _source_problems(mix, mix_path)
    problems += attribute_problems(mix, mix_path)
    problems += _output_problems(mix, mix_path)
    if problems:
        raise InputError("\n".join(problems))
