"""`dolma-prep stats OUTPUT`: documents and tokens per source, computed from the outputs.

Token and document counts come from the `.csv.gz` indexes, cross-checked against the array
file sizes and against the manifest; any disagreement is an error, not a warning.
"""
from __future__ import annotations

import csv
import gzip
import io as _io
import json
from collections import defaultdict

import numpy as np

from . import io
from .io import InputError


def load_manifest(output: str) -> dict:
    path = io.join(output, "manifest.json")
    if not io.exists(path):
        raise InputError(f"{path} not found: is {output} the output folder of a finished `dolma-prep run`?")
    return json.loads(io.read_text(path))


def scan_index(path: str) -> tuple[int, int, list[str]]:
    """Return (documents, tokens, errors) of one `.csv.gz` index."""
    errors, docs, expect = [], 0, 0
    with io.open_binary(path) as f:
        for line_no, row in enumerate(csv.reader(_io.TextIOWrapper(f, encoding="utf-8")), start=1):
            try:
                start, end = int(row[0]), int(row[1])
            except (ValueError, IndexError):
                errors.append(f"{path}:{line_no}: malformed index row {row!r}")
                continue
            if start != expect or end <= start:
                errors.append(f"{path}:{line_no}: span [{start}, {end}) does not follow the previous end {expect}")
            expect = end
            docs += 1
    return docs, expect, errors


def compute(output: str) -> dict:
    manifest = load_manifest(output)
    measured: dict[str, dict] = defaultdict(lambda: {"documents": 0, "tokens": 0, "files": 0, "bytes": 0})
    errors: list[str] = []
    for f in manifest["outputs"]["tokens"]:
        npy, idx = io.join(output, f["path"]), io.join(output, f["index"])
        if not io.exists(npy) or not io.exists(idx):
            errors.append(f"{f['path']}: listed in the manifest but missing on disk")
            continue
        docs, tokens, errs = scan_index(idx)
        errors.extend(errs)
        size = io.file_size(npy)
        itemsize = np.dtype(f["dtype"]).itemsize
        if size != tokens * itemsize:
            errors.append(f"{f['path']}: {size} bytes but its index covers {tokens} tokens x {itemsize} bytes")
        m = measured[f["source"]]
        m["documents"] += docs
        m["tokens"] += tokens
        m["files"] += 1
        m["bytes"] += size
    sources = {}
    for name, info in manifest["sources"].items():
        m = measured.get(name, {"documents": 0, "tokens": 0, "files": 0, "bytes": 0})
        for key in ("documents", "tokens"):
            if m[key] != info[key]:
                errors.append(f"source {name}: manifest says {info[key]} {key}, the indexes hold {m[key]}")
        sources[name] = {**m, "planned_tokens": info.get("planned_tokens"), "planned_share": info.get("planned_share"),
                         "shortfall_tokens": info.get("shortfall_tokens", 0.0), "stages": info.get("stages", {})}
    total = sum(s["tokens"] for s in sources.values())
    for s in sources.values():
        s["share"] = s["tokens"] / total if total else 0.0
    return {"output": output, "name": manifest.get("name"), "sources": sources, "total_tokens": total,
            "total_documents": sum(s["documents"] for s in sources.values()),
            "rejected": manifest.get("rejected", 0), "errors": errors}


def render(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if Console().is_terminal else 150)
    table = Table(title=f"{result['name']}: tokens per source ({result['output']})")
    for col in ("source", "read", "kept", "documents", "planned tokens", "tokens", "planned share", "share", "files"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, s in result["sources"].items():
        st = s.get("stages", {})
        planned = s.get("planned_tokens")
        short = " [red](short)" if s.get("shortfall_tokens") else ""
        table.add_row(name, f"{st.get('read', {}).get('documents', 0):,}", f"{st.get('selected', {}).get('documents', 0):,}",
                      f"{s['documents']:,}", "-" if planned is None else f"{planned:,.0f}", f"{s['tokens']:,}{short}",
                      "-" if s.get("planned_share") is None else f"{100 * s['planned_share']:.2f}%",
                      f"{100 * s['share']:.2f}%", str(s["files"]))
    table.add_row("[bold]total", "", "", f"[bold]{result['total_documents']:,}", "", f"[bold]{result['total_tokens']:,}",
                  "", "100.00%", "")
    console.print(table)
    if result["rejected"]:
        console.print(f"[yellow]{result['rejected']} bad records were rejected; see {result['output']}/rejects/")
    for e in result["errors"]:
        console.print(f"[red]error:[/red] {e}")
