"""Preflight: every file a mix needs is checked before Ray starts; each problem is one line
naming the mix file, the field, the path and the fix."""
import gzip
import json
import os
import struct
import time

import pytest
from conftest import SAMPLE, TOKENIZER

from dolma_prep.core.io import InputError
from dolma_prep.pipeline.mixfile import REPO, load_mix
from dolma_prep.pipeline.preflight import FASTTEXT_MAGIC, preflight


def _mix(tmp_path, body: str, sources: str = "  - {name: wiki, documents: ['wiki/*.jsonl.gz']}\n", **kw):
    p = tmp_path / "mix.yaml"
    p.write_text(f"name: t\ndata_root: {SAMPLE}\noutput: {tmp_path / 'out'}\n{body}sources:\n{sources}")
    return str(p), load_mix(str(p), **kw)


def _problems(path, mix) -> list[str]:
    with pytest.raises(InputError) as e:
        preflight(mix, path)
    return str(e.value).splitlines()


def test_a_complete_mix_passes_quickly(tmp_path):
    lst = tmp_path / "block.txt"
    lst.write_text("bad.example.com\n")
    ev = tmp_path / "evals" / "task.jsonl.gz"
    ev.parent.mkdir()
    with gzip.open(ev, "wt") as f:
        f.write(json.dumps({"question": "q", "answer": "a"}) + "\n")
    path, mix = _mix(tmp_path, (
        "taggers:\n  - char_length_v1\n"
        "  - {name: domain_blocklist_v1, options: {blocklist_path: block.txt}}\n"
        f"  - {{name: tokenizer_repetitions_v2r2, options: {{tokenizer_path: {TOKENIZER}}}}}\n"
        "dedup:\n  decontaminate: {eval_sets: [evals/*.jsonl.gz]}\n"))
    t0 = time.monotonic()
    preflight(mix, path)
    assert time.monotonic() - t0 < 10


def test_bundled_general_mix_before_and_after_make_models(tmp_path):
    """The issue's case: `dolma-prep run mixes/general.yaml` before `make models` (in a
    checkout where the model was trained, the same mix passes)."""
    general = os.path.join(REPO, "mixes", "general.yaml")
    mix = load_mix(general, output=str(tmp_path / "out"))
    model = os.path.join(REPO, "models", "cc_multi_bin_sample.bin")
    if os.path.exists(model):
        preflight(mix, general)
    else:
        i = next(i for i, t in enumerate(mix.taggers) if t.name == "cc_multi_bin")
        assert _problems(general, mix) == [
            f"{general}: taggers[{i}] (cc_multi_bin).options.model_path: {model} does not exist; "
            'run "make models" first (it runs dolma-prep train-classifier mixes/classifiers/quality_sample.yaml)']


def test_general_mix_model_message_names_make_models(tmp_path, monkeypatch):
    """Independent of whether this checkout has run `make models`: the classifier config's
    output is moved to a temporary folder, so the model is missing for sure."""
    from dolma_prep.pipeline import preflight as pf

    cfg_dir = tmp_path / "repo" / "mixes" / "classifiers"
    cfg_dir.mkdir(parents=True)
    (cfg_dir / "quality_sample.yaml").write_text("name: q\noutput: ../../models/cc_multi_bin_sample.bin\n")
    monkeypatch.setattr(pf, "REPO", str(tmp_path / "repo"))
    monkeypatch.setattr(pf, "CLASSIFIER_CONFIGS", str(cfg_dir))
    model = tmp_path / "repo" / "models" / "cc_multi_bin_sample.bin"
    path, mix = _mix(tmp_path, f"taggers:\n  - {{name: cc_multi_bin, options: {{model_path: {model}}}}}\n")
    assert _problems(path, mix) == [
        f"{path}: taggers[0] (cc_multi_bin).options.model_path: {model} does not exist; run \"make models\" first "
        "(it runs dolma-prep train-classifier mixes/classifiers/quality_sample.yaml)"]
    # once the model is there (a real fastText header), the mix passes
    model.parent.mkdir()
    model.write_bytes(struct.pack("<ii", FASTTEXT_MAGIC, 12) + b"\0" * 64)
    preflight(mix, path)
    model.write_bytes(b"<html>not a model</html>")
    assert _problems(path, mix) == [f"{path}: taggers[0] (cc_multi_bin).options.model_path: {model} is not a fastText "
                                    "model (wrong header); point model_path at a .bin trained by fastText"]


def test_every_kind_of_problem_is_one_line_naming_file_field_and_fix(tmp_path):
    bad_tok = tmp_path / "tok.json"
    bad_tok.write_text("{not json")
    empty_list = tmp_path / "empty.txt"
    empty_list.write_text("# only a comment\n")
    broken_eval = tmp_path / "broken.jsonl"
    broken_eval.write_text("[1, 2]\n")
    (tmp_path / "out").write_text("a file where the output folder should be")
    path, mix = _mix(tmp_path, (
        "taggers:\n"
        "  - char_lenght_v1\n"
        "  - {name: ft_lang_id_en_doc_v2, options: {model_path: missing/lid.bin}}\n"
        f"  - {{name: tokenizer_repetitions_v2r2, options: {{tokenizer_path: {bad_tok}}}}}\n"
        f"  - {{name: domain_blocklist_v1, options: {{blocklist_path: {empty_list}}}}}\n"
        "dedup:\n  decontaminate: {eval_sets: [nowhere/*.jsonl, broken.jsonl]}\n"
        "tokenizer: {path: ./no-tokenizer.json}\n"),
        sources="  - {name: wiki, documents: ['wiki/*.jsonl.gz']}\n  - {name: typo, documents: ['wikki/*.jsonl.gz']}\n")
    problems = _problems(path, mix)
    expect = [
        "taggers[0] (char_lenght_v1): unknown tagger; did you mean 'char_length_v1'?",
        f"taggers[1] (ft_lang_id_en_doc_v2).options.model_path: {tmp_path / 'missing' / 'lid.bin'} does not exist; "
        "check the path (relative paths resolve against the mix file's folder)",
        f"taggers[2] (tokenizer_repetitions_v2r2).options.tokenizer_path: {bad_tok} does not load as a tokenizers JSON",
        "taggers[3] (domain_blocklist_v1): cannot be built from its options (ValueError: tagger 'domain_blocklist_v1': no entries",
        f"tokenizer.path: {tmp_path / 'no-tokenizer.json'} does not exist; use `bundled` or a tokenizers JSON file",
        f"dedup.decontaminate.eval_sets[0]: {tmp_path / 'nowhere' / '*.jsonl'} matches no file",
        f"dedup.decontaminate.eval_sets[1]: {broken_eval}: line 1: an evaluation item must be a JSON object",
        "sources[1] (typo).documents: ['wikki/*.jsonl.gz'] match no document files under",
        f"output {tmp_path / 'out'} is a file, not a folder; choose another --output",
    ]
    assert len(problems) == len(expect), "\n".join(problems)
    for line, want in zip(problems, expect):
        assert line.startswith(f"{path}: ") and want in line, (line, want)


def test_unwritable_output_is_named(tmp_path):
    (tmp_path / "f").write_text("x")
    out = tmp_path / "f" / "sub"  # under a file: unwritable for root too
    path, mix = _mix(tmp_path, "", output=str(out))
    assert _problems(path, mix) == [f"{path}: output {out} cannot be written ({tmp_path / 'f'} is a file); "
                                    "choose another --output"]
    if os.geteuid() != 0:  # permissions bind everyone but root
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o500)
        path, mix = _mix(tmp_path, "", output=str(ro / "out"))
        assert _problems(path, mix) == [f"{path}: output {ro / 'out'} cannot be written ({ro} is not writable); "
                                        "choose another --output"]
