"""The example sbatch scripts in slurm/ are what `fitrain slurm render` makes today: each command of
slurm/README.md's regenerate block, rendered afresh, gives exactly the committed folder (no script missing,
stale or left over from a step that is gone)."""
from __future__ import annotations

import shlex

import pytest

from tests.helpers.cli import run_main
from tests.helpers.paths import REPO


def _render_commands() -> list[list[str]]:
    text = (REPO / "slurm" / "README.md").read_text()
    return [shlex.split(line)[1:] for line in text.splitlines() if line.startswith("fitrain slurm render ")]


def test_the_readme_renders_every_example_folder():
    folders = {words[words.index("--out") + 1] for words in _render_commands()}
    assert folders == {f"slurm/{p.name}" for p in (REPO / "slurm").iterdir() if p.is_dir()}
    assert "slurm/table1-1.8b" in folders


@pytest.mark.parametrize("words", _render_commands(), ids=lambda w: w[w.index("--out") + 1])
def test_the_committed_examples_equal_a_fresh_render(words, tmp_path, capsys):
    i = words.index("--out")
    committed = REPO / words[i + 1]
    r = run_main(words[:i + 1] + [tmp_path] + words[i + 2:], capsys)
    assert r.rc == 0, r.err
    fresh = {p.name: p.read_text() for p in tmp_path.iterdir()}
    have = {p.name: p.read_text() for p in committed.iterdir()}
    regenerate = f"stale: regenerate with `fitrain {' '.join(words)}` (slurm/README.md)"
    assert sorted(have) == sorted(fresh), regenerate
    assert [n for n in sorted(fresh) if have[n] != fresh[n]] == [], regenerate
