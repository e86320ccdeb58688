"""`hf_classifier_v1`: a Hugging Face sequence-classification / regression model from a local
folder, on tiny BERT models built and saved here (no hub). Scores must equal the model run by
hand one document at a time (so batching, padding and sorting change nothing), truncation
must cut at the model's limit, and `dolma-prep tag` must write the same scores."""
from __future__ import annotations

import json
import shutil

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")

from conftest import SAMPLE, read_gz_jsonl, run_cli  # noqa: E402

from dolma_prep.taggers import registry  # noqa: E402
from dolma_prep.taggers.registry import Document  # noqa: E402

WORDS = ("the a of and to in is it that was for on are with as his they be at one have this from or had by "
         "word but what some we can out other were all there when up use your how said an each she which do "
         "their time if will way about many then them write would like so these her long make thing see him").split()
MAX_POS = 40


def build(path, num_labels: int, problem_type: str | None = None, id2label: dict | None = None) -> str:
    path.mkdir(parents=True, exist_ok=True)
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *WORDS, *"abcdefghijklmnopqrstuvwxyz.,!?"]
    (path / "vocab.txt").write_text("\n".join(vocab) + "\n")
    tok = transformers.BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    cfg = transformers.BertConfig(vocab_size=len(vocab), hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                                  intermediate_size=32, max_position_embeddings=MAX_POS, num_labels=num_labels,
                                  initializer_range=0.5, hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0,
                                  problem_type=problem_type, **({"id2label": id2label,
                                                                 "label2id": {v: k for k, v in id2label.items()}}
                                                                if id2label else {}))
    torch.manual_seed(num_labels)
    model = transformers.BertForSequenceClassification(cfg)
    model.eval()
    tok.save_pretrained(str(path))
    model.save_pretrained(str(path))
    return str(path)


def by_hand(model_dir: str, text: str) -> list[float]:
    tok = transformers.AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
    model = transformers.AutoModelForSequenceClassification.from_pretrained(model_dir, local_files_only=True).eval()
    enc = tok(text, truncation=True, max_length=MAX_POS, return_tensors="pt")
    with torch.no_grad():
        return model(**enc).logits[0].tolist()


def texts(n: int = 12) -> list[str]:
    import random

    rng = random.Random(5)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(1, 60))) + "." for _ in range(n)] + ["", "  "]


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    d = tmp_path_factory.mktemp("hf")
    return {"reg": build(d / "reg", 1), "cls": build(d / "cls", 3, id2label={0: "Low", 1: "Medium", 2: "High"}),
            "multi": build(d / "multi", 2, "multi_label_classification")}


def test_regression_scores_equal_the_model_run_one_by_one(models):
    tagger = registry.get("hf_classifier_v1", model_path=models["reg"], batch_size=4, int_score=True)
    assert tagger.device.type == "cpu" and tagger.max_length == MAX_POS  # capped by max_position_embeddings
    docs = [Document(str(i), t) for i, t in enumerate(texts())]
    outs = tagger.predict_batch(docs)
    assert len(outs) == len(docs)
    scores = []
    for doc, out in zip(docs, outs):
        assert list(out) == ["score", "int_score"]
        (s, e, score), = out["score"]
        assert (s, e) == (0, len(doc.text))
        assert score == pytest.approx(by_hand(models["reg"], doc.text)[0], abs=1e-4)
        assert out["int_score"] == [[0, len(doc.text), float(round(min(max(score, 0.0), 5.0)))]]
        scores.append(score)
    assert max(scores) - min(scores) > 0.1  # the documents really get different scores
    assert tagger.predict(docs[3])["score"][0][2] == pytest.approx(scores[3], abs=1e-5)  # alone = in a batch


def test_long_documents_are_truncated_at_the_model_limit(models):
    tagger = registry.get("hf_classifier_v1", model_path=models["reg"])
    head = " ".join(WORDS[:60])  # 60 tokens: past the 40-position limit
    a, b = tagger.predict_batch([Document("a", head + " the the the"), Document("b", head + " word word word")])
    assert a["score"][0][2] == b["score"][0][2]
    short = tagger.predict(Document("c", " ".join(WORDS[:10])))
    assert short["score"][0][2] != a["score"][0][2]


def test_classifier_fields_are_softmax_probabilities_per_label(models):
    tagger = registry.get("hf_classifier_v1", model_path=models["cls"], batch_size=3)
    for t in texts(5):
        out = tagger.predict(Document("d", t))
        assert list(out) == ["Low", "Medium", "High"]
        probs = [out[k][0][2] for k in out]
        assert sum(probs) == pytest.approx(1.0, abs=1e-5)
        assert probs == pytest.approx(torch.softmax(torch.tensor(by_hand(models["cls"], t)), -1).tolist(), abs=1e-4)
    multi = registry.get("hf_classifier_v1", model_path=models["multi"])
    out = multi.predict(Document("d", "the word"))
    assert list(out) == ["LABEL_0", "LABEL_1"]
    assert [out[k][0][2] for k in out] == pytest.approx(torch.sigmoid(torch.tensor(by_hand(models["multi"], "the word"))).tolist(), abs=1e-4)


def test_model_path_is_required_and_local(tmp_path):
    with pytest.raises(ValueError, match="needs a local model folder"):
        registry.get("hf_classifier_v1")
    with pytest.raises(ValueError, match="not a folder with a config.json"):
        registry.get("hf_classifier_v1", model_path=str(tmp_path))


@pytest.mark.slow
def test_dolma_prep_tag_writes_the_scores(models, tmp_path):
    docs_dir = tmp_path / "ds" / "documents" / "wiki"
    shutil.copytree(SAMPLE / "wiki", docs_dir)
    run_cli("tag", "--documents", str(docs_dir / "*.jsonl.gz"), "--taggers", "hf_classifier_v1", "--experiment", "edu",
            "--options", json.dumps({"hf_classifier_v1": {"model_path": models["cls"], "batch_size": 8}}),
            "--workers", "1", "-q", check=True)
    tagger = registry.get("hf_classifier_v1", model_path=models["cls"])
    for f in ("0000.jsonl.gz", "0001.jsonl.gz"):
        attrs = read_gz_jsonl(tmp_path / "ds" / "attributes" / "edu" / "wiki" / f)
        docs = read_gz_jsonl(docs_dir / f)
        assert len(attrs) == len(docs) > 0
        for a, d in zip(attrs, docs):
            keys = [f"edu__hf_classifier_v1__{k}" for k in ("Low", "Medium", "High")]
            assert list(a["attributes"]) == keys
            ref = tagger.predict(Document(d["id"], d["text"]))
            for k, label in zip(keys, ("Low", "Medium", "High")):
                (s, e, p), = a["attributes"][k]
                assert (s, e) == (0, len(d["text"])) and p == pytest.approx(ref[label][0][2], abs=2e-5)
