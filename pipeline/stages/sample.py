"""Sample step: the per-source sampling rules the tokenize step applies.

With proportions, the rule is the proportion itself; with token targets, the count step's
(u, tokens) tables are turned into exact per-source thresholds (`plan.resolve_targets`).
The rules go into the context the tokenize tasks receive, and into the manifest.
"""
from __future__ import annotations

from .. import plan as plan_mod
from ..steps import Step
from .count import count_path


def decide_sampling(mix, shards: list, ctx: dict, progress=None) -> dict:
    if not plan_mod.uses_targets(mix):
        rules = {s.name: plan_mod.proportion_sampling(1.0 if s.proportion is None else s.proportion)
                 for s in mix.sources}
        report = {"mode": "proportion", "scale": 1.0, "sources": {}}
    else:
        files: dict[str, list[str]] = {}
        for s in shards:
            files.setdefault(s.source, []).append(count_path(ctx, s))
        rules, report = plan_mod.resolve_targets(mix, files, mix.scale)
        report["mode"] = "tokens"
    ctx["sampling"] = rules
    return {"rules": rules, "report": report}


STEP = Step("sample", reads="_work/count/ (token targets)", writes="the sampling rule per source",
            run_global=decide_sampling)
