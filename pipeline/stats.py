"""`dolma-prep stats OUTPUT`: what happened to every source at every stage of a finished run.

Two sources of truth are compared, and any disagreement is an error (exit code 4), never a
warning:

* the manifest, written by `run` from the stages' own counters;
* the outputs themselves: the `.csv.gz` indexes (documents, tokens, and which kept document
  was written how many times), the array sizes, the attribute files (one line per input
  record), `dropped/` (the id and deciding rule of every removed document), `rejects/`
  (bad records), and the sampling rule replayed on every kept document.

What is measured and what is not: documents are counted at every stage. Characters are
measured on the documents read and on the documents kept by `select`; tokens are measured on
the kept documents (`sampled.tokens_before`, the count stage) and on the token arrays. Tokens
before `select` were never measured: they are shown as an *estimate* (read characters x the
source's measured tokens per character of its kept documents), flagged `tokens_estimated`
in JSON and with a `~` in the table.

Here: the result dict (`compute`): the indexes against the array sizes and the manifest, the
manifest's own arithmetic, and the funnel of every source. The recount from the files is
pipeline/verify.py, the console tables pipeline/stats_render.py, reading the output folder
pipeline/outputs.py.
"""
from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np

from ..core import io
from .outputs import attribute_folders, load_manifest, scan_index
from .verify import checked_source, run_errors

# the stages of the funnel, in order, as rows of the per-source table
STAGES = ("read", "tagged", "deduplicated", "filtered", "sampled", "tokenized")


def rule_label(reason: str) -> str:
    """Group per-document reasons into rules: `min_text_length: 12 < 25` -> `min_text_length < 25`."""
    if reason.startswith("min_text_length:"):
        return "min_text_length < " + reason.rsplit("<", 1)[-1].strip()
    return reason


def group_rules(removed_by: dict[str, int]) -> dict[str, int]:
    out: dict[str, int] = {}
    for reason, n in removed_by.items():
        key = rule_label(reason)
        out[key] = out.get(key, 0) + n
    return dict(sorted(out.items(), key=lambda kv: (-kv[1], kv[0])))


# ---------------------------------------------------------------------------------------------
# the funnel, from the manifest


def funnel(info: dict, dedup_kinds: dict[str, str] | None = None) -> list[dict]:
    """Documents / chars / tokens in and out of every stage of one source (manifest counters).

    Tokens before `select` were not measured; they are estimated from the source's measured
    tokens per character of its kept documents and flagged `tokens_estimated`."""
    st = info.get("stages", {})
    read, sel = st.get("read", {}), st.get("selected", {})
    samp, tok = st.get("sampled", {}), st.get("tokenized", {})
    dedup, filt = st.get("deduplicated", {}), st.get("filtered", {})
    kept_tokens = samp.get("tokens_before")
    kept_chars = sel.get("chars")
    ratio = kept_tokens / kept_chars if kept_tokens and kept_chars else None
    est = (lambda chars: None if ratio is None or chars is None else round(chars * ratio))  # noqa: E731
    n_read, n_rej = read.get("documents", 0), read.get("rejected", 0)
    sel_rej = sel.get("rejected", 0)
    rows = [{"stage": "read", "documents_in": n_read + n_rej, "removed": n_rej, "documents_out": n_read,
             "chars_out": read.get("chars"), "tokens_out": est(read.get("chars")), "tokens_estimated": True,
             "removed_by": {"bad input record": n_rej} if n_rej else {}}]
    if "tagged" in st:
        n = st["tagged"].get("documents", 0)
        rows.append({"stage": "tagged", "documents_in": n, "removed": 0, "documents_out": n,
                     "chars_out": read.get("chars"), "tokens_out": est(read.get("chars")), "tokens_estimated": True,
                     "removed_by": {}})
    d_in = n_read - sel_rej
    d_rm = dedup.get("removed", 0)
    rows.append({"stage": "deduplicated", "documents_in": d_in, "removed": d_rm, "documents_out": d_in - d_rm,
                 "chars_out": None, "tokens_out": None, "tokens_estimated": False,
                 "removed_by": dict(sorted(dedup.get("removed_by", {}).items()))})
    if dedup_kinds:
        rows[-1]["removed_by_kind"] = {dedup_kinds.get(a, a): n for a, n in rows[-1]["removed_by"].items()}
        rows[-1]["kind_of"] = {a: dedup_kinds.get(a, a) for a in rows[-1]["removed_by"]}
    if sel_rej:
        rows[-1]["rejected_before"] = sel_rej
    f_in = d_in - d_rm
    f_rm = filt.get("removed", 0)
    rows.append({"stage": "filtered", "documents_in": f_in, "removed": f_rm, "documents_out": f_in - f_rm,
                 "chars_out": kept_chars, "tokens_out": kept_tokens, "tokens_estimated": False,
                 "removed_by": group_rules(filt.get("removed_by", {}))})
    if sel.get("chars_replaced"):  # characters span replacement took out of the kept documents
        rows[-1]["chars_replaced"] = sel["chars_replaced"]
        rows[-1]["chars_replaced_by"] = dict(sorted(sel.get("chars_replaced_by", {}).items()))
    s_in = sel.get("documents", 0)
    uniq = samp.get("documents_unique", 0)
    empty = tok.get("empty_skipped", 0)
    rows.append({"stage": "sampled", "documents_in": s_in, "tokens_in": kept_tokens,
                 "removed": s_in - uniq - empty, "documents_unique": uniq, "documents_out": samp.get("documents", 0),
                 "chars_out": None, "tokens_out": tok.get("tokens"), "tokens_estimated": False,
                 "removed_by": {"not drawn by sampling": s_in - uniq - empty} if s_in - uniq - empty else {},
                 "rule": info.get("sampling")})
    rows.append({"stage": "tokenized", "documents_in": samp.get("documents", 0), "removed": 0,
                 "documents_out": tok.get("documents", 0), "chars_out": None, "tokens_out": tok.get("tokens"),
                 "tokens_estimated": False, "empty_skipped": empty,
                 "removed_by": {"empty after stripping": empty} if empty else {}})
    return rows


def manifest_consistency(name: str, info: dict) -> list[str]:
    """The manifest's own counters must add up: read = removed at every stage + kept."""
    st = info.get("stages", {})
    errs = []
    read, sel = st.get("read", {}), st.get("selected", {})
    dd, ff = st.get("deduplicated", {}), st.get("filtered", {})
    samp, tok = st.get("sampled", {}), st.get("tokenized", {})
    for stage, d in (("deduplicated", dd), ("filtered", ff)):
        if d.get("removed", 0) != sum(d.get("removed_by", {}).values()):
            errs.append(f"source {name}: manifest {stage}.removed {d.get('removed')} != sum of removed_by")
    parts = dd.get("removed", 0) + ff.get("removed", 0) + sel.get("rejected", 0) + sel.get("documents", 0)
    if read.get("documents", 0) != parts:
        errs.append(f"source {name}: manifest funnel does not add up: read {read.get('documents', 0)} != deduplicated "
                    f"{dd.get('removed', 0)} + filtered {ff.get('removed', 0)} + rejected at select "
                    f"{sel.get('rejected', 0)} + kept {sel.get('documents', 0)}")
    if "tagged" in st and st["tagged"].get("documents") != read.get("documents"):
        errs.append(f"source {name}: manifest tagged {st['tagged'].get('documents')} != read {read.get('documents')}")
    if samp.get("documents") != tok.get("documents"):
        errs.append(f"source {name}: manifest sampled.documents {samp.get('documents')} != tokenized.documents "
                    f"{tok.get('documents')}")
    if samp.get("documents_unique", 0) + tok.get("empty_skipped", 0) > sel.get("documents", 0):
        errs.append(f"source {name}: more documents sampled ({samp.get('documents_unique')}) than kept "
                    f"({sel.get('documents')})")
    return errs


# ---------------------------------------------------------------------------------------------
# the whole result


def measure_tokens(output: str, manifest: dict, index_copies: Counter, errors: list[str]) -> dict[str, dict]:
    """Documents, tokens, files and bytes per source from the token files the manifest lists,
    each index checked against its array's size and the manifest's entry; (src, id) rows are
    counted into `index_copies`."""
    measured: dict[str, dict] = defaultdict(lambda: {"documents": 0, "tokens": 0, "files": 0, "bytes": 0})
    for f in manifest["outputs"]["tokens"]:
        npy, idx = io.join(output, f["path"]), io.join(output, f["index"])
        if not io.exists(npy) or not io.exists(idx):
            errors.append(f"{f['path']}: listed in the manifest but missing on disk")
            continue
        docs, tokens, errs = scan_index(idx, index_copies)
        errors.extend(errs)
        size = io.file_size(npy)
        itemsize = np.dtype(f["dtype"]).itemsize
        if size != tokens * itemsize:
            errors.append(f"{f['path']}: {size} bytes but its index covers {tokens} tokens x {itemsize} bytes")
        if docs != f.get("documents", docs) or tokens != f.get("tokens", tokens):
            errors.append(f"{f['path']}: manifest says {f.get('documents')} documents / {f.get('tokens')} tokens, "
                          f"its index holds {docs} / {tokens}")
        m = measured[f["source"]]
        m["documents"] += docs
        m["tokens"] += tokens
        m["files"] += 1
        m["bytes"] += size
    return measured


def source_result(info: dict, m: dict, dedup_kinds: dict[str, str]) -> dict:
    """One source's entry of the result: what was measured, what was planned, and its funnel."""
    st = info.get("stages", {})
    kept_tokens = st.get("sampled", {}).get("tokens_before")
    kept_chars = st.get("selected", {}).get("chars")
    uniq = st.get("sampled", {}).get("documents_unique")
    planned = info.get("planned_tokens")
    return {**m, "planned_tokens": planned, "planned_share": info.get("planned_share"),
            "shortfall_tokens": info.get("shortfall_tokens", 0.0), "stages": st,
            "sampling": info.get("sampling"),
            "achieved_vs_planned": m["tokens"] / planned if planned else None,
            # passes over the source's kept data: >1 repeated (upsampled), <1 subsampled
            "repetition": m["tokens"] / kept_tokens if kept_tokens else None,
            "copies_per_sampled_document": m["documents"] / uniq if uniq else None,
            "tokens_per_char": kept_tokens / kept_chars if kept_tokens and kept_chars else None,
            "funnel": funnel(info, dedup_kinds)}


def compute(output: str, verify: bool = False) -> dict:
    """Stats of a finished run. Always: the indexes against the array sizes and the manifest, and
    the manifest's own funnel arithmetic. With `verify` (`dolma-prep stats`, `report`): every stage
    recounted from the attribute, dropped, rejects and index files, and sampling replayed."""
    manifest = load_manifest(output)
    errors: list[str] = []
    index_copies: Counter = Counter()
    measured = measure_tokens(output, manifest, index_copies, errors)
    folders = attribute_folders(output) if verify else []
    dedup = manifest.get("dedup") or {}
    dedup_kinds = {v.get("attribute", k): k for k, v in dedup.items() if isinstance(v, dict)}
    sources = {}
    for name, info in manifest["sources"].items():
        m = measured.get(name, {"documents": 0, "tokens": 0, "files": 0, "bytes": 0})
        for key in ("documents", "tokens"):
            if m[key] != info[key]:
                errors.append(f"source {name}: manifest says {info[key]} {key}, the indexes hold {m[key]}")
        errors.extend(manifest_consistency(name, info))
        s = source_result(info, m, dedup_kinds)
        if verify:
            s["checked"], errs = checked_source(output, manifest, name, info, folders, index_copies)
            errors.extend(errs)
        sources[name] = s
    if verify:
        errors.extend(run_errors(output, manifest, sources, index_copies))
    total = sum(s["tokens"] for s in sources.values())
    for s in sources.values():
        s["share"] = s["tokens"] / total if total else 0.0
    return {"output": output, "name": manifest.get("name"), "config_hash": manifest.get("config_hash"),
            "seed": manifest.get("seed"), "sampling": manifest.get("sampling"),
            "sources": sources, "total_tokens": total,
            "total_documents": sum(s["documents"] for s in sources.values()),
            "planned_tokens": manifest.get("planned_tokens", sum(s["planned_tokens"] or 0 for s in sources.values())),
            "funnel": total_funnel(sources), "dedup": dedup, "rejected": manifest.get("rejected", 0),
            "steps": manifest.get("steps", []),
            "attribute_folders": folders, "verified": verify,
            "notes": ["tokens before selection are estimates (read chars x the source's measured tokens per char "
                      "of its kept documents); see tokens_estimated"],
            "errors": errors}


def total_funnel(sources: dict) -> list[dict]:
    """The per-stage rows summed over sources (stages absent from a source count as zero)."""
    rows: dict[str, dict] = {}
    for s in sources.values():
        for r in s["funnel"]:
            t = rows.setdefault(r["stage"], {"stage": r["stage"], "removed_by": {}, "tokens_estimated": False})
            for k in ("documents_in", "removed", "documents_out", "documents_unique", "chars_out", "tokens_out",
                      "tokens_in", "empty_skipped", "chars_replaced"):
                if k in r and r[k] is not None:
                    t[k] = (t.get(k) or 0) + r[k]
                elif k in r:
                    t.setdefault(k, None)
            t["tokens_estimated"] = t["tokens_estimated"] or r["tokens_estimated"]
            for reason, n in r["removed_by"].items():
                t["removed_by"][reason] = t["removed_by"].get(reason, 0) + n
            for attr, n in (r.get("chars_replaced_by") or {}).items():
                t.setdefault("chars_replaced_by", {})
                t["chars_replaced_by"][attr] = t["chars_replaced_by"].get(attr, 0) + n
            for kind, n in (r.get("removed_by_kind") or {}).items():
                t.setdefault("removed_by_kind", {})
                t["removed_by_kind"][kind] = t["removed_by_kind"].get(kind, 0) + n
            t.setdefault("kind_of", {}).update(r.get("kind_of") or {})
    return [rows[s] for s in STAGES if s in rows]
