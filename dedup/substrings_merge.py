"""The cross-part merge of exact-substring dedup (`substrings.py`, rounds 2-5): fingerprints of
distinct windows, the per-bucket search for windows held by two or more parts, and the optional
comparison of their units.

A window's fingerprint is 128 bits: two polynomial hashes mod 2^64 (different odd bases) of its
units + 1, each mixed by splitmix64's finaliser. They are computed chunk by chunk of a part's
text from prefix sums x_j B^-(j+1), and streamed as FP_RECORDs (fp, fp2, position) into one file
per bucket, `fp-<part>-<bucket>.bin`, the bucket named by the top bits of fp.
"""
from __future__ import annotations

import contextlib

import numpy as np

from dolma_prep.core import io

_BASES = (0x9E3779B97F4A7C15, 0xD6E8FEB86659FD93)  # odd, so invertible mod 2^64
_CHUNK = 1 << 20


def _mix64(z: np.ndarray) -> np.ndarray:
    """splitmix64's finaliser: spreads the polynomial hash over all bits (for bucketing)."""
    with np.errstate(over="ignore"):
        z = z ^ (z >> np.uint64(30))
        z = z * np.uint64(0xBF58476D1CE4E5B9)
        z = z ^ (z >> np.uint64(27))
        z = z * np.uint64(0x94D049BB133111EB)
        return z ^ (z >> np.uint64(31))


# one fingerprint record: the two 64-bit halves and the window's position in its part
FP_RECORD = np.dtype([("fp", "<u8"), ("fp2", "<u8"), ("pos", "<i8")])


def _chunk_hashes(seq: np.ndarray, c0: int, loc: np.ndarray, k: int, base: int, powers: np.ndarray) -> np.ndarray:
    """Polynomial hash sum_t (seq[p+t] + 1) B^(k-1-t) mod 2^64 of the windows at p = c0 + loc
    (loc < _CHUNK), from prefix sums x_j B^-(j+1) over seq[c0 : c0 + _CHUNK + k]."""
    c1 = min(len(seq), c0 + _CHUNK + k)
    m = c1 - c0
    with np.errstate(over="ignore"):
        w = np.full(m, pow(base, -1, 1 << 64), np.uint64)
        np.cumprod(w, out=w)  # B^-(j+1)
        w *= seq[c0:c1].astype(np.uint64) + np.uint64(1)
        g = np.zeros(m + 1, np.uint64)
        np.cumsum(w, out=g[1:])
        return (g[loc + k] - g[loc]) * powers[loc + k]


def _powers(base: int, count: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        pw = np.full(count, base, np.uint64)
        pw[0] = 1
        np.cumprod(pw, out=pw)  # B^e
    return pw


def write_fingerprints(seq: np.ndarray, is_rep: np.ndarray, k: int, buckets: int, work: str, p: int) -> None:
    """FP_RECORDs of every marked window, streamed chunk by chunk of the text into one file per
    bucket (`fp-<part>-<bucket>.bin`), so memory stays ~50 B x _CHUNK whatever the part size."""
    powers = [_powers(b, min(len(seq), _CHUNK) + k + 1) for b in _BASES]
    with contextlib.ExitStack() as stack:  # all committed together, or all aborted
        writers = [stack.enter_context(io.AtomicWriter(io.join(work, f"fp-{p}-{b}.bin"))) for b in range(buckets)]
        for c0 in range(0, len(seq), _CHUNK):
            loc = np.flatnonzero(is_rep[c0:c0 + _CHUNK])
            if len(loc) == 0:
                continue
            rec = np.empty(len(loc), FP_RECORD)
            rec["fp"] = _mix64(_chunk_hashes(seq, c0, loc, k, _BASES[0], powers[0]))
            rec["fp2"] = _mix64(_chunk_hashes(seq, c0, loc, k, _BASES[1], powers[1]))
            rec["pos"] = loc + c0
            bk = bucket_of(rec["fp"], buckets)
            order = np.argsort(bk, kind="stable")
            cuts = np.searchsorted(bk[order], np.arange(buckets + 1))
            for b in range(buckets):
                writers[b].write(rec[order[cuts[b]:cuts[b + 1]]].tobytes())


def bucket_of(fp: np.ndarray, r: int) -> np.ndarray:
    with np.errstate(over="ignore"):
        return (((fp >> np.uint64(32)) * np.uint64(r)) >> np.uint64(32)).astype(np.int64)


# ------------------------------------------------------------------------------- round 3
def stage_candidates(b: int, work: str, n_parts: int, verify: str) -> dict:
    """Windows whose 128-bit fingerprint (fp, fp2) is held by >= 2 parts: cross-part duplicates
    (verify="fingerprints") or candidates for the comparison of units (verify="units")."""
    recs = [np.frombuffer(io.read_bytes(io.join(work, f"fp-{p}-{b}.bin")), FP_RECORD) for p in range(n_parts)]
    part = np.concatenate([np.full(len(r), p, np.int32) for p, r in enumerate(recs)])
    recs = np.concatenate(recs)
    order = np.argsort(recs["fp"])
    fp, fp2 = recs["fp"][order], recs["fp2"][order]
    run_first = np.maximum.accumulate(np.where(np.append(True, fp[1:] != fp[:-1]), np.arange(len(fp)), 0))
    if (fp2 != fp2[run_first]).any():  # equal first halves, different second: sort by both
        order = np.lexsort((recs["fp2"], recs["fp"]))
        fp, fp2 = recs["fp"][order], recs["fp2"][order]
    del run_first
    rep, part = recs["pos"][order], part[order]  # field by field: gathering whole records is slower
    del recs, order
    start = np.ones(len(fp), bool)  # first entry of each distinct 128-bit fingerprint
    start[1:] = (fp[1:] != fp[:-1]) | (fp2[1:] != fp2[:-1])
    firsts = np.flatnonzero(start)
    del start
    if len(firsts):
        cross = np.minimum.reduceat(part, firsts) != np.maximum.reduceat(part, firsts)  # held by >= 2 parts
        multi = np.repeat(cross, np.diff(np.append(firsts, len(fp))))
    else:
        cross = multi = np.zeros(0, bool)
    name = "conf" if verify == "fingerprints" else "cand"
    for p in range(n_parts):
        io.save_npy(io.join(work, f"{name}-{b}-{p}.npy"), np.sort(rep[multi & (part == p)]))
    return {"cross_part_keys": int(cross.sum()), "candidate_windows": int(multi.sum())}


# ------------------------------------------------------------------------------- round 5
def stage_verify(b: int, work: str, n_parts: int) -> dict:
    wins, parts, reps = [], [], []
    for p in range(n_parts):
        z = io.load_npz(io.join(work, f"win-{p}-{b}.npz"))
        wins.append(z["win"])
        reps.append(z["rep"])
        parts.append(np.full(len(z["rep"]), p, np.int64))
    win = np.ascontiguousarray(np.concatenate(wins))
    part, rep = np.concatenate(parts), np.concatenate(reps)
    confirmed = 0
    if len(win):
        keys = win.view(np.dtype((np.void, win.shape[1] * win.itemsize))).ravel()
        _, inv = np.unique(keys, return_inverse=True)
        inv = inv.ravel()
        # distinct (window, part) pairs; a window held by >= 2 parts is a cross-part duplicate
        pairs = np.unique(inv * n_parts + part)
        n_parts_of = np.bincount(pairs // n_parts, minlength=int(inv.max()) + 1)
        keep = n_parts_of[inv] >= 2
    else:
        keep = np.zeros(0, bool)
    for p in range(n_parts):
        sel = rep[keep & (part == p)]
        confirmed += len(sel)
        io.save_npy(io.join(work, f"conf-{b}-{p}.npy"), sel)
    return {"confirmed_windows": confirmed, "fingerprint_collisions": int(len(rep) - confirmed)}
