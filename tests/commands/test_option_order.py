"""Options anywhere on the line, on every command (the README's own `fitrain experiment X --slurm key=val`), and
shipped recipes that work from any directory."""
from __future__ import annotations

import json

import pytest
import yaml

from tests.helpers.cli import assert_clean_error, run_main


@pytest.mark.parametrize("argv, key, value", [
    (["train", "train/fi-tiny", "--print-config", "max_steps=7", "optim.lr=0.5"], "max_steps", 7),
    (["train", "--print-config", "train/fi-tiny", "max_steps=7"], "max_steps", 7),
    (["train", "max_steps=7", "--print-config", "optim.lr=0.5"], "optim.lr", 0.5),
    (["prepare", "--print-config", "pack.seq_len=77"], "pack.seq_len", 77),
    (["tokenizer", "train", "vocab_size=300", "--print-config", "out=x"], "out", "x"),
    (["data-gen", "match", "data_gen/quickstart", "--print-config", "num_shards=5"], "num_shards", 5),
    (["experiment", "tiny-cpu", "--print-config", "train.max_steps=9"], "train.max_steps", 9),
    (["eval", "eval/local", "--print-config", "model=/m"], "model", "/m"),
])
def test_print_config_anywhere(argv, key, value, capsys):
    r = run_main(argv, capsys)
    assert r.rc == 0, r.err
    cfg = yaml.safe_load(r.out)
    for part in key.split("."):
        cfg = cfg[part]
    assert cfg == value


def test_experiment_slurm_option_between_recipe_and_overrides(tmp_path, capsys):
    run = tmp_path / "run"
    r = run_main(["experiment", "tiny-cpu", "--slurm", f"run_dir={run}", "slurm.train.account=myproj", "--dry-run",
                  "slurm.train.partition=gpu"], capsys)
    assert r.rc == 0, r.err
    assert "#SBATCH --account=myproj" in r.out and "#SBATCH --partition=gpu" in r.out
    assert not run.exists()  # a dry run writes nothing


def test_step_and_shard_options_between_overrides(tmp_path, capsys):
    r = run_main(["experiment", "tiny-cpu", f"run_dir={tmp_path}", "--step", "report", "data_gen.num_shards=3",
                  "--dry-run", "heldout_shards=1"], capsys)
    assert r.rc == 0, r.err
    assert "report" in r.out and "prepare-fi" not in r.out


def test_quickstart_and_slurm_render_take_options_anywhere(tmp_path, capsys):
    r = run_main(["quickstart", "train.max_steps=3", "--out", tmp_path / "q", "--dry-run", "data_gen.num_shards=5"],
                 capsys)
    assert r.rc == 0, r.err
    assert "[array of 5]" in r.out  # the override after --dry-run was applied
    r = run_main(["slurm", "render", "tiny-cpu", "--out", tmp_path / "sb", "slurm.steps.time=01:00:00",
                  "--step", "report"], capsys)
    assert r.rc == 0, r.err
    assert "#SBATCH --time=01:00:00" in (tmp_path / "sb" / "report.sbatch").read_text()


def test_eval_report_run_dirs_around_out(tmp_path, capsys):
    r = run_main(["eval", "report", tmp_path / "a", "--out", tmp_path / "rep", tmp_path / "b"], capsys)
    # both run dirs reached the report (they do not exist: the error names the second one too)
    assert r.rc != 0 or (tmp_path / "rep").exists()
    assert "unrecognized arguments" not in r.err


def test_an_unknown_option_anywhere_is_still_refused(capsys):
    r = run_main(["prepare", "pack.seq_len=8", "--print-confg"], capsys)
    assert_clean_error(r, "unrecognized arguments: --print-confg")


def test_shipped_data_gen_recipe_works_outside_the_checkout(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the bank is named relative to the package, not to the working directory
    r = run_main(["data-gen", "templatize", "data_gen/quickstart", f"run_dir={tmp_path / 'run'}"], capsys)
    assert r.rc == 0, r.err
    out = json.loads(r.out[r.out.index("{"):])
    assert out["templatize"]["out"] > 100
