"""Same input, config and seed give byte-identical outputs at any worker count, run after run."""
import pytest
from conftest import run_cli, write_mix
from test_crash import tree_hashes

pytestmark = pytest.mark.slow  # pipeline runs on a local Ray


def test_byte_identical_at_1_and_2_workers_and_across_runs(tmp_path):
    extra = "filters:\n  exclude: ['.attributes.t__char_length_v1__length[0][2] < 200']\n"
    mix = write_mix(tmp_path / "mix.yaml", ["wiki", "flan", "c4", "reddit", "cc_en_head", "cc_en_tail", "starcoder"], extra)
    text = mix.read_text().replace("{name: reddit,", "{name: reddit, proportion: 0.5,").replace(
        "{name: wiki,", "{name: wiki, proportion: 1.5,")
    mix.write_text(text)
    hashes = []
    for i, workers in enumerate(("1", "2", "2")):
        out = tmp_path / f"o{i}"
        run_cli("run", str(mix), "--output", str(out), "--workers", workers, "-q", check=True)
        hashes.append(tree_hashes(out))
    assert len(hashes[0]) > 50
    assert any(k.startswith("tokens/wiki/") for k in hashes[0]) and any(k.startswith("dropped/") for k in hashes[0])
    assert hashes[0] == hashes[1] == hashes[2]
