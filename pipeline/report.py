"""`dolma-prep report OUTPUT --html report.html`: one self-contained HTML page about a run.

Everything is inline: charts are SVG drawn here (no chart library, no script, no font or
stylesheet fetched), so the file opens offline and can be mailed or attached to a PR. The
numbers are the ones `dolma-prep stats` computes and cross-checks (pipeline/stats.py, verify.py);
the attribute histograms come from pipeline/attrstats.py. The output depends only on the run:
no timestamps, no absolute paths beyond the output folder's name as given.

Charts: tokens per source (planned vs achieved); the funnel over all sources (documents, and
tokens where measured or estimated); what happened to each source's documents; histograms of
the main attributes, kept vs dropped documents stacked.
"""
from __future__ import annotations

import html
import math

from ..core import io
from ..core.io import InputError
from . import attrstats
from .outputs import load_manifest
from .stats import compute
from .stats_render import replaced_text, rule_errors, steps_rows

COLOURS = {"planned": "#9aa5b1", "achieved": "#2f6fdf", "written": "#2e9e5b", "sampled out": "#e0b400",
           "filtered": "#e06c2f", "deduplicated": "#8e44ad", "rejected": "#c0392b", "empty": "#7f8c8d",
           "kept": "#2f6fdf", "dropped": "#e06c2f", "estimate": "#b8c7e6", "measured": "#2f6fdf"}
FONT = "font-family:DejaVu Sans,Liberation Sans,Arial,Helvetica,sans-serif"


def esc(x) -> str:
    return html.escape(str(x), quote=True)


def human(v: float | None) -> str:
    if v is None:
        return "-"
    a = abs(v)
    for div, suf in ((1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "k")):
        if a >= div:
            return f"{v / div:.3g}{suf}"
    return f"{v:.4g}" if v != int(v) else f"{int(v)}"


def nice_ticks(top: float, n: int = 5) -> list[float]:
    if top <= 0:
        return [0.0]
    raw = top / n
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    return [i * step for i in range(int(math.floor(top / step)) + 1)]


class Svg:
    """A minimal SVG writer: absolute coordinates, explicit width/height and viewBox."""

    def __init__(self, width: int, height: int, title: str, cls: str):
        self.w, self.h, self.parts = width, height, []
        self.head = (f'<svg xmlns="http://www.w3.org/2000/svg" class="chart {esc(cls)}" width="{width}" '
                     f'height="{height}" viewBox="0 0 {width} {height}" role="img" aria-label="{esc(title)}" '
                     f'style="{FONT}">')
        self.parts.append(f"<title>{esc(title)}</title>")
        self.parts.append(f'<rect x="0" y="0" width="{width}" height="{height}" fill="#ffffff"/>')

    def rect(self, x, y, w, h, fill, cls="", title="", **data) -> None:
        attrs = "".join(f' data-{k.replace("_", "-")}="{esc(v)}"' for k, v in data.items())
        tip = f"<title>{esc(title)}</title>" if title else ""
        self.parts.append(f'<rect class="{esc(cls)}" x="{x:.2f}" y="{y:.2f}" width="{max(w, 0):.2f}" '
                          f'height="{max(h, 0):.2f}" fill="{fill}"{attrs}>{tip}</rect>')

    def line(self, x1, y1, x2, y2, stroke="#d0d4d9", width=1) -> None:
        self.parts.append(f'<line x1="{x1:.2f}" y1="{y1:.2f}" x2="{x2:.2f}" y2="{y2:.2f}" stroke="{stroke}" '
                          f'stroke-width="{width}"/>')

    def text(self, x, y, s, size=12, anchor="start", fill="#222", weight="normal", rotate=None) -> None:
        rot = f' transform="rotate({rotate} {x:.2f} {y:.2f})"' if rotate is not None else ""
        self.parts.append(f'<text x="{x:.2f}" y="{y:.2f}" font-size="{size}" text-anchor="{anchor}" fill="{fill}" '
                          f'font-weight="{weight}"{rot}>{esc(s)}</text>')

    def legend(self, x, y, items: list[tuple[str, str]]) -> None:
        for label, colour in items:
            self.rect(x, y - 10, 12, 12, colour, cls="legend")
            self.text(x + 16, y, label, 12)
            x += 24 + 7.2 * len(label)

    def render(self) -> str:
        return self.head + "".join(self.parts) + "</svg>"


def grouped_bars(title: str, categories: list[str], series: list[tuple[str, list[float], str]], cls: str,
                 width: int = 900, fmt=human) -> str:
    """Horizontal bars, one group per category, one bar per series, a shared linear axis."""
    label_w, right, top_pad = 170, 90, 56
    bar_h, gap = 13, 10
    group_h = bar_h * len(series) + gap
    height = top_pad + group_h * len(categories) + 30
    svg = Svg(width, height, title, cls)
    svg.text(10, 20, title, 15, weight="bold")
    svg.legend(label_w, 42, [(name, colour) for name, _, colour in series])
    top = max([v for _, vals, _ in series for v in vals if v is not None] + [0])
    ticks = nice_ticks(top)
    scale_max = max(ticks[-1], top) or 1
    plot_w = width - label_w - right
    y0 = top_pad
    for t in ticks:
        x = label_w + plot_w * t / scale_max
        svg.line(x, y0 - 4, x, height - 26)
        svg.text(x, height - 10, fmt(t), 11, anchor="middle", fill="#555")
    for i, cat in enumerate(categories):
        gy = y0 + i * group_h
        svg.text(label_w - 8, gy + bar_h * len(series) / 2 + 4, cat, 12, anchor="end")
        for j, (name, vals, colour) in enumerate(series):
            v = vals[i]
            if v is None:
                continue
            w = plot_w * v / scale_max
            y = gy + j * bar_h
            svg.rect(label_w, y, w, bar_h - 2, colour, cls="bar", title=f"{cat} {name}: {v:,.0f}",
                     series=name, category=cat, value=f"{v:.6g}")
            svg.text(label_w + w + 4, y + bar_h - 4, fmt(v), 10, fill="#333")
    return svg.render()


def stacked_shares(title: str, categories: list[str], parts: list[tuple[str, list[float], str]], cls: str,
                   width: int = 900) -> str:
    """One 100% bar per category split into parts (fractions of the category's total)."""
    label_w, right, top_pad, bar_h, gap = 170, 20, 64, 16, 8
    height = top_pad + (bar_h + gap) * len(categories) + 30
    svg = Svg(width, height, title, cls)
    svg.text(10, 20, title, 15, weight="bold")
    items = [(name, colour) for name, vals, colour in parts if any(vals)]
    for row in range(0, len(items), 5):
        svg.legend(label_w, 42 + 18 * (row // 5), items[row:row + 5])
    plot_w = width - label_w - right
    for t in (0, 0.25, 0.5, 0.75, 1.0):
        x = label_w + plot_w * t
        svg.line(x, top_pad - 4, x, height - 26)
        svg.text(x, height - 10, f"{t:.0%}", 11, anchor="middle", fill="#555")
    for i, cat in enumerate(categories):
        y = top_pad + i * (bar_h + gap)
        total = sum(vals[i] for _, vals, _ in parts)
        svg.text(label_w - 8, y + bar_h - 3, cat, 12, anchor="end")
        x = label_w
        for name, vals, colour in parts:
            v = vals[i]
            if not v or not total:
                continue
            w = plot_w * v / total
            svg.rect(x, y, w, bar_h, colour, cls="bar", title=f"{cat} {name}: {v:,} documents ({v / total:.1%})",
                     series=name, category=cat, value=v)
            x += w
    return svg.render()


def funnel_bars(title: str, stages: list[tuple[str, float | None, str, str]], cls: str, width: int = 900) -> str:
    """Bars centred on an axis, one per stage (label, value, colour, note), widths to scale."""
    label_w, top_pad, bar_h, gap = 200, 40, 24, 10
    height = top_pad + (bar_h + gap) * len(stages) + 10
    svg = Svg(width, height, title, cls)
    svg.text(10, 20, title, 15, weight="bold")
    top = max([v for _, v, _, _ in stages if v] + [1])
    plot_w = width - label_w - 180
    cx = label_w + plot_w / 2
    for i, (label, v, colour, note) in enumerate(stages):
        y = top_pad + i * (bar_h + gap)
        svg.text(label_w - 8, y + bar_h / 2 + 4, label, 12, anchor="end")
        if v is None:
            svg.text(cx, y + bar_h / 2 + 4, "not measured", 11, anchor="middle", fill="#777")
            continue
        w = max(plot_w * v / top, 1.0)
        svg.rect(cx - w / 2, y, w, bar_h, colour, cls="bar", title=f"{label}: {v:,.0f} {note}",
                 series=title, category=label, value=f"{v:.6g}")
        svg.text(label_w + plot_w + 8, y + bar_h / 2 + 4, f"{v:,.0f} {note}".strip(), 11, fill="#333")
    return svg.render()


def histogram_svg(title: str, summary: dict, cls: str, width: int = 900, height: int = 300) -> str:
    """Vertical bars over the summary's shared edges, kept and dropped documents stacked."""
    edges, log = summary["edges"], summary["log"]
    parts = [(st, summary["by_status"][st]["counts"], COLOURS.get(st, "#555"))
             for st in ("kept", "dropped") if st in summary["by_status"]]
    left, right, top_pad, bottom = 60, 44, 56, 56
    svg = Svg(width, height, title, cls)
    svg.text(10, 20, title, 15, weight="bold")
    svg.legend(left, 42, [(f"{st} documents", c) for st, _, c in parts])
    nb = len(edges) - 1
    if nb <= 0 or not parts:
        svg.text(width / 2, height / 2, "no values", 13, anchor="middle", fill="#777")
        return svg.render()
    totals = [sum(p[1][i] for p in parts) for i in range(nb)]
    ticks = nice_ticks(max(totals) or 1, 4)
    ymax = max(ticks[-1], max(totals)) or 1
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    y_base = top_pad + plot_h
    for t in ticks:
        y = y_base - plot_h * t / ymax
        svg.line(left, y, width - right, y)
        svg.text(left - 6, y + 4, human(t), 11, anchor="end", fill="#555")
    bw = plot_w / nb
    for i in range(nb):
        y = y_base
        for st, counts, colour in parts:
            c = counts[i]
            if not c:
                continue
            h = plot_h * c / ymax
            y -= h
            svg.rect(left + i * bw + 1, y, bw - 2, h, colour, cls="bar",
                     title=f"[{edges[i]:.4g}, {edges[i + 1]:.4g}): {c:,} {st}", series=st, category=i, value=c)
    step = max(1, nb // 6)
    for i in range(0, nb + 1, step):
        x = left + i * bw
        svg.line(x, y_base, x, y_base + 4, stroke="#555")
        svg.text(x, y_base + 18, attrstats.fmt_value(edges[i]), 11, anchor="middle", fill="#555")
    svg.line(left, y_base, width - right, y_base, stroke="#555")
    axis = f"{summary['mode_meaning']} ({'log scale' if log else 'linear scale'})"
    svg.text(left + plot_w / 2, height - 12, axis, 12, anchor="middle", fill="#333")
    return svg.render()


# ---------------------------------------------------------------------------------------------


def main_attributes(output: str, manifest: dict, limit: int = 6) -> dict[str, str]:
    """The tagger attributes worth a histogram: key -> mode. Dedup attribute folders are left out
    (the funnel shows what they removed). A key whose score is constant or mostly missing (e.g.
    PII spans) is shown as a span count instead."""
    dedup_folders = {v.get("attribute") for v in (manifest.get("dedup") or {}).values() if isinstance(v, dict)}
    keys = {k: f for k, f in attrstats.discover_keys(output, manifest).items() if f not in dedup_folders}
    chosen: dict[str, str] = {}
    by_folder: dict[str, list[str]] = {}
    for k, f in keys.items():
        by_folder.setdefault(f, []).append(k)
    for folder, ks in by_folder.items():
        df = attrstats.load_many(output, {k: "score" for k in ks}, manifest, folder=folder)
        for k in ks:
            col = df[k]
            useful = col.null_count() <= len(col) / 2 and col.drop_nulls().n_unique() > 1
            chosen[k] = "score" if useful else "count"
    # document-level scores first, then span counts; stable by name
    order = sorted(chosen, key=lambda k: (chosen[k] != "score", k))
    return {k: chosen[k] for k in order[:limit]}


def _table(headers: list[str], rows: list[list], cls: str = "") -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f'<table class="{esc(cls)}"><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>'


def _num(v, fmt="{:,}") -> str:
    return "-" if v is None else fmt.format(v)


def fates(s: dict) -> dict[str, int]:
    """Each read document's fate for one source (distinct documents)."""
    st = s.get("stages", {})
    sel = st.get("selected", {})
    samp, tok = st.get("sampled", {}), st.get("tokenized", {})
    uniq, empty = samp.get("documents_unique", 0), tok.get("empty_skipped", 0)
    return {"written": uniq, "sampled out": sel.get("documents", 0) - uniq - empty, "empty": empty,
            "filtered": st.get("filtered", {}).get("removed", 0),
            "deduplicated": st.get("deduplicated", {}).get("removed", 0),
            "rejected": st.get("read", {}).get("rejected", 0) + sel.get("rejected", 0)}


def build(output: str, attributes: list[str] | None = None, max_attributes: int = 6,
          bins: int = 30) -> tuple[str, dict]:
    """The report's HTML and the stats result it shows."""
    result = compute(output)
    manifest = load_manifest(output)
    names = list(result["sources"])
    S = result["sources"]
    charts = []
    # 1. tokens per source, planned vs achieved
    charts.append(("Tokens per source", grouped_bars(
        "Tokens per source: planned vs achieved", names,
        [("planned", [S[n]["planned_tokens"] for n in names], COLOURS["planned"]),
         ("achieved", [float(S[n]["tokens"]) for n in names], COLOURS["achieved"])], cls="tokens-per-source")))
    # 2. funnel over all sources
    tf = {r["stage"]: r for r in result["funnel"]}
    docs = [("input records", tf["read"]["documents_in"], COLOURS["planned"], ""),
            ("read (valid)", tf["read"]["documents_out"], COLOURS["achieved"], "")]
    docs.append(("after dedup", tf["deduplicated"]["documents_out"], COLOURS["achieved"], ""))
    docs.append(("after filters (kept)", tf["filtered"]["documents_out"], COLOURS["achieved"], ""))
    docs.append(("drawn by sampling", tf["sampled"].get("documents_unique"), COLOURS["achieved"], "distinct"))
    docs.append(("in token arrays", tf["tokenized"]["documents_out"], COLOURS["written"], "with repeats"))
    charts.append(("Funnel", funnel_bars("Documents through the stages (all sources)", docs, cls="funnel-documents")))
    toks = [("read", tf["read"].get("tokens_out"), COLOURS["estimate"], "(estimate)"),
            ("after filters (kept)", tf["filtered"].get("tokens_out"), COLOURS["measured"], "(measured)"),
            ("in token arrays", tf["tokenized"].get("tokens_out"), COLOURS["written"], "(measured)")]
    charts.append(("Funnel (tokens)", funnel_bars("Tokens through the stages (all sources)", toks,
                                                  cls="funnel-tokens")))
    # 3. fate of each source's documents
    f = {n: fates(S[n]) for n in names}
    kinds = ["written", "sampled out", "empty", "filtered", "deduplicated", "rejected"]
    charts.append(("Document fates", stacked_shares(
        "What happened to each source's documents", names,
        [(k, [f[n][k] for n in names], COLOURS[k]) for k in kinds], cls="fates")))
    # 4. attribute histograms
    attr_sections = []
    if attributes:
        known = attrstats.discover_keys(output, manifest)
        chosen = {}
        for k in attributes:
            key, _, mode = k.partition(":")
            if key not in known:
                raise InputError(f"attribute {key!r} is not in the run's attribute files; known: {', '.join(known)}")
            chosen[key] = mode or "score"
    else:
        chosen = main_attributes(output, manifest, max_attributes)
    for key, mode in chosen.items():
        summ = attrstats.attribute_summary(output, key, mode, bins=bins, manifest=manifest)
        svg = histogram_svg(f"{key}: {summ['mode_meaning']}", summ, cls="histogram")
        q = ["p1", "p5", "p25", "p50", "p75", "p95", "p99"]
        rows = [[n, d["documents"], d["missing"], attrstats.fmt_value(d["mean"])]
                + [attrstats.fmt_value(d["quantiles"].get(x)) for x in q] for n, d in summ["sources"].items()]
        rows += [[f"({st})", d["documents"], d["missing"], attrstats.fmt_value(d["mean"])]
                 + [attrstats.fmt_value(d["quantiles"].get(x)) for x in q] for st, d in summ["by_status"].items()]
        table = _table(["source", "documents", "missing", "mean", *q], rows, "quantiles")
        attr_sections.append((key, svg, table))
    return render_html(result, manifest, charts, attr_sections), result


CSS = """
body{font-family:DejaVu Sans,Liberation Sans,Arial,Helvetica,sans-serif;margin:24px auto;max-width:960px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:32px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 6px;text-align:right}
td:first-child,th:first-child{text-align:left}th{background:#f3f5f7}.ok{color:#2e7d32}.err{color:#c62828}
.note{color:#666;font-size:12px}svg.chart{display:block;margin:12px 0;border:1px solid #eee}
details{margin:6px 0}summary{cursor:pointer}
"""


def render_html(result: dict, manifest: dict, charts: list, attr_sections: list) -> str:
    S = result["sources"]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>dolma-prep report: {esc(result['name'])}</title>", f"<style>{CSS}</style></head><body>",
           f"<h1>dolma-prep run report: {esc(result['name'])}</h1>"]
    samp = result.get("sampling") or {}
    out.append(f'<p>output <code>{esc(result["output"])}</code> · config {esc(result.get("config_hash"))} · seed '
               f'{esc(result.get("seed"))} · sampling by {esc(samp.get("mode"))}, scale {esc(samp.get("scale"))}</p>')
    out.append(f"<p><b>{result['total_tokens']:,}</b> tokens in <b>{result['total_documents']:,}</b> documents "
               f"(planned {_num(result.get('planned_tokens'), '{:,.0f}')}); {result['rejected']:,} bad input records "
               f"rejected.</p>")
    if result["errors"]:
        out.append(f'<div class="err"><b>{len(result["errors"])} disagreements between the manifest and the '
                   f'outputs:</b><ul>' + "".join(f"<li>{esc(e)}</li>" for e in result["errors"]) + "</ul></div>")
    else:
        out.append('<p class="ok">Checked: the manifest agrees with the token indexes, array sizes, attribute files, '
                   'dropped/, rejects/ and the replayed sampling of every kept document.</p>')
    errs = rule_errors(result)
    if errs:
        out.append('<div class="err"><b>Filter rules that raised</b> (each such document counted as no match):<ul>'
                   + "".join(f"<li>{esc(rule)}: {n:,} documents of {esc(name)}</li>" for name, rule, n in errs)
                   + "</ul></div>")
    for title, svg in charts:
        out.append(f"<h2>{esc(title)}</h2>{svg}")
        if title == "Tokens per source":
            rows = [[n, _num(s["planned_tokens"], "{:,.0f}"), f"{s['tokens']:,}",
                     _num(s.get("achieved_vs_planned"), "{:.3f}"), _num(s.get("planned_share"), "{:.2%}"),
                     f"{s['share']:.2%}", _num(s.get("repetition"), "{:.3f}x"), f"{s['documents']:,}"]
                    for n, s in S.items()]
            out.append(_table(["source", "planned tokens", "tokens", "achieved/plan", "planned share", "share",
                               "repetition", "documents"], rows, "sources"))
            out.append('<p class="note">repetition = tokens written / tokens of the kept documents (passes over the '
                       'source after filtering; above 1 means upsampled).</p>')
        if title == "Funnel (tokens)":
            out.append('<p class="note">Tokens are measured on the kept documents and in the token arrays; before '
                       'selection only characters are measured, so the "read" bar is an estimate: read characters x '
                       'each source\'s measured tokens per character of its kept documents.</p>')
    if result.get("steps"):
        header, rows = steps_rows(result["steps"])
        out.append("<h2>Steps of this run</h2>" + _table(header, rows, "steps"))
    out.append("<h2>Funnel per source</h2>")
    for n, s in S.items():
        rows = []
        for r in s["funnel"]:
            tokens = r.get("tokens_out")
            shown = "-" if tokens is None else (f"~{tokens:,} (estimate)" if r["tokens_estimated"] else f"{tokens:,}")
            rows.append([r["stage"], _num(r.get("documents_in")), _num(r.get("removed")), _num(r.get("documents_out")),
                         _num(r.get("chars_out")),
                         shown,
                         "; ".join([f"{k}: {v:,}" for k, v in r["removed_by"].items()]
                                   + ([replaced_text(r)] if r.get("chars_replaced") else []))])
        out.append(f"<details><summary>{esc(n)}: {s['stages'].get('read', {}).get('documents', 0):,} read, "
                   f"{s['documents']:,} in the arrays</summary>"
                   + _table(["stage", "docs in", "removed", "docs out", "chars out", "tokens out", "removed by"], rows,
                            "funnel") + "</details>")
    if attr_sections:
        out.append("<h2>Attributes</h2>")
        out.append('<p class="note">Values per document from the attribute files (first span\'s score, or the number '
                   'of spans for keys without a per-document score); bins shared by all sources.</p>')
        for key, svg, table in attr_sections:
            out.append(f"<h3>{esc(key)}</h3>{svg}{table}")
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write(output: str, html_path: str, **kwargs) -> dict:
    page, result = build(output, **kwargs)
    io.write_text_atomic(html_path, page)
    return result
