"""Tokenize stage: kept documents -> `tokens/<source>/part-<i>-<k:05d>.npy` + `.csv.gz`.

Format (docs/REFERENCE.md section 4, as `dolma tokens` writes it; the trainer reads the same
contract, core/tokens.py): raw memmaps of token ids (no header), uint16 when the vocabulary fits,
else uint32; each document's text is stripped, empty ones skipped (counted), EOS appended (BOS
prepended if configured; neither doubled); a document is never split across files; files roll
over at `max_tokens_per_file`. The `.csv.gz` index beside each array has one row per document,
`start,end,id,src,loc`.

Token semantics are dolma 1.2.1's (`dolma.tokenizer.Tokenizer.encode(text.strip(),
add_special_tokens=True)`, checked against the real toolkit by tests/test_tokenize_parity.py):
the tokenizer runs with `add_special_tokens=False`, then BOS is inserted unless the ids already
start with it and EOS appended unless they already end with it. A non-empty text that
tokenizes to no ids at all (possible with a normalizer that deletes characters) gets no
BOS/EOS in dolma and an empty index row; here it is set aside as a bad record with its line,
so it is counted and reported and never written as a zero-length document.

Sampling happens here: a document is written `whole + [u(id) < threshold]` times, u being a
seeded hash of its id (core/sampling.py, the trainer's too) and the rule coming from `plan.py`
(a proportion or a token target).
Document order within a shard is shuffled in bounded blocks with a seeded RNG, so outputs
depend only on the input, config and seed, never on the number of workers.

Speed: one shard runs as three threads. A reader decompresses and parses (zlib releases the
GIL), the task's thread encodes blocks with `encode_batch_fast` (Rust, GIL released) and turns
ids into one flat array per block (`array('I').fromlist`, no per-document numpy objects), and a
writer gathers the shuffled block, casts it once and writes the array bytes and all index rows
of the block in one call each. Per token, Python does nothing but receive the id list.
"""
from __future__ import annotations

import json
import queue
import threading
from collections.abc import Callable, Iterator
from functools import lru_cache
from itertools import repeat
from typing import Any

import numpy as np
import xxhash

from ...core import io
from ...core.io import InputError, Record
from ...core.runtime import Shard
from ...core.sampling import unit_hash
from ...core.tokens import (
    ARRAY_SUFFIX,
    DTYPES,
    INDEX_SUFFIX,
    choose_dtype,
    format_index,
    index_path,
    part_stem,
    read_index,
)
from ..encoder import Encoder, encode_docs, load_encoder, load_reference
from ..mixfile import TokenizerConfig
from ..plan import uses_targets
from ..steps import Step
from .common import Rejects, kept_path, mix_of

BLOCK = 4096  # documents per shuffle block: bounds memory per task (with BLOCK_CHARS)
BLOCK_CHARS = 1 << 25  # ... and at most this many characters of text per block
PREVIEW = io.MAX_REJECT_PREVIEW


@lru_cache(maxsize=4)
def load_tokenizer(path: str):
    """The reference `tokenizers` Tokenizer (decoding, vocabulary size); encoding goes through
    `load_encoder` (pipeline/encoder.py), which picks the engine."""
    return load_reference(path)


def check_special_ids(dtype: np.dtype, eos: int | None, bos: int | None) -> None:
    """EOS/BOS ids must be representable in the arrays (a silent wrap-around would corrupt them)."""
    top = int(np.iinfo(dtype).max)
    for name, value in (("eos_token_id", eos), ("bos_token_id", bos)):
        if value is not None and not 0 <= value <= top:
            raise InputError(f"{name} {value} does not fit dtype {dtype.name} (ids 0..{top:,})")


def copies(u: float, rule: dict) -> int:
    """How many times a document with hash u = unit_hash(seed, source, id) (core/sampling.py)
    is written: whole + [u < threshold]."""
    return int(rule["whole"]) + (1 if u < rule["threshold"] else 0)


ALL = {"whole": 1, "threshold": 0.0}  # the sampling rule that keeps every document once


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
        self.stem = io.join(self.out_dir, part_stem(self.index, self.k))
        self.npy = io.AtomicWriter(self.stem + ARRAY_SUFFIX)
        self.csv = io.AtomicWriter(self.stem + INDEX_SUFFIX)
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
            self.csv.write(format_index(
                zip(begins, ends, [doc_ids[i] for i in chosen], repeat(self.src), [locs[i] for i in chosen])))
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
# encoded blocks: from the documents (read + encode), or from a count step's stored ids


class Encoded:
    """One block of one documents file, encoded: what sampling and writing consume. `flat` is
    None for a block with no text to encode (only bad records or empty documents)."""

    __slots__ = ("flat", "lens", "ids", "locs", "documents_in", "empty", "rejects")

    def __init__(self, documents_in: int, empty: int, rejects: list, ids: list, locs: list,
                 flat: np.ndarray | None = None, lens: np.ndarray | None = None):
        self.documents_in, self.empty, self.rejects = documents_in, empty, rejects  # rejects: (path, line, reason, raw)
        self.ids, self.locs, self.flat, self.lens = ids, locs, flat, lens


def engine_stats(enc: Encoder) -> dict:
    return {"engine": enc.label, "engine_note": enc.note, "reference_documents": 0}


def encode_file(doc_path: str, tcfg, stats: dict) -> Iterator[Encoded]:
    """Read and encode one documents file, a block at a time: a reader thread decompresses and
    parses (zlib releases the GIL) while the caller's thread encodes. Sets `stats` at once
    (engine, dtype; refusing a dtype that cannot hold the vocabulary or the special ids); the
    blocks come from the returned generator, which counts the documents the fast engine handed
    to the reference engine. Close the generator (or exhaust it) to stop the reader."""
    enc = load_encoder(tcfg.path)
    dtype = choose_dtype(enc.reference.get_vocab_size(with_added_tokens=True), tcfg.dtype)
    check_special_ids(dtype, tcfg.eos_token_id, tcfg.bos_token_id)
    stats.update(engine_stats(enc))
    stats["dtype"] = dtype.name
    return _encode_blocks(doc_path, enc, dtype, tcfg.eos_token_id, tcfg.bos_token_id, stats)


def _encode_blocks(doc_path: str, enc: Encoder, dtype: np.dtype, eos: int | None, bos: int | None,
                   stats: dict) -> Iterator[Encoded]:
    top = int(np.iinfo(dtype).max)
    stop = threading.Event()
    read_q: queue.Queue = queue.Queue(maxsize=2)
    reader = threading.Thread(target=_producer, args=(lambda: _blocks(doc_path), read_q, stop), daemon=True,
                              name="tokenize-read")
    reader.start()
    try:
        while True:
            block = _get(read_q, stop)
            if block is _END:
                break
            if isinstance(block, _Failure):
                raise block.exc
            rejects = [(r.path, r.line, r.error, r.raw) for r in block.bad]
            if not block.texts:
                yield Encoded(block.documents_in, block.empty, rejects, block.ids, block.locs)
                continue
            flat, lens, errors, n_ref = encode_docs(enc, block.texts, eos, bos)
            stats["reference_documents"] += n_ref
            if len(flat) and int(flat.max()) > top:
                j = int(np.searchsorted(np.cumsum(lens), int(np.argmax(flat > top)), side="right"))
                raise InputError(f"{doc_path}:{block.locs[j]}: the tokenizer produced id {int(flat.max())}, "
                                 f"beyond dtype {dtype.name} (its vocabulary size was misreported?)")
            for j in np.flatnonzero(lens == 0).tolist():
                reason = errors.get(j) or (f"text of {len(block.texts[j]):,} characters (after strip) tokenizes to "
                                           "no tokens; document skipped")
                rejects.append((doc_path, block.locs[j], reason, block.texts[j][:PREVIEW]))
            yield Encoded(block.documents_in, block.empty, rejects, block.ids, block.locs, flat, lens)
    finally:
        stop.set()
        reader.join()


# Stored ids (tokenize once): the count step of a token-target run encodes every kept document
# and keeps what the tokenize step needs under the run's work storage, `_work/ids/<rel>.ids`
# (the ids of every block, raw, in the output dtype) and `_work/ids/<rel>.blocks.jsonl.gz` (a
# header line, then one line per block: its counts, rejects, document ids, lines and lengths).
# The tokenize step replays these blocks through the same sampling and shuffle, so its output
# is the bytes that encoding again would give; where they are missing or stale (work storage
# cleared, the kept file rewritten) it reads and encodes again.

STORED_VERSION = 1


def stored_paths(work: str, rel: str) -> tuple[str, str]:
    base = io.join(work, "ids", rel)
    return base + ".ids", base + ".blocks.jsonl.gz"


def store_blocks(blocks: Iterator[Encoded], ids_path: str, meta_path: str, header: dict,
                 on_block: Callable[[Encoded], None] | None = None) -> None:
    """Write encoded blocks to work storage (ids first, then the block table: a table present
    means its ids are complete)."""
    ids_w = io.AtomicWriter(ids_path)
    meta_w = io.AtomicWriter(meta_path)
    try:
        dtype = np.dtype(header["dtype"])
        lines = [json.dumps({"version": STORED_VERSION, **header}, sort_keys=True)]
        for e in blocks:
            if e.flat is not None:
                ids_w.write(e.flat.astype(dtype.newbyteorder("<"), copy=False).tobytes())
            lines.append(json.dumps({"documents_in": e.documents_in, "empty": e.empty,
                                     "rejects": [list(r) for r in e.rejects], "ids": e.ids, "locs": e.locs,
                                     "lens": None if e.lens is None else e.lens.tolist()}))
            if on_block is not None:
                on_block(e)
            if len(lines) >= 64:
                meta_w.write(("\n".join(lines) + "\n").encode("ascii"))
                lines = []
        if lines:
            meta_w.write(("\n".join(lines) + "\n").encode("ascii"))
        ids_w.commit()
        meta_w.commit()
    except BaseException:
        for w in (ids_w, meta_w):
            try:
                w.abort()
            except Exception:  # noqa: BLE001 (best effort; a rerun sweeps temporaries)
                pass
        raise


def stored_header(meta_path: str) -> dict | None:
    """The header of a stored block table, or None when there is none (or of another format)."""
    if not io.exists(meta_path):
        return None
    with io.open_binary(meta_path) as f:
        head = json.loads(f.readline())
    return head if head.get("version") == STORED_VERSION else None


def stored_blocks(ids_path: str, meta_path: str) -> Iterator[Encoded]:
    with io.open_binary(meta_path) as meta, io.open_binary(ids_path) as raw:
        head = json.loads(meta.readline())
        dtype = np.dtype(head["dtype"]).newbyteorder("<")
        for line in meta:
            b = json.loads(line)
            rejects = [tuple(r) for r in b["rejects"]]
            if b["lens"] is None:
                yield Encoded(b["documents_in"], b["empty"], rejects, b["ids"], b["locs"])
                continue
            lens = np.asarray(b["lens"], dtype=np.int64)
            n = int(lens.sum())
            data = raw.read(n * dtype.itemsize)
            if len(data) != n * dtype.itemsize:
                raise InputError(f"{ids_path}: ends early ({len(data)} of {n * dtype.itemsize} bytes of a block); "
                                 "delete it to encode again")
            yield Encoded(b["documents_in"], b["empty"], rejects, b["ids"], b["locs"],
                          np.frombuffer(data, dtype=dtype), lens)


# ---------------------------------------------------------------------------------------------
# one file


def write_tokens(blocks: Iterator[Encoded], out_dir: str, index: int, tcfg, seed: int, source: str, rule: dict,
                 src_label: str, rejects, stats: dict) -> dict:
    """Sample, shuffle (seeded, per block) and write encoded blocks to
    `out_dir/part-<index>-<k:05d>.npy|csv.gz`, the writing in its own thread."""
    dtype = np.dtype(stats["dtype"])
    check_special_ids(dtype, tcfg.eos_token_id, tcfg.bos_token_id)
    rng = np.random.Generator(np.random.PCG64([seed, xxhash.xxh32_intdigest(f"{source}/{index}".encode())]))
    sample_all = int(rule["whole"]) == 1 and rule["threshold"] <= 0.0
    writer = PartWriter(out_dir, index, dtype, tcfg.max_tokens_per_file, src_label)
    stats.update({"documents_in": 0, "documents_sampled": 0, "documents_out": 0, "empty": 0, "tokens": 0,
                  "tokens_unsampled": 0})
    stop = threading.Event()
    write_q: queue.Queue = queue.Queue(maxsize=2)
    write_errors: list[BaseException] = []
    writing = threading.Thread(target=_writer_loop, args=(writer, write_q, stop, write_errors), daemon=True,
                               name=f"tokenize-write-{index}")
    writing.start()
    try:
        for e in blocks:
            for r in e.rejects:
                rejects.add(*r)
            stats["documents_in"] += e.documents_in
            stats["empty"] += e.empty
            if e.flat is None:
                continue
            flat, lens = e.flat, e.lens
            valid = np.flatnonzero(lens > 0)
            stats["tokens_unsampled"] += int(lens.sum())
            if sample_all:
                items = valid
                stats["documents_sampled"] += len(valid)
            else:
                n = np.array([copies(unit_hash(seed, source, e.ids[j]), rule) for j in valid.tolist()],
                             dtype=np.int64)
                stats["documents_sampled"] += int(np.count_nonzero(n))
                items = np.repeat(valid, n)
            order = items[rng.permutation(len(items))]
            stats["documents_out"] += len(order)
            stats["tokens"] += int(lens[order].sum())
            starts = np.cumsum(lens) - lens
            if not _put(write_q, (flat, starts, lens, order, e.ids, e.locs), stop):
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
        close = getattr(blocks, "close", None)
        if close is not None:
            close()  # stops the reader thread of an unfinished encode_file
    return stats


def tokenize_file(doc_path: str, out_dir: str, index: int, tcfg, seed: int, source: str, rule: dict,
                  src_label: str, rejects, stored: tuple[str, str] | None = None) -> dict:
    """Tokenize one documents file into `out_dir/part-<index>-<k:05d>.npy|csv.gz`: from the
    stored ids of a count step when `stored` (ids, block table) is given, else by encoding."""
    stats: dict = {}
    if stored is not None:
        head = stored_header(stored[1])
        stats.update({"engine": head["engine"], "engine_note": head.get("engine_note"), "reference_documents": 0,
                      "dtype": head["dtype"], "encoded_by": "count"})
        blocks = stored_blocks(*stored)
    else:
        blocks = encode_file(doc_path, tcfg, stats)
        stats["encoded_by"] = "tokenize"
    return write_tokens(blocks, out_dir, index, tcfg, seed, source, rule, src_label, rejects, stats)


def source_key(doc_path: str, tcfg) -> dict:
    """What stored ids were made from: the documents file (size and xxh3 of its bytes, read
    without decompressing: cheap next to encoding) and the tokenizer settings. Stored ids whose
    key differs from the current one are not used (`usable_store`)."""
    h = xxhash.xxh3_64()
    with io.open_random(doc_path) as f:
        while True:
            chunk = f.read(1 << 22)
            if not chunk:
                break
            h.update(chunk)
    return {"kept_bytes": io.file_size(doc_path), "kept_xxh3": h.hexdigest(),
            "tokenizer_config": {k: getattr(tcfg, k) for k in ("path", "eos_token_id", "bos_token_id", "dtype")}}


def usable_store(ctx: dict, shard: Shard) -> tuple[str, str] | None:
    """The count step's stored ids of this shard, if present and made from the kept file as it
    is now with the mix's tokenizer settings (`source_key`), else None."""
    if not ctx.get("work"):
        return None
    ids_path, meta_path = stored_paths(ctx["work"], shard.rel)
    head = stored_header(meta_path)
    if head is None or not io.exists(ids_path):
        return None
    key = source_key(kept_path(ctx, shard), mix_of(ctx).tokenizer)
    if any(head.get(k) != v for k, v in key.items()):
        return None
    return ids_path, meta_path


def run_shard(shard: Shard, ctx: dict) -> dict:
    mix = mix_of(ctx)
    rejects = Rejects(ctx, "tokenize", shard)
    stored = usable_store(ctx, shard) if uses_targets(mix) else None
    stats = tokenize_file(kept_path(ctx, shard), io.join(ctx["output"], "tokens", shard.source), shard.index,
                          mix.tokenizer, mix.seed, shard.source, ctx["sampling"][shard.source],
                          "kept/" + shard.rel, rejects, stored=stored)
    rejects.commit()
    if stored is not None:  # consumed: the arrays are written (a rerun without them encodes again)
        for p in stored:
            io.remove(p)
    dtype = stats.pop("dtype")
    stats["files"] = [{"path": io.relpath(f["stem"], ctx["output"]), "tokens": f["tokens"],
                       "documents": f["documents"], "dtype": dtype} for f in stats["files"]]
    stats.update(rejects.stats())
    return stats


def run_command_shard(shard: Shard, ctx: dict) -> dict:
    """`dolma-prep tokenize`: one input file -> `OUTPUT/part-<i>-<k>.npy|csv.gz` (src = input path)."""
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
    index = index_path(npy_path)
    with io.open_binary(index) as f:
        rows = list(read_index(f))
    if not 0 <= doc < len(rows):
        raise InputError(f"{index} holds {len(rows)} documents; --doc {doc} is out of range")
    end_all = int(rows[-1][1])
    size = io.file_size(npy_path)
    if end_all == 0 or size % end_all:
        raise InputError(f"{npy_path}: {size} bytes do not match the {end_all} tokens of its index")
    dtype = {np.dtype(t).itemsize: np.dtype(t) for t in DTYPES.values()}.get(size // end_all)
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
