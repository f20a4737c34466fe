"""`fitrain slurm submit fi-vs-standard-1.8b --dry-run`: the training job of a 4-node x 8-GPU recipe."""
import re

from fitrain.cli import main


def _scripts(out: str) -> dict[str, str]:
    parts = re.split(r"^# ---- (\S+)\.sbatch ----$", out, flags=re.MULTILINE)
    return {parts[i]: parts[i + 1] for i in range(1, len(parts), 2)}


def test_dry_run_sbatch_for_the_1p8b_recipe(capsys, tmp_path):
    rc = main(["slurm", "submit", "fi-vs-standard-1.8b", f"run_dir={tmp_path / 'run'}", "--dry-run"])
    assert rc == 0
    out = capsys.readouterr().out
    scripts = _scripts(out)
    assert {"train-fi", "train-standard", "data_gen", "report"} <= set(scripts)
    train = scripts["train-fi"]
    sb = [line for line in train.splitlines() if line.startswith("#SBATCH")]
    # the lead: 60 s + a 1.8b checkpoint (21.7 GB) at 200 MB/s; exclusive without mem: --mem=0
    for want in ("--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8", "--signal=USR1@169", "--requeue",
                 "--open-mode=append", "--job-name=fi-vs-standard-1.8b.train-fi", "--exclusive", "--mem=0"):
        assert f"#SBATCH {want}" in sb, want
    assert not any(s.startswith("#SBATCH --ntasks=") for s in sb)
    srun = [line for line in train.splitlines() if line.startswith("srun ")]
    assert len(srun) == 1
    assert srun[0].startswith("srun --job-name=fi-vs-standard-1.8b.train-fi --nodes=4 --ntasks-per-node=8 ")
    assert srun[0].endswith(f"-m fitrain.cli experiment {tmp_path / 'run' / 'experiment.yaml'} --step train-fi")
    assert "source .venv/bin/activate" in train
    # data_gen is a job array (1024 shards, 16 contiguous shards per task) with at most 64 tasks at once;
    # other steps are one task
    assert "#SBATCH --array=0-63%64" in scripts["data_gen"]
    assert '--step data_gen --shard "${SLURM_ARRAY_TASK_ID}"' in scripts["data_gen"]
    assert "#SBATCH --nodes=1" in scripts["report"] and "#SBATCH --ntasks-per-node=1" in scripts["report"]
    assert not (tmp_path / "run").exists()  # a dry run writes nothing


def test_dry_run_of_table1_renders_every_arms_jobs_with_their_dependencies(capsys, tmp_path):
    from fitrain.pipeline.graph import experiment_steps
    from fitrain.pipeline.run import load_experiment

    rc = main(["slurm", "submit", "table1-1.8b", f"run_dir={tmp_path / 'run'}", "--dry-run"])
    assert rc == 0
    scripts = _scripts(capsys.readouterr().out)
    cfg = load_experiment("table1-1.8b", [f"run_dir={tmp_path / 'run'}"])
    steps = experiment_steps(cfg)
    assert set(scripts) == {s.name for s in steps}  # one job per step, nothing left out
    arms = cfg.arm_set().names
    assert len(arms) == 9 and cfg.seeds == [0, 1, 2]
    for arm in arms:
        assert f"prepare-{arm}" in scripts
        for k in (0, 1, 2):
            for kind in ("train", "eval"):
                assert f"{kind}-{arm}.seed{k}" in scripts, (kind, arm, k)
            if arm != "fi":
                assert f"h2h-fi.seed{k}-vs-{arm}.seed{k}" in scripts
    for s in steps:  # every job waits for exactly its unfinished dependencies
        first = scripts[s.name].lstrip("\n").splitlines()[0]
        want = ("# sbatch --parsable --dependency=afterok:" + ":".join(f"<{d}>" for d in s.deps)) if s.deps \
            else "# sbatch --parsable (no dependency)"
        assert first == want, s.name
    train = scripts["train-ipt.seed2"]
    assert "#SBATCH --nodes=4" in train and "#SBATCH --gpus-per-node=8" in train
    assert train.rstrip().endswith("--step train-ipt.seed2")
    assert scripts["train-ipt.seed2"].splitlines()[1] == \
        "# sbatch --parsable --dependency=afterok:<prepare-ipt>:<prepare-fi>:<prepare-heldout>"
    gen = scripts["generate-qa"]  # a generated baseline: a job array over the training shards, GPU resources
    assert "#SBATCH --array=0-63%64" in gen and "#SBATCH --gpus-per-node=1" in gen  # 1023 shards, 16 per task
    assert '--step generate-qa --shard "${SLURM_ARRAY_TASK_ID}"' in gen
    assert scripts["source-ipt"].splitlines()[1] == "# sbatch --parsable (no dependency)"
    assert "<prepare-fi>" in scripts["source-nemotron_mix"].splitlines()[1]
    assert "<data_gen>" in scripts["pairs-fi_nojudge"].splitlines()[1]
    assert not (tmp_path / "run").exists()


def test_cpu_steps_ask_for_no_gpu_and_eval_steps_for_one(capsys, tmp_path):
    rc = main(["slurm", "submit", "table1-1.8b", f"run_dir={tmp_path / 'run'}", "--dry-run"])
    assert rc == 0
    scripts = _scripts(capsys.readouterr().out)
    gpus = {name: [line for line in s.splitlines() if line.startswith("#SBATCH --gpus-per-node=")]
            for name, s in scripts.items()}
    for cpu in ("corpus", "tokenizer", "prepare-fi", "prepare-standard", "prepare-heldout", "source-ipt",
                "pairs-fi_nojudge", "report"):
        assert gpus[cpu] == [], cpu
    for gpu, n in (("eval-fi.seed0", 1), ("eval-ipt.seed2", 1), ("h2h-fi.seed1-vs-standard.seed1", 1),
                   ("train-fi.seed0", 8), ("data_gen", 1), ("generate-qa", 1)):
        assert gpus[gpu] == [f"#SBATCH --gpus-per-node={n}"], gpu
    # a job whose afterok dependency failed is cancelled by Slurm, never left pending
    assert all("#SBATCH --kill-on-invalid-dep=yes\n" in s for s in scripts.values())


def _paper_recipe(tmp_path, *overrides):
    from fitrain.pipeline.run import load_experiment

    return load_experiment("fi-vs-standard-300m", [f"run_dir={tmp_path / 'run'}", *overrides])


def test_a_loopback_judge_is_refused_unless_no_eval_step_needs_it(tmp_path):
    import pytest

    from fitrain.core.errors import FitrainError
    from fitrain.pipeline.graph import experiment_steps
    from fitrain.pipeline.submit import check_judge_reachable

    def check(cfg, steps=None):
        check_judge_reachable(cfg, steps if steps is not None else experiment_steps(cfg))

    for url in ("http://127.0.0.1:8000/v1", "http://localhost:9000/v1"):
        with pytest.raises(FitrainError, match=r"set eval.judge.llm.base_url to a judge server the compute nodes "
                                               r"can reach .*or disable eval.mixeval/eval.mtbench101/eval.pairwise"):
            check(_paper_recipe(tmp_path, f"eval.judge.llm.base_url={url}"))
    with pytest.raises(FitrainError, match=r"or disable eval.mtbench101$"):
        check(_paper_recipe(tmp_path, "eval.mixeval.enabled=false", "eval.pairwise.enabled=false"))
    # reachable judges, no judged benchmark, or no eval step submitted: the check passes
    check(_paper_recipe(tmp_path, "eval.judge.llm.base_url=http://judge07:8000/v1"))
    check(_paper_recipe(tmp_path, *(f"eval.{n}.enabled=false" for n in ("mixeval", "mtbench101", "pairwise"))))
    cfg = _paper_recipe(tmp_path)
    check(cfg, [s for s in experiment_steps(cfg) if s.name == "train-fi"])


def test_the_experiment_refuses_a_loopback_judge_before_it_writes_the_run_directory(tmp_path, monkeypatch):
    import pytest

    from fitrain.core.errors import FitrainError
    from fitrain.pipeline import slurm
    from fitrain.pipeline.run import run_experiment

    monkeypatch.setattr(slurm, "check_reachable", lambda *a, **k: None)  # as if Slurm answered
    cfg = _paper_recipe(tmp_path)
    with pytest.raises(FitrainError, match="set eval.judge.llm.base_url to a judge server"):
        run_experiment(cfg, slurm=True, log=lambda m: None)
    assert not cfg.root.exists()  # nothing written: no experiment.yaml, no jobs.json
