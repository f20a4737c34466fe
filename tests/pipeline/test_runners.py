"""How the experiment derives each component's config: same model/seed/budget for both arms, W&B
grouping, Slurm world size, the matched-budget inputs of prepare, and clear errors for bad input."""
from pathlib import Path

import pytest

from fitrain.core.errors import FitrainError
from fitrain.pipeline.graph import ExperimentConfig, experiment_steps
from fitrain.pipeline.run import load_experiment
from fitrain.pipeline.configs import eval_config, prepare_config, train_config
from fitrain.pipeline.runners import corpus_step, token_matching
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
        _cfg(tmp_path, **{"data_gen.num_shards": 1, "heldout_shards": 1})
    with pytest.raises(FitrainError, match="eval.heldout.enabled scores the held-out pairs .* but heldout_shards is 0"):
        _cfg(tmp_path, **{"heldout_shards": 0, "eval.heldout.enabled": True})


def test_missing_corpus_is_a_clear_error(tmp_path):
    cfg = _cfg(tmp_path, **{"corpus.builtin": False, "corpus.paths": f"[{tmp_path}/nowhere/*.jsonl]"})
    step = experiment_steps(cfg)[0]
    with pytest.raises(FitrainError, match="nowhere/\\*.jsonl' matches no file"):
        corpus_step(cfg, step, None)


def test_head_to_head_is_a_step_per_baseline_after_both_evaluations(tmp_path):
    from fitrain.pipeline.configs import head_to_head_config

    cfg = _cfg(tmp_path, **{"eval.pairwise.enabled": True})
    assert eval_config(cfg, "fi").pairwise.baseline_outputs == ""      # the evaluation only writes its outputs
    steps = {s.name: s for s in experiment_steps(cfg)}
    h2h = steps["h2h-fi-vs-standard"]
    assert set(h2h.deps) == {"eval-fi", "eval-standard"} and "h2h-fi-vs-standard" in steps["report"].deps
    ec = head_to_head_config(cfg, h2h)
    base = ec.pairwise.baseline_outputs
    assert (base[0] if isinstance(base, list) else base) == str(cfg.root / "eval" / "standard")
    assert ec.pairwise.baseline_name == "standard" and ec.model == str(cfg.root / "train" / "fi")
    assert ec.out == str(cfg.root / "eval" / "fi" / "pairwise" / "standard")
    assert ec.lm_eval.tasks == [] and not ec.mixeval.enabled and not ec.decontamination.enabled


def test_token_matching_within_one_sequence(tmp_path):
    cfg = _cfg(tmp_path)
    seq = cfg.prepare.pack.seq_len
    write_json(cfg.root / "train/fi/summary.json", {"tokens": 100_000, "supervised_tokens": 40_000})
    write_json(cfg.root / "train/standard/summary.json", {"tokens": 100_000 - seq, "supervised_tokens": 99_000})
    assert token_matching(cfg)["matched_within_one_sequence"] is True
    write_json(cfg.root / "train/standard/summary.json", {"tokens": 100_000 - seq - 1, "supervised_tokens": 1})
    assert token_matching(cfg)["matched_within_one_sequence"] is False


def test_a_budget_the_data_cannot_meet_is_refused(tmp_path, tokenizer_dir, pairs_shards):
    # up front, before any step runs: the reference arm itself may read its data only once
    with pytest.raises(FitrainError, match="arm 'fi': the budget cannot be met"):
        _cfg(tmp_path, **{"train.budget_from_epochs": 8,
                          "arms": "[{name: fi, kind: fi, budget: {epochs_allowed: false}}, standard]"})
    # and when the prepared data turns out too small for an explicit budget
    from fitrain.pipeline.run import RUNNERS, run_step
    from fitrain.core.io import mark_done
    import shutil

    cfg = _cfg(tmp_path, **{"train.max_tokens": 10**9, "heldout_shards": 0, "eval.heldout.enabled": False, "train.wandb.mode": "disabled"})
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


@pytest.mark.parametrize("recipe", ["tiny-cpu", "quickstart", "fi-vs-standard-1.8b", "table1-tiny", "table1-1.8b"])
def test_each_step_prints_an_equivalent_single_command(tmp_path, recipe):
    """The by-hand command of every step, parsed back, gives exactly the config the step runs with (every kind
    of arm; the steps that do more than one component print the experiment's own command for that step)."""
    from fitrain.core.config import load_config
    from fitrain.pipeline import runners
    from fitrain.pipeline.arms import Run

    from fitrain.pipeline.blocks import for_step
    from fitrain_eval.run import locate

    top = load_experiment(recipe, [f"run_dir={tmp_path / 'run'}"])
    arm = lambda s: s.arm or s.name.split("-", 1)[1]  # noqa: E731  (prepare-heldout has no arm)
    run = lambda s: Run(s.arm, s.seed, s.run)  # noqa: E731

    def by_hand_eval(cfg, s):  # arm and out left to eval's defaults for a model at <run_dir>/train/<run>
        ec = runners.eval_config(cfg, s.arm, check=False, run=run(s))
        hf = Path(ec.model) / "hf" / "config.json"  # an exported model where the train step writes it
        hf.parent.mkdir(parents=True, exist_ok=True)
        hf.write_text("{}")
        own = (ec.arm, Path(ec.out))
        ec.arm, ec.out = "", ""
        assert (locate(ec).arm, locate(ec).out) == own  # eval's defaults are the step's run and directory
        return ec

    schemas, derived = _schemas(), {
        "tokenizer": lambda cfg, s: runners.tokenizer_config(cfg, check=False),
        "data_gen": lambda cfg, s: runners.data_gen_config(cfg, check=False),
        "prepare": lambda cfg, s: runners.prepare_config(cfg, arm(s), check=False),
        "train": lambda cfg, s: runners.train_config(cfg, s.arm, run(s)),
        "eval": by_hand_eval}
    kinds = set()
    for full in experiment_steps(top):
        argv = runners.step_command(top, full)
        cfg, step = for_step(top, full)  # a block's step: the block's config
        assert argv[0] == "fitrain"
        kind = step.name.split("-", 1)[0]
        kinds.add(kind)
        if kind not in schemas:
            assert argv[1:5] == ["experiment", str(top.layout.config), "--step", full.name], full.name
            assert argv[5:] == (["--shard", "{shard}"] if step.shards else [])
            continue
        overrides = [a for a in argv if "=" in a and not a.startswith("-")]
        assert load_config(schemas[kind], None, overrides) == derived[kind](cfg, step), full.name
    if recipe == "table1-1.8b":
        assert {"source", "generate", "pairs", "h2h"} <= kinds


def test_every_run_of_every_arm_trains_the_reference_budget_with_its_own_seed(tmp_path, monkeypatch):
    from fitrain.pipeline.configs import train_config

    for var in ("SLURM_JOB_ID", "SLURM_NNODES", "SLURM_NTASKS_PER_NODE"):
        monkeypatch.delenv(var, raising=False)
    cfg = load_experiment("table1-tiny", [f"run_dir={tmp_path / 'run'}"])
    configs = {r.id: train_config(cfg, r.arm, r) for r in cfg.runs()}
    assert sorted(configs) == sorted(f"{a}.seed{k}" for a in ("fi", "fi_nojudge", "standard", "qa") for k in (0, 1))
    ref = str(cfg.root / "prepared" / "fi")
    assert {c.budget_from for c in configs.values()} == {ref}              # one budget: the fi arm's tokens
    assert {c.budget_from_epochs for c in configs.values()} == {cfg.train.budget_from_epochs}
    assert {c.data.max_epochs for c in configs.values()} == {0}            # smaller data repeats
    assert {(c.arm, c.seed) for c in configs.values()} == {(a, k) for a in ("fi", "fi_nojudge", "standard", "qa")
                                                           for k in (0, 1)}
    assert len({c.run_dir for c in configs.values()}) == 8 and configs["qa.seed1"].run_dir.endswith("train/qa.seed1")
    assert {configs[f"qa.seed{k}"].data.path for k in (0, 1)} == {str(cfg.root / "prepared" / "qa")}  # data per arm
    assert configs["fi.seed1"].wandb.name == "fi-tiny.seed1" and "seed1" in configs["fi.seed1"].wandb.tags
    assert len({repr((c.model, c.optim)) for c in configs.values()}) == 1  # the same model and optimiser


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


def test_data_gen_counts_tokens_with_the_experiments_tokenizer(tmp_path):
    from fitrain.pipeline.configs import data_gen_config

    cfg = _cfg(tmp_path)
    assert data_gen_config(cfg, check=False).write.tokenizer == str(cfg.root / "tokenizer")
    assert data_gen_config(_cfg(tmp_path, **{"data_gen.write.tokenizer": "/tok"}), check=False).write.tokenizer == "/tok"
    [dg] = [s for s in experiment_steps(cfg) if s.name == "data_gen"]
    assert "tokenizer" in dg.deps  # the write stage needs it trained first
