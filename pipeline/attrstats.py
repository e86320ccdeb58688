"""Attribute distributions of a finished run: `dolma-prep stats OUTPUT --attribute KEY`.

Reads the Dolma attribute files under OUTPUT/attributes/*/ (one JSON line per input record,
`{"id", "attributes": {KEY: [[start, end, score], ...]}}`) with polars, parsing only the
requested key, and reduces each document's spans to one number:

* `score`    the first span's score (the usual document-level tagger output), missing when
             the document has no span for the key;
* `count`    the number of spans (0 when the key is absent: dolma writes no key without spans);
* `coverage` the characters covered by the spans (sum of end - start; overlaps count twice).

Each document is marked `kept` or `dropped` (from OUTPUT/dropped/) so a distribution can be
compared before and after filtering. Lines of bad input records (id null) are left out.
"""
from __future__ import annotations

import io as _io
import json
import math

import polars as pl
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..core import io
from ..core.io import InputError
from .outputs import attribute_folders, load_manifest, read_bytes, read_jsonl_objects, shards_of

MODES = {"score": "first span's score", "count": "number of spans", "coverage": "characters covered by spans"}
QUANTILES = (0.01, 0.05, 0.25, 0.5, 0.75, 0.95, 0.99)
SPANS = pl.List(pl.List(pl.Float64))


def discover_keys(output: str, manifest: dict | None = None, max_lines: int = 1000) -> dict[str, str]:
    """Attribute key -> folder, from the first `max_lines` lines of every attribute file."""
    manifest = manifest or load_manifest(output)
    keys: dict[str, str] = {}
    for folder in attribute_folders(output):
        for sh in shards_of(manifest):
            path = io.join(output, "attributes", folder, sh["rel"])
            if not io.exists(path):
                continue
            for n, line in enumerate(read_bytes(path).splitlines()):
                if n >= max_lines:
                    break
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError:
                    continue
                for k in (obj.get("attributes") or {}) if isinstance(obj, dict) else {}:
                    keys.setdefault(k, folder)
    return dict(sorted(keys.items()))


def _value_for(column: str, mode: str) -> pl.Expr:
    return _value_expr(mode, pl.col(column))


def _value_expr(mode: str, spans: pl.Expr | None = None) -> pl.Expr:
    spans = pl.col("spans") if spans is None else spans
    if mode == "score":
        return spans.list.first().list.get(2, null_on_oob=True)
    if mode == "count":
        return spans.list.len().fill_null(0).cast(pl.Float64)
    if mode == "coverage":
        length = pl.element().list.get(1, null_on_oob=True) - pl.element().list.get(0, null_on_oob=True)
        return spans.list.eval(length).list.sum().fill_null(0.0) + 0.0
    raise InputError(f"unknown value mode {mode!r}; choose one of {', '.join(MODES)}")


def _read_spans(path: str, keys: list[str]) -> pl.DataFrame:
    """id and the raw spans of `keys` (columns named after the keys), parsing nothing else."""
    raw = read_bytes(path)
    if not raw.strip():
        return pl.DataFrame(schema={"id": pl.String, **{k: SPANS for k in keys}})
    schema = {"id": pl.String, "attributes": pl.Struct({k: SPANS for k in keys})}
    try:
        df = pl.read_ndjson(_io.BytesIO(raw), schema=schema)
    except Exception as e:  # noqa: BLE001 (polars raises several types for bad JSON or unexpected shapes)
        raise InputError(f"{path}: cannot read attribute(s) {', '.join(keys)} as spans [[start, end, score], ...]: "
                         f"{e}") from None
    return df.select(pl.col("id"), *[pl.col("attributes").struct.field(k).alias(k) for k in keys])


def load_many(output: str, keys: dict[str, str], manifest: dict | None = None, folder: str | None = None,
              sources: list[str] | None = None) -> pl.DataFrame:
    """One row per document: source, rel, line (1-based, = the input line), id, status, reason and one
    value column per key (`keys` maps key -> mode). All keys must live in the same folder; each
    attribute file is read once."""
    manifest = manifest or load_manifest(output)
    for mode in keys.values():
        _value_expr(mode)
    if folder is None:
        known = discover_keys(output, manifest)
        missing = [k for k in keys if k not in known]
        if missing:
            raise InputError(f"attribute {missing[0]!r} is not in any attribute file under {output}/attributes/; "
                             f"known keys: {', '.join(known) or 'none'}")
        folders = {known[k] for k in keys}
        if len(folders) > 1:
            raise InputError(f"attributes {', '.join(keys)} live in different folders ({', '.join(sorted(folders))})")
        folder = folders.pop()
    names = list(keys)
    frames = []
    for sh in shards_of(manifest):
        if sources and sh["source"] not in sources:
            continue
        path = io.join(output, "attributes", folder, sh["rel"])
        if not io.exists(path):
            raise InputError(f"{path}: missing (the run's attribute folder {folder!r} has no file for {sh['rel']})")
        df = _read_spans(path, names).with_row_index("line", offset=1)
        dpath = io.join(output, "dropped", sh["rel"])
        dropped = read_jsonl_objects(dpath) if io.exists(dpath) else []
        drop = pl.DataFrame({"id": [str(d.get("id")) for d in dropped],
                             "reason": [str(d.get("reason")) for d in dropped]},
                            schema={"id": pl.String, "reason": pl.String}).unique("id", keep="first")
        df = (df.filter(pl.col("id").is_not_null())
                .join(drop, on="id", how="left")
                .with_columns(*[_value_for(k, mode).alias(k) for k, mode in keys.items()],
                              source=pl.lit(sh["source"]), rel=pl.lit(sh["rel"]),
                              status=pl.when(pl.col("reason").is_null()).then(pl.lit("kept"))
                                       .otherwise(pl.lit("dropped")))
                .select("source", "rel", pl.col("line").cast(pl.Int64), "id", "status", "reason",
                        *[pl.col(k).cast(pl.Float64) for k in names]))
        frames.append(df)
    if not frames:
        return pl.DataFrame(schema={"source": pl.String, "rel": pl.String, "line": pl.Int64, "id": pl.String,
                                    "status": pl.String, "reason": pl.String, **{k: pl.Float64 for k in names}})
    return pl.concat(frames)


def load_values(output: str, key: str, mode: str = "score", manifest: dict | None = None,
                folder: str | None = None, sources: list[str] | None = None) -> pl.DataFrame:
    """One row per document: source, rel, line, id, status, reason, value (of `key` in `mode`)."""
    return load_many(output, {key: mode}, manifest, folder, sources).rename({key: "value"})


def bin_edges(values: pl.Series, bins: int, log: bool | None) -> tuple[list[float], bool]:
    """Shared bin edges (linear, or logarithmic for positive heavy-tailed values when `log` is None)."""
    v = values.drop_nulls().drop_nans()
    if v.len() == 0:
        return [], False
    lo, hi = float(v.min()), float(v.max())
    if log is None:
        log = lo > 0 and hi / lo >= 100
    if log:
        pos = v.filter(v > 0)
        if pos.len() == 0:
            log = False
        else:
            lo = float(pos.min())
    if hi == lo:
        return [lo, hi], log
    if log:
        a, b = math.log10(lo), math.log10(hi)
        return [lo] + [10 ** (a + (b - a) * i / bins) for i in range(1, bins)] + [hi], True
    return [lo + (hi - lo) * i / bins for i in range(bins)] + [hi], False


def histogram(values: pl.Series, edges: list[float], log: bool) -> dict:
    """Counts per bin (the last bin includes its upper edge); values below the first edge
    (zeros or negatives on a log axis) are counted in `below`."""
    v = values.drop_nulls().drop_nans()
    nb = max(len(edges) - 1, 0)
    if nb == 0 or v.len() == 0:
        return {"counts": [0] * nb, "below": 0}
    lo, hi = edges[0], edges[-1]
    df = pl.DataFrame({"v": v})
    below = int(df.filter(pl.col("v") < lo).height)
    df = df.filter(pl.col("v") >= lo)
    if hi == lo:
        return {"counts": [int(df.height)], "below": below}
    f = (pl.col("v").log10() - math.log10(lo)) / (math.log10(hi) - math.log10(lo)) if log \
        else (pl.col("v") - lo) / (hi - lo)
    b = (f * nb).floor().clip(0, nb - 1).cast(pl.Int64).alias("bin")
    counts = df.select(b).group_by("bin").len()
    out = [0] * nb
    for i, n in counts.iter_rows():
        out[i] = int(n)
    return {"counts": out, "below": below}


def describe(values: pl.Series) -> dict:
    v = values.drop_nulls().drop_nans()
    out = {"documents": int(values.len()), "missing": int(values.len() - v.len())}
    if v.len() == 0:
        return {**out, "mean": None, "min": None, "max": None, "quantiles": {}}
    return {**out, "mean": float(v.mean()), "min": float(v.min()), "max": float(v.max()),
            "quantiles": {f"p{round(q * 100)}": float(v.quantile(q, interpolation="linear")) for q in QUANTILES}}


def summarize(df: pl.DataFrame, key: str, mode: str, bins: int = 20, log: bool | None = None,
              status: str = "all") -> dict:
    """Quantiles and a histogram (shared edges) per source and over all sources."""
    if status != "all":
        df = df.filter(pl.col("status") == status)
    edges, is_log = bin_edges(df["value"], bins, log)
    groups = {}
    for (name,), part in df.group_by("source", maintain_order=True):
        groups[name] = {**describe(part["value"]), **histogram(part["value"], edges, is_log)}
    overall = {**describe(df["value"]), **histogram(df["value"], edges, is_log)}
    by_status = {st: {**describe(part["value"]), **histogram(part["value"], edges, is_log)}
                 for (st,), part in df.group_by("status", maintain_order=True)}
    return {"key": key, "mode": mode, "mode_meaning": MODES[mode], "status": status, "edges": edges, "log": is_log,
            "sources": groups, "overall": overall, "by_status": dict(sorted(by_status.items()))}


def attribute_summary(output: str, key: str, mode: str = "score", bins: int = 20, log: bool | None = None,
                      status: str = "all", sources: list[str] | None = None, manifest: dict | None = None) -> dict:
    manifest = manifest or load_manifest(output)
    df = load_values(output, key, mode, manifest, sources=sources)
    if sources:
        unknown = sorted(set(sources) - set(manifest["sources"]))
        if unknown:
            raise InputError(f"unknown source(s) {', '.join(unknown)}; the run has {', '.join(manifest['sources'])}")
    return summarize(df, key, mode, bins, log, status)


# ---------------------------------------------------------------------------------------------
# text rendering


def fmt_value(v: float | None) -> str:
    if v is None:
        return "-"
    if v == int(v) and abs(v) < 1e15:
        return f"{int(v):,}"
    if abs(v) >= 1000:
        return f"{v:,.0f}"
    return f"{v:.4g}"


def text_histogram(edges: list[float], counts: list[int], width: int = 40, below: int = 0) -> list[str]:
    if not counts:
        return ["(no values)"]
    top = max(max(counts), below, 1)
    labels = [f"[{fmt_value(edges[i])}, {fmt_value(edges[i + 1])}{']' if i == len(counts) - 1 else ')'}"
              for i in range(len(counts))]
    w = max(len(x) for x in labels)
    # shared edges keep groups comparable; empty bins at either end are not printed
    nz = [i for i, n in enumerate(counts) if n]
    first, last = (nz[0], nz[-1]) if nz else (0, -1)
    lines = []
    if below:
        lines.append(f"{'< ' + fmt_value(edges[0]):>{w}} {below:>7,} {'█' * max(1, round(width * below / top))}")
    for label, n in list(zip(labels, counts))[first:last + 1]:
        bar = "█" * round(width * n / top) if n else ""
        if n and not bar:
            bar = "▏"
        lines.append(f"{label:>{w}} {n:>7,} {bar}")
    return lines


def render(summary: dict, console=None, histograms: bool = True) -> None:
    console = console or Console(width=None if Console().is_terminal else 160)
    scope = "" if summary["status"] == "all" else f", {summary['status']} documents only"
    t = Table(title=escape(f"{summary['key']}: {summary['mode_meaning']} per document{scope}"))
    cols = ["source", "documents", "missing", "mean", "min"] + [f"p{round(q * 100)}" for q in QUANTILES] + ["max"]
    for c in cols:
        t.add_column(c, justify="left" if c == "source" else "right")

    def row(name: str, d: dict, style: str = "") -> None:
        q = d.get("quantiles", {})
        t.add_row(f"{style}{escape(name)}", f"{d['documents']:,}", f"{d['missing']:,}", fmt_value(d["mean"]),
                  fmt_value(d["min"]), *[fmt_value(q.get(f"p{round(x * 100)}")) for x in QUANTILES], fmt_value(d["max"]))

    for name, d in summary["sources"].items():
        row(name, d)
    for st, d in summary.get("by_status", {}).items():
        if summary["status"] == "all":
            row(f"({st})", d, "[dim]")
    several = len(summary["sources"]) > 1
    if several:
        row("all sources", summary["overall"], "[bold]")
    console.print(t)
    if not histograms:
        return
    axis = "log-spaced bins" if summary["log"] else "linear bins"
    groups = list(summary["sources"].items()) + ([("all sources", summary["overall"])] if several else [])
    for name, d in groups:
        console.print(f"[bold]{escape(name)}[/bold] ({axis}, {d['documents'] - d['missing']:,} values)")
        for line in text_histogram(summary["edges"], d["counts"], below=d.get("below", 0)):
            console.print(escape(line), highlight=False)
