"""What `--help` and `--print-config` tell a user is true: the override example of every command is a key of
that command's config, `fitrain eval report` has its own help and --print-config, the Slurm actions explain
themselves with examples that parse."""
from __future__ import annotations

import argparse
import re

import pytest
import yaml

from tests.helpers.cli import run_main

COMMANDS = [["train"], ["prepare"], ["eval", "eval/local"], ["tokenizer", "train"], ["data-gen", "match"]]


def _subparser(parser: argparse.ArgumentParser, words: list[str]) -> argparse.ArgumentParser:
    for word in words:
        sub = next((a for a in parser._actions if isinstance(a, argparse._SubParsersAction)), None)
        if sub is None:
            break
        parser = sub.choices[word]
    return parser


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c))
def test_the_override_example_is_a_key_of_the_command(command, capsys):
    from fitrain.cli import build_parser

    parser = _subparser(build_parser(), [w for w in command if "/" not in w])
    help_ = next(a.help for a in parser._actions if a.dest == "overrides")
    assert "--print-config shows the keys" in help_
    example = re.search(r"e\.g\. ([^)]+)\)", help_).group(1).split()
    r = run_main(command + example + ["--print-config"], capsys)
    assert r.rc == 0, r.err
    cfg = yaml.safe_load(r.out)
    for item in example:
        key, value = item.split("=", 1)
        node = cfg
        for part in key.split("."):
            node = node[part]
        assert str(node) == value or (isinstance(node, float) and node == float(value)), (key, node)


def test_eval_report_print_config_prints_the_settings_and_writes_nothing(tmp_path, capsys):
    r = run_main(["eval", "report", tmp_path / "exp", "reference=standard", "--print-config", "--out",
                  tmp_path / "rep", "bootstrap=200"], capsys)
    assert r.rc == 0, r.err
    cfg = yaml.safe_load(r.out)
    assert cfg["run_dirs"] == [str(tmp_path / "exp")] and cfg["out"] == str(tmp_path / "rep")
    assert cfg["reference"] == "standard" and cfg["bootstrap"] == 200 and cfg["confidence"] == 0.95
    assert list(tmp_path.iterdir()) == []
    r = run_main(["eval", "report", "--print-config"], capsys)  # the defaults, without directories
    assert r.rc == 0 and yaml.safe_load(r.out)["run_dirs"] == []
    r = run_main(["eval", "report", tmp_path, "--print-config", "bootstrapp=3"], capsys)
    assert r.rc == 2 and "bootstrapp" in r.err


def test_eval_report_has_its_own_help_and_eval_help_documents_it(capsys):
    r = run_main(["eval", "report", "--help"], capsys)
    assert r.rc == 0
    assert r.out.startswith("usage: fitrain eval report RUN_DIR...")
    assert "reference=fi" in r.out and "--print-config" in r.out and "lm_eval" not in r.out
    for argv in (["eval", "--help"], ["eval", "eval/local", "--help"]):
        r = run_main(argv, capsys)
        assert r.rc == 0 and r.out.startswith("usage: fitrain eval [-h]")
        assert "fitrain eval RECIPE [key=value ...]" in r.out and "fitrain eval report RUN_DIR..." in r.out
        assert "fitrain eval report --help" in r.out


@pytest.mark.parametrize("action", ["submit", "render"])
def test_slurm_actions_have_a_description_whose_examples_parse(action, tmp_path, capsys, monkeypatch):
    r = run_main(["slurm", action, "--help"], capsys)
    assert r.rc == 0
    examples = [line.split()[3:] for line in r.out.splitlines() if line.startswith(f"  fitrain slurm {action} ")]
    assert len(examples) >= 2
    monkeypatch.chdir(tmp_path)
    for words in examples:
        if action == "submit":
            words = words + ["--dry-run"]
        else:
            words = [str(tmp_path / "out") if w.startswith("slurm/") or w.startswith("/tmp/") else w for w in words]
        r = run_main(["slurm", action] + words, capsys)
        assert r.rc == 0, (words, r.err)
        assert "#SBATCH" in r.out if action == "submit" else r.out.strip().endswith(".sbatch")
    assert action == "render" or not (tmp_path / "runs").exists()  # a dry run writes nothing


@pytest.mark.parametrize("command", ["data-gen", "experiment"])
def test_the_examples_of_the_help_parse(command, tmp_path, capsys, monkeypatch):
    """Every example of the command's help (but those naming a run directory that has to exist) plans with
    --dry-run."""
    r = run_main([command, "run", "--help"] if command == "data-gen" else [command, "--help"], capsys)
    examples = [line.split("#")[0].split()[2:] for line in r.out.splitlines()
                if line.startswith(f"  fitrain {command} ") and "runs/" not in line]
    assert len(examples) >= 2
    monkeypatch.chdir(tmp_path)
    for words in examples:
        r = run_main([command] + words + ([] if "--dry-run" in words else ["--dry-run"]), capsys)
        assert r.rc == 0, (words, r.err)
    assert not (tmp_path / "runs").exists()  # dry runs write nothing
