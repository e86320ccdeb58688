"""`dolma-prep show OUTPUT --source NAME [--dropped] [-n K]`: why was this document kept or removed?

Prints sample documents of one source with their attributes and the rule that decided their
fate, from the run's own outputs:

* dropped by `select` (`dropped/<rel>` holds the id and reason): the dedup attribute's spans,
  the filter rule (replayed on the document and its attributes to confirm it), or the text
  length that failed `min_text_length`; the text comes from the input file;
* bad input records (`rejects/<stage>/`): the reason and the raw line;
* kept by `select` but not drawn by sampling ("sampled out"), or written `copies` times:
  the document's seeded hash u = unit_hash(seed, source, id) against the source's rule
  copies = whole + [u < threshold] (manifest `sources.NAME.sampling`), checked against the
  number of times the `.csv.gz` indexes hold it.

Without `--dropped` the documents shown are the ones in the token arrays; with it, the ones
that are not (removed by a rule, by sampling, or rejected), spread round-robin over the
deciding rules.
`--id` explains one document whatever its fate.
"""
from __future__ import annotations

import json
from collections import Counter

from rich.console import Console
from rich.markup import escape
from rich.panel import Panel
from rich.table import Table

from ..core import io
from ..core.io import InputError
from ..core.sampling import unit_hash
from .filters import FilterSet
from .mixfile import MixFile
from .outputs import attribute_folders, load_config, load_manifest, read_jsonl_objects, scan_index, shards_of
from .sampling_rule import copies as n_copies
from .stages.common import rejects_path
from .stats import rule_label

MAX_SPANS = 20  # spans per attribute kept in the JSON output


def _index_copies(output: str, manifest: dict, source: str) -> Counter:
    copies: Counter = Counter()
    for f in manifest["outputs"]["tokens"]:
        if f["source"] == source and io.exists(io.join(output, f["index"])):
            scan_index(io.join(output, f["index"]), copies)
    return copies


def _attributes(output: str, folders: list[str], rel: str) -> tuple[dict, dict]:
    """id -> merged attributes, id -> 1-based line (= the input line), over every attribute folder."""
    merged: dict[str, dict] = {}
    lines: dict[str, int] = {}
    for folder in folders:
        path = io.join(output, "attributes", folder, rel)
        if not io.exists(path):
            continue
        for n, obj in enumerate(read_jsonl_objects(path), start=1):
            if not isinstance(obj, dict) or obj.get("id") is None:
                continue
            key = str(obj["id"])
            lines.setdefault(key, n)
            merged.setdefault(key, {}).update(obj.get("attributes") or {})
    return merged, lines


def _mix(config: dict | None):
    if not config:
        return None
    try:
        return MixFile.model_validate(config)
    except Exception:  # noqa: BLE001 (a config written by another version: explanations go without rules)
        return None


def _sampling_text(u: float, rule: dict, index_n: int | None, mode: str | None) -> tuple[int, str]:
    k = n_copies(u, rule)
    whole, thr = int(rule["whole"]), float(rule["threshold"])
    cmp = "<" if u < thr else ">="
    us, ts = f"{u:.6f}", f"{thr:.6f}"
    if us == ts:  # the planner puts the threshold at a document's u: show enough digits to see the side
        us, ts = repr(u), repr(thr)
    text = (f"u = unit_hash(seed, source, id) = {us} {cmp} threshold {ts}, whole = {whole}: "
            f"copies = {whole} + {1 if u < thr else 0} = {k}")
    if mode == "tokens":
        text += " (the threshold was chosen so the source meets its planned tokens)"
    elif mode == "proportion":
        text += f" (proportion {whole + thr:g}: whole = floor, threshold = fraction)"
    if index_n is not None:
        text += f"; the token indexes hold it {index_n} time{'s' if index_n != 1 else ''}"
        if index_n != k:
            text += " [MISMATCH with the rule]"
    return k, text


def _spans_summary(spans) -> str:
    if not isinstance(spans, list):
        return json.dumps(spans)
    if not spans:
        return "no spans"
    if len(spans) == 1 and isinstance(spans[0], list) and len(spans[0]) >= 3:
        s = spans[0]
        return f"{s[2]:g}  (span {s[0]}-{s[1]})"
    first = spans[0]
    return f"{len(spans)} spans, first {first}"


def _explain_drop(reason: str, attrs: dict, doc: dict | None, mix, source: str) -> str:
    if reason.startswith("dedup: "):
        name = reason.split(": ", 1)[1]
        return (f"document-level dedup: attribute {name} has spans {attrs.get(name)!r} (a copy of a document seen "
                f"earlier in the run's shard order; the first copy is kept)")
    if reason.startswith("min_text_length:"):
        length = reason.split(":", 1)[1].split("<")[0].strip()
        return (f"text after span replacement is {length} characters (stripped), "
                f"below the source's min_text_length {reason.rsplit('<', 1)[-1].strip()}")
    text = {"include: no rule matched": "no include rule of the source matched"}.get(reason)
    if text is None and reason.startswith("exclude: "):
        text = f"exclude rule matched: {reason.split(': ', 1)[1]}"
    text = text or reason
    if mix is not None and doc is not None:
        try:
            src = next(s for s in mix.sources if s.name == source)
            f = mix.source_filters(src)
            fs = FilterSet(f.include, f.exclude, where=f"sources[{source}].filters")
            again = fs.decide({**doc, "attributes": attrs})
            if reason.startswith("include"):
                text += f" (include rules: {', '.join(e.source for e in fs.include)})"
            text += ("; replayed on this document: same decision" if again == reason
                     else f"; replayed on this document: {again!r} [differs from the run]")
        except Exception as e:  # noqa: BLE001 (an engine missing here must not hide the recorded reason)
            text += f"; (could not replay the rule: {e})"
    return text


def _read_input_lines(path: str, wanted: set[int]) -> dict[int, dict]:
    out: dict[int, dict] = {}
    if not wanted:
        return out
    last = max(wanted)
    for line_no, raw, err in io.iter_lines(path):
        if err is not None or line_no > last:
            break
        if line_no in wanted:
            try:
                out[line_no] = json.loads(raw)
            except json.JSONDecodeError:
                pass
    return out


def _round_robin(groups: dict[str, list], n: int) -> list:
    out, order = [], list(groups)
    i = 0
    while len(out) < n and any(groups.values()):
        g = order[i % len(order)]
        if groups[g]:
            out.append(groups[g].pop(0))
        i += 1
    return out


def explain(output: str, source: str, dropped: bool = False, n: int = 5, reason: str | None = None,
            doc_id: str | None = None, chars: int = 300) -> dict:
    """Sample documents of `source` with the decision that kept or removed them."""
    manifest = load_manifest(output)
    if source not in manifest["sources"]:
        raise InputError(f"unknown source {source!r}; the run has {', '.join(manifest['sources'])}")
    info = manifest["sources"][source]
    rule = info.get("sampling")
    seed = manifest.get("seed")
    mode = (manifest.get("sampling") or {}).get("mode")
    config = load_config(output)
    mix = _mix(config)
    data_root = (config or {}).get("data_root")
    folders = attribute_folders(output)
    index_copies = _index_copies(output, manifest, source)
    want_dropped = dropped or reason is not None
    groups: dict[str, list] = {}
    found = 0
    shards = shards_of(manifest, source)
    for sh_i, sh in enumerate(shards):
        rel = sh["rel"]
        attrs, lines = _attributes(output, folders, rel)
        dpath, kpath = io.join(output, "dropped", rel), io.join(output, "kept", rel)
        cands = []
        if want_dropped or doc_id is not None:
            for d in read_jsonl_objects(dpath) if io.exists(dpath) else []:
                cands.append({"id": str(d.get("id")), "reason": str(d.get("reason")), "status": "dropped"})
            if want_dropped and doc_id is None:  # bad input records, set aside by the read or select stage
                for stage in ("read", "select", "tokenize"):
                    rpath = rejects_path(output, stage, rel)
                    for r in read_jsonl_objects(rpath) if io.exists(rpath) else []:
                        cands.append({"id": None, "reason": f"rejected at {stage}: {r.get('reason')}",
                                      "status": "rejected", "line": r.get("line"), "raw": r.get("raw") or ""})
        kept_docs = {}
        for k_line, obj, err in io.read_jsonl(kpath) if io.exists(kpath) else []:
            if err is not None or not isinstance(obj, dict):
                continue
            did = str(obj.get("id"))
            kept_docs.setdefault(did, (k_line, obj))
            u = unit_hash(seed, source, did) if rule else None
            k = _sampling_text(u, rule, None, None)[0] if rule else None
            status = "written" if k else "sampled out"
            if want_dropped and status == "written" and doc_id is None:
                continue
            if not want_dropped and status != "written" and doc_id is None:
                continue
            cands.append({"id": did, "reason": "sampling" if status == "sampled out" else "written",
                          "status": status})
        for c in cands:
            if doc_id is not None and c["id"] != str(doc_id):
                continue
            if reason is not None and reason not in c["reason"]:
                continue
            c.update(source=source, file=rel, attributes=attrs.get(c["id"], {}) if c["id"] else {})
            c.setdefault("line", lines.get(c["id"]))
            if c["status"] == "rejected":
                raw = c.pop("raw").rstrip("\r\n")
                c.update(decided_by="rejects", explanation=c["reason"].split(": ", 1)[1] + " (the record is counted "
                         "in the manifest's rejected total and kept with its raw text under rejects/)",
                         text=raw, text_from=f"rejects/ ({rel} line {c['line']})")
            elif c["status"] != "dropped":
                k_line, obj = kept_docs[c["id"]]
                u = unit_hash(seed, source, c["id"])
                k, text = _sampling_text(u, rule, index_copies.get(("kept/" + rel, c["id"]), 0), mode)
                c.update(decided_by="sampling", explanation=text, copies=k, u=u, rule=rule,
                         index_copies=index_copies.get(("kept/" + rel, c["id"]), 0),
                         text=obj.get("text", ""), text_from=f"kept/{rel}:{k_line}")
            # spread removed documents over their rules, written ones over the files
            key = c["file"] if c["status"] == "written" else \
                ("rejected" if c["status"] == "rejected" else rule_label(c["reason"]))
            groups.setdefault(key, []).append(c)
            found += 1
        if doc_id is None and found >= 4 * n and sh_i >= 1:
            break  # enough candidates to spread over rules and files
    picked = _round_robin(groups, n if doc_id is None else 1 << 30)
    # dropped documents: text from the input file (by line), the rule explained and replayed
    by_file: dict[str, set[int]] = {}
    for c in picked:
        if c["status"] == "dropped" and c.get("line"):
            by_file.setdefault(c["file"], set()).add(c["line"])
    texts = {}
    for rel, wanted in by_file.items():
        path = io.join(data_root, rel) if data_root else None
        if path and io.exists(path):
            texts[rel] = _read_input_lines(path, wanted)
    for c in picked:
        if c["status"] == "dropped":
            doc = texts.get(c["file"], {}).get(c.get("line"))
            if doc is not None and str(doc.get("id")) != c["id"]:
                doc = None  # the input changed since the run
            c.update(decided_by="dedup" if c["reason"].startswith("dedup: ") else
                     ("min_text_length" if c["reason"].startswith("min_text_length") else "filters"),
                     explanation=_explain_drop(c["reason"], c["attributes"], doc, mix, source),
                     text=None if doc is None else doc.get("text", ""),
                     text_from=None if doc is None else f"{io.join(data_root, c['file'])}:{c['line']}")
        full = c.get("text")
        c["chars"] = None if full is None else len(full)
        c["text"] = None if full is None else (full if len(full) <= chars else full[:chars] + "…")
        c["attributes"] = {k: (v[:MAX_SPANS] if isinstance(v, list) else v) for k, v in sorted(c["attributes"].items())}
    if doc_id is not None and not picked:
        raise InputError(f"document {doc_id!r} is not among the kept or dropped documents of source {source!r}")
    return {"output": output, "source": source, "dropped": want_dropped, "sampling": rule, "seed": seed,
            "documents": picked}


def render(result: dict, console=None) -> None:
    console = console or Console(width=None if Console().is_terminal else 140)
    what = ("not in the token arrays (removed by a rule, by sampling, or rejected as bad input)"
            if result["dropped"] else "in the token arrays")
    console.print(f"[bold]{escape(result['source'])}[/bold]: {len(result['documents'])} documents {what}")
    if not result["documents"]:
        console.print("[dim]none[/dim]")
    colour = {"written": "green", "sampled out": "yellow", "dropped": "red", "rejected": "magenta"}
    for c in result["documents"]:
        status = c["status"] + (f" x{c['copies']}" if c["status"] == "written" else "")
        grid = Table.grid(padding=(0, 1))
        grid.add_column(style="bold", no_wrap=True)
        grid.add_column()
        grid.add_row("status", f"[{colour[c['status']]}]{status}[/]")
        grid.add_row("decided by", escape("sampling" if c["decided_by"] == "sampling" else c["reason"]))
        grid.add_row("why", escape(c["explanation"]))
        for k, v in c["attributes"].items():
            grid.add_row("", f"[cyan]{escape(k)}[/cyan] = {escape(_spans_summary(v))}")
        text = "(input text unavailable)" if c["text"] is None else c["text"]
        grid.add_row("text", f"[dim]{escape(text)}[/dim]")
        where = f"{c['file']}:{c['line']}" if c.get("line") else c["file"]
        name = c["id"] if c["id"] is not None else "(bad input record)"
        console.print(Panel(grid, title=escape(f"{name}  ·  {where}"), title_align="left",
                            subtitle=escape(f"{c['chars']:,} chars" if c.get("chars") is not None else ""),
                            subtitle_align="right"))
