"""Console tables of `dolma-prep stats` (and the run's summary): the per-source table (planned vs
achieved), the steps of the run, and one funnel table per source and over all sources, from
the result dict `stats.compute` returns. `replaced_text`, `rule_errors` and `steps_rows` are
shared with the HTML report.
"""
from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.table import Table


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
