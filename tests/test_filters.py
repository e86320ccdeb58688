"""jq / JSONPath filter semantics, as the dolma mixer applies them; filters see the document
and nothing else (hostile rules are refused at load or stopped at run time, the rule named)."""
import os
import time

import pytest
from conftest import run_cli

from dolma_prep.core.io import InputError
from dolma_prep.pipeline.filters import FilterLimitError, FilterSet, check_jq, compile_expression

DOC = {"id": "1", "text": "t", "source": "s",
       "attributes": {"cc_multi_bin__cc_multi_bin__hq": [[0, 10, 0.5]], "empty": [],
                      "gopher_rules__gopher_v1__word_count": [[0, 10, 40]]}}


@pytest.mark.parametrize("expr,expected", [
    ("(.attributes.cc_multi_bin__cc_multi_bin__hq[0][-1]) > 0.01", True),
    ("(.attributes.cc_multi_bin__cc_multi_bin__hq[0][-1]) > 0.9", False),
    ("$.attributes[?(@.gopher_rules__gopher_v1__word_count[0][2] < 50)]", True),
    ("$.attributes[?(@.gopher_rules__gopher_v1__word_count[0][2] < 10)]", False),
    (".attributes.missing[0][2] > 0.5", False),     # missing attribute: null > 0.5 is false
    (".attributes.empty", True),                    # jq truthiness: [] is truthy
    (".attributes.missing", False),                 # null is falsy
    (".attributes.empty | length > 0", False),
])
def test_expression_semantics(expr, expected):
    assert compile_expression(expr).matches(DOC) is expected
    # the bounded helper process gives the same answer as the engine in this process
    fs = FilterSet(include=[], exclude=[expr])
    assert (fs.decide(DOC) is not None) is expected
    fs.close()


def test_keep_rule():
    fs = FilterSet(include=[".attributes.missing"], exclude=[])
    assert fs.decide(DOC) == "include: no rule matched"
    fs = FilterSet(include=[], exclude=["(.attributes.cc_multi_bin__cc_multi_bin__hq[0][-1]) > 0.01"])
    assert fs.decide(DOC).startswith("exclude:")
    assert FilterSet([], []).decide(DOC) is None
    # include matched, second exclude matches: it is the one named
    fs = FilterSet(include=[".attributes.empty", ".id"], exclude=[".attributes.missing", '.source == "s"'])
    assert fs.decide(DOC) == 'exclude: .source == "s"'
    assert fs.decide({**DOC, "source": "other"}) is None


def test_bad_expression_is_a_user_error():
    with pytest.raises(InputError, match="cannot compile filter"):
        compile_expression(".attributes[[[")


def test_jq_cannot_reach_the_host(monkeypatch):
    monkeypatch.setenv("DOLMA_PREP_TEST_SECRET", "Zebra")
    # the bit-per-rule leak of the issue: refused when the rule is loaded
    for rule in ['env | has("PATH")', 'env.DOLMA_PREP_TEST_SECRET | startswith("Z")',
                 '.id and ($ENV.DOLMA_PREP_TEST_SECRET | startswith("Z"))']:
        with pytest.raises(InputError, match="reads the environment"):
            FilterSet(include=[], exclude=[rule], where="sources[cc].filters")
    # and were the static check bypassed, the helper that evaluates rules has no environment
    fs = FilterSet(include=[], exclude=["true"])
    fs.include = []
    fs.exclude = [compile_expression("true")]
    fs.exclude[0].source = '(env | length) == 0 and (input_filename == null)'
    fs.needs_text = False
    assert fs.decide(DOC) is not None  # the rule matched: an empty environment, no file name
    fs.close()


# Hostile rules refused when the mix file is loaded. Each names what it reaches for.
REFUSED_AT_LOAD = [
    ('env | has("PATH")', "env"),
    ('env.AWS_SECRET_ACCESS_KEY | startswith("Z")', "env"),
    ("($ENV.HOME | length) > 0", "$ENV"),
    ("($ ENV | length) > 0", "$ENV"),
    ('"\\(env.HOME)" | length > 3', "env"),                   # code inside a string interpolation
    ('"a\\("b\\(env)")" | length > 3', "env"),                # nested interpolation
    ("input | .id", "input"),
    ("[inputs] | length > 0", "inputs"),
    ("input_filename != null", "input_filename"),
    ("input_line_number > 0", "input_line_number"),
    ("($__loc__.line) > 0", "$__loc__"),
    (".id | debug | . != null", "debug"),
    ('debug("x") | true', "debug"),
    ("stderr | true", "stderr"),
    ('"x" | halt_error', "halt_error"),
    ("halt", "halt"),
    ('import "evil" as e; .id', "import"),
    ('include "evil"; .id', "include"),
    ("evil::f", "module"),
    ('modulemeta | true', "modulemeta"),
    ("get_search_list | length > 0", "get_search_list"),
    ("now > 0", "now"),
    ("0 | localtime | .[0] > 0", "localtime"),
    ("def f: env; f | length > 0", "env"),
    ("($__prog_args | length) > 0", "$__prog_args"),
    ("$.attributes.`keys`", None),  # a named JSONPath operator that is allowed
]


@pytest.mark.parametrize("rule,what", [r for r in REFUSED_AT_LOAD if r[1]])
def test_hostile_rules_refused_at_load(rule, what):
    with pytest.raises(InputError) as e:
        FilterSet(include=[], exclude=[rule], where="sources[cc].filters")
    msg = str(e.value)
    assert "sources[cc].filters.exclude[0]" in msg and repr(rule) in msg
    assert (what in msg) if what != "module" else "module" in msg


# Rules that look like the forbidden ones but read only the document: they load and work.
@pytest.mark.parametrize("rule,expected", [
    (".env", False),                       # a field called env
    ('.attributes | has("env")', False),   # a string
    ('.metadata.input == "debug"', False),
    ('."env" == null', True),
    ('.source | test("now|env")', False),
    ("# env in a comment\n.id", True),
    ('"\\(.id)-env" == "1-env"', True),    # interpolation of a field, literal text after
    ("$.attributes.empty", True),
])
def test_lookalike_rules_load_and_match(rule, expected):
    assert check_jq(rule) is None or rule.startswith("$")
    fs = FilterSet(include=[], exclude=[rule])
    assert (fs.decide(DOC) is not None) is expected
    fs.close()


def test_jsonpath_named_operators_limited():
    with pytest.raises(InputError, match="JSONPath filters may use only"):
        compile_expression("$.attributes.`evil`", "filters.include[0]")


# Runaway rules: stopped at run time by the per-document bounds, the rule named.
# (rule, which bound must stop it: "time" / "memory" / None for either, seconds, memory_mb)
RUNAWAY = [
    ("last(range(1e12)) > 0", "time", 1, 512),                   # CPU only, no memory
    ("def f: [f]; f | length > 0", "memory", 120, 300),          # unbounded recursion
    ("[range(1e12)] | length > 0", None, 1, 512),
    ("[repeat(.)] | length > 0", None, 1, 512),
    ("reduce range(1e9) as $i (.; [.]) | length > 0", None, 1, 512),  # ever deeper nesting
]


@pytest.mark.parametrize("rule,bound,seconds,memory_mb", RUNAWAY)
def test_runaway_rules_stopped_with_the_rule_named(rule, bound, seconds, memory_mb):
    fs = FilterSet(include=['.source == "s"'], exclude=[".attributes.missing", rule], where="sources[cc].filters",
                   seconds=seconds, memory_mb=memory_mb)
    assert fs.decide({**DOC, "source": "other"}) == "include: no rule matched"  # the runaway never ran
    t0 = time.monotonic()
    with pytest.raises(FilterLimitError) as e:
        fs.decide_many([{**DOC, "id": "0", "source": "other"}, DOC, {**DOC, "id": "2"}])
    elapsed = time.monotonic() - t0
    msg = str(e.value)
    assert f"sources[cc].filters.exclude[1]: filter {rule!r}" in msg, msg
    assert "document id '1'" in msg, msg  # the second document of the block
    ran_past, went_over = f"ran past {seconds} s" in msg, f"went over {memory_mb} MB of memory" in msg
    assert {"time": ran_past, "memory": went_over, None: ran_past or went_over}[bound], msg
    assert elapsed < (seconds + 10 if bound != "memory" else 60), elapsed
    # the FilterSet is usable again afterwards (a fresh helper)
    assert fs.decide({**DOC, "source": "other"}) == "include: no rule matched"
    fs.close()


def test_hostile_rule_exits_2_from_the_cli(tmp_path):
    mix = tmp_path / "m.yaml"
    mix.write_text("name: m\nsources:\n  - name: wiki\n    documents: ['wiki/*.jsonl.gz']\n"
                   "    filters: {exclude: ['env.AWS_SECRET_ACCESS_KEY | startswith(\"Z\")']}\n")
    t0 = time.monotonic()
    proc = run_cli("run", str(mix), "--output", str(tmp_path / "out"), timeout=120)
    assert proc.returncode == 2, proc.stderr
    assert "sources[0] (wiki).filters.exclude[0]" in proc.stderr and "reads the environment" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert time.monotonic() - t0 < 60
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # a pipeline run on a local Ray
def test_runaway_rule_stops_a_run_with_exit_2_and_the_rule_named(tmp_path):
    from conftest import SAMPLE

    mix = tmp_path / "m.yaml"
    mix.write_text(f"name: m\ndata_root: {SAMPLE}\nsources:\n  - name: wiki\n    documents: ['wiki/0000.jsonl.gz']\n"
                   "    filters: {exclude: ['last(range(1e12)) > 0']}\n")
    proc = run_cli("run", str(mix), "--output", str(tmp_path / "out"), "--workers", "1", "-q", timeout=300)
    assert proc.returncode == 2, proc.stderr[-3000:]
    assert "sources[wiki].filters.exclude[0]: filter 'last(range(1e12)) > 0' ran past 10 s on document id" \
        in proc.stderr, proc.stderr[-3000:]
    assert "Traceback" not in proc.stderr
    # one line: not the worker's traceback that Ray wraps the error in
    assert 'File "' not in proc.stderr and "ray::" not in proc.stderr, proc.stderr[-3000:]
    assert len([line for line in proc.stderr.splitlines() if "ran past" in line]) == 1


def test_rules_reading_text_still_see_it():
    doc = {**DOC, "text": "x" * 100}
    assert FilterSet([], ["(.text | length) > 50"]).decide(doc) == "exclude: (.text | length) > 50"
    assert FilterSet([], ["(.attributes.empty | length) > 0"]).decide(doc) is None


def test_helper_process_cost_per_document():
    """The bound costs one pipe round trip per document (decide) or per block (decide_many):
    measured against evaluating the same rules in this process (no bound), on documents of the
    bundled sample with general.yaml's CC rules. Printed with -s; asserted loosely (a shared
    2-core machine)."""
    import glob
    import gzip
    import json

    root = os.path.join(os.path.dirname(__file__), "..", "sample", "documents")
    docs = []
    for p in sorted(glob.glob(os.path.join(root, "*", "*.jsonl.gz")))[:6]:
        with gzip.open(p, "rt") as f:
            docs += [json.loads(x) for x in f]
    for d in docs:
        d["attributes"] = {"cc_multi_bin__cc_multi_bin__hq": [[0, len(d["text"]), 0.3]],
                           "bff_duplicate_paragraph_spans": [[0, 10, 1.0]]}
    include = ["(.attributes.cc_multi_bin__cc_multi_bin__hq[0][-1]) > 0.01"]
    exclude = ["((((.attributes.bff_duplicate_paragraph_spans // []) | map(.[2] * (.[1] - .[0])) | add) // 0)"
               " / ([(.text | length), 1] | max)) > 0.3"]
    fs = FilterSet(include, exclude)
    fs.decide(docs[0])  # start the helper
    t0 = time.perf_counter()
    bounded = [fs.decide(d) for d in docs]
    t_bounded = (time.perf_counter() - t0) / len(docs)
    t0 = time.perf_counter()
    assert fs.decide_many(docs) == bounded
    t_many = (time.perf_counter() - t0) / len(docs)
    exprs = [compile_expression(e) for e in include + exclude]
    t0 = time.perf_counter()
    direct = []
    for d in docs:
        if not exprs[0].matches(d):
            direct.append("include: no rule matched")
        elif exprs[1].matches(d):
            direct.append(f"exclude: {exclude[0]}")
        else:
            direct.append(None)
    t_direct = (time.perf_counter() - t0) / len(docs)
    fs.close()
    assert bounded == direct
    print(f"\n{len(docs)} docs: in-process {t_direct * 1e6:.0f} us/doc, bounded helper {t_bounded * 1e6:.0f} us/doc "
          f"(decide), {t_many * 1e6:.0f} us/doc (decide_many)")
    assert t_bounded < t_direct * 5 + 200e-6 and t_many < t_direct * 3 + 100e-6


def test_sources_without_own_filters_share_one_filter_process(tmp_path):
    """select keeps one FilterSet (one helper process) per worker for every source that only
    has the mix-level rules; a source with rules of its own gets its own set, mix rules first."""
    from dolma_prep.pipeline.mixfile import load_mix
    from dolma_prep.pipeline.stages.select import _filterset

    mix = tmp_path / "m.yaml"
    mix.write_text("name: m\nfilters: {exclude: ['.attributes.x']}\nsources:\n"
                   "  - {name: a, documents: ['a/*.gz']}\n  - {name: b, documents: ['b/*.gz']}\n"
                   "  - {name: c, documents: ['c/*.gz'], filters: {include: ['.attributes.y']}}\n")
    blob = load_mix(str(mix)).model_dump_json()
    a, b, c = (_filterset(blob, s) for s in "abc")
    assert a is b and a is not c
    assert a.where == "filters" and [e.source for e in a.exclude] == [".attributes.x"]
    assert c.where == "sources[c].filters" and [e.source for e in c.exclude] == [".attributes.x"]
    assert [e.source for e in c.include] == [".attributes.y"]
    doc = {"id": "1", "text": "t", "attributes": {"x": True, "y": True}}
    assert a.decide(doc) == "exclude: .attributes.x" and b.decide({**doc, "attributes": {}}) is None
    assert c.decide({**doc, "attributes": {"y": True}}) is None
    assert c.decide({**doc, "attributes": {}}) == "include: no rule matched"
