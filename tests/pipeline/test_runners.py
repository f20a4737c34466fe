"""How the experiment derives each component's config: same model/seed/budget for both arms, W&B
grouping, Slurm world size, the matched-budget inputs of prepare, and clear errors for bad input."""
import pytest

from fitrain.core.errors import FitrainError
from fitrain.pipeline.graph import ExperimentConfig, experiment_steps
from fitrain.pipeline.run import load_experiment
from fitrain.pipeline.runners import (prepare_config, corpus_step, eval_config, token_matching, train_config)
from fitrain.core.io import write_json


def _cfg(tmp_path, **kw) -> ExperimentConfig:
    return load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'run'}", *[f"{k}={v}" for k, v in kw.items()]])


def test_both_arms_share_model_seed_budget_and_wandb_group(tmp_path, monkeypatch):
    for var in ("SLURM_JOB_ID", "SLURM_NNODES", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(var, raising=False)
    cfg = _cfg(tmp_path, seed=7)
    fi, std = train_config(cfg, "fi"), train_config(cfg, "standard")
    assert fi.model == std.model and fi.optim == std.optim and fi.data.micro_batch_size == std.data.micro_batch_size
    assert fi.seed == std.seed == 7
    fi_dir = str(cfg.root / "prepared" / "fi")
    assert fi.budget_from == std.budget_from == fi_dir          # matched total tokens, cut exactly
    assert fi.budget_from_epochs == std.budget_from_epochs
    assert fi.data.path == fi_dir and std.data.path == str(cfg.root / "prepared" / "standard")
    assert fi.data.val_path == std.data.val_path == str(cfg.root / "prepared" / "heldout")
    assert fi.tokenizer == std.tokenizer == str(cfg.root / "tokenizer")
    assert fi.wandb.project == std.wandb.project and fi.wandb.group == std.wandb.group == "tiny-cpu"
    assert (fi.wandb.name, std.wandb.name) == ("fi-tiny", "standard-tiny")
    assert fi.run_dir.endswith("train/fi") and std.run_dir.endswith("train/standard")
    assert fi.num_nodes == 1


def test_an_explicit_budget_is_used_for_both_arms(tmp_path):
    cfg = _cfg(tmp_path, **{"train.max_tokens": 12345})
    assert train_config(cfg, "fi").max_tokens == train_config(cfg, "standard").max_tokens == 12345
    assert train_config(cfg, "standard").budget_from == ""


def test_under_srun_the_world_comes_from_slurm(tmp_path, monkeypatch):
    monkeypatch.setenv("SLURM_JOB_ID", "42")
    monkeypatch.setenv("SLURM_NNODES", "4")
    monkeypatch.setenv("SLURM_NTASKS_PER_NODE", "8(x4)")
    tc = train_config(_cfg(tmp_path), "fi")
    assert (tc.num_nodes, tc.devices, tc.strategy) == (4, 8, "ddp")


def test_prepare_inputs_for_each_arm(tmp_path):
    cfg = _cfg(tmp_path, **{"data_gen.num_shards": 3, "heldout_shards": 1})
    final = cfg.root / "data_gen" / "final"
    for i in range(3):
        (final / f"shard-{i:05d}").mkdir(parents=True)
        (final / f"shard-{i:05d}" / "pairs.parquet").write_bytes(b"")
    fi, std, held = (prepare_config(cfg, a) for a in ("fi", "standard", "heldout"))
    assert fi.input.paths == std.input.paths == [str(final / "shard-00000/pairs.parquet"),
                                                 str(final / "shard-00001/pairs.parquet")]
    assert held.input.paths == [str(final / "shard-00002/pairs.parquet")]
    assert fi.budget.enabled and not std.budget.enabled and not held.budget.enabled
    assert std.documents_from_pairs and std.budget_from == fi.out
    assert fi.tokenizer == std.tokenizer == held.tokenizer
    assert fi.budget.seed == cfg.seed
    (final / "shard-00001" / "pairs.parquet").unlink()
    with pytest.raises(FitrainError, match="data_gen wrote no pairs file"):
        prepare_config(cfg, "fi")


def test_heldout_needs_training_shards(tmp_path):
    with pytest.raises(FitrainError, match="heldout_shards"):
        _cfg(tmp_path, **{"data_gen.num_shards": 1, "heldout_shards": 1}).validate()


def test_missing_corpus_is_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, **{"corpus.builtin": False, "corpus.paths": f"[{tmp_path}/nowhere/*.jsonl]"})
    step = experiment_steps(cfg)[0]
    with pytest.raises(FitrainError, match="nowhere/\\*.jsonl' matches no file"):
        corpus_step(cfg, step, None)


def test_eval_head_to_head_uses_the_baseline_arm(tmp_path):
    cfg = _cfg(tmp_path, **{"eval.pairwise.enabled": True})
    assert eval_config(cfg, "fi").pairwise.baseline_outputs == str(cfg.root / "eval" / "standard")
    names = [s.name for s in experiment_steps(cfg)]
    assert names.index("eval-standard") < names.index("eval-fi")


def test_token_matching_within_one_sequence(tmp_path):
    cfg = _cfg(tmp_path)
    seq = cfg.prepare.pack.seq_len
    write_json(cfg.root / "train/fi/summary.json", {"tokens": 100_000, "supervised_tokens": 40_000})
    write_json(cfg.root / "train/standard/summary.json", {"tokens": 100_000 - seq, "supervised_tokens": 99_000})
    assert token_matching(cfg)["matched_within_one_sequence"] is True
    write_json(cfg.root / "train/standard/summary.json", {"tokens": 100_000 - seq - 1, "supervised_tokens": 1})
    assert token_matching(cfg)["matched_within_one_sequence"] is False


def test_a_budget_the_data_cannot_meet_is_refused(tmp_path, tokenizer_dir, pairs_shards):
    # up front, before any step runs
    with pytest.raises(FitrainError, match="the budget cannot be met"):
        _cfg(tmp_path, **{"train.budget_from_epochs": 8, "train.data.max_epochs": 4}).validate()
    # and when the prepared data turns out too small for an explicit budget
    from fitrain.pipeline.run import run_step
    from fitrain.pipeline.runners import RUNNERS
    from fitrain.core.io import mark_done
    import shutil

    cfg = _cfg(tmp_path, **{"train.max_tokens": 10**9, "heldout_shards": 0, "train.wandb.mode": "disabled"})
    shutil.copytree(tokenizer_dir, cfg.root / "tokenizer")
    shutil.copytree(pairs_shards, cfg.root / "prepared" / "fi")
    mark_done(cfg.layout.step_marker_dir("prepare-fi"))
    step = {s.name: s for s in experiment_steps(cfg)}["train-fi"]
    with pytest.raises(FitrainError, match="the budget cannot be met: max_tokens=1000000000"):
        run_step(cfg, step, runners=RUNNERS, log=lambda m: None)


def _schemas():
    from data_gen.config import DataGenConfig
    from fitrain.data.prepare import PrepareConfig
    from fitrain.data.tokenizer import TokenizerConfig
    from fitrain.train.config import TrainConfig
    from fitrain_eval.run import EvalConfig

    return {"tokenizer": TokenizerConfig, "data_gen": DataGenConfig, "prepare": PrepareConfig, "train": TrainConfig,
            "eval": EvalConfig}


@pytest.mark.parametrize("recipe", ["tiny-cpu", "quickstart", "fi-vs-standard-1.8b"])
def test_each_step_prints_an_equivalent_single_command(tmp_path, recipe):
    """The by-hand command of every step, parsed back, gives exactly the config the step runs with."""
    from fitrain.core.config import load_config
    from fitrain.pipeline import runners

    cfg = load_experiment(recipe, [f"run_dir={tmp_path / 'run'}"])
    schemas, derived = _schemas(), {
        "tokenizer": lambda s: runners.tokenizer_config(cfg, check=False),
        "data_gen": lambda s: runners.data_gen_config(cfg, check=False),
        "prepare": lambda s: runners.prepare_config(cfg, s.name.split("-", 1)[1], check=False),
        "train": lambda s: runners.train_config(cfg, s.name.split("-", 1)[1]),
        "eval": lambda s: runners.eval_config(cfg, s.name.split("-", 1)[1], check=False)}
    for step in experiment_steps(cfg):
        argv = runners.step_command(cfg, step)
        assert argv[0] == "fitrain"
        kind = step.name.split("-", 1)[0]
        if kind not in schemas:
            assert argv[1:3] == ["experiment", str(cfg.layout.config)] and argv[-1] == step.name
            continue
        overrides = [a for a in argv if "=" in a and not a.startswith("-")]
        assert load_config(schemas[kind], None, overrides) == derived[kind](step), step.name


def test_the_printed_tokenizer_command_does_what_the_step_does(tmp_path, capsys):
    """Run one printed command for real and compare its output with the experiment step's."""
    import shutil

    from fitrain.cli import main
    from fitrain.data.tokenizer import tokenizer_hash
    from fitrain.pipeline import runners

    cfg = load_experiment("quickstart", [f"run_dir={tmp_path / 'run'}", "corpus.max_documents=40",
                                         "tokenizer.vocab_size=300"])
    steps = {s.name: s for s in experiment_steps(cfg)}
    runners.corpus_step(cfg, steps["corpus"], None)
    argv = runners.step_command(cfg, steps["tokenizer"])
    assert main(argv[1:]) == 0
    by_hand = tokenizer_hash(cfg.layout.tokenizer)
    shutil.rmtree(cfg.layout.tokenizer)
    runners.tokenizer_step(cfg, steps["tokenizer"], None)
    assert tokenizer_hash(cfg.layout.tokenizer) == by_hand


def test_dry_run_prints_the_by_hand_command_of_every_step(tmp_path, capsys):
    from fitrain.cli import main

    assert main(["experiment", "tiny-cpu", f"run_dir={tmp_path / 'run'}", "--dry-run"]) == 0
    out = capsys.readouterr().out
    cfg = load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'run'}"])
    assert out.count("by hand") == len(experiment_steps(cfg))
    assert "by hand: fitrain train run_dir=" in out and "by hand for shard in 0..3: fitrain data-gen run" in out
    assert not (tmp_path / "run").exists()
