"""Mix-file validation: precise errors naming the field and the value; never runs code."""
import os

import pytest

from dolma_prep.pipeline.io import InputError
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
