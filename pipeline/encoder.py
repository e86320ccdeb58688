"""The one way every stage turns texts into token ids: an engine behind `Encoder.encode_raw`.

Two engines read the same `tokenizer.json`:
- `tokenizers` (Hugging Face), the reference: its ids are the ids (`dolma tokens` uses it);
- `fastokens` (pinned in pyproject), a faster Rust BPE encoder that returns every text's ids
  in one flat buffer (no per-document Python objects).

`fastokens` is used only where it is known to give the reference's ids:
- only for byte-level BPE tokenizers (the OLMo/GPT-NeoX family it targets: every byte has a
  token, so no text can be refused); any other tokenizer runs on `tokenizers`;
- when an `Encoder` is built (once per worker process), both engines encode a fixed probe set
  (`probe_texts`: the adversarial classes of tests/test_encoder.py at probe size) and any
  difference, or fastokens missing or failing to load, makes the encoder fall back to
  `tokenizers`, with a warning on stderr and the reason in `Encoder.note` (the manifest
  records engine, version and note);
- per document, a text fastokens refuses, or one of a class where it was measured to differ
  (`needs_reference`; none known for 0.3.5 on the bundled tokenizer), is encoded by
  `tokenizers` instead, and counted (`reference_documents`).

`DOLMA_PREP_TOKENIZER_ENGINE` chooses: `auto` (default: fastokens when it passes the probes,
else tokenizers with a warning), `tokenizers` (the reference only), `fastokens` (fail instead
of falling back: for benchmarks that must measure it). Each worker is one core:
fastokens' own BPE threads are set to 1 (`FASTOKENS_BPE_THREADS`) unless the caller set them.
"""
from __future__ import annotations

import json
import os
import sys
from array import array
from functools import lru_cache
from importlib.metadata import PackageNotFoundError, version
from typing import Any

import numpy as np

from ..core import io
from ..core.io import InputError

ENGINE_ENV = "DOLMA_PREP_TOKENIZER_ENGINE"
ENGINES = ("auto", "fastokens", "tokenizers")
ENCODE_CHARS = 1 << 21  # characters per engine call: bounds the engine's temporary objects


class EngineError(InputError):
    """The engine asked for by DOLMA_PREP_TOKENIZER_ENGINE=fastokens cannot be used."""


def engine_choice() -> str:
    value = os.environ.get(ENGINE_ENV, "auto").strip().lower() or "auto"
    if value not in ENGINES:
        raise EngineError(f"{ENGINE_ENV}={value!r}: expected one of {', '.join(ENGINES)}")
    return value


def _version(dist: str) -> str:
    try:
        return version(dist)
    except PackageNotFoundError:
        return "unknown"


def _read_json_text(path: str) -> str | None:
    """The tokenizer file's JSON text (local or any storage), or None for a hub id."""
    if io.is_remote(path):
        return io.read_text(path)
    if path.endswith(".json"):
        with open(path, encoding="utf-8") as f:
            return f.read()
    return None


def load_reference(path: str):
    """The `tokenizers` Tokenizer of a local file, a URL or (where a hub is reachable) a hub id."""
    from tokenizers import Tokenizer

    if io.is_remote(path):
        return Tokenizer.from_str(io.read_text(path))
    if path.endswith(".json"):
        return Tokenizer.from_file(path)
    return Tokenizer.from_pretrained(path)


# ---------------------------------------------------------------------------------------------
# the probe set: the adversarial classes, sized to check in well under a second per worker


def _pseudo_random_text(n: int, alphabet: str, seed: int) -> str:
    """`n` characters of `alphabet`, deterministic (a 64-bit LCG; no dependence on `random`)."""
    out, x, k = [], seed, len(alphabet)
    for _ in range(n):
        x = (x * 6364136223846793005 + 1442695040888963407) & 0xFFFFFFFFFFFFFFFF
        out.append(alphabet[(x >> 33) % k])
    return "".join(out)


def adversarial_texts(scale: int = 1) -> dict[str, str]:
    """Named texts of every class the engines must agree on. `scale=1` is the probe set a
    worker checks at start; the tests use larger runs (100k characters, a 1 MB text)."""
    run = 5_000 * scale
    texts = {
        "plain": "The quick brown fox jumps over the lazy dog. It's 3.14159, isn't it? DON'T SHOUT.",
        "code": "def f(x):\n\tif x  !=  0:\n\t\treturn {'a': [1, 2]}  # comment\r\n    pass\n",
        "nul": "a\u0000b\u0000\u0000c",
        "controls": "".join(chr(c) for c in range(1, 32)) + "\u007f\u0080\u009f",
        "crlf": "line one\r\nline two\r\n\r\nthree\rfour\n",
        "bom": "\ufeffstarts with a BOM and \ufeff has one inside",
        "combining": "e\u0301 cafe\u0301 n\u0303o a" + "\u0301" * 40 + " Z\u0351\u0300\u0322\u0341a\u0358\u0342l\u0334go",
        "nfc": "\ufb01 \u212b \u1100\u1161\u11a8 \u0041\u030a \u2126 \u00c5",
        "emoji_zwj": "family \U0001F468\u200d\U0001F469\u200d\U0001F467\u200d\U0001F466 flag \U0001F1FA\U0001F1F8 "
                     "\U0001F44D\U0001F3FD \u2764\ufe0f \U0001F3F3\ufe0f\u200d\U0001F308",
        "rtl": "\u05e9\u05dc\u05d5\u05dd \u05e2\u05d5\u05dc\u05dd \u0645\u0631\u062d\u0628\u0627 \u0628\u0627\u0644\u0639\u0627\u0644\u0645 "
               "\u200f\u202eoverride\u202c \u0627\u0644\u0652\u0639\u064e\u0631\u064e\u0628\u0650\u064a\u0651\u064e\u0629",
        "cjk": "\u4eca\u65e5\u306f\u826f\u3044\u5929\u6c17\u3067\u3059\u3002\u6211\u7231\u5317\u4eac\u5929\u5b89\u95e8\u3002"
               "\ud55c\uad6d\uc5b4 \ud14d\uc2a4\ud2b8 \u30ab\u30bf\u30ab\u30ca\uff01\uff1f\uff08\u5168\u89d2\uff09",
        "indic_thai": "\u0928\u092e\u0938\u094d\u0924\u0947 \u0938\u0902\u0938\u093e\u0930 \u0e2a\u0e27\u0e31\u0e2a\u0e14\u0e35\u0e04\u0e23\u0e31\u0e1a"
                      "\u0e42\u0e25\u0e01 \u0bb5\u0ba3\u0b95\u0bcd\u0b95\u0bae\u0bcd",
        "astral": "\U00010348\U0001D11E\U0001F600\U000E0041\U0010FFFD \uffff \ue000 \U000F0000",
        "unicode_spaces": "\u00a0a\u3000b\u2003c\u2028d\u2029e\u0085f\u200bg\u180eh",
        "space_runs": " ".join("w" + " " * k + "x\t" * (k % 3) for k in range(1, 40)) + " " * 33 + "\n \n  \t ",
        "special_strings": "|||IP_ADDRESS||| x|||EMAIL_ADDRESS|||y |||PHONE_NUMBER|||. <|padding|> a<|padding|>b "
                           "||IP_ADDRESS||| |||IP_ADDRESS|| <|endoftext|",
        "endoftext": "before <|endoftext|> after<|endoftext|><|endoftext|>x <|endoftext|>",
        "endoftext_alone": "<|endoftext|>",
        "numbers_punct": "1234567890 3.1e-10 0x1F ---- .... !!!!???  (((()))) [[]] {{}} $$$ %%% ^^^ ~~~ ```",
        "url": "https://example.com/a/b?c=d&e=f#g mailto:x@y.z C:\\path\\to\\file.txt",
        "contractions": "I'm you're he's we'll they've she'd IT'S I'M 'quoted' '' ''s",
        "run_a": "a" * run,
        "run_space": "x" + " " * run + "y",
        "run_newline": "\n" * run + "z",
        "run_emoji": "\U0001F600" * (run // 5),
        "run_combining": "o" + "\u0308" * (run // 5),
        "run_digits": "7" * run,
        "no_spaces": _pseudo_random_text(20_000 * scale, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJ0123456789-_.,;:/\u00e9\u4e2d", 7),
        "mixed_random": _pseudo_random_text(4_000 * scale, " \n\tab\u00e9\u4e2d\U0001F600.,'0|<>\u0301\r\ufeff", 11),
    }
    return texts


def probe_texts() -> list[str]:
    return list(adversarial_texts(1).values())


# ---------------------------------------------------------------------------------------------
# the encoder


def needs_reference(text: str) -> bool:
    """A document of a class where fastokens was measured to differ from tokenizers goes to
    tokenizers. Lone surrogates (which both engines refuse, and the reader rejects first) are
    the only text fastokens cannot take; no class of valid text differed for fastokens 0.3.5
    on the bundled tokenizer (tests/test_encoder.py), so nothing else is routed."""
    return False


def _outcome(fn, text: str) -> Any:
    try:
        return list(fn(text))
    except Exception as e:  # noqa: BLE001 (a refusal is an outcome too: both must refuse)
        return ("refused", type(e).__name__)


class Encoder:
    """Texts -> raw token ids (no special tokens), with the engine chosen once per process."""

    def __init__(self, path: str, engine: str | None = None):
        import tokenizers

        self.path = path
        self.reference = load_reference(path)
        self.name, self.version, self.note = "tokenizers", tokenizers.__version__, None
        self.fast = None
        choice = engine or engine_choice()
        if choice == "tokenizers":
            return
        fast, note, warn = self._try_fast()
        if fast is not None:
            self.fast, self.name, self.version = fast, "fastokens", _version("fastokens")
            return
        if choice == "fastokens":
            raise EngineError(f"{ENGINE_ENV}=fastokens but {note}")
        if warn:  # fastokens should have served this tokenizer: say why it does not (manifest and stderr)
            self.note = note
            print(f"dolma-prep: warning: tokenizing with tokenizers {self.version}: {note}", file=sys.stderr,
                  flush=True)

    @classmethod
    def of_reference(cls, tokenizer) -> Encoder:
        """An encoder over an already loaded `tokenizers` Tokenizer (the reference engine only)."""
        import tokenizers

        enc = cls.__new__(cls)
        enc.path, enc.reference, enc.fast = None, tokenizer, None
        enc.name, enc.version, enc.note = "tokenizers", tokenizers.__version__, None
        return enc

    @property
    def label(self) -> str:
        return f"{self.name} {self.version}"

    def describe(self) -> dict:
        return {"name": self.name, "version": self.version, "note": self.note}

    def _try_fast(self) -> tuple[Any, str | None, bool]:
        """(fastokens tokenizer or None, why not, whether that deserves a warning)."""
        try:
            import fastokens
        except ImportError:
            return None, "fastokens is not installed", True
        text = _read_json_text(self.path)
        cfg = json.loads(text) if text is not None else json.loads(self.reference.to_str())
        model, pre = (cfg.get("model") or {}).get("type"), (cfg.get("pre_tokenizer") or {}).get("type")
        if model != "BPE" or pre != "ByteLevel":
            return None, (f"fastokens is used for byte-level BPE tokenizers only (this one: model {model}, "
                          f"pre-tokenizer {pre})"), False
        os.environ.setdefault("FASTOKENS_BPE_THREADS", "1")  # one worker = one core
        try:
            fast = fastokens.Tokenizer.from_json_str(text if text is not None else self.reference.to_str())
        except Exception as e:  # noqa: BLE001 (an unsupported normalizer, a newer format)
            return None, f"fastokens {_version('fastokens')} cannot load the tokenizer ({type(e).__name__}: {e})", True
        bad = first_disagreement(fast, self.reference, probe_texts())
        if bad is not None:
            return None, f"fastokens {_version('fastokens')} disagrees with tokenizers on probe {bad!r}", True
        return fast, None, False

    def encode_raw(self, texts: list[str]) -> tuple[np.ndarray, np.ndarray, dict[int, str], int]:
        """Ids of every text, concatenated (uint32), their lengths (int64), {index: message} for
        texts the reference tokenizer refuses (length 0), and how many texts went to the
        reference engine while fastokens was the engine (refused by it, or `needs_reference`)."""
        if self.fast is None:
            return (*_reference_flat(self.reference, texts), 0)
        routed = [i for i, t in enumerate(texts) if needs_reference(t)]
        if routed:
            return self._mixed(texts, set(routed))
        try:
            ids, offsets = self.fast.encode_batch_flat(texts, add_special_tokens=False)
        except Exception:  # noqa: BLE001 (one text it refuses fails the batch: route that one)
            return self._mixed(texts, set())
        flat = np.frombuffer(ids, dtype=np.uint32)
        return flat, np.diff(np.frombuffer(offsets, dtype=np.uint64)).astype(np.int64), {}, 0

    def _mixed(self, texts: list[str], routed: set[int]) -> tuple[np.ndarray, np.ndarray, dict[int, str], int]:
        parts, lens, errors, n_ref = [], np.zeros(len(texts), np.int64), {}, 0
        for i, t in enumerate(texts):
            ids = None
            if i not in routed:
                try:
                    ids = np.frombuffer(self.fast.encode_batch_flat([t], add_special_tokens=False)[0], np.uint32)
                except Exception:  # noqa: BLE001
                    ids = None
            if ids is None:
                n_ref += 1
                f, n, e, = _reference_flat(self.reference, [t])
                if e:
                    errors[i] = e[0]
                ids = f
            parts.append(ids)
            lens[i] = len(ids)
        flat = np.concatenate(parts).astype(np.uint32, copy=False) if parts else np.zeros(0, np.uint32)
        return flat, lens, errors, n_ref


def _reference_flat(tok, texts: list[str], batch_size: int = 512) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """The reference engine, `encode_batch_fast` (Rust, GIL released) in bounded batches; a batch
    that fails is retried text by text so one refused text costs only itself."""
    out, lens, errors = array("I"), array("q"), {}
    fast = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
    i, n = 0, len(texts)
    while i < n:
        j, chars = i, 0
        while j < n and j - i < batch_size and (chars < ENCODE_CHARS or j == i):
            chars += len(texts[j])
            j += 1
        try:
            encodings = fast(texts[i:j], add_special_tokens=False)
        except Exception:  # noqa: BLE001
            encodings = []
            for k in range(i, j):
                try:
                    encodings.append(tok.encode(texts[k], add_special_tokens=False))
                except Exception as e:  # noqa: BLE001
                    encodings.append(None)
                    errors[k] = f"the tokenizer refused the text ({type(e).__name__}: {e})"
        for enc in encodings:
            if enc is None:
                lens.append(0)
                continue
            ids = enc.ids
            out.fromlist(ids)
            lens.append(len(ids))
        i = j
    return (np.frombuffer(out, dtype=np.uint32) if len(out) else np.zeros(0, np.uint32),
            np.frombuffer(lens, dtype=np.int64) if len(lens) else np.zeros(0, np.int64), errors)


def first_disagreement(fast, reference, texts: list[str]) -> str | None:
    """The name (or start) of the first text on which the engines differ, batch and single
    calls both; None when they agree on every one."""
    ref = [_outcome(lambda t: reference.encode(t, add_special_tokens=False).ids, t) for t in texts]
    single = [_outcome(lambda t: fast.encode(t, add_special_tokens=False).ids, t) for t in texts]
    for t, a, b in zip(texts, ref, single):
        if a != b:
            return t[:40]
    ok = [t for t, a in zip(texts, ref) if not isinstance(a, tuple)]
    ids, offsets = fast.encode_batch_flat(ok, add_special_tokens=False)
    flat, off = np.frombuffer(ids, np.uint32), np.frombuffer(offsets, np.uint64)
    want = [a for a in ref if not isinstance(a, tuple)]
    for k, t in enumerate(ok):
        if flat[int(off[k]):int(off[k + 1])].tolist() != want[k]:
            return t[:40]
    return None


def add_special_tokens(raw: np.ndarray, lens: np.ndarray, eos: int | None, bos: int | None) -> tuple[np.ndarray, np.ndarray]:
    """dolma 1.2.1's rule on flat ids: BOS inserted unless the ids already start with it, EOS
    appended unless they already end with it; a document with no ids gets neither."""
    n = len(lens)
    if not n:
        return np.zeros(0, np.uint32), np.zeros(0, np.int64)
    starts = np.cumsum(lens) - lens
    has = lens > 0
    last = np.where(has, starts + lens - 1, 0)
    first = np.where(has, starts, 0)
    vals_first = raw[first] if len(raw) else np.zeros(n, np.uint32)
    vals_last = raw[last] if len(raw) else np.zeros(n, np.uint32)
    nb = (has & (vals_first != bos)).astype(np.int64) if bos is not None else np.zeros(n, np.int64)
    ne = (has & (vals_last != eos)).astype(np.int64) if eos is not None else np.zeros(n, np.int64)
    if not nb.any() and not ne.any():
        return raw, lens
    out_lens = lens + nb + ne
    out_starts = np.cumsum(out_lens) - out_lens
    out = np.empty(int(out_lens.sum()), dtype=np.uint32)
    shift = out_starts + nb - starts
    out[np.arange(len(raw), dtype=np.int64) + np.repeat(shift, lens)] = raw
    if bos is not None:
        out[out_starts[nb == 1]] = bos
    if eos is not None:
        out[(out_starts + out_lens - 1)[ne == 1]] = eos
    return out, out_lens


@lru_cache(maxsize=4)
def load_encoder(path: str, engine: str | None = None) -> Encoder:
    """The process's encoder for a tokenizer file (built, and probed, once per worker)."""
    return Encoder(path, engine)


# ---------------------------------------------------------------------------------------------
# documents: stripped texts -> ids with BOS/EOS, as dolma's Tokenizer.encode gives them


def _encoder(tok) -> Encoder:
    """An Encoder, or a bare `tokenizers` Tokenizer (tests, callers with their own) as the reference."""
    return tok if isinstance(tok, Encoder) else Encoder.of_reference(tok)


def encode_docs(tok, texts: list[str], eos: int | None, bos: int | None) -> tuple[np.ndarray, np.ndarray, dict[int, str], int]:
    """Encode stripped, non-empty texts into one flat uint32 array of ids, through the engine.

    Returns (ids, lengths, errors, reference_documents): document j occupies
    ids[offset_j : offset_j + lengths[j]] with BOS/EOS added as dolma does (not doubled); a
    document that tokenizes to nothing has length 0 and no special tokens; `errors` maps the
    index of a text the tokenizer refused to its message (length 0 as well);
    `reference_documents` counts texts the fast engine handed to `tokenizers`."""
    raw, lens, errors, n_ref = _encoder(tok).encode_raw(texts)
    flat, lens = add_special_tokens(raw, lens, eos, bos)
    return flat, lens, errors, n_ref


def encode_flat(tok, texts: list[str], eos: int | None, bos: int | None) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """`encode_docs` without the routing count (the engines bound their calls by characters)."""
    flat, lens, errors, _ = encode_docs(tok, texts, eos, bos)
    return flat, lens, errors


def encode_block(tok, texts: list[str], eos: int | None, bos: int | None) -> list[np.ndarray]:
    """Token ids per text, with BOS/EOS added once; texts must already be stripped. A text that
    tokenizes to nothing (or that the tokenizer refuses) gives an empty array."""
    ids, lens, _ = encode_flat(tok, texts, eos, bos)
    return np.split(ids, np.cumsum(lens)[:-1]) if len(lens) else []
