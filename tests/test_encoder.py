"""The tokenizer engine (pipeline/encoder.py): fastokens gives tokenizers' ids on the bundled sample
and on an adversarial set, falls back (whole worker, or per document) where it cannot, and the
manifest-facing description says which engine ran. In-process, no Ray."""
import gzip
import json

import numpy as np
import pytest
from conftest import SAMPLE, TOKENIZER
from test_tokenize import _dolma_reference  # dolma 1.2.1 Tokenizer.encode, restated on the reference
from tokenizers import Tokenizer

from dolma_prep.pipeline import encoder as en

fastokens = pytest.importorskip("fastokens")  # pinned in pyproject: under `make test` a skip fails

EOS = 50279


@pytest.fixture(scope="module")
def ref():
    return Tokenizer.from_file(str(TOKENIZER))


@pytest.fixture(scope="module")
def fast_encoder():
    enc = en.Encoder(str(TOKENIZER), engine="fastokens")
    assert enc.name == "fastokens" and enc.fast is not None and enc.note is None
    return enc


def _adversarial():
    texts = en.adversarial_texts(scale=20)  # runs of 100,000 characters, 400k characters without a space
    texts["one_mb_no_spaces"] = en._pseudo_random_text(1_000_000, "abcdefghijklmnopqrstuvwxyz0123456789", 3)
    texts["one_mb_one_char"] = "z" * 1_000_000
    texts["run_100k_spaces_between"] = "a" + " " * 100_000 + "b" + "\t" * 100_000
    texts["specials_each"] = " ".join(t for t in json.loads(TOKENIZER.read_text())["added_tokens"] for t in [t["content"]])
    return texts


def test_adversarial_set_gives_identical_ids(ref, fast_encoder):
    texts = _adversarial()
    assert len(texts) > 30 and max(map(len, texts.values())) >= 1_000_000
    names, values = list(texts), [t.strip() for t in texts.values()]
    flat, lens, errors, routed = en.encode_docs(fast_encoder, values, EOS, None)
    assert not errors and routed == 0
    starts = np.cumsum(lens) - lens
    for name, t, s, n in zip(names, values, starts, lens):
        assert flat[s:s + n].tolist() == _dolma_reference(ref, t, EOS, None), name
    # the same texts one by one (batching must not matter), and the raw engine without specials
    for name, t in texts.items():
        assert fast_encoder.fast.encode(t).ids == ref.encode(t, add_special_tokens=False).ids, name


def test_sample_corpus_gives_identical_ids(ref, fast_encoder):
    texts, lines, sources = [], 0, set()
    for p in sorted(SAMPLE.glob("*/*.jsonl.gz")):
        with gzip.open(p, "rt", encoding="utf-8") as f:
            docs = [json.loads(line)["text"].strip() for line in f]
        lines += len(docs)
        sources.add(p.parent.name)
        texts += [t for t in docs if t]
    # every document of the bundled sample (its manifest says how many), every source
    meta = json.loads((SAMPLE.parent / "SAMPLE.json").read_text())
    assert lines == sum(v["documents"] for v in meta["sources"].values())
    assert sources == set(meta["sources"]) and len(texts) > 0.9 * lines
    flat, lens, errors, routed = en.encode_docs(fast_encoder, texts, EOS, None)
    want = [e.ids for e in ref.encode_batch_fast(texts, add_special_tokens=False)]
    assert not errors and routed == 0 and len(lens) == len(texts)
    got = np.split(flat, np.cumsum(lens)[:-1])
    bad = [i for i, (g, w) in enumerate(zip(got, want)) if g.tolist() != w + [EOS]]
    assert not bad, f"{len(bad)} sample documents differ, e.g. {texts[bad[0]][:80]!r}"


@pytest.mark.parametrize("eos,bos", [(50279, None), (50279, 50279), (50279, 0), (None, 50279), (0, 1), (None, None)])
def test_special_token_rules_on_flat_ids(ref, fast_encoder, eos, bos):
    texts = ["hello", "<|endoftext|>", "x <|endoftext|>", "<|endoftext|> y", "|||IP_ADDRESS||| z", "<|padding|>",
             "a\u0000b", "w" * 5000, "e\u0301"] * 3
    for tok in (fast_encoder, ref):  # the fast engine and the reference go through one rule
        flat, lens, errors, _ = en.encode_docs(tok, texts, eos, bos)
        starts = np.cumsum(lens) - lens
        assert not errors and lens.sum() == len(flat)
        for t, s, n in zip(texts, starts, lens):
            assert flat[s:s + n].tolist() == _dolma_reference(ref, t, eos, bos), (t, tok)


def test_a_text_fastokens_refuses_goes_to_tokenizers_alone(ref, fast_encoder):
    texts = ["fine text", "a\udc00b", "more <|endoftext|> text"]
    flat, lens, errors, routed = en.encode_docs(fast_encoder, texts, EOS, None)
    rflat, rlens, rerrors, _ = en.encode_docs(ref, texts, EOS, None)
    assert routed == 1 and lens.tolist() == rlens.tolist() and lens[1] == 0
    assert flat.tolist() == rflat.tolist()
    assert errors == rerrors and errors[1].startswith("the tokenizer refused the text (")


def test_documents_of_a_routed_class_are_encoded_by_tokenizers(ref, fast_encoder, monkeypatch):
    calls = []
    real = ref.encode_batch_fast

    monkeypatch.setattr(en, "needs_reference", lambda t: "\u200d" in t)
    texts = ["plain", "zwj \U0001F468\u200d\U0001F469 family", "more", "\u200d"]
    enc = en.Encoder.__new__(en.Encoder)
    enc.__dict__.update(fast_encoder.__dict__)

    class Spy:
        def encode_batch_fast(self, batch, add_special_tokens):
            calls.append(list(batch))
            return real(batch, add_special_tokens=add_special_tokens)

        def encode(self, t, add_special_tokens):
            return ref.encode(t, add_special_tokens=add_special_tokens)

    enc.reference = Spy()
    flat, lens, errors, routed = en.encode_docs(enc, texts, EOS, None)
    assert routed == 2 and calls == [[texts[1]], [texts[3]]]  # only the routed documents reach tokenizers
    assert np.split(flat, np.cumsum(lens)[:-1])[1].tolist() == _dolma_reference(ref, texts[1], EOS, None)
    assert flat.tolist() == en.encode_docs(ref, texts, EOS, None)[0].tolist()


def test_worker_falls_back_with_a_warning_when_fastokens_is_missing(monkeypatch, capsys):
    import builtins

    real_import = builtins.__import__

    def no_fastokens(name, *args, **kwargs):
        if name == "fastokens":
            raise ImportError("no module named fastokens")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_fastokens)
    enc = en.Encoder(str(TOKENIZER), engine="auto")
    assert enc.name == "tokenizers" and enc.note == "fastokens is not installed"
    assert "warning: tokenizing with tokenizers" in capsys.readouterr().err
    with pytest.raises(en.EngineError, match="fastokens is not installed"):
        en.Encoder(str(TOKENIZER), engine="fastokens")


def test_worker_falls_back_when_the_engines_disagree_on_a_probe(monkeypatch, capsys):
    monkeypatch.setattr(en, "probe_texts", lambda: ["agree", "DISAGREE here"])
    real = fastokens.Tokenizer.from_json_str

    class Wrong:
        """fastokens with one id changed on one probe: the check must see it."""

        def __init__(self, inner):
            self.inner = inner

        def encode(self, t, add_special_tokens=False):
            e = self.inner.encode(t, add_special_tokens=add_special_tokens)
            return type("E", (), {"ids": [i + ("DISAGREE" in t) for i in e.ids]})()

        def encode_batch_flat(self, texts, add_special_tokens=False):
            return self.inner.encode_batch_flat(texts, add_special_tokens=add_special_tokens)

    class Shim:
        from_json_str = staticmethod(lambda *a, **k: Wrong(real(*a, **k)))

    monkeypatch.setattr(fastokens, "Tokenizer", Shim)
    enc = en.Encoder(str(TOKENIZER), engine="auto")
    assert enc.name == "tokenizers" and "disagrees with tokenizers on probe 'DISAGREE here'" in enc.note
    assert "disagrees" in capsys.readouterr().err
    with pytest.raises(en.EngineError, match="disagrees"):
        en.Encoder(str(TOKENIZER), engine="fastokens")


def test_engine_choice_and_non_bpe_tokenizers(tmp_path, monkeypatch):
    from tokenizers import models, pre_tokenizers

    monkeypatch.setenv(en.ENGINE_ENV, "tokenizers")
    assert en.Encoder(str(TOKENIZER)).label.startswith("tokenizers ")
    monkeypatch.setenv(en.ENGINE_ENV, "fast")
    with pytest.raises(en.EngineError, match="expected one of auto, fastokens, tokenizers"):
        en.Encoder(str(TOKENIZER))
    monkeypatch.delenv(en.ENGINE_ENV)
    word = Tokenizer(models.WordLevel({"a": 0, "[UNK]": 1}, unk_token="[UNK]"))
    word.pre_tokenizer = pre_tokenizers.Whitespace()
    word.save(str(tmp_path / "w.json"))
    enc = en.Encoder(str(tmp_path / "w.json"))  # by design, not a failure: no note, no warning
    assert enc.name == "tokenizers" and enc.note is None


def test_probe_set_covers_the_adversarial_classes():
    names = set(en.adversarial_texts(1))
    for cls in ("nul", "crlf", "bom", "combining", "emoji_zwj", "rtl", "cjk", "run_a", "no_spaces",
                "special_strings", "endoftext"):
        assert cls in names
    assert en.adversarial_texts(20)["run_a"] == "a" * 100_000
