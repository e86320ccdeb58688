"""Exact-substring dedup with suffix arrays (Lee et al., ACL 2022, arXiv 2107.06499).

Every substring of at least `min_length` units (UTF-8 bytes, or tokens of the bundled OLMo
tokenizer with `unit="tokens"`) that occurs more than once in the corpus - in two documents,
or twice in one, overlapping or not - is marked in every one of its occurrences, as the
reference implementation's `self-similar` + `collect` do. The attribute holds, per document,
the merged spans `[start, end, 1]` in CHARACTER offsets of the text; with bytes, a span covers
the characters whose UTF-8 bytes all lie in the duplicated bytes (a duplicated byte range that
starts or ends inside a multi-byte character leaves that character in place).

Definition used (and checked by brute force in the tests): with K = min_length, a unit
position p of a document is duplicated when some K-window [q, q + K) with q <= p < q + K lies
inside its document and the same K units occur at another position of the corpus. The union
of those windows is exactly the union of all repeated substrings of length >= K.

Rounds of tasks (`runtime.run_tasks`), every intermediate under `work_dir`:

  1. read (per shard): units of each valid document -> units-<s>.bin (+ token character
     offsets), the document table and ids;
  2. suffix (per part): a part is a fixed range of the corpus' unit stream ([k P, (k+1) P),
     P = `part_size`; a document belongs to the part where it starts). The part's documents,
     each followed by a separator that occurs in no window, go through libdivsufsort
     (`pydivsufsort`): suffix array + LCP (Kasai). Valid windows (inside one document) with
     equal K-prefixes are contiguous in suffix order: each run is one distinct window, a
     duplicate inside the part when it holds >= 2 suffixes. With more than one part, each
     distinct window gets a 128-bit fingerprint (two polynomial hashes mod 2^64 with different
     bases, each mixed) and goes to one of R buckets by its first half;
  3. fingerprints (per bucket): a fingerprint held by >= 2 parts marks a cross-part duplicate
     (verify="fingerprints", default: a false match needs a 128-bit collision), or a
     candidate (verify="units");
  4. windows (verify="units", per part): the K units of each candidate window, to its bucket;
  5. verify (verify="units", per bucket): candidates grouped by their actual units, so no
     collision can invent a duplicate; a window held by >= 2 parts is confirmed.
     Rounds 2-5 are the cross-part merge: the reference implementation merges the parts'
     suffix arrays with the whole text at hand (one machine); here only fingerprints (24 B per
     distinct window, + K units per cross-part window with verify="units") travel, and no task
     holds more than one part or one bucket;
  6. spans (per part): windows duplicated within or across parts -> merged unit ranges ->
     character spans per document;
  7. write (per shard): one attribute line per input line.

With one part (the corpus fits `part_size`), rounds 3-5 are skipped and the result is exact.
Fingerprints and rounds 3 and 5 live in `substrings_merge.py`.
"""
from __future__ import annotations

import os
from typing import Literal

import numpy as np
from pydantic import Field

from dolma_prep.core import io
from dolma_prep.core.runtime import run_tasks, summarise

from .kinds import DedupKind, DedupOptions, checked, register
from .substrings_merge import stage_candidates, stage_verify, write_fingerprints


class SubstringsOptions(DedupOptions):
    """Exact-substring dedup with suffix arrays (`run_substrings`)."""

    attribute: str = "duplicate_substring_spans"
    min_length: int = Field(default=100, ge=1, description="K: substrings of >= K units repeated anywhere")
    unit: Literal["bytes", "tokens"] = "bytes"
    part_size: int = Field(default=1 << 26, ge=1, description="units per suffix-array part (~14 B per unit)")
    tokenizer: str | None = None  # with unit=tokens; default the bundled OLMo tokenizer
    buckets: int | None = Field(default=None, ge=1)
    verify: Literal["fingerprints", "units"] = "fingerprints"
    keep_work: bool = False


DEFAULTS = SubstringsOptions.defaults("keep_work")
UNITS = ("bytes", "tokens")
VERIFY = ("fingerprints", "units")
_CHUNK = 1 << 20


def _bundled_tokenizer() -> str:
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    return os.path.join(here, "pipeline", "resources", "allenai_gpt-neox-olmo-dolma-v1_5.json")


# ------------------------------------------------------------------------------------ round 1
def _stage_read(s: int, doc_path: str, work: str, unit: str, tokenizer: str | None) -> dict:
    tok = None
    if unit == "tokens":
        from tokenizers import Tokenizer

        with io.local_copy(tokenizer or _bundled_tokenizer()) as p:
            tok = Tokenizer.from_file(p)
    ids: list[str] = []
    lines, starts, lengths = [], [], []
    invalid = pos = buffered = 0
    buf: list[bytes] = []
    buf_offs: list[bytes] = []
    with io.AtomicWriter(io.join(work, f"units-{s}.bin")) as out, \
            io.AtomicWriter(io.join(work, f"offsets-{s}.bin")) as offs:
        for line, (_, doc) in enumerate(io.iter_documents(doc_path)):
            if doc is None:
                ids.append("null")
                invalid += 1
                continue
            ids.append(io.json_value(doc["id"]))
            text = doc["text"]
            if tok is None:
                u = text.encode("utf-8")
                n = len(u)
                data = u
            else:
                enc = tok.encode(text, add_special_tokens=False)
                n = len(enc.ids)
                data = np.asarray(enc.ids, dtype=np.uint32).tobytes()
                buf_offs.append(np.asarray(enc.offsets, dtype=np.int32).reshape(-1, 2).tobytes())
            if n == 0:
                continue
            buf.append(data)
            buffered += len(data)
            if buffered >= 1 << 22:  # few large writes
                out.write(b"".join(buf))
                offs.write(b"".join(buf_offs))
                buf, buf_offs, buffered = [], [], 0
            lines.append(line)
            starts.append(pos)
            lengths.append(n)
            pos += n
        out.write(b"".join(buf))
        offs.write(b"".join(buf_offs))
    io.save_npz(io.join(work, f"docs-{s}.npz"), line=np.asarray(lines, np.int64),
                start=np.asarray(starts, np.int64), length=np.asarray(lengths, np.int64))
    io.write_text_atomic(io.join(work, f"ids-{s}.txt"), "\n".join(ids))
    return {"lines": len(ids), "invalid": invalid, "documents": len(ids) - invalid, "units": pos}


# ------------------------------------------------------------------------------- part loading
def _read_range(path: str, start: int, count: int, dtype) -> np.ndarray:
    size = np.dtype(dtype).itemsize
    with io.open_random(path) as f:
        f.seek(start * size)
        data = f.read(count * size)
    if len(data) != count * size:
        raise OSError(f"{path}: expected {count * size} bytes at offset {start * size}, read {len(data)}")
    return np.frombuffer(data, dtype=dtype)


def _load_part(work: str, lo: int, hi: int, bases: list[int], units: list[int], unit: str):
    """The documents whose first unit (in the corpus stream) lies in [lo, hi), each followed by
    a separator: (seq, table of (shard, line, start in seq, length), token offsets or None)."""
    dtype = np.uint8 if unit == "bytes" else np.uint32
    pieces, offs, shard_l, line_l, len_l = [], [], [], [], []
    for s, (base, n) in enumerate(zip(bases, units)):
        if n == 0 or base >= hi or base + n <= lo:
            continue
        d = io.load_npz(io.join(work, f"docs-{s}.npz"))
        g = base + d["start"]
        pick = np.flatnonzero((g >= lo) & (g < hi))
        if len(pick) == 0:
            continue
        a, b = int(d["start"][pick[0]]), int(d["start"][pick[-1]] + d["length"][pick[-1]])
        pieces.append(_read_range(io.join(work, f"units-{s}.bin"), a, b - a, dtype))
        if unit == "tokens":
            offs.append(_read_range(io.join(work, f"offsets-{s}.bin"), 2 * a, 2 * (b - a), np.int32).reshape(-1, 2))
        shard_l.append(np.full(len(pick), s, np.int64))
        line_l.append(d["line"][pick])
        len_l.append(d["length"][pick])
    if not pieces:
        z = np.empty(0, np.int64)
        return np.empty(0, dtype), (z, z, z, z), None
    raw = np.concatenate(pieces)
    lengths = np.concatenate(len_l)
    ends = np.cumsum(lengths)
    sep = 0xFF if unit == "bytes" else (int(raw.max()) + 1)  # 0xFF is never in UTF-8
    seq = np.insert(raw, ends, np.array(sep, dtype=dtype))  # one separator after each document
    starts = ends - lengths + np.arange(len(lengths))
    tok_offs = None
    if unit == "tokens":
        tok_offs = np.insert(np.concatenate(offs), ends, 0, axis=0)
    return seq, (np.concatenate(shard_l), np.concatenate(line_l), starts, lengths), tok_offs


def _where(mask: np.ndarray, dtype) -> np.ndarray:
    """np.flatnonzero(mask) as `dtype`, without the int64 intermediate of the whole result."""
    out = np.empty(int(np.count_nonzero(mask)), dtype)
    j = 0
    for c0 in range(0, len(mask), _CHUNK):
        idx = np.flatnonzero(mask[c0:c0 + _CHUNK]) + c0
        out[j:j + len(idx)] = idx
        j += len(idx)
    return out


# ------------------------------------------------------------------------------------ round 2
def _stage_suffix(p: int, work: str, lo: int, hi: int, bases: list, units: list, params: dict,
                  n_parts: int, buckets: int) -> dict:
    from pydivsufsort import divsufsort, kasai

    k, unit = params["min_length"], params["unit"]
    seq, (shard, line, starts, lengths), _ = _load_part(work, lo, hi, bases, units, unit)
    n = len(seq)
    idx_t = np.int32 if n < 2**31 else np.int64
    pw = io.join(work, f"part-{p}")
    shards = sorted(set(shard.tolist()))
    del shard, line
    if n == 0:
        io.save_npy(pw + "-sa.npy", np.empty(0, idx_t))
        io.save_npz(pw + "-groups.npz", gstart=np.empty(0, idx_t), gsize=np.empty(0, idx_t))
        if n_parts > 1:
            write_fingerprints(seq, np.zeros(0, bool), k, buckets, work, p)
        return {"part_units": 0, "documents": 0, "distinct_windows": 0, "windows_within": 0, "shards": shards}
    # valid window starts: [start, start + length - k] of each document long enough
    valid = np.zeros(n + 1, np.int8)
    long_enough = lengths >= k
    valid[starts[long_enough]] = 1
    valid[(starts + lengths - k + 1)[long_enough]] = -1
    valid = np.cumsum(valid[:-1], dtype=np.int8).view(bool)
    sa = divsufsort(seq)
    lcp = kasai(seq, sa)  # lcp[i] = LCP(sa[i], sa[i + 1])
    ge = np.zeros(n + 1, bool)  # ge[i + 1]: suffixes i and i + 1 share >= k units
    np.greater_equal(lcp[: n - 1], k, out=ge[1:n])
    del lcp
    v = valid[sa]
    del valid
    # runs of valid suffixes with equal k-prefix (a suffix next to a valid one with lcp >= k is
    # itself valid: its k-window equals a window without separator)
    gstart = _where(v & ~ge[:n], idx_t)
    gsize = _where(v & ~ge[1:], idx_t)
    del v, ge
    gsize -= gstart
    gsize += 1
    io.save_npy(pw + "-sa.npy", sa)
    io.save_npz(pw + "-groups.npz", gstart=gstart, gsize=gsize)
    stats = {"part_units": int(n - len(starts)), "documents": int(len(starts)), "distinct_windows": int(len(gstart)),
             "windows_within": int((gsize >= 2).sum()), "shards": shards}
    if n_parts > 1:
        is_rep = np.zeros(n, bool)
        is_rep[sa[gstart]] = True
        del sa, gstart, gsize
        write_fingerprints(seq, is_rep, k, buckets, work, p)
    return stats


# ------------------------------------------------------------------------------------ round 4
def _stage_windows(p: int, work: str, lo: int, hi: int, bases: list, units: list, params: dict, buckets: int) -> dict:
    k, unit = params["min_length"], params["unit"]
    seq, _, _ = _load_part(work, lo, hi, bases, units, unit)
    m = 0
    for b in range(buckets):
        rep = io.load_npy(io.join(work, f"cand-{b}-{p}.npy"))  # window positions in the part
        win = seq[rep[:, None] + np.arange(k)] if len(rep) else np.empty((0, k), seq.dtype)
        io.save_npz(io.join(work, f"win-{p}-{b}.npz"), rep=rep, win=win)
        m += len(rep)
    return {"windows_sent": m}


# ------------------------------------------------------------------------------------ round 6
def _stage_spans(p: int, work: str, lo: int, hi: int, bases: list, units: list, params: dict,
                 n_parts: int, buckets: int) -> dict:
    k, unit = params["min_length"], params["unit"]
    sa = io.load_npy(io.join(work, f"part-{p}-sa.npy"), mmap=True)
    g = io.load_npz(io.join(work, f"part-{p}-groups.npz"))
    gstart, gsize = g["gstart"], g["gsize"]
    dup = gsize >= 2
    within = int(dup.sum())
    if n_parts > 1:
        conf = np.concatenate([io.load_npy(io.join(work, f"conf-{b}-{p}.npy")) for b in range(buckets)])
        if len(conf):  # window positions -> their runs
            rep_pos = np.asarray(sa[gstart])
            order = np.argsort(rep_pos)
            dup[order[np.searchsorted(rep_pos, conf, sorter=order)]] = True
            del rep_pos, order
    n_dup = int(dup.sum())
    # every suffix of every duplicated run: runs are disjoint, so +1 at starts, -1 at ends
    member = np.zeros(len(sa) + 1, np.int8)
    member[gstart[dup]] = 1
    member[gstart[dup].astype(np.int64) + gsize[dup]] -= 1
    del g, gstart, gsize, dup
    member = np.cumsum(member[:-1], dtype=np.int8).view(bool)
    pos = np.asarray(sa[member])
    del member, sa
    pos.sort()
    seq, (shard, line, starts, lengths), tok_offs = _load_part(work, lo, hi, bases, units, unit)
    empty = np.empty(0, np.int64)
    if len(pos) == 0:
        io.save_npz(io.join(work, f"spans-{p}.npz"), shard=empty, line=empty, start=empty, end=empty)
        return {"duplicate_units": 0, "duplicate_chars": 0, "spans": 0, "documents_with_duplicates": 0,
                "groups_within": within, "groups_duplicated": n_dup}
    new_run = np.ones(len(pos), bool)
    new_run[1:] = pos[1:] > pos[:-1] + np.int64(k)  # windows of equal length: overlap or touch -> one run
    run_s = pos[new_run].astype(np.int64)
    last = np.append(np.flatnonzero(new_run)[1:] - 1, len(pos) - 1)
    run_e = pos[last].astype(np.int64) + k
    doc = np.searchsorted(starts, run_s, side="right") - 1
    ds = starts[doc]
    if unit == "bytes":
        lead = (seq & 0xC0) != 0x80  # bytes that begin a character
        cl = np.zeros(len(seq) + 1, np.int32 if len(seq) < 2**31 else np.int64)
        np.cumsum(lead, out=cl[1:], dtype=cl.dtype)
        c_start = cl[run_s].astype(np.int64) - cl[ds]
        c_end = cl[run_e].astype(np.int64) - cl[ds] - (~lead[run_e]).astype(np.int64)
    else:
        c_start = tok_offs[run_s, 0].astype(np.int64)
        c_end = tok_offs[run_e - 1, 1].astype(np.int64)
    ok = c_end > c_start
    io.save_npz(io.join(work, f"spans-{p}.npz"), shard=shard[doc][ok], line=line[doc][ok],
                start=c_start[ok], end=c_end[ok])
    return {"duplicate_units": int((run_e - run_s).sum()), "duplicate_chars": int((c_end - c_start)[ok].sum()),
            "spans": int(ok.sum()), "documents_with_duplicates": int(len(np.unique(doc[ok]))),
            "groups_within": within, "groups_duplicated": n_dup}


# ------------------------------------------------------------------------------------ round 7
def _stage_write(s: int, out_path: str, work: str, attribute: str, parts: list[int]) -> dict:
    by_line: dict[int, list[str]] = {}
    chars = 0
    for p in parts:
        z = io.load_npz(io.join(work, f"spans-{p}.npz"))
        for i in np.flatnonzero(z["shard"] == s):
            a, e = int(z["start"][i]), int(z["end"][i])
            by_line.setdefault(int(z["line"][i]), []).append(f"[{a},{e},1]")
            chars += e - a
    text = io.read_text(io.join(work, f"ids-{s}.txt"))
    ids = text.split("\n") if text else []
    with io.AttributeWriter(out_path, attribute) as out:
        for line, id_js in enumerate(ids):
            out.line(id_js, io.span_list(by_line.get(line)))
    return {"documents_with_duplicates": len(by_line), "duplicate_span_chars": chars}


def run_substrings(
    shards: list[tuple[str, str]],
    attribute: str,
    work_dir: str,
    *,
    workers: int | None = None,
    keep_work: bool = False,
    **params,
) -> dict:
    """Exact-substring dedup over `shards` [(documents_path, attributes_path), ...].

    Parameters: min_length=100 (K, in units: every repeated substring of >= K units is marked,
    in all its occurrences), unit="bytes" | "tokens" (tokens of `tokenizer`, default the
    bundled OLMo tokenizer), part_size=2**26 units per suffix-array part (a part task holds
    ~14 B per unit at its peak), buckets=None (fingerprint buckets of the cross-part merge;
    default 4 x the number of parts), verify="fingerprints" | "units" (cross-part matches by
    128-bit fingerprint, or confirmed by comparing the K units, which ships them).
    """
    p = checked("substrings", params, DEFAULTS)
    k, part_size = p["min_length"], p["part_size"]
    work = io.join(work_dir, "substrings")
    io.rmtree(work)

    r1 = run_tasks("substrings:read", _stage_read,
                   [(s, d, work, p["unit"], p["tokenizer"]) for s, (d, _) in enumerate(shards)], max_in_flight=workers)
    units = [int(r["units"]) for r in r1]
    bases = [int(x) for x in np.cumsum([0] + units[:-1])]
    total = sum(units)
    n_parts = max(1, -(-total // part_size))
    buckets = int(p["buckets"] or 4 * n_parts)
    ranges = [(q * part_size, (q + 1) * part_size) for q in range(n_parts)]
    r2 = run_tasks("substrings:suffix", _stage_suffix,
                   [(q, work, lo, hi, bases, units, p, n_parts, buckets) for q, (lo, hi) in enumerate(ranges)],
                   max_in_flight=workers)
    r3 = r4 = r5 = []
    if n_parts > 1:
        r3 = run_tasks("substrings:fingerprints", stage_candidates,
                       [(b, work, n_parts, p["verify"]) for b in range(buckets)], max_in_flight=workers)
    if n_parts > 1 and p["verify"] == "units":
        r4 = run_tasks("substrings:windows", _stage_windows,
                       [(q, work, lo, hi, bases, units, p, buckets) for q, (lo, hi) in enumerate(ranges)],
                       max_in_flight=workers)
        r5 = run_tasks("substrings:verify", stage_verify, [(b, work, n_parts) for b in range(buckets)],
                       max_in_flight=workers)
    r6 = run_tasks("substrings:spans", _stage_spans,
                   [(q, work, lo, hi, bases, units, p, n_parts, buckets) for q, (lo, hi) in enumerate(ranges)],
                   max_in_flight=workers)
    parts_of: dict[int, list[int]] = {}
    for q, r in enumerate(r2):
        for s in r["shards"]:
            parts_of.setdefault(s, []).append(q)
    r7 = run_tasks("substrings:write", _stage_write,
                   [(s, o, work, attribute, parts_of.get(s, [])) for s, (_, o) in enumerate(shards)],
                   max_in_flight=workers)
    if not keep_work:
        io.rmtree(work)
    return {
        "kind": "substrings",
        "unit": p["unit"],
        "min_length": k,
        "shards": len(shards),
        "documents": sum(r["documents"] for r in r1),
        "invalid_lines": sum(r["invalid"] for r in r1),
        "units": total,
        "parts": n_parts,
        "buckets": buckets if n_parts > 1 else 0,
        "distinct_windows": sum(r["distinct_windows"] for r in r2),
        "candidate_windows": sum(r["candidate_windows"] for r in r3),
        "cross_part_windows": sum(r["confirmed_windows"] for r in r5) if r5 else sum(r["candidate_windows"] for r in r3),
        "verify": p["verify"],
        "duplicate_units": sum(r["duplicate_units"] for r in r6),
        "duplicate_spans": sum(r["spans"] for r in r6),
        "documents_with_duplicates": sum(r["documents_with_duplicates"] for r in r7),
        "duplicate_span_chars": sum(r["duplicate_span_chars"] for r in r7),
        "stages": {"read": summarise(r1), "suffix": summarise(r2), "fingerprints": summarise(r3),
                   "windows": summarise(r4), "verify": summarise(r5), "spans": summarise(r6),
                   "write": summarise(r7)},
    }


register(DedupKind("substrings", SubstringsOptions, run_substrings, level="span"))
