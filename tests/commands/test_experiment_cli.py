"""`fitrain quickstart` and `fitrain experiment` from the command line: the plan, the frozen config, errors."""
from fitrain.cli import main


def test_quickstart_dry_run_prints_the_plan_and_writes_nothing(tmp_path, capsys):
    out_dir = tmp_path / "qs"
    assert main(["quickstart", "--out", str(out_dir), "--dry-run"]) == 0
    out = capsys.readouterr().out
    for step in ("corpus", "tokenizer", "data_gen", "prepare-fi", "prepare-standard", "prepare-heldout",
                 "train-fi", "train-standard", "eval-fi", "eval-standard", "report"):
        assert f" {step} " in out, step
    assert "[quickstart 00:0" in out and not out_dir.exists()


def test_experiment_errors_are_clear_not_tracebacks(tmp_path, capsys):
    assert main(["experiment", "fi-vs-standrd-300m", "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("fitrain experiment: error: unknown experiment recipe 'fi-vs-standrd-300m'; "
                          "did you mean 'fi-vs-standard-300m'?")
    assert main(["experiment", "tiny-cpu", f"run_dir={tmp_path}", "heldout_shards=9", "--dry-run"]) == 2
    assert "heldout_shards (9) must be below" in capsys.readouterr().err
    assert main(["experiment", "tiny-cpu", f"run_dir={tmp_path}", "--step", "train-gpt"]) == 2
    assert "unknown step(s) ['train-gpt']" in capsys.readouterr().err


def test_a_step_from_the_frozen_config_refuses_unfinished_dependencies(tmp_path, capsys):
    from fitrain.pipeline.run import load_experiment, save_config

    cfg = load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'run'}"])
    frozen = save_config(cfg)
    assert main(["experiment", str(frozen), "--step", "prepare-fi"]) == 2
    assert "needs ['data_gen', 'tokenizer'] to finish first" in capsys.readouterr().err
    assert main(["experiment", str(frozen), "--step", "data_gen", "--shard", "7"]) == 2
    assert "--shard must be 0..3" in capsys.readouterr().err


def test_slurm_unreachable_is_a_clear_error(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))
    assert main(["slurm", "submit", "tiny-cpu", f"run_dir={tmp_path / 'run'}"]) == 2
    assert "Slurm is not reachable: sbatch, sinfo, scontrol not found on PATH" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()
