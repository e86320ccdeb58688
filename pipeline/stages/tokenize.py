"""Tokenize stage: kept documents -> `tokens/<source>/part-<i>-<k:05d>.npy` + `.csv.gz`.

Format (REFERENCE.md section 4, as `dolma tokens` writes it): raw memmaps of token ids (no
header), uint16 when the vocabulary fits, else uint32; each document's text is stripped,
empty ones skipped (counted), EOS appended (BOS prepended if configured; neither doubled);
a document is never split across files; files roll over at `max_tokens_per_file`. The
`.csv.gz` index beside each array has one row per document, `start,end,id,src,loc`.

Token semantics are dolma 1.2.1's (`dolma.tokenizer.Tokenizer.encode(text.strip(),
add_special_tokens=True)`, checked against the real toolkit by tests/test_tokenize_parity.py):
the tokenizer runs with `add_special_tokens=False`, then BOS is inserted unless the ids already
start with it and EOS appended unless they already end with it. A non-empty text that
tokenizes to no ids at all (possible with a normalizer that deletes characters) gets no
BOS/EOS in dolma and an empty index row; here it is set aside as a bad record with its line,
so it is counted and reported and never written as a zero-length document.

Sampling happens here: a document is written `whole + [u(id) < threshold]` times, u being a
seeded hash of its id and the rule coming from `plan.py` (a proportion or a token target).
Document order within a shard is shuffled in bounded blocks with a seeded RNG, so outputs
depend only on the input, config and seed, never on the number of workers.

Speed: one shard runs as three threads. A reader decompresses and parses (zlib releases the
GIL), the task's thread encodes blocks with `encode_batch_fast` (Rust, GIL released) and turns
ids into one flat array per block (`array('I').fromlist`, no per-document numpy objects), and a
writer gathers the shuffled block, casts it once and writes the array bytes and all index rows
of the block in one call each. Per token, Python does nothing but receive the id list.
"""
from __future__ import annotations

import csv
import io as _io
import queue
import threading
from array import array
from functools import lru_cache
from itertools import repeat
from typing import Any, Callable, Iterator

import numpy as np
import xxhash
from tokenizers import Tokenizer

from .. import io
from ..io import InputError, Record
from ..runtime import Shard
from ..steps import Step
from .common import Rejects, kept_path, mix_of

BLOCK = 4096  # documents per shuffle block: bounds memory per task (with BLOCK_CHARS)
BLOCK_CHARS = 1 << 25  # ... and at most this many characters of text per block
ENCODE_CHARS = 1 << 21  # characters per encode_batch call: bounds the tokenizer's Encoding objects
PREVIEW = io.MAX_REJECT_PREVIEW


@lru_cache(maxsize=4)
def load_tokenizer(path: str) -> Tokenizer:
    if io.is_remote(path) or path.endswith(".json"):
        if io.is_remote(path):
            return Tokenizer.from_str(io.read_text(path))
        return Tokenizer.from_file(path)
    return Tokenizer.from_pretrained(path)  # a hub id, where a hub is reachable


def choose_dtype(vocab_size: int, requested: str = "auto") -> np.dtype:
    fits16 = vocab_size <= 65536
    if requested == "auto":
        return np.dtype(np.uint16 if fits16 else np.uint32)
    if requested == "uint16" and not fits16:
        raise InputError(f"dtype uint16 cannot hold a vocabulary of {vocab_size} ids (max 65,536); use uint32 or auto")
    return np.dtype(requested)


def check_special_ids(dtype: np.dtype, eos: int | None, bos: int | None) -> None:
    """EOS/BOS ids must be representable in the arrays (a silent wrap-around would corrupt them)."""
    top = int(np.iinfo(dtype).max)
    for name, value in (("eos_token_id", eos), ("bos_token_id", bos)):
        if value is not None and not 0 <= value <= top:
            raise InputError(f"{name} {value} does not fit dtype {dtype.name} (ids 0..{top:,})")


def unit_hash(seed: int, source: str, doc_id) -> float:
    """A document's seeded position in [0, 1): decides sampling, identical everywhere."""
    return xxhash.xxh64_intdigest(f"{seed}\x1f{source}\x1f{doc_id}".encode("utf-8", "surrogatepass")) / 2.0**64


def copies(u: float, rule: dict) -> int:
    """How many times a document with hash u is written: whole + [u < threshold]."""
    return int(rule["whole"]) + (1 if u < rule["threshold"] else 0)


ALL = {"whole": 1, "threshold": 0.0}  # the sampling rule that keeps every document once


# ---------------------------------------------------------------------------------------------
# encoding


def encode_flat(tok: Tokenizer, texts: list[str], eos: int | None, bos: int | None,
                batch_size: int = 512) -> tuple[np.ndarray, np.ndarray, dict[int, str]]:
    """Encode stripped, non-empty texts into one flat uint32 array of ids.

    Returns (ids, lengths, errors): document j occupies ids[offset_j : offset_j + lengths[j]]
    with BOS/EOS added as dolma does (not doubled); a document that tokenizes to nothing has
    length 0 and no special tokens; `errors` maps the index of a text the tokenizer refused
    to its message (length 0 as well)."""
    out = array("I")
    lens = array("q")
    errors: dict[int, str] = {}
    fast = getattr(tok, "encode_batch_fast", None) or tok.encode_batch
    i, n = 0, len(texts)
    while i < n:
        j, chars = i, 0
        while j < n and j - i < batch_size and (chars < ENCODE_CHARS or j == i):
            chars += len(texts[j])
            j += 1
        try:
            encodings = fast(texts[i:j], add_special_tokens=False)
        except Exception:  # noqa: BLE001 (one bad text fails the batch: find it, keep the rest)
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
            m = len(ids)
            if m:
                if bos is not None and ids[0] != bos:
                    out.append(bos)
                    m += 1
                out.fromlist(ids)
                if eos is not None and ids[-1] != eos:
                    out.append(eos)
                    m += 1
            lens.append(m)
        i = j
    return (np.frombuffer(out, dtype=np.uint32) if len(out) else np.zeros(0, np.uint32),
            np.frombuffer(lens, dtype=np.int64) if len(lens) else np.zeros(0, np.int64), errors)


def encode_block(tok: Tokenizer, texts: list[str], eos: int | None, bos: int | None) -> list[np.ndarray]:
    """Token ids per text, with BOS/EOS added once; texts must already be stripped. A text that
    tokenizes to nothing (or that the tokenizer refuses) gives an empty array."""
    ids, lens, _ = encode_flat(tok, texts, eos, bos)
    return np.split(ids, np.cumsum(lens)[:-1]) if len(lens) else []


# ---------------------------------------------------------------------------------------------
# reading


class _Block:
    """Up to BLOCK consecutive documents of one file: what the reader hands to the encoder."""

    __slots__ = ("texts", "ids", "locs", "documents_in", "empty", "bad", "chars")

    def __init__(self) -> None:
        self.texts: list[str] = []  # stripped, non-empty
        self.ids: list[Any] = []
        self.locs: list[int] = []
        self.documents_in = 0
        self.empty = 0
        self.bad: list[Record] = []
        self.chars = 0


def _blocks(path: str) -> Iterator[_Block]:
    block = _Block()
    for rec in io.read_documents(path):
        if not rec.ok:
            block.bad.append(rec)
            continue
        block.documents_in += 1
        text = rec.doc["text"].strip()
        if not text:
            block.empty += 1
            continue
        block.texts.append(text)
        block.ids.append(rec.doc["id"])
        block.locs.append(rec.line)
        block.chars += len(text)
        if len(block.texts) >= BLOCK or block.chars >= BLOCK_CHARS:
            yield block
            block = _Block()
    if block.documents_in or block.bad:
        yield block


# ---------------------------------------------------------------------------------------------
# threads


_END = object()


class _Failure:
    def __init__(self, exc: BaseException):
        self.exc = exc


def _put(q: queue.Queue, item: Any, stop: threading.Event) -> bool:
    """Put into a bounded queue unless the pipeline is stopping (False then)."""
    while not stop.is_set():
        try:
            q.put(item, timeout=0.1)
            return True
        except queue.Full:
            continue
    return False


def _get(q: queue.Queue, stop: threading.Event) -> Any:
    while True:
        try:
            return q.get(timeout=0.1)
        except queue.Empty:
            if stop.is_set():
                return _END


def _producer(gen: Callable[[], Iterator[Any]], q: queue.Queue, stop: threading.Event) -> None:
    try:
        for item in gen():
            if not _put(q, item, stop):
                return
        _put(q, _END, stop)
    except BaseException as e:  # noqa: BLE001 (handed to the consumer, raised there)
        _put(q, _Failure(e), stop)


# ---------------------------------------------------------------------------------------------
# writing


class PartWriter:
    """Writes one source shard's part files, rolling at `max_tokens`, a block at a time."""

    def __init__(self, out_dir: str, index: int, dtype: np.dtype, max_tokens: int, src: str):
        self.out_dir, self.index, self.dtype, self.max_tokens, self.src = out_dir, index, dtype, max_tokens, src
        self.k = -1
        self.files: list[dict] = []
        self.npy = self.csv = None
        self.n_tokens = self.n_docs = 0

    def _open_next(self) -> None:
        self.k += 1
        self.stem = io.join(self.out_dir, f"part-{self.index}-{self.k:05d}")
        self.npy = io.AtomicWriter(self.stem + ".npy")
        self.csv = io.AtomicWriter(self.stem + ".csv.gz")
        self.n_tokens = self.n_docs = 0

    def _close(self) -> None:
        self.npy.commit()
        self.csv.commit()
        self.files.append({"stem": self.stem, "tokens": self.n_tokens, "documents": self.n_docs})
        self.npy = self.csv = None

    def write_block(self, flat: np.ndarray, starts: np.ndarray, lens: np.ndarray, order: np.ndarray,
                    doc_ids: list, locs: list[int]) -> None:
        """Write documents `order` (indexes into starts/lens/doc_ids/locs), in that order."""
        if not len(order):
            return
        L = lens[order]
        S = starts[order]
        cum = np.cumsum(L)
        pos = 0
        while pos < len(order):
            if self.npy is None:
                self._open_next()
            base = int(cum[pos - 1]) if pos else 0
            k = int(np.searchsorted(cum, base + self.max_tokens - self.n_tokens, side="right")) - pos
            if k <= 0:
                if self.n_docs:
                    self._close()
                    continue
                k = 1  # a document longer than a whole file gets a file of its own
            sel = slice(pos, pos + k)
            toks = np.concatenate([flat[s:s + n] for s, n in zip(S[sel].tolist(), L[sel].tolist())])
            self.npy.write(toks.astype(self.dtype, copy=False).tobytes())
            ends = (self.n_tokens + cum[sel] - base).tolist()
            begins = [self.n_tokens] + ends[:-1]
            chosen = order[sel].tolist()
            buf = _io.StringIO()
            csv.writer(buf, lineterminator="\n").writerows(
                zip(begins, ends, [doc_ids[i] for i in chosen], repeat(self.src), [locs[i] for i in chosen]))
            self.csv.write(buf.getvalue().encode("utf-8"))
            self.n_tokens = ends[-1]
            self.n_docs += k
            pos += k

    def finish(self) -> list[dict]:
        if self.npy is not None:
            self._close()
        return self.files

    def abort(self) -> None:
        for w in (self.npy, self.csv):
            if w is not None:
                try:
                    w.abort()
                except Exception:  # noqa: BLE001 (best effort; a rerun sweeps temporaries)
                    pass
        self.npy = self.csv = None


def _writer_loop(writer: PartWriter, q: queue.Queue, stop: threading.Event, errors: list) -> None:
    try:
        while True:
            job = _get(q, stop)
            if job is _END:
                return
            writer.write_block(*job)
    except BaseException as e:  # noqa: BLE001 (raised by the task's thread)
        errors.append(e)
        stop.set()


# ---------------------------------------------------------------------------------------------
# one file


def tokenize_file(doc_path: str, out_dir: str, index: int, tcfg, seed: int, source: str, rule: dict,
                  src_label: str, rejects) -> dict:
    """Tokenize one documents file into `out_dir/part-<index>-<k:05d>.npy|csv.gz`."""
    tok = load_tokenizer(tcfg.path)
    dtype = choose_dtype(tok.get_vocab_size(with_added_tokens=True), tcfg.dtype)
    eos, bos = tcfg.eos_token_id, tcfg.bos_token_id
    check_special_ids(dtype, eos, bos)
    top = int(np.iinfo(dtype).max)
    rng = np.random.Generator(np.random.PCG64([seed, xxhash.xxh32_intdigest(f"{source}/{index}".encode())]))
    sample_all = int(rule["whole"]) == 1 and rule["threshold"] <= 0.0
    writer = PartWriter(out_dir, index, dtype, tcfg.max_tokens_per_file, src_label)
    stats = {"documents_in": 0, "documents_sampled": 0, "documents_out": 0, "empty": 0, "tokens": 0,
             "tokens_unsampled": 0}

    stop = threading.Event()
    read_q: queue.Queue = queue.Queue(maxsize=2)
    write_q: queue.Queue = queue.Queue(maxsize=2)
    write_errors: list[BaseException] = []
    reader = threading.Thread(target=_producer, args=(lambda: _blocks(doc_path), read_q, stop), daemon=True,
                              name=f"tokenize-read-{index}")
    writing = threading.Thread(target=_writer_loop, args=(writer, write_q, stop, write_errors), daemon=True,
                               name=f"tokenize-write-{index}")
    reader.start()
    writing.start()
    try:
        while True:
            block = _get(read_q, stop)
            if block is _END:
                break
            if isinstance(block, _Failure):
                raise block.exc
            for rec in block.bad:
                rejects.add(rec.path, rec.line, rec.error, rec.raw)
            stats["documents_in"] += block.documents_in
            stats["empty"] += block.empty
            if not block.texts:
                continue
            flat, lens, errors = encode_flat(tok, block.texts, eos, bos, tcfg.batch_size)
            if len(flat) and int(flat.max()) > top:
                j = int(np.searchsorted(np.cumsum(lens), int(np.argmax(flat > top)), side="right"))
                raise InputError(f"{doc_path}:{block.locs[j]}: the tokenizer produced id {int(flat.max())}, "
                                 f"beyond dtype {dtype.name} (its vocabulary size was misreported?)")
            for j in np.flatnonzero(lens == 0).tolist():
                reason = errors.get(j) or (f"text of {len(block.texts[j]):,} characters (after strip) tokenizes to "
                                           "no tokens; document skipped")
                rejects.add(doc_path, block.locs[j], reason, block.texts[j][:PREVIEW])
            valid = np.flatnonzero(lens > 0)
            stats["tokens_unsampled"] += int(lens.sum())
            if sample_all:
                items = valid
                stats["documents_sampled"] += len(valid)
            else:
                n = np.array([copies(unit_hash(seed, source, block.ids[j]), rule) for j in valid.tolist()],
                             dtype=np.int64)
                stats["documents_sampled"] += int(np.count_nonzero(n))
                items = np.repeat(valid, n)
            order = items[rng.permutation(len(items))]
            stats["documents_out"] += len(order)
            stats["tokens"] += int(lens[order].sum())
            starts = np.cumsum(lens) - lens
            if not _put(write_q, (flat, starts, lens, order, block.ids, block.locs), stop):
                break
        _put(write_q, _END, stop)
        writing.join()
        if write_errors:
            raise write_errors[0]
        stats["files"] = writer.finish()
    except BaseException:
        stop.set()
        writing.join()
        writer.abort()
        raise
    finally:
        stop.set()
        reader.join()
    stats["dtype"] = dtype.name
    return stats


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    rejects = Rejects(ctx, "tokenize", shard)
    stats = tokenize_file(kept_path(ctx, shard), io.join(ctx["output"], "tokens", shard.source), shard.index,
                          mix.tokenizer, mix.seed, shard.source, ctx["sampling"][shard.source],
                          "kept/" + shard.rel, rejects)
    rejects.commit()
    dtype = stats.pop("dtype")
    stats["files"] = [{"path": io.relpath(f["stem"], ctx["output"]), "tokens": f["tokens"],
                       "documents": f["documents"], "dtype": dtype} for f in stats["files"]]
    stats.update(rejects.stats())
    return stats


def run_command_shard(shard: Shard, ctx: dict) -> dict:
    """`dolma-prep tokenize`: one input file -> `OUTPUT/part-<i>-<k>.npy|csv.gz` (src = input path)."""
    from ..mixfile import TokenizerConfig

    tcfg = TokenizerConfig.model_validate(ctx["tokenizer"])
    rejects = Rejects(ctx, "tokenize", shard)
    stats = tokenize_file(shard.path, ctx["output"], shard.index, tcfg, ctx["seed"], "", ALL, shard.path, rejects)
    rejects.commit()
    stats.pop("dtype")
    stats["files"] = [{"path": io.relpath(f["stem"], ctx["output"]), "tokens": f["tokens"]} for f in stats["files"]]
    stats.update(rejects.stats())
    return stats


def decode(npy_path: str, doc: int, tokenizer_path: str) -> tuple[dict, str]:
    """Row `doc` (0-based) of the index beside `npy_path` and its text, decoded."""
    index = npy_path[: -len(".npy")] + ".csv.gz"
    with io.open_binary(index) as f:
        rows = list(csv.reader(_io.TextIOWrapper(f, encoding="utf-8")))
    if not 0 <= doc < len(rows):
        raise InputError(f"{index} holds {len(rows)} documents; --doc {doc} is out of range")
    end_all = int(rows[-1][1])
    size = io.file_size(npy_path)
    if end_all == 0 or size % end_all:
        raise InputError(f"{npy_path}: {size} bytes do not match the {end_all} tokens of its index")
    dtype = {2: np.dtype(np.uint16), 4: np.dtype(np.uint32)}.get(size // end_all)
    if dtype is None:
        raise InputError(f"{npy_path}: {size // end_all} bytes per token; expected 2 (uint16) or 4 (uint32)")
    start, end, doc_id, src, loc = rows[doc]
    with io.open_random(npy_path) as f:  # only this document's bytes, on any storage
        f.seek(int(start) * dtype.itemsize)
        ids = np.frombuffer(f.read((int(end) - int(start)) * dtype.itemsize), dtype=dtype)
    text = load_tokenizer(tokenizer_path).decode(ids.tolist(), skip_special_tokens=False)
    return {"start": int(start), "end": int(end), "id": doc_id, "src": src, "loc": int(loc),
            "tokens": int(end) - int(start)}, text


STEP = Step("tokenize", reads="kept/", writes="tokens/<source>/part-*.npy + .csv.gz",
            counters=("documents_out", "tokens", "empty", "rejected"), run_shard=run_shard)
