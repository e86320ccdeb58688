"""Mix files are bounded data: names never escape the output, aliases cannot blow up the run,
numbers are finite and in range; and two configurations can say which fields differ."""
import time
import tracemalloc

import pytest

from dolma_prep.core.io import InputError
from dolma_prep.pipeline.mixfile import (
    MAX_MIX_BYTES,
    MAX_PROPORTION,
    MAX_TOKENS,
    MAX_YAML_NODES,
    check_name,
    check_scale,
    check_workers,
    config_diff,
    load_mix,
)

BASE = """name: t
data_root: docs
experiment: exp
sources:
  - {name: wiki, documents: ["wiki/*.jsonl.gz"]}
"""


def _write(tmp_path, text, name="mix.yaml"):
    p = tmp_path / name
    p.write_text(text)
    return p


def _load(tmp_path, text):
    return load_mix(str(_write(tmp_path, text)))


def _refused(tmp_path, text) -> str:
    with pytest.raises(InputError) as e:
        _load(tmp_path, text)
    return str(e.value)


# ---------------------------------------------------------------------------------------------
# names that become folders under the output

EVIL = ["../../x", "a/b", ".hidden", "..", "-flag", "x" * 200]
DEDUP_BODIES = {"exact": "", "paragraphs": "", "minhash": "", "decontaminate": "eval_sets: [e.jsonl], ",
                "substrings": ""}

NAME_CASES = (
    [(BASE.replace("experiment: exp", f"experiment: '{n}'"), "experiment") for n in EVIL]
    + [(BASE + f"dedup:\n  {kind}: {{{body}attribute: '../../data'}}\n", f"dedup.{kind}.attribute")
       for kind, body in DEDUP_BODIES.items()]
    + [(BASE + "taggers:\n  - {name: char_length_v1, experiment: '../x'}\n", "taggers.0.experiment"),
       (BASE + "taggers:\n  - {name: char_length_v1, experiment: '.hidden'}\n", "taggers.0.experiment"),
       (BASE.replace("name: t\n", "name: '../x'\n"), "name"),
       (BASE.replace("name: t\n", "name: 'a/b'\n"), "name")]
)


@pytest.mark.parametrize("text,field", NAME_CASES, ids=[f"{f}-{i}" for i, (_, f) in enumerate(NAME_CASES)])
def test_names_that_become_folders_cannot_escape_the_output(tmp_path, text, field):
    msg = _refused(tmp_path, text)
    assert f"  - {field}: " in msg, msg
    assert "becomes a folder name under the output" in msg, msg


def test_safe_names_still_load(tmp_path):
    mix = _load(tmp_path, BASE.replace("name: t\n", "name: run-1.7_b\n") + "taggers:\n  - {name: char_length_v1, "
                "experiment: cc_v1.7}\ndedup:\n  exact: {attribute: exact-dups.v2}\n")
    assert mix.name == "run-1.7_b" and mix.dedup.exact.attribute == "exact-dups.v2"
    assert list(mix.tagger_groups()) == ["cc_v1.7"]


@pytest.mark.parametrize("extra,who", [
    ("taggers:\n  - {name: char_length_v1, experiment: dups}\ndedup:\n  exact: {attribute: dups}\n",
     "taggers (experiment 'dups') and dedup.exact.attribute"),
    ("taggers: [char_length_v1]\ndedup:\n  minhash: {attribute: exp}\n",  # the mix experiment, used by the tagger
     "taggers (experiment 'exp') and dedup.minhash.attribute"),
    ("dedup:\n  exact: {attribute: dups}\n  paragraphs: {attribute: dups}\n",
     "dedup.exact.attribute and dedup.paragraphs.attribute"),
    ("dedup:\n  exact: {attribute: Dups}\n  substrings: {attribute: dups}\n",  # case-insensitive file systems
     "dedup.exact.attribute and dedup.substrings.attribute"),
])
def test_two_producers_may_not_share_an_attribute_folder(tmp_path, extra, who):
    msg = _refused(tmp_path, BASE + extra)
    assert who in msg and "would both write the attribute folder" in msg, msg


def test_one_producer_may_hold_several_taggers_and_an_unused_experiment_is_no_writer(tmp_path):
    mix = _load(tmp_path, BASE + "taggers: [char_length_v1, {name: vowel_count_v1, experiment: exp}]\n"
                "dedup:\n  exact: {attribute: exp2}\n")
    assert list(mix.tagger_groups()) == ["exp"]
    # no tagger writes attributes/exp/: a dedup attribute may take the name
    assert _load(tmp_path, BASE + "dedup:\n  exact: {attribute: exp}\n").dedup.exact.attribute == "exp"


# ---------------------------------------------------------------------------------------------
# bounded YAML: size, alias expansion, recursion, depth


def _bomb(levels: int = 9, width: int = 9) -> str:
    lines = ["  options:", "    a0: &a0 [" + ", ".join(["lol"] * width) + "]"]
    for i in range(1, levels):
        lines.append(f"    a{i}: &a{i} [" + ", ".join([f"*a{i - 1}"] * width) + "]")
    return BASE + "taggers:\n  - name: char_length_v1\n" + "\n".join("  " + x for x in lines) + "\n"


def test_alias_bomb_is_refused_fast_and_small(tmp_path):
    p = _write(tmp_path, _bomb())
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        with pytest.raises(InputError) as e:
            load_mix(str(p))
        elapsed = time.perf_counter() - t0
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert elapsed < 2.0, elapsed
    assert peak < 20 * 1024**2, peak  # 9**9 nodes written out would be gigabytes
    msg = str(e.value)
    assert msg.startswith(f"{p}:"), msg
    line = int(msg.split(":")[1])
    assert "*a" in p.read_text().splitlines()[line - 1], (line, msg)  # the line of the alias that crossed the bound
    assert "alias *a" in msg and "MAX_YAML_NODES" in msg, msg


def test_string_alias_bomb_is_refused(tmp_path):
    # few nodes, but each alias repeats a long string: counted by characters too
    big = "x" * 100_000
    aliases = ", ".join(["*d"] * 60)
    text = BASE + f"description: &d '{big}'\ntaggers:\n  - name: char_length_v1\n    options: {{k: [{aliases}]}}\n"
    msg = _refused(tmp_path, text)
    assert "alias *d" in msg and "MAX_YAML_CHARS" in msg, msg


def test_recursive_alias_is_refused(tmp_path):
    msg = _refused(tmp_path, BASE + "taggers:\n  - name: char_length_v1\n    options: {k: &r [1, *r]}\n")
    assert "inside its own anchor" in msg and "mix.yaml:" in msg, msg


def test_deep_nesting_is_refused(tmp_path):
    deep = "[" * 200 + "]" * 200
    msg = _refused(tmp_path, BASE + f"taggers:\n  - name: char_length_v1\n    options: {{k: {deep}}}\n")
    assert "MAX_YAML_DEPTH" in msg, msg


def test_oversized_file_is_refused(tmp_path):
    text = BASE + "description: |\n" + ("  " + "y" * 1000 + "\n") * (MAX_MIX_BYTES // 1000 + 1)
    msg = _refused(tmp_path, text)
    assert "MAX_MIX_BYTES" in msg and "mix.yaml" in msg, msg


def test_not_utf8_is_refused(tmp_path):
    p = tmp_path / "mix.yaml"
    p.write_bytes(BASE.encode() + b"description: \xff\xfe\n")
    with pytest.raises(InputError, match="not UTF-8"):
        load_mix(str(p))


def test_reasonable_anchors_still_work(tmp_path):
    """A filters block written once and reused by every source, and a merge key, many times over."""
    n = 300
    rules = "\n".join(f"    - '.attributes.exp__char_length_v1__length[0][2] > {i}'" for i in range(40))
    text = ("name: t\ndata_root: docs\nexperiment: exp\ntaggers: [char_length_v1]\n"
            f"filters: &filters\n  exclude:\n{rules}\n"
            "sources:\n  - &first {name: s0, documents: [s0/*.gz], filters: *filters, min_text_length: 5}\n"
            + "".join(f"  - {{<<: *first, name: s{i}, documents: [s{i}/*.gz]}}\n" for i in range(1, n)))
    t0 = time.perf_counter()
    mix = _load(tmp_path, text)
    assert time.perf_counter() - t0 < 5
    last = mix.sources[-1]
    assert len(mix.sources) == n and last.name == f"s{n - 1}" and last.min_text_length == 5
    assert last.filters.exclude == mix.filters.exclude and len(last.filters.exclude) == 40


def test_node_bound_leaves_room_for_big_plain_lists(tmp_path):
    docs = ", ".join(f"'d{i}/*.gz'" for i in range(20_000))
    mix = _load(tmp_path, BASE.replace('["wiki/*.jsonl.gz"]', f"[{docs}]"))
    assert len(mix.sources[0].documents) == 20_000 and 20_000 < MAX_YAML_NODES


# ---------------------------------------------------------------------------------------------
# numbers: finite and in range


NUMBER_CASES = [
    ("name: wiki,", "name: wiki, tokens: .inf,", "sources[0] (wiki).tokens"),
    ("name: wiki,", "name: wiki, tokens: .nan,", "sources[0] (wiki).tokens"),
    ("name: wiki,", f"name: wiki, tokens: {MAX_TOKENS * 10:.0f},", "sources[0] (wiki).tokens"),
    ("name: wiki,", "name: wiki, tokens_available: .inf,", "sources[0] (wiki).tokens_available"),
    ("name: wiki,", "name: wiki, documents_available: .nan,", "sources[0] (wiki).documents_available"),
    ("name: wiki,", "name: wiki, proportion: 1000000,", "sources[0] (wiki).proportion"),
    ("name: wiki,", "name: wiki, proportion: .nan,", "sources[0] (wiki).proportion"),
    ("name: wiki,", "name: wiki, proportion: .inf,", "sources[0] (wiki).proportion"),
    ("name: wiki,", f"name: wiki, proportion: {MAX_PROPORTION + 1},", "sources[0] (wiki).proportion"),
    ("experiment: exp", "experiment: exp\ntotal_tokens: .inf", "total_tokens"),
    ("experiment: exp", "experiment: exp\nscale: -1", "scale"),
    ("experiment: exp", "experiment: exp\nscale: 0", "scale"),
    ("experiment: exp", "experiment: exp\nscale: .nan", "scale"),
    ("experiment: exp", "experiment: exp\nscale: .inf", "scale"),
    ("experiment: exp", "experiment: exp\nscale: lots", "scale"),
    ("experiment: exp", "experiment: exp\ndedup: {minhash: {threshold: .nan}}", "dedup.minhash.threshold"),
    ("experiment: exp", "experiment: exp\ndedup: {paragraphs: {overlap_threshold: .nan}}",
     "dedup.paragraphs.overlap_threshold"),
    ("experiment: exp", "experiment: exp\nspan_replacement: [{attribute: a, min_score: .nan}]",
     "span_replacement.0.min_score"),
    ("experiment: exp", "experiment: exp\nspan_replacement: [{attribute: a, max_score: -.inf}]",
     "span_replacement.0.max_score"),
    ("experiment: exp", "experiment: exp\ntaggers: [{name: char_length_v1, num_gpus: .inf}]", "taggers.0.num_gpus"),
]


@pytest.mark.parametrize("old,new,field", NUMBER_CASES, ids=[n for _, n, _ in NUMBER_CASES])
def test_numbers_must_be_finite_and_in_range(tmp_path, old, new, field):
    msg = _refused(tmp_path, BASE.replace(old, new))
    assert f"  - {field}: " in msg, msg


def test_numbers_in_range_still_load(tmp_path):
    mix = _load(tmp_path, BASE.replace("name: wiki,", f"name: wiki, proportion: {MAX_PROPORTION},")
                + "scale: auto\n")
    assert mix.sources[0].proportion == MAX_PROPORTION and mix.scale == "auto"
    mix = _load(tmp_path, BASE.replace("name: wiki,", "name: wiki, tokens: 2.5e12,")
                + "scale: 0.01\ntotal_tokens: 1e13\n")
    assert mix.sources[0].tokens == 2.5e12 and mix.scale == 0.01 and mix.total_tokens == 1e13


@pytest.mark.parametrize("value,expected", [("auto", "auto"), ("0.5", 0.5), (2, 2.0), ("1e3", 1000.0)])
def test_check_scale_accepts(value, expected):
    assert check_scale(value) == expected


@pytest.mark.parametrize("value", ["0", "-1", "nan", "inf", "-inf", "1e400", "lots", "", None, True, 1e7, "AUTO"])
def test_check_scale_refuses(value):
    with pytest.raises(InputError, match="--scale must be 'auto' or a finite number > 0"):
        check_scale(value)


def test_check_name_for_the_command_line():
    assert check_name("cc_v1.7", "--experiment") == "cc_v1.7"
    for bad in EVIL:
        with pytest.raises(InputError, match="--experiment .* becomes a folder name under the output"):
            check_name(bad, "--experiment")


def test_check_workers():
    assert check_workers(1) == 1 and check_workers("8") == 8 and check_workers(4.0) == 4
    for bad in [0, -3, "0", "two", "1.5", 1.5, None, True, float("nan"), float("inf")]:
        with pytest.raises(InputError, match="--workers must be a whole number >= 1"):
            check_workers(bad)


# ---------------------------------------------------------------------------------------------
# config_diff: which fields changed


def test_config_diff_on_a_hand_made_pair():
    old = {"name": "m", "seed": 0, "scale": 1.0, "taggers": [{"name": "a", "options": {}}],
           "dedup": {"exact": {"attribute": "exact_duplicates", "key": "text"}, "minhash": None},
           "filters": {"include": [], "exclude": [".x > 1"]},
           "sources": [{"name": "web", "proportion": 1.0, "documents": ["w/*.gz"]},
                       {"name": "books", "proportion": 1.0, "documents": ["b/*.gz"]},
                       {"name": "code", "tokens": 5.0, "documents": ["c/*.gz"]}]}
    new = {"name": "m", "seed": 3, "scale": 1, "taggers": [{"name": "a", "options": {"k": "v" * 100}}],
           "dedup": {"exact": {"attribute": "exact_duplicates", "key": "metadata.url"}, "minhash": {"bands": 9}},
           "filters": {"include": [], "exclude": [".x > 2", ".y"]},
           "sources": [{"name": "books", "proportion": 2.0, "documents": ["b/*.gz"]},  # reordered: paired by name
                       {"name": "web", "proportion": 1.0, "documents": ["w/*.gz", "w2/*.gz"]},
                       {"name": "papers", "proportion": 1.0, "documents": ["p/*.gz"]}]}
    assert config_diff(old, new) == [
        "seed: 0 -> 3",  # scale 1.0 -> 1 is the same number
        'taggers[a].options.k: <absent> -> "' + "v" * 56 + "...",
        'dedup.exact.key: "text" -> "metadata.url"',
        'dedup.minhash: null -> {"bands": 9}',
        'filters.exclude[0]: ".x > 1" -> ".x > 2"',
        'filters.exclude[1]: <absent> -> ".y"',
        'sources[web].documents[1]: <absent> -> "w2/*.gz"',
        "sources[books].proportion: 1.0 -> 2.0",
        'sources[code]: {"documents": ["c/*.gz"], "name": "code", "tokens": 5.0} -> <absent>',
        'sources[papers]: <absent> -> {"documents": ["p/*.gz"], "name": "papers", "proportion":...',  # ~60 chars
    ]
    assert config_diff(old, old) == [] and config_diff(new, new) == []
    assert config_diff({"a": 1, "b": True}, {"a": 1.0, "b": 1}) == ["b: true -> 1"]  # a bool is not a number


def test_config_diff_of_two_loaded_mixes(tmp_path):
    a = _load(tmp_path, BASE + "  - {name: books, documents: [b/*.gz], proportion: 1.0}\n"
              "taggers: [char_length_v1]\ndedup:\n  exact: {}\n")
    b = _load(tmp_path, BASE + "  - {name: books, documents: [b/*.gz], proportion: 2.0}\n"
              "seed: 3\ntaggers: [char_length_v1, vowel_count_v1]\ndedup:\n  exact: {key: metadata.url}\n")
    diff = config_diff(a.model_dump(mode="json"), b.model_dump(mode="json"))
    assert [d.split(": ", 1)[0] for d in diff] == ["seed", "taggers[vowel_count_v1]", "dedup.exact.key",
                                                   "sources[books].proportion"], diff
    assert "sources[books].proportion: 1.0 -> 2.0" in diff
    assert all(len(side) <= 60 for d in diff for side in d.split(": ", 1)[1].split(" -> ")), diff


def test_config_diff_by_index_where_names_repeat():
    old = {"taggers": [{"name": "t", "experiment": "a"}, {"name": "t", "experiment": "b"}]}
    new = {"taggers": [{"name": "t", "experiment": "a"}, {"name": "t", "experiment": "c"}]}
    assert config_diff(old, new) == ['taggers[1].experiment: "b" -> "c"']
    assert config_diff({"x": [1, 2]}, {"x": [1]}) == ["x[1]: 2 -> <absent>"]
    assert config_diff({"x": {"y": 1}}, {"x": None}) == ['x: {"y": 1} -> null']
