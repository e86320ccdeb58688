"""`dolma-prep stats` (and `report`) cross-checks: every stage of a finished run recounted from
its files and compared with the manifest; any disagreement is an error (exit code 4).

Per source, per shard: the bad records in `rejects/<stage>/`; the attribute folders, one line
per input record, aligned by id; the removed documents and their deciding rules in `dropped/`;
the kept documents (the attribute ids less the dropped ones, else the ids of `kept/`); and the
sampling rule replayed on every kept document against the number of times the `.csv.gz`
indexes hold it. Over the run: every file a done marker records (path and size) present and
whole, no index row that is not a kept document, and the rejected total.
"""
from __future__ import annotations

import json
import zlib
from collections import Counter

from ..core import io
from ..core.runtime import outputs_intact
from ..core.sampling import unit_hash
from .outputs import count_lines, read_ids, read_jsonl_objects, shards_of
from .sampling_rule import copies
from .stages.common import rejects_path

REJECT_STAGES = ("read", "select", "tokenize")  # the stages that set bad records aside, in rejects/<stage>/


def manifest_reason_key(reason: str) -> tuple[str, str]:
    """A `dropped/` reason -> (manifest stage, key in that stage's `removed_by`)."""
    if reason.startswith("dedup: "):
        return "deduplicated", reason.split(": ", 1)[1]
    return "filtered", reason


# ---------------------------------------------------------------------------------------------
# one shard's files


def shard_rejects(output: str, rel: str) -> dict[str, int]:
    """Bad records of one shard per stage, from `rejects/<stage>/`."""
    return {stage: count_lines(rejects_path(output, stage, rel)) for stage in REJECT_STAGES}


def attribute_ids(output: str, folders: list[str], rel: str, errors: list[str]) -> list | None:
    """The ids of one shard's attribute files (one per input record; None for a bad record),
    which must be the same, line for line, in every attribute folder. None when there is none."""
    ids = first = None
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
    return ids


def count_dropped(output: str, rel: str, removed_by: dict[str, Counter], errors: list[str]) -> Counter:
    """The ids in one shard's `dropped/` file (id -> times), its reasons counted into
    `removed_by[stage]`."""
    path = io.join(output, "dropped", rel)
    if io.exists(path):
        dropped = read_jsonl_objects(path)
    else:
        dropped = []
        errors.append(f"dropped/{rel}: missing")
    ids: Counter = Counter()
    for d in dropped:
        stage, key = manifest_reason_key(str(d.get("reason", "")))
        removed_by[stage][key] += 1
        ids[str(d.get("id"))] += 1
    return ids


def kept_from_attributes(ids: list, dropped_ids: Counter, rel: str, errors: list[str]) -> Counter:
    """Kept documents (id -> times) = the attribute ids less the dropped ones (no text read)."""
    kept = Counter(i for i in ids if i is not None)
    missing = dropped_ids - kept
    if missing:
        errors.append(f"dropped/{rel}: {sum(missing.values())} dropped ids are not in its attribute files, "
                      f"e.g. {next(iter(missing))!r}")
    return kept - dropped_ids


def kept_file_ids(output: str, rel: str) -> Counter:
    """Kept documents (id -> times) from the shard's `kept/` file (a run without attribute files)."""
    path = io.join(output, "kept", rel)
    return Counter(read_ids(path)) if io.exists(path) else Counter()


def replay_sampling(m: dict, kept: Counter, index_copies: Counter, rel: str, seed, source: str,
                    rule: dict | None) -> None:
    """Replay the sampling rule on one shard's kept documents: count the sampled documents into
    `m` and record each document the indexes hold a different number of times under
    `m["copy_mismatches"]`. Takes the shard's rows out of `index_copies`."""
    for doc_id, k in kept.items():
        want = copies(unit_hash(seed, source, doc_id), rule) if rule else None
        got = index_copies.pop(("kept/" + rel, doc_id), 0)
        if want is None:
            continue
        if want:
            m["sampled_unique"] += k
        m["sampled_documents"] += k * want
        if got != k * want:
            m.setdefault("copy_mismatches", []).append({"rel": rel, "id": doc_id, "expected": k * want,
                                                        "index": got})


def forget_shard(index_copies: Counter, rel: str) -> None:
    """Take a shard's rows out of `index_copies` without checking them."""
    for key in [k for k in index_copies if k[0] == "kept/" + rel]:
        del index_copies[key]


# ---------------------------------------------------------------------------------------------
# against the manifest


def count_errors(name: str, st: dict, m: dict) -> list[str]:
    """The recounted documents read, rejected, removed by rule and kept against the manifest."""
    errors = []
    read, sel = st.get("read", {}), st.get("selected", {})
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
    return errors


def sampling_errors(name: str, st: dict, m: dict, rule: dict) -> list[str]:
    """The replayed sampling against the indexes and the manifest. A kept document that is
    empty after stripping is skipped by tokenize: allowed, counted (empty_skipped or a tokenize
    reject), and taken out of the replayed counts."""
    errors = []
    samp, tok = st.get("sampled", {}), st.get("tokenized", {})
    empty = tok.get("empty_skipped", 0) + m["rejected_tokenize"]
    mism = m.pop("copy_mismatches", [])
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
    return errors


# ---------------------------------------------------------------------------------------------
# one source, the whole run


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
    for sh in shards_of(manifest, name):
        rel = sh["rel"]
        rejected = shard_rejects(output, rel)
        for stage, n in rejected.items():
            m["rejected_" + stage] += n
        ids = attribute_ids(output, folders, rel, errors)
        dropped_ids = count_dropped(output, rel, m["removed_by"], errors)
        m["dropped"] += sum(dropped_ids.values())
        if ids is None:
            kept = kept_file_ids(output, rel)
            m["kept_ids_from"] = "kept"
        else:
            m["read_documents"] += sum(1 for i in ids if i is not None)
            kept = kept_from_attributes(ids, dropped_ids, rel, errors)
            m["kept_ids_from"] = "attributes"
            if rejected["select"]:  # which lines were rejected at select is not recorded by id
                sampling_checked = False
                m["kept"] += sum(kept.values()) - rejected["select"]
                forget_shard(index_copies, rel)
                continue
        m["kept"] += sum(kept.values())
        replay_sampling(m, kept, index_copies, rel, seed, name, rule)
    if not folders:
        m["read_documents"] = None  # no attribute files: read documents are not recountable
    m["removed_by"] = {k: dict(sorted(v.items())) for k, v in m["removed_by"].items()}
    errors.extend(count_errors(name, st, m))
    if sampling_checked and rule:
        errors.extend(sampling_errors(name, st, m, rule))
    else:
        m.pop("copy_mismatches", None)
        m["sampled_unique"] = m["sampled_documents"] = None
    m["sampling_replayed"] = bool(sampling_checked and rule)
    return m, errors


def checked_source(output: str, manifest: dict, name: str, info: dict, folders: list[str],
                   index_copies: Counter) -> tuple[dict, list[str]]:
    """`verify_source`, with a truncated or corrupt output file reported as an error."""
    try:
        return verify_source(output, manifest, name, info, folders, index_copies)
    except (EOFError, OSError, zlib.error, ValueError) as e:
        checked = {"rejected_" + stage: 0 for stage in REJECT_STAGES}
        return checked, [f"source {name}: an output file cannot be read ({type(e).__name__}: {str(e)[:200]}); "
                         "rerun the same command to re-derive it"]


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


def run_errors(output: str, manifest: dict, sources: dict, index_copies: Counter) -> list[str]:
    """After every source is checked: the recorded outputs on disk, index rows left over (not a
    kept document of their source), and the rejected total against the manifest."""
    errors = recorded_output_errors(output)
    unknown = [k for k, v in index_copies.items() if v]
    if unknown:
        src, doc_id = unknown[0]
        errors.append(f"{len(unknown)} documents in the indexes are not kept documents of their source, "
                      f"e.g. {doc_id!r} from {src}")
    rej_total = sum(s["checked"]["rejected_" + stage] for s in sources.values() for stage in REJECT_STAGES)
    if rej_total != manifest.get("rejected", 0):
        errors.append(f"manifest says {manifest.get('rejected', 0)} rejected records, rejects/ holds {rej_total}")
    return errors
