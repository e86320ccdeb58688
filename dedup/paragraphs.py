"""Paragraph n-gram dedup as Dolma 1.7 ran it (dolma's Rust `bff` deduper, `by_ngram`).

Semantics copied from dolma 1.2.1 `src/deduper.rs` (paragraph branch):

- the text is split on the separator ("\\n"); a paragraph's span is [start, end) in characters,
  `end` including the separator, except that (dolma's quirk, kept) the separator is not added
  once the character offset reaches the text's UTF-8 byte length minus one;
- paragraphs shorter than `min_length` characters, with fewer than `min_words` tokens, or blank
  when `skip_empty`, are not checked;
- tokens are UAX #29 word segments (`text.dolma_tokens`; found in one vectorised pass per
  batch of texts, `_add_texts`); every window of `ngram_length` tokens whose start satisfies
  dolma's stride rule counts as seen when the same window occurred earlier in the corpus;
  score = (windows seen) / (windows checked), in f32 as dolma computes it;
- a paragraph with fewer than 2 windows is instead looked up as a whole (score 1.0 or 0.0),
  unless `skip_short_paragraphs`;
- a span [start, end, score] is written when score >= `overlap_threshold`.

Differences, on purpose: "seen" is exact (dolma asks a Bloom filter, so its rare false positives
mark a few more windows seen; `expected_count` and `false_positive_rate` are accepted for its
configs and unused); shards are processed strictly in the given order (dolma's threads race,
so its output depends on scheduling); an empty text gets `[]` rather than no key; with
`min_words` > 0 dolma never dedupes at all (its `else if` chain skips the check), here
paragraphs with enough words are checked.

On Ray, three stages, each a set of tasks:
  A. per shard: tokenise, hash windows, split the keys into `bloom_partitions` pieces by their
     top bits (keys-<shard>-<piece>.npy) and keep the paragraph table;
  B. per piece: the piece's keys of all shards in corpus order, each marked seen when it
     occurred before (polars' `is_first_distinct`), in rounds of at most `KEYS_PER_ROUND`
     keys (split by their low bits) so that a task's memory stays bounded;
  C. per shard: gather the flags back into key order, score paragraphs, write attributes.
Because every key always goes to the same piece and every piece sees its keys in corpus
order, the result is that of one sequential pass, whatever the number of workers.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa
from pydantic import Field, field_validator

from dolma_prep.core import io
from dolma_prep.core.runtime import run_tasks, summarise

from . import components, text
from .index_store import open_against, use_against
from .kinds import DedupKind, DedupOptions, IndexSpec, SortedRuns, checked, register
from .text import window_hashes

_WHOLE_SEED = 0x5EED_0001
# keys one round of a piece task holds (8 B each, and polars' table, ~50 MB in all): a piece
# with more keys is done in rounds, each re-reading the piece's key files (a few rounds are
# cheap; for a corpus with many times 8M keys per piece, raise `bloom_partitions`)
KEYS_PER_ROUND = 1 << 20
_CHARS_PER_BATCH = 1 << 20  # texts are joined into batches of about this many characters


def partition_of(keys: np.ndarray, partitions: int) -> np.ndarray:
    """The piece each key belongs to (top bits of the key); `partitions` is a power of two."""
    if partitions == 1:
        return np.zeros(len(keys), dtype=np.int64)
    shift = np.uint64(64 - (partitions.bit_length() - 1))
    return (np.asarray(keys, dtype=np.uint64) >> shift).astype(np.int64)


def _stride_keep(local: np.ndarray, stride: int) -> np.ndarray:
    """dolma's stride rule: window i is counted if i == 0, i == 1, or (i - 1) % stride == 0."""
    if stride <= 1:
        return np.ones(len(local), dtype=bool)
    return (local == 0) | ((local - 1) % stride == 0)


class _ShardKeys:
    """Accumulates one shard's paragraph table and its keys, in corpus order."""

    def __init__(self, ngram: int, stride: int, skip_short: bool):
        self.ngram, self.stride, self.skip_short = ngram, stride, skip_short
        self.par_line: list[np.ndarray] = []
        self.par_start: list[np.ndarray] = []
        self.par_end: list[np.ndarray] = []
        self.n_ngrams: list[np.ndarray] = []
        self.has_whole: list[np.ndarray] = []
        self.keys: list[np.ndarray] = []

    def add(self, line, start, end, token_hashes: np.ndarray, n_tokens: np.ndarray, whole_keys) -> None:
        """Paragraphs (line, start, end) with their tokens' hashes, concatenated in paragraph
        order, `n_tokens` each; `whole_keys(indices)` hashes the texts of the paragraphs given."""
        n = self.ngram
        starts = np.cumsum(n_tokens) - n_tokens
        windows = window_hashes(token_hashes, n)
        counts = np.maximum(n_tokens - n + 1, 0)
        _, local, absolute = text.ragged(starts, counts)
        owner = np.repeat(np.arange(len(counts)), counts)
        keep = _stride_keep(local, self.stride)
        owner, absolute = owner[keep], absolute[keep]
        n_ngrams = np.bincount(owner, minlength=len(starts)).astype(np.int64)
        has_whole = (n_ngrams < 2) & (not self.skip_short)
        # key stream: each paragraph's window keys, then its whole-paragraph key if any
        per_par = n_ngrams + has_whole
        offsets = np.cumsum(per_par) - per_par
        keys = np.empty(int(per_par.sum()), dtype=np.uint64)
        rank = np.arange(len(owner)) - np.repeat(np.cumsum(n_ngrams) - n_ngrams, n_ngrams)
        keys[offsets[owner] + rank] = windows[absolute]
        whole_idx = np.flatnonzero(has_whole)
        if len(whole_idx):
            keys[offsets[whole_idx] + n_ngrams[whole_idx]] = whole_keys(whole_idx)
        self.keys.append(keys)
        self.n_ngrams.append(n_ngrams)
        self.has_whole.append(has_whole)
        self.par_line.append(np.asarray(line, dtype=np.int64))
        self.par_start.append(np.asarray(start, dtype=np.int64))
        self.par_end.append(np.asarray(end, dtype=np.int64))


def _separators(texts: list[str], sep: str, cp: np.ndarray, doc_start: np.ndarray) -> np.ndarray:
    """Offsets of the separators in `sep.join(texts)` (as `str.split` finds them in each text,
    and the ones joining the texts)."""
    if len(sep) == 1:
        return np.flatnonzero(cp == ord(sep))
    found = []
    for d, t in enumerate(texts):
        base, pos = int(doc_start[d]), t.find(sep)
        while pos >= 0:
            found.append(base + pos)
            pos = t.find(sep, pos + len(sep))
        found.append(base + len(t))
    return np.asarray(found[:-1], dtype=np.int64)


def _add_texts(acc: _ShardKeys, texts: list[str], lines: list[int], params: dict) -> None:
    """The paragraphs, tokens and keys of a batch of non-empty texts, in one vectorised pass.

    The texts are joined by the separator into one array of code points; paragraphs are the
    ranges between separators. Paragraphs without SLOW characters (`text.char_classes`) are cut
    into tokens by `text.token_bounds`; the others (0.03% of the shared sample corpus's
    paragraphs) by the `regex` module's full UAX #29 rules, all in one call. Tokens and whole
    paragraphs are hashed by `text.span_hashes` on their code points, so a token has the same
    hash whichever way it was found."""
    sep = params["paragraph_separator"]
    joined = sep.join(texts)
    all_ascii = joined.isascii()
    classes = text.char_classes()
    if all_ascii:
        cp = np.frombuffer(joined.encode("ascii"), dtype=np.uint8)
        cls = classes[cp]
    else:
        cp = np.frombuffer(joined.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        cls = classes[np.minimum(cp, text.TABLE_END)]
    lengths = np.fromiter(map(len, texts), dtype=np.int64, count=len(texts))
    doc_start = np.cumsum(lengths + len(sep)) - (lengths + len(sep))
    seps = _separators(texts, sep, cp, doc_start)
    ps = np.concatenate([[0], seps + len(sep)]).astype(np.int64)
    pe = np.concatenate([seps, [len(cp)]]).astype(np.int64)
    cls[(seps[:, None] + np.arange(len(sep))).ravel()] = text.SPACE  # no token crosses a separator
    doc = np.searchsorted(doc_start, ps, side="right") - 1
    plen = pe - ps
    if all_ascii:
        byte_length = lengths
    else:
        byte_length = np.fromiter(
            (len(t) if t.isascii() else len(t.encode("utf-8", "surrogatepass")) for t in texts),
            dtype=np.int64, count=len(texts),
        )
    # dolma's offsets (`text.paragraph_spans`): the k-th paragraph of a text starts after the
    # lengths of the k before it plus one per separator counted, and a separator is counted
    # while the offset stays below the text's byte length minus one (a prefix of them)
    k = np.arange(len(ps)) - np.searchsorted(doc, np.arange(len(texts)))[doc]
    before = ps - doc_start[doc] - k * len(sep)  # characters of the paragraphs before
    counted = before + plen + k < byte_length[doc] - 1
    start = before + np.minimum(k, np.bincount(doc, weights=counted, minlength=len(texts)).astype(np.int64)[doc])
    end = start + plen + counted

    chosen = plen >= params["min_length"]
    if params["skip_empty"]:
        cum = np.concatenate([[0], np.cumsum((cls & text.SPACE) == 0, dtype=np.int64)])
        chosen &= cum[pe] > cum[ps]
    slow_par = np.zeros(len(ps), dtype=bool)
    if not all_ascii:
        cum = np.concatenate([[0], np.cumsum((cls & text.SLOW) != 0, dtype=np.int64)])
        slow_par = cum[pe] > cum[ps]

    ts, te = text.token_bounds(cls)
    tpar = np.searchsorted(ps, ts, side="right") - 1
    keep = chosen[tpar] & ~slow_par[tpar]
    ts, te, tpar = ts[keep], te[keep], tpar[keep]
    th = text.span_hashes(cp, ts, te - ts)
    slow = np.flatnonzero(chosen & slow_par)
    if len(slow):  # all such paragraphs through the full rules in one call, newline-joined
        # (UAX #29 always breaks around a newline, and white space alone is no token)
        slow_text = "\n".join([joined[a:b] for a, b in zip(ps[slow].tolist(), pe[slow].tolist())])
        segments = text.word_segments(slow_text)
        seg_len = np.fromiter(map(len, segments), dtype=np.int64, count=len(segments))
        seg_start = np.cumsum(seg_len) - seg_len
        scp = np.frombuffer(slow_text.encode("utf-32-le", "surrogatepass"), dtype=np.uint32)
        solid = (classes[np.minimum(scp, text.TABLE_END)] & text.SPACE) == 0
        cum = np.concatenate([[0], np.cumsum(solid, dtype=np.int64)])
        tok = np.flatnonzero(cum[seg_start + seg_len] > cum[seg_start])
        slow_starts = np.cumsum(plen[slow] + 1) - (plen[slow] + 1)
        tpar = np.concatenate([tpar, slow[np.searchsorted(slow_starts, seg_start[tok], side="right") - 1]])
        th = np.concatenate([th, text.span_hashes(scp, seg_start[tok], seg_len[tok])])
        order = np.argsort(tpar, kind="stable")
        tpar, th = tpar[order], th[order]
    n_tokens = np.bincount(tpar, minlength=len(ps)).astype(np.int64)
    if params["min_words"] > 0:
        enough = n_tokens >= params["min_words"]
        chosen &= enough
        keep = enough[tpar]
        tpar, th = tpar[keep], th[keep]
    c = np.flatnonzero(chosen)
    line_of = np.asarray(lines, dtype=np.int64)[doc]
    acc.add(line_of[c], start[c], end[c], th, n_tokens[c],
            lambda idx: text.span_hashes(cp, ps[c[idx]], plen[c[idx]], _WHOLE_SEED))


def _stage_keys(shard_index: int, doc_path: str, work: str, params: dict) -> dict:
    acc = _ShardKeys(params["ngram_length"], params["stride"], params["skip_short_paragraphs"])
    ids: list[str] = []
    invalid = 0
    texts: list[str] = []
    lines: list[int] = []
    size = 0
    for line, (_, doc) in enumerate(io.iter_documents(doc_path)):
        if doc is None:
            ids.append("null")
            invalid += 1
            continue
        text_ = doc["text"]
        ids.append(io.json_value(doc["id"]))
        if not text_:
            continue
        texts.append(text_)
        lines.append(line)
        size += len(text_)
        if size >= _CHARS_PER_BATCH:
            _add_texts(acc, texts, lines, params)
            texts, lines, size = [], [], 0
    if texts:
        _add_texts(acc, texts, lines, params)
    keys = np.concatenate(acc.keys) if acc.keys else np.empty(0, dtype=np.uint64)
    pieces = params["bloom_partitions"]
    route = partition_of(keys, pieces)
    for piece in range(pieces):
        io.save_npy(io.join(work, f"keys-{shard_index}-{piece}.npy"), keys[route == piece])

    def cat(parts, dtype):
        return np.concatenate(parts) if parts else np.empty(0, dtype)

    par_line = cat(acc.par_line, np.int64)
    io.save_npz(
        io.join(work, f"paragraphs-{shard_index}.npz"),
        line=par_line,
        start=cat(acc.par_start, np.int64),
        end=cat(acc.par_end, np.int64),
        n_ngrams=cat(acc.n_ngrams, np.int64),
        has_whole=cat(acc.has_whole, bool),
        route=route.astype(np.uint16),
    )
    io.write_text_atomic(io.join(work, f"ids-{shard_index}.txt"), "\n".join(ids))
    return {"lines": len(ids), "invalid": invalid, "paragraphs": len(par_line), "keys": int(len(keys)),
            "piece_keys": np.bincount(route, minlength=pieces).tolist()}


def _indexed(piece: int, n_shards: int, work: str, index_tables: tuple) -> tuple[np.ndarray, np.ndarray, int]:
    """The piece's distinct new keys and which of them an index holds (its sorted key parts are
    read by range, one part at a time: memory is the piece's new keys plus one part)."""
    u = np.unique(np.concatenate([io.load_npy(io.join(work, f"keys-{s}-{piece}.npy")) for s in range(n_shards)]))
    member = np.zeros(len(u), dtype=bool)
    read = 0
    if len(u):
        lo, hi = int(u[0]), int(u[-1]) + 1
        for f, flo, fhi in index_tables:
            if fhi < lo or flo >= hi:
                continue
            rows = components.read_sorted_range(f, "key", lo, hi, ["key"])["key"]
            read += len(rows)
            member |= np.isin(u, rows, assume_unique=True)
    return u, member, read


def _stage_seen(piece: int, n_shards: int, work: str, rounds: int, index_tables: tuple = ()) -> dict:
    """Mark each of the piece's keys seen when the same key occurred earlier in corpus order
    (shard by shard); with an index, a key it holds counts as seen before (the indexed
    releases come first). Keys are split into `rounds` by their low bits: equal keys always
    meet in one round, and a round holds about 1/rounds of the piece."""
    import polars as pl

    seen_total = in_index = read = 0
    if index_tables:
        u, member, read = _indexed(piece, n_shards, work, index_tables)
    seen: list[np.ndarray] = []
    for r in range(rounds):
        chunks, where = [], []
        for s in range(n_shards):
            keys = io.load_npy(io.join(work, f"keys-{s}-{piece}.npy"))
            if r == 0:
                seen.append(np.zeros(len(keys), dtype=bool))
            idx = np.flatnonzero((keys & np.uint64(rounds - 1)) == r) if rounds > 1 else None
            chunks.append(keys if idx is None else keys[idx])
            where.append(idx)
        stream = np.concatenate(chunks) if chunks else np.empty(0, np.uint64)
        before = ~pl.Series(stream).is_first_distinct().to_numpy()
        if index_tables and len(stream):
            held = member[np.searchsorted(u, stream)]
            in_index += int(held.sum())
            before |= held
        off = 0
        for s, (chunk, idx) in enumerate(zip(chunks, where)):
            part = before[off : off + len(chunk)]
            off += len(chunk)
            if idx is None:
                seen[s] = part
            else:
                seen[s][idx] = part
        del chunks, stream, before
    for s, flags in enumerate(seen):
        seen_total += int(flags.sum())
        io.save_npy(io.join(work, f"flags-{s}-{piece}.npy"), np.packbits(flags))
    return {"seen": seen_total, "seen_in_index": in_index, "index_keys_read": read}


def _stage_write(shard_index: int, out_path: str, work: str, attribute: str, params: dict) -> dict:
    meta = io.load_npz(io.join(work, f"paragraphs-{shard_index}.npz"))
    route = meta["route"].astype(np.int64)
    seen = np.zeros(len(route), dtype=bool)
    for piece in range(params["bloom_partitions"]):
        where = np.flatnonzero(route == piece)
        flags = io.load_npy(io.join(work, f"flags-{shard_index}-{piece}.npy"))
        seen[where] = np.unpackbits(flags, count=len(where)).astype(bool)
    n_ngrams, has_whole = meta["n_ngrams"], meta["has_whole"]
    per_par = n_ngrams + has_whole
    offsets = np.cumsum(per_par) - per_par
    cum = np.concatenate([[0], np.cumsum(seen, dtype=np.int64)])
    dup_ngrams = cum[offsets + n_ngrams] - cum[offsets]
    threshold = np.float32(params["overlap_threshold"])
    with np.errstate(invalid="ignore", divide="ignore"):
        frac = dup_ngrams.astype(np.float32) / n_ngrams.astype(np.float32)
    whole_seen = np.zeros(len(n_ngrams), dtype=bool)
    w = np.flatnonzero(has_whole)
    whole_seen[w] = seen[offsets[w] + n_ngrams[w]]
    score = np.where(has_whole, whole_seen.astype(np.float32), frac)
    emit = score >= threshold  # NaN (no window, short paragraphs skipped) never emits
    lines, starts, ends = meta["line"], meta["start"], meta["end"]
    text = io.read_text(io.join(work, f"ids-{shard_index}.txt"))
    ids = text.split("\n") if text else []
    by_line: dict[int, list[str]] = {}
    idx = np.flatnonzero(emit)
    dup_chars = int((ends[idx] - starts[idx]).sum())
    # scores take few distinct values (f32 ratios of small counts): format each once
    distinct, which = np.unique(score[idx], return_inverse=True)
    formatted = [io.format_score(float(v)) for v in distinct]
    for line, a, b, k in zip(lines[idx].tolist(), starts[idx].tolist(), ends[idx].tolist(), which.tolist()):
        by_line.setdefault(line, []).append(f"[{a},{b},{formatted[k]}]")
    with io.AttributeWriter(out_path, attribute) as out:
        for line, id_js in enumerate(ids):
            out.line(id_js, io.span_list(by_line.get(line)))
    return {
        "duplicate_paragraphs": int(emit.sum()),
        "documents_with_duplicates": len(by_line),
        "duplicate_span_chars": dup_chars,
    }


class ParagraphsOptions(DedupOptions):
    """Paragraph n-gram dedup (`run_paragraphs`; defaults: Dolma 1.7's `dd_ngram` run)."""

    attribute: str = "bff_duplicate_paragraph_spans"
    ngram_length: int = Field(default=13, ge=1)
    stride: int = Field(default=1, ge=1)
    overlap_threshold: float = Field(default=0.5, ge=0, le=1)
    threshold: float | None = Field(default=None, ge=0, le=1, description="alias of overlap_threshold")
    skip_short_paragraphs: bool = False
    paragraph_separator: str = "\n"
    min_length: int = Field(default=0, ge=0)
    min_words: int = Field(default=0, ge=0)
    skip_empty: bool = True
    # dolma's Bloom filter sizing, accepted for its configs; unused: membership here is exact
    expected_count: int | None = Field(default=None, ge=1, description="accepted for dolma configs; unused")
    false_positive_rate: float = Field(default=1e-6, gt=0, lt=1, description="accepted for dolma configs; unused")
    bloom_partitions: int = Field(default=8, ge=1, description="a power of two: key-space pieces, one task each")
    keep_work: bool = False
    against: str | None = None  # an index (`dolma-prep index build`): also duplicates of indexed documents

    @field_validator("bloom_partitions")
    @classmethod
    def _power_of_two(cls, v: int) -> int:
        if v & (v - 1):
            raise ValueError(f"must be a power of two (1, 2, 4, 8 ...), got {v}")
        return v


DEFAULTS = ParagraphsOptions.defaults("threshold", "keep_work")
# what decides a document's keys: an index's values, which a dedup against it must use
KEY_PARAMS = ("ngram_length", "stride", "skip_short_paragraphs", "paragraph_separator", "min_length", "min_words",
              "skip_empty")


def run_paragraphs(
    shards: list[tuple[str, str]],
    attribute: str,
    work_dir: str,
    *,
    workers: int | None = None,
    threshold: float | None = None,
    keep_work: bool = False,
    **params,
) -> dict:
    """Paragraph n-gram dedup over `shards` [(documents_path, attributes_path), ...].

    Parameters (defaults as Dolma 1.7's `dd_ngram` run): ngram_length=13, stride=1,
    overlap_threshold=0.5 (`threshold` is an alias), skip_short_paragraphs=False,
    paragraph_separator="\\n", min_length=0, min_words=0, skip_empty=True,
    expected_count and false_positive_rate (dolma's Bloom filter sizing: accepted, unused, as
    membership is exact), bloom_partitions=8 (a power of two: pieces of the key space, one task
    each; the result does not depend on it), against=None (an index with paragraph keys,
    `dolma-prep index build --kinds paragraphs`: an n-gram it holds counts as seen before; the
    key parameters come from the index).
    """
    checked("paragraphs", params, DEFAULTS)
    index = None
    if params.get("against"):
        index = open_against(params["against"], "paragraphs", params, KEY_PARAMS)
        params = {**params, **index["params"]}
    p = {**DEFAULTS, **params}
    if threshold is not None:
        p["overlap_threshold"] = float(threshold)
    pieces = int(p["bloom_partitions"])
    if pieces < 1 or pieces & (pieces - 1):
        raise ValueError(f"bloom_partitions must be a power of two, got {pieces}")
    if int(p["ngram_length"]) < 1:
        raise ValueError("ngram_length must be >= 1 (whole-paragraph dedup is `dolma dedupe` without by_ngram)")
    work = io.join(work_dir, "paragraphs")
    io.rmtree(work)

    a = run_tasks("paragraphs:keys", _stage_keys, [(i, d, work, p) for i, (d, _) in enumerate(shards)],
                  max_in_flight=workers)
    total_keys = sum(r["keys"] for r in a)
    largest = max((sum(r["piece_keys"][q] for r in a) for q in range(pieces)), default=0)
    rounds = 1
    while largest > rounds * KEYS_PER_ROUND:
        rounds *= 2
    tables = tuple(index["tables"]) if index else ()
    b = run_tasks("paragraphs:seen", _stage_seen,
                  [(q, len(shards), work, rounds, tables) for q in range(pieces)], max_in_flight=workers)
    c = run_tasks("paragraphs:write", _stage_write, [(i, o, work, attribute, p) for i, (_, o) in enumerate(shards)],
                  max_in_flight=workers)
    if not keep_work:
        io.rmtree(work)
    return {
        "kind": "paragraphs",
        "shards": len(shards),
        "documents": sum(r["lines"] - r["invalid"] for r in a),
        "invalid_lines": sum(r["invalid"] for r in a),
        "paragraphs": sum(r["paragraphs"] for r in a),
        "keys": total_keys,
        "keys_seen_before": sum(r["seen"] for r in b),
        "keys_in_index": sum(r["seen_in_index"] for r in b),
        "index_keys_read": sum(r["index_keys_read"] for r in b),
        "index_versions": index["versions"] if index else [],
        "duplicate_paragraphs": sum(r["duplicate_paragraphs"] for r in c),
        "documents_with_duplicates": sum(r["documents_with_duplicates"] for r in c),
        "duplicate_span_chars": sum(r["duplicate_span_chars"] for r in c),
        "membership": {"exact": True, "pieces": pieces, "rounds": rounds, "largest_piece_keys": largest},
        "stages": {"keys": summarise(a), "seen": summarise(b), "write": summarise(c)},
    }


def _index_keys_task(g: int, doc_path: str, work: str, params: dict) -> dict:
    """The distinct paragraph n-gram keys of one file (as the dedup makes them), as a sorted run."""
    p = {**DEFAULTS, **params, "bloom_partitions": 1}
    tmp = io.join(work, "tmp", str(g))
    _stage_keys(0, doc_path, tmp, p)
    keys = np.unique(io.load_npy(io.join(tmp, "keys-0-0.npy")))
    io.rmtree(tmp)
    io.write_parquet(io.join(work, "runs", f"run-{g}.parquet"), pa.table({"key": pa.array(keys, pa.uint64())}),
                     compression="none", row_group_size=components.ROW_GROUP)
    return {"keys": int(len(keys))}


def index_params(given: dict) -> dict:
    """What decides a document's keys (KEY_PARAMS), the defaults for those not given."""
    return {k: given.get(k, DEFAULTS[k]) for k in KEY_PARAMS}


def index_runs(files: list[tuple[int, str]], params: dict, version_dir: str, work: str, workers: int) -> SortedRuns:
    """`index build --kinds paragraphs`: the sorted runs of each file's distinct keys."""
    res = run_tasks("index:paragraph-keys", _index_keys_task, [(g, path, work, params) for g, path in files],
                    max_in_flight=workers)
    return SortedRuns(io.join(work, "runs", "run-*.parquet"), "key", ["key"], True, sum(r["keys"] for r in res), res)


register(DedupKind("paragraphs", ParagraphsOptions, run_paragraphs, level="span",
                   index=IndexSpec("paragraphs", KEY_PARAMS, index_params, index_runs,
                                   lambda index, params: use_against(index, "paragraphs", params, KEY_PARAMS),
                                   outdated={"dolma-prep-index/1": "paragraph keys hashed the old way"})))
