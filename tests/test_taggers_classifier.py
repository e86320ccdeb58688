"""train-classifier: a real fastText quality model trained on the bundled sample must separate
held-out curated documents (hq) from web pages (lq), train without NaN over seeds, and be
reproducible for a seed."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

fasttext = pytest.importorskip("fasttext")

from dolma_prep.taggers import registry  # noqa: E402
from dolma_prep.taggers.registry import Document  # noqa: E402
from dolma_prep.taggers.train_classifier import ConfigError, load_config, roc_auc, train_classifier  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
SAMPLE = REPO / "sample" / "documents"
FIXTURE = REPO / "tests" / "fixtures" / "taggers" / "train_quality_sample.yaml"
HQ = ["wiki", "books", "pes2o", "stackexchange"]
LQ = ["cc_en_head", "cc_en_middle", "cc_en_tail"]


def write_config(path: Path, seed: int = 7, out: str = "model.bin", **fasttext_opts) -> Path:
    ft = {"dim": 16, "bucket": 20000, "epoch": 15, "lr": 0.5, "wordNgrams": 2, **fasttext_opts}
    lines = ["name: test_quality", f"seed: {seed}", f"output: {out}", "labels:"]
    for label, sources in (("hq", HQ), ("lq", LQ)):
        lines.append(f"  {label}:")
        lines += [f"    - {{name: {s}, documents: ['{SAMPLE}/{s}/*.jsonl.gz']}}" for s in sources]
    lines += ["data: {held_out: 0.25, max_words: 300}", "fasttext: " + json.dumps(ft)]
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    d = tmp_path_factory.mktemp("clf")
    card = train_classifier(str(write_config(d / "q.yaml")), quiet=True)
    return d, card


@pytest.mark.slow  # trains fastText
def test_model_separates_held_out_documents(trained, capsys):
    d, card = trained
    m = card["metrics"]
    assert m["held_out_documents"] >= 40
    assert m["auc"] >= 0.85 and m["accuracy"] >= 0.8, m  # chance is 0.5
    assert m["per_label"]["hq"]["f1"] > 0.8 and m["per_label"]["lq"]["f1"] > 0.5
    assert (d / "model.bin").is_file() and (d / "model.json").is_file()
    saved = json.loads((d / "model.json").read_text())
    assert saved["model_sha256"] == hashlib.sha256((d / "model.bin").read_bytes()).hexdigest()
    assert saved["fasttext"]["thread"] == 1 and saved["fasttext"]["seed"] == 7 and saved["labels"] == ["hq", "lq"]
    assert {s["source"] for s in saved["sources"]} == set(HQ + LQ)
    assert all(s["held_out"] >= 1 for s in saved["sources"])
    assert saved["train_lines_per_label"]["hq"] == saved["train_lines_per_label"]["lq"]  # balanced


@pytest.mark.slow  # trains fastText
def test_model_works_as_the_cc_multi_bin_tagger(trained):
    d, card = trained
    tagger = registry.get("cc_multi_bin", model_path=str(d / "model.bin"))
    wiki = json.loads(next(iter(__import__("gzip").open(SAMPLE / "wiki" / "0001.jsonl.gz", "rt"))))
    out = registry.format_output("cc_multi_bin", "cc_multi_bin", tagger.predict(Document("w", wiki["text"])))
    assert set(out) == {"cc_multi_bin__cc_multi_bin__hq", "cc_multi_bin__cc_multi_bin__lq"}
    (s, e, hq), = out["cc_multi_bin__cc_multi_bin__hq"]
    assert (s, e) == (0, len(wiki["text"])) and 0 <= hq <= 1.0001


@pytest.mark.slow  # trains fastText
def test_training_is_reproducible_and_stable_across_seeds(trained, tmp_path):
    d, card = trained
    again = train_classifier(str(write_config(tmp_path / "q.yaml", out="again.bin")), quiet=True)
    assert again["model_sha256"] == card["model_sha256"]
    for seed in (1, 2, 3):
        c = train_classifier(str(write_config(tmp_path / f"s{seed}.yaml", seed=seed, out=f"s{seed}.bin")), quiet=True)
        assert c["fasttext"]["nan_retries"] == []  # trained at the configured lr, no NaN
        assert c["metrics"]["auc"] >= 0.8 and c["metrics"]["accuracy"] >= 0.75, (seed, c["metrics"])


@pytest.mark.slow  # trains fastText
def test_default_settings_train_without_nan(tmp_path):
    # the defaults (dim 32, lr 0.5, softmax, word bigrams) on full-length documents, two seeds
    for seed in (11, 12):
        cfg = tmp_path / f"d{seed}.yaml"
        write_config(cfg, seed=seed, out=f"d{seed}.bin")
        text = cfg.read_text().replace("max_words: 300", "max_words: 1000")
        cfg.write_text(text.rsplit("fasttext:", 1)[0] + "fasttext: {epoch: 10}\n")
        c = train_classifier(str(cfg), quiet=True)
        assert c["fasttext"]["dim"] == 32 and c["fasttext"]["nan_retries"] == []
        assert c["metrics"]["auc"] >= 0.8


@pytest.mark.slow  # trains fastText
def test_nan_is_retried_with_a_smaller_learning_rate(tmp_path, monkeypatch):
    from dolma_prep.taggers import train_classifier as tc

    real = tc._run_training
    calls = []

    def flaky(train_path, output, settings):
        calls.append(settings["lr"])
        if len(calls) == 1:
            raise tc.TrainingError("RuntimeError: Encountered NaN.")
        return real(train_path, output, settings)

    monkeypatch.setattr(tc, "_run_training", flaky)
    c = train_classifier(str(write_config(tmp_path / "n.yaml", lr=0.8)), quiet=True)
    assert calls == [0.8, 0.4] and c["fasttext"]["lr"] == 0.4 and c["fasttext"]["nan_retries"][0]["lr"] == 0.8


@pytest.mark.slow  # trains fastText
def test_many_trainings_in_one_process_never_hit_nan(tmp_path):
    # before training moved to a fresh interpreter, about half of these seeds stopped with
    # "Encountered NaN" once the process had freed and reused memory (fastText leaves part of
    # its input matrix unwritten with thread=1)
    from dolma_prep.taggers.train_classifier import load_config, split_data, train_fasttext

    junk = [bytearray(b"\xff" * (1 << 22)) for _ in range(8)]
    del junk  # leave recycled, non-zero memory around
    for seed in range(4, 12):
        cfg = load_config(str(write_config(tmp_path / f"s{seed}.yaml", seed=seed, out=f"s{seed}.bin", epoch=3)))
        lines, _, _ = split_data(cfg)
        _, settings = train_fasttext(lines, cfg["output"], seed, cfg["fasttext"], max_nan_retries=0)
        assert settings["nan_retries"] == []


@pytest.mark.slow  # trains fastText
def test_report_is_printed(tmp_path, capsys):
    train_classifier(str(write_config(tmp_path / "p.yaml", epoch=3)))
    out = capsys.readouterr().out
    assert "precision" in out and "hq" in out and "lq" in out and "AUC(hq)" in out


def test_config_errors_name_file_and_field(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("labels: {hq: ['nothing/*.jsonl.gz'], lq: ['nothing/*.jsonl.gz']}\noutput: m.bin\n")
    with pytest.raises(ConfigError, match=r"bad.yaml: labels.hq\[0\].documents: no file matches"):
        load_config(str(bad))
    bad.write_text(f"labels: {{hq: ['{SAMPLE}/wiki/*.gz'], lq: ['{SAMPLE}/c4/*.gz']}}\n")
    with pytest.raises(ConfigError, match="output: missing"):
        load_config(str(bad))
    bad.write_text(f"labels: {{hq: ['{SAMPLE}/wiki/*.gz'], lq: ['{SAMPLE}/c4/*.gz']}}\noutput: m.bin\nfasttext: {{lrr: 1}}\n")
    with pytest.raises(ConfigError, match="unknown settings"):
        load_config(str(bad))
    bad.write_text(f"positive: ['{SAMPLE}/wiki/*.gz']\nnegative: ['{SAMPLE}/c4/*.gz']\noutput: m.bin\n")
    cfg = load_config(str(bad))
    assert [s.label for s in cfg["sources"]] == ["hq", "lq"] and cfg["sources"][0].name == "wiki"


def test_bundled_example_config_resolves():
    cfg = load_config(str(FIXTURE))
    assert {s.name for s in cfg["sources"]} == set(HQ + LQ)
    assert all(len(s.files) == 2 for s in cfg["sources"])


def test_roc_auc():
    assert roc_auc([0.9, 0.8, 0.1], [True, True, False]) == 1.0
    assert roc_auc([0.1, 0.9], [True, False]) == 0.0
    assert roc_auc([0.5, 0.5], [True, False]) == 0.5
    assert roc_auc([0.5], [True]) is None
