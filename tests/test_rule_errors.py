"""A filter rule that raises on a document is an error of that rule, not "no match": the
decision is unchanged (the rule has not matched), but the FilterSet counts the error per rule,
with the first document and message, and select reports the counts of each shard."""
import json
import re

import pytest
from conftest import write_docs

from dolma_prep.pipeline.filters import FilterLimitError, FilterSet, RuleErrors, compile_expression

NUMBER = re.compile(r"-?[0-9]+(\.[0-9]+)?")

# Documents for the unit tests. `inc` decides whether the include rule `.attributes.inc` matches,
# `first` whether the exclude rule placed before the rule under test matches (then the rule under
# test is not evaluated on that document).
DOCS = [{"id": f"d{i}", "text": text, "source": "s", "attributes": attrs} for i, (text, attrs) in enumerate([
    ("hello world", {"inc": True}),
    ("42", {"inc": True}),
    ("3.5", {"inc": True, "n": 7}),
    ("x1", {"inc": True, "first": True}),
    ("0", {"inc": False}),
    ("some longer text, not a number", {"inc": True, "n": "a string"}),
    ("7", {"inc": True, "first": True, "n": 3}),
    ("no include here", {}),
    ("-12", {"inc": True, "n": 1}),
    ("last one", {"inc": True}),
])]

RAISES = object()  # the model of a rule that raises on the document


# (rule, a model of the rule in Python: RAISES or whether it matches, a fragment of the error message)
RULES = [
    ('.text | error("boom")', lambda d: RAISES, "boom"),
    (".text + 1", lambda d: RAISES, "cannot be added"),
    (".text | tonumber", lambda d: True if NUMBER.fullmatch(d["text"]) else RAISES, "cannot be parsed as a number"),
    # a JSONPath operator given the wrong type: jsonpath-ng lets Python's TypeError through
    ("$.attributes.n.`sub(/a/, b)`",
     lambda d: RAISES if isinstance(d["attributes"].get("n"), int) else "n" in d["attributes"], "TypeError"),
    # controls: indexing null is not an error in jq, it gives null
    (".attributes.missing[0][2] > 0.5", lambda d: False, None),
    (".attributes.missing.key", lambda d: False, None),
    ("null[0][2]", lambda d: False, None),
]


def expected(rule_model, position: str, docs: list[dict]) -> tuple[list, list[str]]:
    """The decisions (a rule that raises has not matched) and the ids of the
    documents the rule under test raised on, worked out here from the documents, without jq.

    position "include": include = [RULE, .attributes.inc], exclude = [.attributes.first];
    position "exclude": include = [.attributes.inc], exclude = [.attributes.first, RULE]."""
    reasons, raised = [], []
    for d in docs:
        a = d["attributes"]
        if position == "include":
            m = rule_model(d)
            if m is RAISES:
                raised.append(d["id"])
            included = (m is not RAISES and bool(m)) or bool(a.get("inc"))
            if not included:
                reasons.append("include: no rule matched")
            elif a.get("first"):
                reasons.append("exclude: .attributes.first")
            else:
                reasons.append(None)
        else:
            if not a.get("inc"):
                reasons.append("include: no rule matched")
            elif a.get("first"):
                reasons.append("exclude: .attributes.first")
            else:
                m = rule_model(d)  # evaluated only here: included, and the first exclude did not match
                if m is RAISES:
                    raised.append(d["id"])
                reasons.append(None if m is RAISES or not m else "exclude: RULE")
    return reasons, raised


def filterset(rule: str, position: str) -> FilterSet:
    if position == "include":
        return FilterSet(include=[rule, ".attributes.inc"], exclude=[".attributes.first"], where="filters")
    return FilterSet(include=[".attributes.inc"], exclude=[".attributes.first", rule], where="filters")


@pytest.mark.parametrize("position", ["include", "exclude"])
@pytest.mark.parametrize("rule,model,message", RULES, ids=[r[0] for r in RULES])
def test_raising_rules_are_counted_per_rule(rule, model, message, position):
    reasons, raised = expected(model, position, DOCS)
    reasons = [r.replace("RULE", rule) if r else r for r in reasons]
    name = f"filters.{position}[{0 if position == 'include' else 1}]: {rule}"
    fs = filterset(rule, position)
    try:
        # the decisions: as the model says, and as evaluating the rules in this process (where an
        # error is no match, as before rules' errors were counted) says
        assert fs.decide_many(DOCS) == reasons
        exprs = [compile_expression(e.source) for e in fs.include + fs.exclude]
        inc, exc = exprs[:len(fs.include)], exprs[len(fs.include):]
        in_process = []
        for d in DOCS:
            if not any(e.matches(d) for e in inc):
                in_process.append("include: no rule matched")
            else:
                hit = next((e for e in exc if e.matches(d)), None)
                in_process.append(f"exclude: {hit.source}" if hit else None)
        assert in_process == reasons

        # the errors: one per document the rule was evaluated on and raised on, nothing else
        if message is None:
            assert raised == [] and fs.rule_errors.counts == {} and fs.rule_errors.total == 0
            assert not fs.rule_errors and fs.rule_errors.examples() == []
            return
        assert len(raised) > 0
        assert fs.rule_errors.by_rule() == {name: len(raised)} and fs.rule_errors.total == len(raised)
        doc_id, msg = fs.rule_errors.first[name]
        assert doc_id == raised[0] and message in msg and "\n" not in msg and len(msg) <= 200
        [example] = fs.rule_errors.examples()
        assert example.startswith(f"{name}: doc id {raised[0]!r}: ") and message in example

        # a caller's own tally holds the errors of its call; the FilterSet's, all of them
        mine = RuleErrors()
        assert fs.decide_many(DOCS[::-1], errors=mine) == reasons[::-1]
        assert mine.by_rule() == {name: len(raised)} and mine.first[name][0] == raised[-1]
        assert fs.rule_errors.by_rule() == {name: 2 * len(raised)} and fs.rule_errors.first[name][0] == raised[0]
        # one document at a time (decide) and in small blocks: the same counts
        one = filterset(rule, position)
        assert [one.decide(d) for d in DOCS] == reasons
        assert one.decide_many(DOCS, block=3) == reasons
        assert one.rule_errors.by_rule() == {name: 2 * len(raised)}
        one.close()
    finally:
        fs.close()


def test_documents_where_no_rule_raises_are_decided_as_before():
    """The same rules over documents that make them raise and documents that do not: the second
    kind get the decision of a set without the raising documents, and raise nothing."""
    rules = dict(include=[".attributes.inc"], exclude=[".text | tonumber > 10", '.source == "drop"'])
    fine = [d for d in DOCS if NUMBER.fullmatch(d["text"]) or not d["attributes"].get("inc")]
    fs, alone = FilterSet(**rules), FilterSet(**rules)
    mixed = dict(zip([d["id"] for d in DOCS], fs.decide_many(DOCS)))
    assert [mixed[d["id"]] for d in fine] == alone.decide_many(fine)
    assert alone.rule_errors.total == 0
    n_raising = sum(1 for d in DOCS if d["attributes"].get("inc") and not NUMBER.fullmatch(d["text"]))
    assert fs.rule_errors.by_rule() == {"filters.exclude[0]: .text | tonumber > 10": n_raising}
    # raising counts as not matched, so the next exclude rule still decides those documents
    assert fs.decide({**DOCS[0], "source": "drop"}) == 'exclude: .source == "drop"'
    fs.close()
    alone.close()


def test_several_rules_raising_on_one_document():
    fs = FilterSet(include=[".text + 1", "true"], exclude=['.text | error("boom")', ".text | tonumber", "false"])
    # every raising rule counts as not matched: only numbers are excluded (by tonumber)
    assert fs.decide_many(DOCS) == ["exclude: .text | tonumber" if NUMBER.fullmatch(d["text"]) else None for d in DOCS]
    n_words = sum(1 for d in DOCS if not NUMBER.fullmatch(d["text"]))
    assert fs.rule_errors.by_rule() == {
        'filters.exclude[0]: .text | error("boom")': len(DOCS),
        "filters.exclude[1]: .text | tonumber": n_words,
        "filters.include[0]: .text + 1": len(DOCS),
    }
    assert [e.split(": doc id ")[0] for e in fs.rule_errors.examples()] == sorted(fs.rule_errors.counts)
    assert len(fs.rule_errors.examples(limit=2)) == 2
    fs.close()


def test_error_messages_are_one_short_line():
    fs = FilterSet(include=[], exclude=['error("line one\\nline two")', 'error("x" * 1000)'])
    assert fs.decide({"id": "1", "text": "t"}) is None
    first = dict(fs.rule_errors.first)
    assert first['filters.exclude[0]: error("line one\\nline two")'] == ("1", "line one\\nline two")
    assert first['filters.exclude[1]: error("x" * 1000)'] == ("1", "x" * 200)
    assert all("\n" not in e for e in fs.rule_errors.examples())
    fs.close()


def test_a_multiline_rule_is_named_on_one_line():
    rule = "# a comment\n.text\n| tonumber"
    fs = FilterSet(include=[], exclude=[rule])
    fs.decide({"id": "1", "text": "t"})
    assert fs.rule_errors.by_rule() == {"filters.exclude[0]: # a comment .text | tonumber": 1}
    fs.close()


def test_runaway_rule_message_is_one_line():
    fs = FilterSet(include=[], exclude=["last(range(1e12)) > 0"], where="sources[cc].filters", seconds=1,
                   memory_mb=512)
    with pytest.raises(FilterLimitError) as e:
        fs.decide_many([{"id": "a\nb", "text": "t"}])
    msg = str(e.value)
    assert "\n" not in msg, msg
    assert msg.startswith("sources[cc].filters.exclude[0]: filter 'last(range(1e12)) > 0' ran past 1 s "
                          "on document id 'a\\nb'"), msg
    assert msg.endswith("a filter may take at most 1 s and 512 MB per document"), msg
    assert fs.rule_errors.total == 0  # a limit is a failure of the run, not a rule error
    fs.close()


# ----------------------------------------------------------------------------- select

def _select_ctx(tmp_path, shards: dict[str, list[dict]], exclude: list[str]):
    from dolma_prep.core.runtime import Shard
    from dolma_prep.pipeline.mixfile import load_mix

    root, out = tmp_path / "data", tmp_path / "out"
    for rel, docs in shards.items():
        write_docs(root / rel, docs)
    mix = tmp_path / "mix.yaml"
    mix.write_text(json.dumps({"name": "rule-errors", "data_root": str(root), "taggers": [],
                               "filters": {"exclude": exclude},
                               "sources": [{"name": "s", "documents": ["s/*.jsonl.gz"]}]}))
    m = load_mix(str(mix), output=str(out))
    ctx = {"output": str(out), "work": str(out / "_work"), "mix": m.model_dump_json()}
    return ctx, [Shard("s", i, str(root / rel), rel) for i, rel in enumerate(shards)]


def test_select_reports_each_shards_rule_errors(tmp_path):
    """Two shards through the same worker's (cached, shared) FilterSet: each result counts its own."""
    from dolma_prep.pipeline.stages import select
    from dolma_prep.pipeline.steps import step_counters

    texts = [["hello", "42", "world", "3.5", "again"], ["7", "8", "nine"]]
    shards = {f"s/{i:04d}.jsonl.gz": [{"id": f"{i}-{j}", "text": t, "source": "s"} for j, t in enumerate(ts)]
              for i, ts in enumerate(texts)}
    exclude = [".text | tonumber", ".attributes.missing[0][2] > 0.5", '.text | error("boom")']
    ctx, shard_list = _select_ctx(tmp_path, shards, exclude)
    results = {}
    for shard in shard_list:
        results[shard.key] = select.run_shard(shard, ctx)
    try:
        for shard, ts in zip(shard_list, texts):
            r = results[shard.key]
            words = [f"{shard.index}-{j}" for j, t in enumerate(ts) if not NUMBER.fullmatch(t)]
            # numbers are dropped by exclude[0]; words make it raise, pass the control, make exclude[2] raise
            assert r["documents_in"] == len(ts) and r["documents_kept"] == len(words)
            assert r["dropped"] == {"exclude: .text | tonumber": len(ts) - len(words)}
            assert r["rule_errors"] == {'filters.exclude[0]: .text | tonumber': len(words),
                                        'filters.exclude[2]: .text | error("boom")': len(words)}
            assert list(r["rule_errors"]) == sorted(r["rule_errors"])
            assert r["rule_errors_total"] == 2 * len(words)
            assert r["rule_error_examples"] == [
                f"filters.exclude[0]: .text | tonumber: doc id {words[0]!r}: string (\"{ts[int(words[0][2:])]}\") "
                "cannot be parsed as a number",
                f"filters.exclude[2]: .text | error(\"boom\"): doc id {words[0]!r}: boom"]
        assert "rule_errors_total" in select.STEP.counters
        counted = step_counters(select.STEP, shard_list, results)
        assert counted["s"]["rule_errors_total"] == 2 * sum(1 for ts in texts for t in ts if not NUMBER.fullmatch(t))
    finally:
        select._filterset(ctx["mix"], "s").close()


def test_select_without_errors_reports_none(tmp_path):
    from dolma_prep.pipeline.stages import select

    ctx, [shard] = _select_ctx(tmp_path, {"s/0000.jsonl.gz": [{"id": "a", "text": "x", "source": "s"}]},
                               [".attributes.missing[0][2] > 0.5"])
    try:
        r = select.run_shard(shard, ctx)
        assert r["rule_errors"] == {} and r["rule_error_examples"] == [] and r["rule_errors_total"] == 0
        assert r["documents_kept"] == 1
    finally:
        select._filterset(ctx["mix"], "s").close()


def test_rule_error_examples_are_at_most_five(tmp_path):
    from dolma_prep.pipeline.stages import select

    exclude = [f'.text | error("e{i}")' for i in range(7)]
    ctx, [shard] = _select_ctx(tmp_path, {"s/0000.jsonl.gz": [{"id": "a", "text": "x", "source": "s"}]}, exclude)
    try:
        r = select.run_shard(shard, ctx)
        assert len(r["rule_errors"]) == 7 and r["rule_errors_total"] == 7
        assert r["rule_error_examples"] == [f'filters.exclude[{i}]: .text | error("e{i}"): doc id \'a\': e{i}'
                                            for i in range(5)]
    finally:
        select._filterset(ctx["mix"], "s").close()
