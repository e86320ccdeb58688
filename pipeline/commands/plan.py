"""`dolma-prep plan`: the tokens each source contributes, from the mix file alone (or measured, or billed)."""
from __future__ import annotations

import argparse
import json

from ...core.io import InputError
from .common import EXIT_OK, workers

NAME = "plan"
HELP = "tokens each source contributes, computed from the mix file alone"


def add_parser(subparsers: argparse._SubParsersAction) -> argparse.ArgumentParser:
    p = subparsers.add_parser(NAME, help=HELP,
                              description="Compute, before any data is read, the tokens each source contributes: "
                                          "tokens_available x proportion (or the source's token target), scaled to "
                                          "the mix's total_tokens budget when it has one.")
    p.add_argument("mix", help="the mix file (YAML)")
    p.add_argument("--json", action="store_true", help='print {"sources": {NAME: {"planned_tokens", "share"}}, "total_tokens"}')
    p.add_argument("--measure", action="store_true",
                   help="count each source's tokens in the data (on Ray) instead of using tokens_available")
    p.add_argument("--data-root", help="with --measure: where the sources' globs point")
    p.add_argument("--workers", "-w", type=workers, help="with --measure: local Ray workers")
    p.add_argument("--cost", action="store_true",
                   help="the bill at full scale: CPU-hours per stage and source, bytes read and written, dedup "
                        "scratch, GPU-hours to train (model and inputs: docs/COST.md)")
    p.add_argument("--rates", help="with --cost: per-core rates (default: benchmarks/rates.json)")
    p.add_argument("--deadline", help="with --cost: wall time to finish in (7d, 36h, 90m): cores, nodes and GPUs needed")
    p.set_defaults(fn=main)
    return p


def main(args: argparse.Namespace) -> int:
    from ..mixfile import load_mix
    from ..plan import plan

    mix = load_mix(args.mix, data_root=getattr(args, "data_root", None))
    if args.measure:
        from ..plan import measure

        for name, n in measure(mix, args.workers).items():
            next(s for s in mix.sources if s.name == name).tokens_available = float(n)
    if args.cost or args.deadline:
        from ..cost import estimate, load_rates, parse_duration, render

        hours = parse_duration(args.deadline) if args.deadline else None
        try:
            bill = estimate(mix, load_rates(args.rates), hours)
        except ValueError as e:
            raise InputError(f"{args.mix}: {e}") from None
        if args.json:
            print(json.dumps(bill, indent=1))
        else:
            render(bill)
        return EXIT_OK
    try:
        result = plan(mix)
    except ValueError as e:
        raise InputError(f"{args.mix}: {e}") from None
    if args.json:
        print(json.dumps(result, indent=1))
        return EXIT_OK
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{mix.name}: planned tokens per source (from the mix file, before reading data)")
    for col in ("source", "available (B)", "proportion", "planned (B)", "share"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, r in result["sources"].items():
        fmt = lambda v, f: "-" if v is None else f.format(v)  # noqa: E731
        table.add_row(name, fmt(r["tokens_available"] and r["tokens_available"] / 1e9, "{:,.3f}"),
                      fmt(r["proportion"], "{:.4f}"), fmt(r["planned_tokens"] and r["planned_tokens"] / 1e9, "{:,.2f}"),
                      fmt(r["share"] and 100 * r["share"], "{:.2f}%"))
    table.add_row("[bold]total", "", "", f"[bold]{result['total_tokens'] / 1e9:,.2f}", "100.00%")
    Console().print(table)
    return EXIT_OK
