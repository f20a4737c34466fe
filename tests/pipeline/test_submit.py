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
    for want in ("--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8", "--signal=USR1@90", "--requeue",
                 "--open-mode=append", "--job-name=fi-vs-standard-1.8b.train-fi", "--exclusive"):
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
