"""What a finished run's numbers say about it: the findings that turn exit 0 into exit 3.

A run that "succeeds" but holds nothing is the costliest failure of a data pipeline: it is
noticed when a trainer starts, hours later. So a run fails (exit 3, after writing everything,
the reasons on stderr) when:

- a source ends with 0 tokens;
- one filter rule drops more than `MAX_RULE_DROP` of a source's documents (sources of at least
  `MIN_DOCUMENTS_FOR_SHARE` documents: below that one share says little);
- filter rules raised on more than `--max-rule-error-rate` of the documents they were asked
  about (default 0: any error), counted per rule and source in the manifest;

unless `--allow-empty` names the source (or is given without names: every source). Warnings
(no change of exit code): an input file that holds no documents.
"""
from __future__ import annotations

from dataclasses import dataclass, field

MAX_RULE_DROP = 0.99
MIN_DOCUMENTS_FOR_SHARE = 100


@dataclass
class Findings:
    failures: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


def _allowed(name: str, allow_empty: list[str] | None) -> bool:
    return allow_empty is not None and (not allow_empty or name in allow_empty)


def examine(manifest: dict, allow_empty: list[str] | None = None, max_rule_error_rate: float = 0.0) -> Findings:
    """The findings of one run's manifest. `allow_empty`: None (nothing allowed), [] (every
    source), or the names of the sources allowed to end empty or nearly so."""
    out = Findings()
    for name, info in manifest.get("sources", {}).items():
        st = info.get("stages", {})
        read = st.get("read", {}).get("documents", 0)
        if info.get("tokens", 0) == 0 and not _allowed(name, allow_empty):
            why = _empty_reason(st)
            out.failures.append(f"source {name} ends with 0 tokens ({read:,} documents read{why}); fix the rule or "
                                f"pass --allow-empty {name}")
        if read >= MIN_DOCUMENTS_FOR_SHARE and not _allowed(name, allow_empty):
            for rule, n in st.get("filtered", {}).get("removed_by", {}).items():
                if n > MAX_RULE_DROP * read:
                    out.failures.append(f"source {name}: rule {rule!r} drops {n:,} of {read:,} documents "
                                        f"({100 * n / read:.1f}% > {100 * MAX_RULE_DROP:g}%); check the rule (a "
                                        f"missing attribute reads as null) or pass --allow-empty {name}")
        errs = st.get("filtered", {}).get("rule_errors", {})
        asked = max(1, st.get("selected", {}).get("documents", 0) + st.get("filtered", {}).get("removed", 0))
        for rule, n in errs.items():
            if n > max_rule_error_rate * asked:
                ex = next((e for e in st["filtered"].get("rule_error_examples", []) if e.startswith(rule)), "")
                out.failures.append(f"source {name}: rule {rule} raised on {n:,} of {asked:,} documents (counted as "
                                    f"no match){'; e.g. ' + ex[len(rule):].lstrip(': ') if ex else ''}; fix the rule "
                                    "or raise --max-rule-error-rate")
    for inp in manifest.get("inputs", []):
        if inp.get("documents") == 0:
            out.warnings.append(f"input file {inp['path']} (source {inp['source']}) holds no documents")
    return out


def _empty_reason(stages: dict) -> str:
    removed = {**stages.get("deduplicated", {}).get("removed_by", {}), **stages.get("filtered", {}).get("removed_by", {})}
    if not removed:
        return ""
    rule, n = max(removed.items(), key=lambda kv: kv[1])
    return f"; {n:,} removed by {rule!r}"
