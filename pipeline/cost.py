"""The bill for preparing a mix at full scale: CPU-hours per stage and source, bytes read and
written, dedup scratch space, GPU-hours to train on the result, and the cluster size that
finishes within a deadline. Computed from the mix file (its sources' declared sizes) and a rates
file (`benchmarks/rates.json`: per-core rates measured by `benchmarks/`, each with its source).

The model, per source s with declared size T_s tokens (tokens_available) and planned output P_s:
    input text bytes  B_s = T_s x bytes_per_token;  gzip bytes G_s = B_s x gzip_ratio
    documents         D_s = T_s / tokens_per_document(s)
    tag               sum over the mix's taggers of B_s / rate(tagger)
    dedup             for each configured kind, B_s / rate(kind)   (every kind reads every source)
    select            B_s / rate(select)
    count             min(P_s, T_s) / tokenize rate, only in token-target mode: the run's one
                      tokenization (the count step encodes the kept documents and stores the ids)
    tokenize          P_s / tokenize rate (tokens per CPU-second); in token-target mode 0: the
                      tokenize step samples and writes the count step's stored ids without
                      encoding again (its read/write cost is not modelled)
CPU-seconds are summed and divided by 3600. Bytes read: each stage that reads documents reads G_s
(tag, each dedup kind, select), the stage that tokenizes reads the kept documents (min(P_s, T_s)
tokens' worth of gzip), and in token-target mode the tokenize step reads the stored ids
(min(P_s, T_s) x token_bytes_per_token). Bytes written: one attribute file set per tagger
experiment and dedup kind (D_s x attribute_bytes_per_document), kept documents (min(P_s, T_s)
tokens as gzip text), the stored ids in token-target mode (min(P_s, T_s) x token_bytes_per_token,
removed when the tokenize step has written the arrays), token arrays (P_s x 2 bytes) and their
indexes. Scratch, per dedup kind from the rates file's `scratch` section: `<kind>_bytes_per_token`
x T_s and `<kind>_bytes_per_document` x D_s (paragraphs 10 B per input token, minhash 252 B per
document, exact 16 B per document). A dedup kind without a rate in the `dedup` section is left
out of the bill and named among the assumptions. Cores for a deadline: total CPU-hours / deadline
hours (full utilisation, no stage waiting on another); nodes = cores / cores_per_node, rounded up.
Training: P_total / (tokens per GPU-second) / 3600 GPU-hours.

What it leaves out: Ray start-up and scheduling, stragglers, the serial parts of the global dedup
steps, network and object-store throughput, and the loss of documents to filters before the
later stages (every stage is charged the source's full size, an upper bound).
"""
from __future__ import annotations

import json
import math
import os
import re

from ..core.io import InputError
from .mixfile import MixFile
from .plan import plan, uses_targets

DEFAULT_RATES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "benchmarks", "rates.json")


def parse_duration(text: str) -> float:
    """'7d', '36h', '90m', '1.5d' -> hours."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([dhm])\s*", text or "")
    if not m:
        raise InputError(f"--deadline {text!r}: expected a number followed by d, h or m (e.g. 7d, 36h)")
    value, unit = float(m.group(1)), m.group(2)
    if value <= 0:
        raise InputError(f"--deadline {text!r}: must be positive")
    return value * {"d": 24.0, "h": 1.0, "m": 1 / 60}[unit]


def load_rates(path: str | None) -> dict:
    path = path or DEFAULT_RATES
    try:
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    except FileNotFoundError:
        raise InputError(f"{path}: rates file not found") from None
    except json.JSONDecodeError as e:
        raise InputError(f"{path}:{e.lineno}: not valid JSON: {e.msg}") from None


def _v(node) -> float:
    return float(node["value"] if isinstance(node, dict) else node)


def estimate(mix: MixFile, rates: dict, deadline_hours: float | None = None) -> dict:
    the_plan = plan(mix)
    corpus = rates["corpus"]
    bpt, gz = _v(corpus["bytes_per_token"]), _v(corpus["gzip_ratio"])
    tpd = corpus["tokens_per_document"]
    tag_rates = rates["taggers"]
    tok_rate = _v(rates["tokenize_tokens_per_cpu_second"])
    assumed: set[str] = set()
    taggers = [t.name for t in mix.taggers]
    for t in taggers:
        if t not in tag_rates:
            assumed.add(f"tagger {t}: {tag_rates['default']['provenance']}")
    kinds = [k.name for k, _ in mix.dedup.configured() if k.name in rates["dedup"]]
    for k, _ in mix.dedup.configured():
        if k.name not in rates["dedup"]:
            assumed.add(f"dedup {k.name}: no rate in the rates file; its CPU time, reads, writes and scratch are "
                        "left out")
    n_attr_sets = len(mix.tagger_groups()) + len(kinds)
    targets = uses_targets(mix)
    out = rates["outputs"]
    scratch = rates["scratch"]

    sources, stage_tot = {}, {}
    tot = {"cpu_hours": 0.0, "bytes_read": 0.0, "bytes_written": 0.0, "scratch_bytes": 0.0}
    for s in mix.sources:
        r = the_plan["sources"][s.name]
        planned = r["planned_tokens"] or 0.0
        avail = float(s.tokens_available) if s.tokens_available is not None else planned
        text_b = avail * bpt
        gz_b = text_b * gz
        docs = avail / float(tpd["sources"].get(s.name, tpd["default"]))
        kept_tokens = min(planned, avail)
        cpu = {}
        cpu["tag"] = sum(text_b / _v(tag_rates.get(t, tag_rates["default"])) for t in taggers)
        for k in kinds:
            cpu[f"dedup:{k}"] = text_b / _v(rates["dedup"][k])
        cpu["select"] = text_b / _v(rates["select"])
        tb = _v(out["token_bytes_per_token"])
        if targets:  # tokenized once, in the count step; the tokenize step replays the stored ids
            cpu["count"] = kept_tokens / tok_rate
            cpu["tokenize"] = 0.0
        else:
            cpu["tokenize"] = planned / tok_rate
        hours = {k: v / 3600 for k, v in cpu.items()}
        stored = kept_tokens * tb if targets else 0.0  # the count step's ids, written once and read once
        read = gz_b * ((1 if taggers else 0) + len(kinds) + 1) + kept_tokens * bpt * gz + stored
        written = (docs * _v(out["attribute_bytes_per_document"]) * n_attr_sets + kept_tokens * bpt * gz + stored
                   + planned * _v(out["token_bytes_per_token"])
                   + docs * (planned / avail if avail else 0) * _v(out["index_bytes_per_document"]))
        scr = 0.0
        for k in kinds:  # the kinds' shuffles: per input token or per document, as the rates file gives them
            if f"{k}_bytes_per_token" in scratch:
                scr += avail * _v(scratch[f"{k}_bytes_per_token"])
            if f"{k}_bytes_per_document" in scratch:
                scr += docs * _v(scratch[f"{k}_bytes_per_document"])
        row = {"tokens_available": avail, "planned_tokens": planned, "documents": docs,
               "cpu_hours": hours, "cpu_hours_total": sum(hours.values()),
               "bytes_read": read, "bytes_written": written, "scratch_bytes": scr}
        sources[s.name] = row
        for k, v in hours.items():
            stage_tot[k] = stage_tot.get(k, 0.0) + v
        tot["cpu_hours"] += row["cpu_hours_total"]
        tot["bytes_read"] += read
        tot["bytes_written"] += written
        tot["scratch_bytes"] += scr
    train = rates.get("training")
    result = {"mix": mix.name, "total_planned_tokens": the_plan["total_tokens"], "sources": sources,
              "stages_cpu_hours": stage_tot, **tot, "assumptions": sorted(assumed)}
    if train:
        result["training"] = {"model": train.get("model"), "gpu_hours": the_plan["total_tokens"] / _v(train["tokens_per_gpu_second"]) / 3600,
                              "provenance": train["tokens_per_gpu_second"]["provenance"]}
    if deadline_hours:
        cores = tot["cpu_hours"] / deadline_hours
        per_node = _v(rates["cluster"]["cores_per_node"])
        result["deadline"] = {"hours": deadline_hours, "cores": math.ceil(cores),
                              "nodes": math.ceil(math.ceil(cores) / per_node), "cores_per_node": per_node}
        if train:
            result["deadline"]["gpus_to_train"] = math.ceil(result["training"]["gpu_hours"] / deadline_hours)
    return result


def _b(n: float) -> str:
    for unit, f in (("PB", 1e15), ("TB", 1e12), ("GB", 1e9), ("MB", 1e6)):
        if n >= f:
            return f"{n / f:,.1f} {unit}"
    return f"{n:,.0f} B"


def render(result: dict) -> None:
    from rich.console import Console
    from rich.table import Table

    stages = list(result["stages_cpu_hours"])
    t = Table(title=f"{result['mix']}: CPU-hours to prepare it at full scale (per-core rates from the rates file)")
    for col in ["source", *stages, "total", "read", "written", "scratch"]:
        t.add_column(col, justify="left" if col == "source" else "right")
    for name, r in result["sources"].items():
        t.add_row(name, *[f"{r['cpu_hours'].get(k, 0):,.0f}" for k in stages], f"{r['cpu_hours_total']:,.0f}",
                  _b(r["bytes_read"]), _b(r["bytes_written"]), _b(r["scratch_bytes"]))
    t.add_row("[bold]total", *[f"{result['stages_cpu_hours'][k]:,.0f}" for k in stages],
              f"[bold]{result['cpu_hours']:,.0f}", _b(result["bytes_read"]), _b(result["bytes_written"]),
              _b(result["scratch_bytes"]))
    c = Console(width=None if Console().is_terminal else 200)
    c.print(t)
    if "training" in result:
        tr = result["training"]
        c.print(f"training one pass over {result['total_planned_tokens'] / 1e9:,.1f}B tokens ({tr['model']}): "
                f"{tr['gpu_hours']:,.0f} GPU-hours ({tr['provenance']})")
    if "deadline" in result:
        d = result["deadline"]
        line = (f"to finish preparation in {d['hours']:,.0f} h: {d['cores']:,} cores = {d['nodes']:,} nodes of "
                f"{d['cores_per_node']:.0f} cores (at full utilisation)")
        if "gpus_to_train" in d:
            line += f"; training in the same time: {d['gpus_to_train']:,} GPUs"
        c.print(line)
    for a in result["assumptions"]:
        c.print(f"[yellow]assumed:[/yellow] {a}")
