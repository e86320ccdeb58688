"""Mix-file validation: precise errors naming the field and the value; never runs code."""
import os
import re

import pytest

from dolma_prep.core.io import InputError
from dolma_prep.pipeline.mixfile import BUNDLED_TOKENIZER, load_mix

MIXES = os.path.join(os.path.dirname(__file__), "..", "mixes")

BASE = """name: t
data_root: docs
sources:
  - {name: wiki, documents: ["wiki/*.jsonl.gz"]}
"""


def _load(tmp_path, text, **kw):
    p = tmp_path / "mix.yaml"
    p.write_text(text)
    return load_mix(str(p), **kw)


def test_valid_mix_resolves_paths_against_the_file(tmp_path):
    mix = _load(tmp_path, BASE)
    assert mix.data_root == str(tmp_path / "docs")
    assert mix.tokenizer.path == BUNDLED_TOKENIZER and mix.tokenizer.eos_token_id == 50279
    assert mix.output == os.path.abspath(os.path.join("out", "t"))
    assert _load(tmp_path, BASE, data_root="/elsewhere").data_root == "/elsewhere"


def test_tagger_file_options_resolve_against_the_file_lists_included(tmp_path):
    mix = _load(tmp_path, BASE.replace("sources:", "taggers:\n  - {name: brave_core_abp_v1, options: {blocklist_path: "
                                        "[lists/a.txt, /abs/b.txt, s3://bucket/c.txt]}}\n"
                                        "  - {name: cc_multi_bin, options: {model_path: models/q.bin}}\nsources:"))
    assert mix.taggers[0].options["blocklist_path"] == [str(tmp_path / "lists" / "a.txt"), "/abs/b.txt", "s3://bucket/c.txt"]
    assert mix.taggers[1].options["model_path"] == str(tmp_path / "models" / "q.bin")


def test_tagger_gpus_are_placement_not_config(tmp_path):
    text = BASE.replace("sources:", "taggers:\n  - {name: char_length_v1, num_gpus: GPUS}\nsources:")
    a, b = _load(tmp_path, text.replace("GPUS", "0")), _load(tmp_path, text.replace("GPUS", "0.5"))
    assert b.taggers[0].num_gpus == 0.5 and a.config_hash() == b.config_hash()
    with pytest.raises(InputError, match="num_gpus"):
        _load(tmp_path, text.replace("GPUS", "-1"))
    from dolma_prep.pipeline.stages import tag

    assert tag.STEP.num_gpus(b) == 0.5 and tag.STEP.num_gpus(a) == 0


def test_typo_key_is_named(tmp_path):
    with pytest.raises(InputError) as e:
        _load(tmp_path, BASE.replace("name: wiki,", "name: wiki, proprtion: 0.5,"))
    msg = str(e.value)
    assert "sources[0] (wiki).proprtion" in msg and "unknown key" in msg


def test_wrong_type_names_field_and_value(tmp_path):
    with pytest.raises(InputError) as e:
        _load(tmp_path, BASE + "seed: many\n")
    assert "seed" in str(e.value) and "'many'" in str(e.value)


def test_negative_proportion_refused(tmp_path):
    with pytest.raises(InputError, match="proportion"):
        _load(tmp_path, BASE.replace("name: wiki,", "name: wiki, proportion: -1,"))


@pytest.mark.parametrize("name", ["../evil", "a/b", "..", ""])
def test_source_names_cannot_escape_the_output(tmp_path, name):
    with pytest.raises(InputError, match="source name"):
        _load(tmp_path, BASE.replace("name: wiki,", f"name: '{name}',"))


def test_yaml_syntax_error_names_line(tmp_path):
    with pytest.raises(InputError) as e:
        _load(tmp_path, BASE + "sources: [unclosed\n")
    assert "mix.yaml:" in str(e.value) and "not valid YAML" in str(e.value)


def test_python_tags_are_never_constructed(tmp_path):
    marker = tmp_path / "pwned"
    hostile = BASE + f"description: !!python/object/apply:os.system ['touch {marker}']\n"
    with pytest.raises(InputError, match="not valid YAML"):
        _load(tmp_path, hostile)
    assert not marker.exists()


def test_duplicate_sources_refused(tmp_path):
    with pytest.raises(InputError, match="repeated: wiki"):
        _load(tmp_path, BASE + '  - {name: wiki, documents: ["x"]}\n')


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="not found"):
        load_mix(str(tmp_path / "nope.yaml"))


def test_config_hash_ignores_output_but_not_seed(tmp_path):
    a = _load(tmp_path, BASE)
    b = _load(tmp_path, BASE, output="/x")
    c = _load(tmp_path, BASE + "seed: 9\n")
    assert a.config_hash() == b.config_hash() != c.config_hash()


def test_bundled_mixes_validate():
    for name in sorted(os.listdir(MIXES)):
        if name.endswith(".yaml"):
            load_mix(os.path.join(MIXES, name))


def test_mix_files_cannot_load_python_modules(tmp_path):
    evil = tmp_path / "evil.py"
    marker = tmp_path / "ran"
    evil.write_text(f"open({str(marker)!r}, 'w').write('x')\n")
    with pytest.raises(InputError, match="tagger_modules: unknown key"):
        _load(tmp_path, BASE + f"tagger_modules: [{evil}]\n")
    assert not marker.exists()


def test_hostile_filters_are_data(tmp_path):
    # jq has no process, file or Python access; a Python expression is not valid jq
    with pytest.raises(InputError, match="cannot compile filter"):
        from dolma_prep.pipeline.filters import compile_expression

        compile_expression("__import__('os').system('touch /tmp/x')")


# ---------------------------------------------------------------------------------------------
# dedup options: typed (each kind's module defines them once), unknown keys named with the known ones


def test_dedup_option_typo_is_named_with_the_fix(tmp_path):
    for kind, typo, fix in [("paragraphs", "ngram_lenght", "ngram_length"), ("minhash", "band", "bands"),
                            ("decontaminate", "evalsets", "eval_sets"), ("exact", "keys", "key")]:
        extra = "{eval_sets: [x.jsonl]," if kind == "decontaminate" else "{"
        with pytest.raises(InputError) as e:
            _load(tmp_path, BASE + f"dedup:\n  {kind}: {extra} {typo}: 1}}\n")
        msg = str(e.value)
        assert str(tmp_path / "mix.yaml") in msg and f"dedup.{kind}.{typo}: unknown key" in msg, msg
        assert f"did you mean {fix!r}?" in msg and "known keys: attribute," in msg, msg


@pytest.mark.parametrize("kind,body,field", [
    ("paragraphs", "{ngram_length: zero}", "dedup.paragraphs.ngram_length"),
    ("paragraphs", "{bloom_partitions: 6}", "power of two"),
    ("paragraphs", "{overlap_threshold: 1.5}", "dedup.paragraphs.overlap_threshold"),
    ("minhash", "{verify: maybe}", "dedup.minhash.verify"),
    ("minhash", "{hash_family: md5}", "dedup.minhash.hash_family"),
    ("minhash", "{bands: 20, rows: 6, num_perm: 100}", "num_perm=100 < bands*rows=120"),
    ("decontaminate", "{ngram: 13}", "give eval_sets (files, globs, hf: datasets) or eval_index"),  # one required
    ("decontaminate", "{eval_sets: [a.jsonl], eval_index: reg}", "not both or neither"),
])
def test_dedup_option_values_are_checked(tmp_path, kind, body, field):
    with pytest.raises(InputError, match=re.escape(field)):
        _load(tmp_path, BASE + f"dedup:\n  {kind}: {body}\n")


def test_dedup_options_reach_the_algorithm_unchanged(tmp_path):
    """What run.py hands to run_<kind> (model_dump minus attribute) is accepted by it."""
    import inspect

    from dolma_prep.dedup import decontam, exact, minhash, paragraphs

    mix = _load(tmp_path, BASE + "dedup:\n  exact: {}\n  paragraphs: {ngram_length: 7}\n  minhash: {bands: 14, rows: 8}\n"
                "  decontaminate: {eval_sets: [evals/*.jsonl.gz, 'hf:allenai/ai2_arc:ARC-Easy']}\n")
    assert mix.dedup.paragraphs.ngram_length == 7 and mix.dedup.minhash.rows == 8
    # eval sets resolve against the mix file; hub names stay names
    assert mix.dedup.decontaminate.eval_sets == [str(tmp_path / "evals" / "*.jsonl.gz"), "hf:allenai/ai2_arc:ARC-Easy"]
    for kind, module in [("exact", exact), ("paragraphs", paragraphs), ("minhash", minhash), ("decontaminate", decontam)]:
        params = getattr(mix.dedup, kind).model_dump()
        params.pop("attribute")
        sig = inspect.signature(getattr(module, f"run_{kind}"))
        accepted = set(sig.parameters)
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.parameters.values()):
            accepted |= set(module.DEFAULTS)  # run_* refuses other **params (dedup.checked)
        assert set(params) <= accepted, (kind, set(params) - accepted)


def test_cli_dedup_params_use_the_same_models():
    from dolma_prep.pipeline.mixfile import dedup_options

    assert dedup_options("minhash", {"bands": 14, "rows": 8}, "--params") == {"bands": 14, "rows": 8}
    with pytest.raises(InputError, match=r"--params: invalid options.*\n  - bandz: unknown key.*'bands'"):
        dedup_options("minhash", {"bandz": 14}, "--params")


def test_general_mix_loads_with_typed_paragraph_options():
    mix = load_mix(os.path.join(MIXES, "general.yaml"))
    p = mix.dedup.paragraphs
    # dolma's attribute name for Dolma 1.7's `dd_ngram_dp_030` run (mixes/SOURCES.md)
    assert (p.attribute, p.ngram_length, p.overlap_threshold) == ("dedupe_para_ngrams_13_1", 13, 0.5)
    # general.yaml has no global exact dedup: no v1.7 path names one (mixes/SOURCES.md)
    assert mix.dedup.minhash is None and mix.dedup.exact is None
    assert mix.dedup.decontaminate.attribute == "paloma_paragraphs"


def test_hostile_filter_in_a_mix_is_refused_at_load(tmp_path):
    with pytest.raises(InputError) as e:
        _load(tmp_path, BASE + "filters: {exclude: ['env.AWS_SECRET_ACCESS_KEY | startswith(\"Z\")']}\n")
    assert f"{tmp_path / 'mix.yaml'}: filters.exclude[0]" in str(e.value) and "reads the environment" in str(e.value)
