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
"""
from __future__ import annotations

import io as _io
import json
import zlib
from collections import Counter, defaultdict
from collections.abc import Iterable

import fsspec
import numpy as np
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core import io
from ..core.io import InputError
from ..core.runtime import outputs_intact
from ..core.sampling import unit_hash
from ..core.tokens import read_index
from .stages.tokenize import copies as n_copies

# the stages of the funnel, in order, as rows of the per-source table
STAGES = ("read", "tagged", "deduplicated", "filtered", "sampled", "tokenized")


def load_manifest(output: str) -> dict:
    path = io.join(output, "manifest.json")
    if not io.exists(path):
        raise InputError(f"{path} not found: is {output} the output folder of a finished `dolma-prep run`?")
    try:
        return json.loads(io.read_text(path))
    except json.JSONDecodeError as e:
        raise InputError(f"{path}: not valid JSON ({e})") from None


def load_config(output: str) -> dict | None:
    """The mix the run was made with (`_state/config.json`), or None when absent."""
    path = io.join(output, "_state", "config.json")
    if not io.exists(path):
        return None
    return json.loads(io.read_text(path)).get("mix")


# ---------------------------------------------------------------------------------------------
# reading the outputs


def scan_index(path: str, copies: Counter | None = None) -> tuple[int, int, list[str]]:
    """Return (documents, tokens, errors) of one `.csv.gz` index; count (src, id) rows into
    `copies` when given."""
    errors, docs, expect = [], 0, 0
    with io.open_binary(path) as f:
        for line_no, row in enumerate(read_index(f), start=1):
            try:
                start, end = int(row[0]), int(row[1])
            except (ValueError, IndexError):
                errors.append(f"{path}:{line_no}: malformed index row {row!r}")
                continue
            if start != expect or end <= start:
                errors.append(f"{path}:{line_no}: span [{start}, {end}) does not follow the previous end {expect}")
            expect = end
            docs += 1
            if copies is not None and len(row) >= 4:
                copies[(row[3], row[2])] += 1
    return docs, expect, errors


def shards_of(manifest: dict, source: str | None = None) -> list[dict]:
    """The input shards in run order: [{"source", "rel", "index"}], `index` within its source."""
    out, seen = [], Counter()
    for inp in manifest.get("inputs", []):
        src = inp["source"]
        out.append({"source": src, "rel": inp["path"], "index": seen[src]})
        seen[src] += 1
    return [s for s in out if source is None or s["source"] == source]


def attribute_folders(output: str) -> list[str]:
    """Names of the attribute folders under OUTPUT/attributes/, sorted."""
    root = io.join(output, "attributes")
    fs = fsspec.get_fs_token_paths(root)[0]
    if not fs.exists(root):
        return []
    return sorted(p.rstrip("/").rsplit("/", 1)[-1] for p in fs.ls(root, detail=False) if fs.isdir(p))


def read_bytes(path: str) -> bytes:
    with io.open_binary(path) as f:
        return f.read()


def read_ids(path: str) -> list:
    """The `id` of every line of a JSONL file (None for lines without one), read with polars."""
    import polars as pl

    raw = read_bytes(path)
    if not raw.strip():
        return []
    try:
        return pl.read_ndjson(_io.BytesIO(raw), schema={"id": pl.String})["id"].to_list()
    except Exception:  # noqa: BLE001 (a malformed line: fall back to a per-line parse, which reports it)
        ids = []
        for n, line in enumerate(raw.splitlines(), start=1):
            try:
                obj = json.loads(line)
            except json.JSONDecodeError:
                raise InputError(f"{path}:{n}: not valid JSON") from None
            v = obj.get("id") if isinstance(obj, dict) else None
            ids.append(None if v is None else str(v))
        return ids


def read_jsonl_objects(path: str) -> list[dict]:
    out = []
    for line_no, obj, err in io.read_jsonl(path):
        if err is not None:
            raise InputError(f"{path}:{line_no}: {err}")
        out.append(obj)
    return out


def rejects_path(output: str, stage: str, rel: str) -> str:
    """Where `Rejects` writes the bad records of one shard (see stages/common.py)."""
    base = rel
    for suf in (".gz", ".zst", ".zstd"):
        base = base.removesuffix(suf)
    if not base.endswith(".jsonl"):
        base += ".jsonl"
    return io.join(output, "rejects", stage, base)


def count_lines(path: str) -> int:
    if not io.exists(path):
        return 0
    return sum(1 for line in read_bytes(path).splitlines() if line.strip())


def manifest_reason_key(reason: str) -> tuple[str, str]:
    """A `dropped/` reason -> (manifest stage, key in that stage's `removed_by`)."""
    if reason.startswith("dedup: "):
        return "deduplicated", reason.split(": ", 1)[1]
    return "filtered", reason


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
# cross-checks against the files


def verify_source(output: str, manifest: dict, name: str, info: dict, folders: list[str],
                  index_copies: Counter) -> tuple[dict, list[str]]:
    """Recount one source from its attribute, dropped, rejects and kept files; replay sampling.

    Returns (measured counts, errors)."""
    errors: list[str] = []
    st = info.get("stages", {})
    seed = manifest.get("seed")
    rule = info.get("sampling")
    m = {"read_documents": 0, "rejected_read": 0, "rejected_select": 0, "rejected_tokenize": 0,
         "dropped": 0, "removed_by": {"deduplicated": Counter(), "filtered": Counter()},
         "kept": 0, "sampled_unique": 0, "sampled_documents": 0, "kept_ids_from": None}
    sampling_checked = True
    ids = None
    for sh in shards_of(manifest, name):
        rel = sh["rel"]
        m["rejected_read"] += count_lines(rejects_path(output, "read", rel))
        sel_rejects = count_lines(rejects_path(output, "select", rel))
        m["rejected_select"] += sel_rejects
        m["rejected_tokenize"] += count_lines(rejects_path(output, "tokenize", rel))
        # every attribute folder holds one line per input record, aligned by id
        ids = None
        for folder in folders:
            path = io.join(output, "attributes", folder, rel)
            if not io.exists(path):
                errors.append(f"attributes/{folder}/{rel}: missing")
                continue
            these = read_ids(path)
            if ids is None:
                ids, first = these, folder
            elif these != ids:
                bad = next((i for i, (a, b) in enumerate(zip(ids, these)) if a != b), min(len(ids), len(these)))
                errors.append(f"attributes/{folder}/{rel}: line {bad + 1} does not align with attributes/{first}/{rel} "
                              f"({len(these)} vs {len(ids)} lines)")
        # dropped documents and their rules
        dpath = io.join(output, "dropped", rel)
        dropped = read_jsonl_objects(dpath) if io.exists(dpath) else []
        if not io.exists(dpath):
            errors.append(f"dropped/{rel}: missing")
        dropped_ids = Counter()
        for d in dropped:
            stage, key = manifest_reason_key(str(d.get("reason", "")))
            m["removed_by"][stage][key] += 1
            dropped_ids[str(d.get("id"))] += 1
        m["dropped"] += len(dropped)
        # kept documents: attribute ids - dropped (no text needs reading), else the kept file
        if ids is not None:
            present = [i for i in ids if i is not None]
            m["read_documents"] += len(present)
            kept = Counter(present)
            missing = dropped_ids - kept
            if missing:
                errors.append(f"dropped/{rel}: {sum(missing.values())} dropped ids are not in its attribute files, "
                              f"e.g. {next(iter(missing))!r}")
            kept -= dropped_ids
            m["kept_ids_from"] = "attributes"
            if sel_rejects:  # which lines were rejected at select is not recorded by id
                sampling_checked = False
                m["kept"] += sum(kept.values()) - sel_rejects
                for key in [k for k in index_copies if k[0] == "kept/" + rel]:
                    del index_copies[key]
                continue
        else:
            kpath = io.join(output, "kept", rel)
            kept = Counter(read_ids(kpath)) if io.exists(kpath) else Counter()
            m["kept_ids_from"] = "kept"
        m["kept"] += sum(kept.values())
        # replay sampling on every kept document and compare with the index
        for doc_id, k in kept.items():
            want = n_copies(unit_hash(seed, name, doc_id), rule) if rule else None
            got = index_copies.pop(("kept/" + rel, doc_id), 0)
            if want is None:
                continue
            if want:
                m["sampled_unique"] += k
            m["sampled_documents"] += k * want
            if got != k * want:
                m.setdefault("copy_mismatches", []).append({"rel": rel, "id": doc_id, "expected": k * want,
                                                            "index": got})
    if ids is None and not folders:
        m["read_documents"] = None  # no attribute files: read documents are not recountable
    m["removed_by"] = {k: dict(sorted(v.items())) for k, v in m["removed_by"].items()}
    # compare with the manifest
    read, sel = st.get("read", {}), st.get("selected", {})
    samp, tok = st.get("sampled", {}), st.get("tokenized", {})
    if m["read_documents"] is not None and m["read_documents"] != read.get("documents"):
        errors.append(f"source {name}: manifest says {read.get('documents')} documents read, "
                      f"the attribute files hold {m['read_documents']}")
    if m["rejected_read"] != read.get("rejected", 0):
        errors.append(f"source {name}: manifest says {read.get('rejected', 0)} bad records, rejects/read holds "
                      f"{m['rejected_read']}")
    if m["rejected_select"] != sel.get("rejected", 0):
        errors.append(f"source {name}: manifest says {sel.get('rejected', 0)} records rejected at select, "
                      f"rejects/select holds {m['rejected_select']}")
    for stage in ("deduplicated", "filtered"):
        want = st.get(stage, {}).get("removed_by", {})
        if m["removed_by"][stage] != dict(sorted(want.items())):
            errors.append(f"source {name}: manifest {stage}.removed_by {dict(sorted(want.items()))} "
                          f"!= dropped/ files {m['removed_by'][stage]}")
    if m["kept"] != sel.get("documents"):
        errors.append(f"source {name}: manifest says {sel.get('documents')} documents kept, "
                      f"the {m['kept_ids_from'] or 'kept'} files give {m['kept']}")
    if sampling_checked and rule:
        empty = tok.get("empty_skipped", 0) + m["rejected_tokenize"]
        mism = m.pop("copy_mismatches", [])
        # a kept document that is empty after stripping is skipped by tokenize: allowed, counted
        unexplained = [x for x in mism if not (x["index"] == 0 and x["expected"] > 0)]
        skipped = [x for x in mism if x["index"] == 0 and x["expected"] > 0]
        if unexplained or len(skipped) > empty:
            ex = (unexplained or skipped)[0]
            errors.append(f"source {name}: {len(unexplained) + max(0, len(skipped) - empty)} kept documents appear in "
                          f"the indexes a different number of times than the sampling rule {rule} gives, e.g. "
                          f"{ex['id']!r} in kept/{ex['rel']}: rule {ex['expected']}, indexes {ex['index']}")
        else:
            m["sampled_unique"] -= len(skipped)
            m["sampled_documents"] -= sum(x["expected"] for x in skipped)
        if m["sampled_unique"] != samp.get("documents_unique"):
            errors.append(f"source {name}: manifest says {samp.get('documents_unique')} documents sampled, "
                          f"replaying the sampling rule gives {m['sampled_unique']}")
        if m["sampled_documents"] != samp.get("documents"):
            errors.append(f"source {name}: manifest says {samp.get('documents')} documents written (with repeats), "
                          f"replaying the sampling rule gives {m['sampled_documents']}")
    else:
        m.pop("copy_mismatches", None)
        m["sampled_unique"] = m["sampled_documents"] = None
    m["sampling_replayed"] = bool(sampling_checked and rule)
    return m, errors


# ---------------------------------------------------------------------------------------------
# the whole result


def recorded_output_errors(output: str) -> list[str]:
    """Every file a done marker says its task wrote (`_outputs`: path and size), checked on
    disk: a missing or truncated kept/, dropped/, attributes/ or rejects/ file is named, and a
    rerun of the same command re-derives exactly those shards (`runtime.run_tasks`)."""
    errors = []
    for p in io.list_files(io.join(output, "_state"), ".json"):
        if "/timing/" in p or p.endswith("config.json"):
            continue
        name = p[p.rindex("/_state/") + 1:]
        try:
            marker = json.loads(io.read_text(p))
        except (OSError, ValueError) as e:
            errors.append(f"{name}: unreadable done marker ({type(e).__name__}); rerun the run")
            continue
        outs = marker.get("_outputs") if isinstance(marker, dict) else None
        if outs:
            why = outputs_intact(output, outs)
            if why:
                errors.append(f"{why} (written by {name}); rerun the same command to re-derive it")
    return errors


def compute(output: str, verify: bool = False) -> dict:
    """Stats of a finished run. Always: the indexes against the array sizes and the manifest, and
    the manifest's own funnel arithmetic. With `verify` (`dolma-prep stats`, `report`): every stage
    recounted from the attribute, dropped, rejects and index files, and sampling replayed."""
    manifest = load_manifest(output)
    measured: dict[str, dict] = defaultdict(lambda: {"documents": 0, "tokens": 0, "files": 0, "bytes": 0})
    errors: list[str] = []
    index_copies: Counter = Counter()
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
        st = info.get("stages", {})
        kept_tokens = st.get("sampled", {}).get("tokens_before")
        kept_chars = st.get("selected", {}).get("chars")
        uniq = st.get("sampled", {}).get("documents_unique")
        planned = info.get("planned_tokens")
        s = {**m, "planned_tokens": planned, "planned_share": info.get("planned_share"),
             "shortfall_tokens": info.get("shortfall_tokens", 0.0), "stages": st,
             "sampling": info.get("sampling"),
             "achieved_vs_planned": m["tokens"] / planned if planned else None,
             # passes over the source's kept data: >1 repeated (upsampled), <1 subsampled
             "repetition": m["tokens"] / kept_tokens if kept_tokens else None,
             "copies_per_sampled_document": m["documents"] / uniq if uniq else None,
             "tokens_per_char": kept_tokens / kept_chars if kept_tokens and kept_chars else None,
             "funnel": funnel(info, dedup_kinds)}
        if verify:
            try:
                checked, errs = verify_source(output, manifest, name, info, folders, index_copies)
            except (EOFError, OSError, zlib.error, ValueError) as e:  # a truncated or corrupt output file
                checked = {"rejected_read": 0, "rejected_select": 0, "rejected_tokenize": 0}
                errs = [f"source {name}: an output file cannot be read ({type(e).__name__}: {str(e)[:200]}); "
                        "rerun the same command to re-derive it"]
            s["checked"] = checked
            errors.extend(errs)
        sources[name] = s
    if verify:
        errors.extend(recorded_output_errors(output))
        unknown = [k for k, v in index_copies.items() if v]
        if unknown:
            src, doc_id = unknown[0]
            errors.append(f"{len(unknown)} documents in the indexes are not kept documents of their source, "
                          f"e.g. {doc_id!r} from {src}")
        rej_total = sum(s["checked"]["rejected_read"] + s["checked"]["rejected_select"]
                        + s["checked"]["rejected_tokenize"] for s in sources.values())
        if rej_total != manifest.get("rejected", 0):
            errors.append(f"manifest says {manifest.get('rejected', 0)} rejected records, rejects/ holds {rej_total}")
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


# ---------------------------------------------------------------------------------------------
# terminal rendering


def _n(v, fmt="{:,}") -> str:
    return "-" if v is None else fmt.format(v)


def _tok(v, estimated: bool) -> str:
    if v is None:
        return "-"
    return f"~{v:,.0f}" if estimated else f"{v:,}"


def _console():
    return Console(width=None if Console().is_terminal else 160)


def render(result: dict, funnels: bool = False, console=None) -> None:
    """The per-source table (planned vs achieved); with `funnels`, one stage table per source."""
    console = console or _console()
    table = Table(title=escape(f"{result['name']}: tokens per source ({result['output']})"))
    cols = ("source", "read", "kept", "documents", "planned tokens", "tokens", "achieved/plan", "planned share",
            "share", "repetition", "files")
    for col in cols:
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, s in result["sources"].items():
        st = s.get("stages", {})
        planned = s.get("planned_tokens")
        short = " [red](short)" if s.get("shortfall_tokens") else ""
        table.add_row(escape(name), f"{st.get('read', {}).get('documents', 0):,}", f"{st.get('selected', {}).get('documents', 0):,}",
                      f"{s['documents']:,}", "-" if planned is None else f"{planned:,.0f}", f"{s['tokens']:,}{short}",
                      _n(s.get("achieved_vs_planned"), "{:.3f}"),
                      "-" if s.get("planned_share") is None else f"{100 * s['planned_share']:.2f}%",
                      f"{100 * s['share']:.2f}%", _n(s.get("repetition"), "{:.3f}x"), str(s["files"]))
    tf = {r["stage"]: r for r in result.get("funnel", [])}
    planned_total = result.get("planned_tokens")
    table.add_row("[bold]total", f"[bold]{tf.get('read', {}).get('documents_out', 0):,}",
                  f"[bold]{tf.get('filtered', {}).get('documents_out', 0):,}",
                  f"[bold]{result['total_documents']:,}", _n(planned_total, "{:,.0f}"),
                  f"[bold]{result['total_tokens']:,}",
                  _n(result["total_tokens"] / planned_total if planned_total else None, "{:.3f}"),
                  "100.00%" if planned_total else "", "100.00%", "", "")
    console.print(table)
    if funnels:
        render_steps(result.get("steps", []), console)
        for name, s in result["sources"].items():
            render_funnel(f"{name}: documents and tokens through the stages", s["funnel"], console,
                          s.get("tokens_per_char"))
        render_funnel("all sources: documents and tokens through the stages", result.get("funnel", []), console,
                      dedup=result.get("dedup"))
        console.print("[dim]~ = estimate: tokens are not measured before selection; read chars x the source's "
                      "measured tokens/char of its kept documents. Tokens from 'filtered' on are measured.[/dim]")
    if result["rejected"]:
        console.print(f"[yellow]{result['rejected']} bad records were rejected; see {result['output']}/rejects/")
    for name, rule, n in rule_errors(result):
        console.print(f"[yellow]rule error[/yellow]: {escape(rule)} raised on {n:,} documents of {escape(name)} "
                      "(counted as no match)")
    if not result["errors"]:
        if result.get("verified"):
            console.print(f"[green]checked[/green]: manifest agrees with the indexes, array sizes, "
                          f"{len(result.get('attribute_folders', []))} attribute folders, dropped/, rejects/ "
                          f"and the replayed sampling")
        else:
            console.print("[green]checked[/green]: manifest agrees with the indexes and array sizes "
                          "(`dolma-prep stats OUTPUT` recounts every stage from the files)")
    for e in result["errors"]:
        console.print(f"[red]error:[/red] {escape(e)}")


def rule_errors(result: dict) -> list[tuple[str, str, int]]:
    """(source, rule, documents) for every filter rule that raised, from the manifest's
    `stages.filtered.rule_errors`."""
    return [(name, rule, n) for name, s in result["sources"].items()
            for rule, n in s.get("stages", {}).get("filtered", {}).get("rule_errors", {}).items()]


def steps_rows(steps: list[dict]) -> tuple[list[str], list[list[str]]]:
    """The declared steps as a table (header, rows), in run order: each step, what it reads and
    writes, and its declared counters summed over sources. Built from the manifest's `steps`
    section alone, so a new step appears here with no edit to this module."""
    counters = list(dict.fromkeys(c for st in steps for src in st.get("counters", {}).values() for c in src))
    rows = []
    for st in steps:
        mine = next(iter(st.get("counters", {}).values()), {})
        totals = {c: sum(src.get(c, 0) for src in st.get("counters", {}).values()) for c in mine}
        rows.append([st["step"], st["reads"], st["writes"]] + [f"{totals[c]:,}" if c in mine else "" for c in counters])
    return ["step", "reads", "writes", *counters], rows


def render_steps(steps: list[dict], console) -> None:
    if not steps:
        return
    header, rows = steps_rows(steps)
    table = Table(title="steps of this run (declared counters, all sources)")
    for i, col in enumerate(header):
        table.add_column(col, justify="left" if i < 3 else "right")
    for row in rows:
        table.add_row(*(escape(x) for x in row))
    console.print(table)


def replaced_text(row: dict) -> str:
    """`span replacement: 1,234 chars (attr: 1,000, ...)` for a funnel row, else ''."""
    if not row.get("chars_replaced"):
        return ""
    by = ", ".join(f"{a}: {n:,}" for a, n in row.get("chars_replaced_by", {}).items())
    return f"span replacement: {row['chars_replaced']:,} chars" + (f" ({by})" if by else "")


def _rule_text(rule: dict | None) -> str:
    if not rule:
        return ""
    return f"copies = {rule['whole']} + [u < {rule['threshold']:.4g}]"


def render_funnel(title: str, rows: list[dict], console, tokens_per_char: float | None = None,
                  dedup: dict | None = None) -> None:
    t = Table(title=escape(title), title_justify="left")
    for col in ("stage", "docs in", "removed", "docs out", "chars out", "tokens out", "removed by / detail"):
        t.add_column(col, justify="left" if col in ("stage", "removed by / detail") else "right")
    for r in rows:
        kinds = r.get("kind_of") or {}
        detail = ", ".join(f"{k}{' (' + kinds[k] + ')' if kinds.get(k, k) != k else ''}: {v:,}"
                           for k, v in r["removed_by"].items())
        if r["stage"] == "deduplicated" and dedup:
            detail = "; ".join(x for x in (detail, "kinds run: " + ", ".join(
                f"{kind} ({v.get('attribute', kind)})" for kind, v in dedup.items() if isinstance(v, dict))) if x)
        if r["stage"] == "sampled":
            extra = f"{r.get('documents_unique', 0):,} distinct documents"
            if r.get("rule"):
                extra += f"; {_rule_text(r['rule'])}"
            if r.get("tokens_in") is not None:
                extra += f"; tokens in {r['tokens_in']:,}"
            detail = "; ".join(x for x in (detail, extra) if x)
        if r.get("rejected_before"):
            detail = "; ".join(x for x in (detail, f"{r['rejected_before']:,} rejected at select") if x)
        if r.get("chars_replaced"):
            detail = "; ".join(x for x in (detail, replaced_text(r)) if x)
        if r["stage"] == "read" and tokens_per_char:
            detail = "; ".join(x for x in (detail, f"{tokens_per_char:.3f} tokens/char (kept docs)") if x)
        t.add_row(r["stage"], _n(r.get("documents_in")), _n(r.get("removed")), _n(r.get("documents_out")),
                  _n(r.get("chars_out")), _tok(r.get("tokens_out"), r.get("tokens_estimated", False)), escape(detail))
    console.print(t)


def iter_sources(result: dict, names: Iterable[str] | None = None):
    for name, s in result["sources"].items():
        if names is None or name in names:
            yield name, s
