"""jq / JSONPath filter semantics, as the dolma mixer applies them."""
import pytest

from dolma_prep.pipeline.filters import FilterSet, compile_expression
from dolma_prep.pipeline.io import InputError

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


def test_keep_rule():
    fs = FilterSet(include=[".attributes.missing"], exclude=[])
    assert fs.decide(DOC) == "include: no rule matched"
    fs = FilterSet(include=[], exclude=["(.attributes.cc_multi_bin__cc_multi_bin__hq[0][-1]) > 0.01"])
    assert fs.decide(DOC).startswith("exclude:")
    assert FilterSet([], []).decide(DOC) is None


def test_bad_expression_is_a_user_error():
    with pytest.raises(InputError, match="cannot compile filter"):
        compile_expression(".attributes[[[")


def test_jq_cannot_reach_the_host(tmp_path):
    # jq has no access to files or processes; `input_filename`/`env` expose nothing executable
    fs = FilterSet(include=[], exclude=['env | has("PATH")'])
    assert fs.decide(DOC) is not None  # evaluates as data, runs nothing


def test_rules_reading_text_still_see_it():
    doc = {**DOC, "text": "x" * 100}
    assert FilterSet([], ["(.text | length) > 50"]).decide(doc) == "exclude: (.text | length) > 50"
    assert FilterSet([], ["(.attributes.empty | length) > 0"]).decide(doc) is None
