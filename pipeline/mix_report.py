"""The HTML report of `dolma-prep mix-search`: one self-contained page, inline SVG (report.py's
Svg helpers), no script, nothing fetched.

Charts: predicted (out-of-fold) vs measured objective per proxy; the objective of every
candidate, base and best marked; base vs proposed shares; per-source sensitivity of the
regression at the proposal; and the verification runs (fresh seeds) with their spread.
"""
from __future__ import annotations

from ..core import io
from .report import CSS, Svg, _table, esc, grouped_bars, nice_ticks

BLUE, GREY, ORANGE, GREEN, RED = "#2f6fdf", "#9aa5b1", "#e06c2f", "#2e9e5b", "#c0392b"


def _axis_range(values: list[float]) -> tuple[float, float]:
    lo, hi = min(values), max(values)
    pad = (hi - lo) * 0.08 or abs(hi) * 0.01 or 1.0
    return lo - pad, hi + pad


def scatter(title: str, points: list[tuple[float, float, str, str]], xlabel: str, ylabel: str, cls: str,
            width: int = 560, height: int = 460) -> str:
    """Points (x, y, colour, label) with the y = x diagonal."""
    left, right, top, bottom = 70, 20, 40, 50
    svg = Svg(width, height, title, cls)
    svg.text(10, 20, title, 15, weight="bold")
    lo, hi = _axis_range([p[0] for p in points] + [p[1] for p in points])
    pw, ph = width - left - right, height - top - bottom
    X = lambda v: left + pw * (v - lo) / (hi - lo)  # noqa: E731
    Y = lambda v: top + ph * (1 - (v - lo) / (hi - lo))  # noqa: E731
    for k in range(6):
        v = lo + (hi - lo) * k / 5
        svg.line(X(v), top, X(v), top + ph)
        svg.line(left, Y(v), left + pw, Y(v))
        svg.text(X(v), height - bottom + 16, f"{v:.3f}", 10, anchor="middle", fill="#555")
        svg.text(left - 6, Y(v) + 4, f"{v:.3f}", 10, anchor="end", fill="#555")
    svg.line(X(lo), Y(lo), X(hi), Y(hi), stroke="#888", width=1)
    svg.text(left + pw / 2, height - 12, xlabel, 12, anchor="middle")
    svg.text(16, top + ph / 2, ylabel, 12, anchor="middle", rotate=-90)
    for x, y, colour, label in points:
        svg.parts.append(f'<circle class="point" cx="{X(x):.2f}" cy="{Y(y):.2f}" r="5" fill="{colour}" '
                         f'data-x="{x:.6g}" data-y="{y:.6g}"><title>{esc(label)}: predicted {x:.4f}, '
                         f'measured {y:.4f}</title></circle>')
    return svg.render()


def signed_bars(title: str, categories: list[str], values: list[float], cls: str, width: int = 900) -> str:
    """Horizontal bars from a zero line: negative (helps) to the left in green, positive in red."""
    label_w, right, top_pad, bar_h, gap = 170, 70, 40, 14, 6
    height = top_pad + (bar_h + gap) * len(categories) + 30
    svg = Svg(width, height, title, cls)
    svg.text(10, 20, title, 15, weight="bold")
    m = max([abs(v) for v in values] + [1e-12])
    plot_w = width - label_w - right
    zero = label_w + plot_w / 2
    svg.line(zero, top_pad - 4, zero, height - 24, stroke="#555")
    for i, (cat, v) in enumerate(zip(categories, values)):
        y = top_pad + i * (bar_h + gap)
        w = plot_w / 2 * abs(v) / m
        svg.text(label_w - 8, y + bar_h - 3, cat, 12, anchor="end")
        svg.rect(zero - w if v < 0 else zero, y, w, bar_h, GREEN if v < 0 else RED, cls="bar",
                 title=f"{cat}: {v:+.5f}", category=cat, value=f"{v:.6g}")
        svg.text(zero + (w + 4 if v >= 0 else -w - 4), y + bar_h - 3, f"{v:+.4f}", 10,
                 anchor="start" if v >= 0 else "end", fill="#333")
    return svg.render()


def objective_bars(title: str, labels: list[str], values: list[float], colours: list[str], cls: str,
                   width: int = 900) -> str:
    """One horizontal bar per candidate, sorted by objective, over a range zoomed to the values."""
    label_w, right, top_pad, bar_h, gap = 170, 70, 40, 12, 4
    height = top_pad + (bar_h + gap) * len(labels) + 30
    svg = Svg(width, height, title, cls)
    svg.text(10, 20, title, 15, weight="bold")
    lo, hi = min(values), max(values)
    start = lo - (hi - lo) * 0.5 - 1e-9
    plot_w = width - label_w - right
    ticks = [start + t for t in nice_ticks(hi - start)]
    for t in ticks:
        x = label_w + plot_w * (t - start) / (hi - start)
        svg.line(x, top_pad - 4, x, height - 24)
        svg.text(x, height - 8, f"{t:.3f}", 10, anchor="middle", fill="#555")
    for i, (lab, v, colour) in enumerate(zip(labels, values, colours)):
        y = top_pad + i * (bar_h + gap)
        w = plot_w * (v - start) / (hi - start)
        svg.text(label_w - 8, y + bar_h - 2, lab, 11, anchor="end")
        svg.rect(label_w, y, w, bar_h, colour, cls="bar", title=f"{lab}: {v:.5f}", category=lab, value=f"{v:.6g}")
        svg.text(label_w + w + 4, y + bar_h - 2, f"{v:.4f}", 10, fill="#333")
    return svg.render()


def render(s: dict) -> str:
    names, reg, prop, opts = s["sources"], s["regression"], s["proposal"], s["options"]
    proxies = s["proxies"]
    out = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
           f"<title>dolma-prep mix search: {esc(s['mix'])}</title>", f"<style>{CSS}</style></head><body>",
           f"<h1>Mix search: {esc(s['mix'])}</h1>",
           f"<p>pool <code>{esc(s['pool'])}</code> · {len(proxies)} proxies of {opts['tokens_per_proxy']:,} tokens "
           f"(config {esc(opts['proxy_config'])} {esc(' '.join(opts['proxy_set']))}, {s['prep']['proxy_rows']:,} "
           f"vocabulary rows; {s['prep']['bucketed_share']:.2%} of training tokens bucketed) · seed {opts['seed']} · "
           f"base shares {esc(s['base_from'])}</p>",
           f"<p>objective <b>{esc(opts['objective'])}</b> ({esc(opts['metric'])}, lower is better) = "
           + esc(", ".join(f"{w:.3g} x {k}" for k, w in s["objective_weights"].items())) + "</p>"]
    v = s["verdict"]
    rows = [["out-of-fold Spearman (predicted vs measured)", f"{reg['spearman_oof']:.3f}"],
            ["out-of-fold mean absolute error", f"{reg['mae_oof']:.4f}"],
            ["predicted: proposed / base", f"{prop['predicted']:.4f} / {prop['base_predicted']:.4f}"],
            ["best proxy (measured, its own seed)", f"{prop['best_proxy_objective']:.4f} ({esc(prop['best_proxy'])})"]]
    for kind, r in v.items():
        rows.append([f"verified {kind} (fresh seeds)",
                     f"{r['mean']:.4f}" + (f" ± {r['std']:.4f}" if r["std"] is not None else "") + f" (n={r['n']})"])
    rows.append(["proposed mix file", s["mix_file"]])
    rows.append(["wall time", f"{s.get('wall_s', 0):.0f} s"])
    out.append(_table(["", "value"], rows, "summary"))
    points = [(p["predicted_oof"], p["objective"], ORANGE if i == 0 else BLUE, p["key"]) for i, p in enumerate(proxies)]
    out.append("<h2>Predicted vs measured on held-out proxies</h2>")
    out.append(scatter("Objective: out-of-fold prediction vs measured", points, "predicted (regression without this proxy)",
                       "measured", "oof"))
    out.append(f'<p class="note">Each proxy is predicted by a {esc(reg["kind"])} regression fitted on the other '
               f'{reg["folds"] - 1} of {reg["folds"]} folds. Orange: the base mix.</p>')
    order = sorted(range(len(proxies)), key=lambda i: proxies[i]["objective"])
    best = prop["best_proxy"]
    colours = [ORANGE if i == 0 else GREEN if proxies[i]["key"] == best else BLUE for i in order]
    out.append("<h2>Objective per candidate</h2>")
    out.append(objective_bars("Measured objective per proxy (orange: base, green: best)",
                              [proxies[i]["key"].split("-")[0] for i in order],
                              [proxies[i]["objective"] for i in order], colours, "candidates"))
    out.append("<h2>Proposed vs base shares</h2>")
    out.append(grouped_bars("Share of tokens per source", names,
                            [("base", [100 * x for x in s["base_shares"]], GREY),
                             ("proposed", [100 * x for x in prop["shares"]], BLUE)], "shares",
                            fmt=lambda v: f"{v:.1f}%"))
    out.append("<h2>Per-source sensitivity</h2>")
    out.append(signed_bars("Predicted change of the objective when 5% of the mix moves to the source",
                           names, prop["sensitivity"], "sensitivity"))
    out.append('<p class="note">At the proposed mixture, from the regression fitted on all proxies; green: more '
               'of this source is predicted to lower (improve) the objective.</p>')
    streams = sorted(proxies[0]["metrics"])
    header = ["proxy", "objective", "predicted (oof)"] + [f"{n} share" for n in names] + \
        [f"{k} {opts['metric']}" for k in streams]
    table_rows = [[p["key"], f"{p['objective']:.4f}", f"{p['predicted_oof']:.4f}"]
                  + [f"{x:.3f}" for x in p["shares"]] + [f"{p['metrics'][k][opts['metric']]:.4f}" for k in streams]
                  for p in proxies]
    out.append("<h2>Every proxy</h2>" + _table(header, table_rows, "proxies"))
    if s["verify"]:
        vrows = [[kind, r["key"], f"{r['objective']:.4f}"] for kind, runs in s["verify"].items() for r in runs]
        out.append("<h2>Verification (fresh seeds)</h2>" + _table(["mixture", "run", "objective"], vrows, "verify"))
    out.append("</body></html>")
    return "\n".join(out) + "\n"


def write_report(summary: dict, html_path: str) -> None:
    io.write_text_atomic(html_path, render(summary))
