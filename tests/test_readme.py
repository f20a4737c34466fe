"""The README's example commands are real: every `fitrain ...` line of its indented examples parses and runs
as far as a check can without data (`--dry-run` for the commands that plan, `--print-config` for the rest)."""
import shlex
from pathlib import Path

import pytest

from fitrain.cli import main
from tests.helpers.paths import REPO

PLANNING = {"data-gen", "experiment", "slurm"}     # they have --dry-run
NEEDS_DATA = {"verify", "export", "quickstart"}    # they read existing directories (tested elsewhere)


def readme_commands() -> list[str]:
    out = []
    for line in (REPO / "README.md").read_text().splitlines():
        cmd = line[4:].split("  #")[0].strip() if line.startswith("    fitrain ") else ""
        if cmd and "..." not in cmd and not cmd.endswith("\\") and shlex.split(cmd)[1] not in NEEDS_DATA:
            out.append(cmd)
    return out


@pytest.mark.parametrize("cmd", readme_commands())
def test_a_readme_command_parses_and_checks(cmd, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)  # relative paths of the examples (runs/x ...) land in a scratch directory
    argv = shlex.split(cmd)[1:]
    flag = "--dry-run" if argv[0] in PLANNING else "--print-config"
    rc = main(argv + ([] if flag in argv else [flag]))
    assert rc == 0, capsys.readouterr().err
    assert not any(tmp_path.iterdir()), "a check wrote files"


def test_the_readme_has_examples_of_every_command():
    names = {shlex.split(c)[1] for c in readme_commands()}
    assert {"data-gen", "tokenizer", "prepare", "train", "eval", "experiment", "slurm"} <= names
