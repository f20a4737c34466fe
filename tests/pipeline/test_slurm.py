import pytest

from fitrain.core.errors import FitrainError
from fitrain.pipeline.slurm import ARRAY_TASK_ID, SlurmConfig, check_reachable, parse_job_id, quote, render_sbatch


def _lines(script):
    return [line for line in script.splitlines() if line.startswith("#SBATCH")]


def test_gpu_job_one_task_per_gpu_with_signal_requeue_and_append(tmp_path):
    cfg = SlurmConfig(nodes=4, gpus_per_node=8, cpus_per_task=12, mem="480G", time="2-00:00:00",
                      partition="gpu", account="proj", qos="high", setup=["module load cuda/12.4"],
                      python="python")
    s = render_sbatch(cfg, "exp.train-fi", ["-m", "fitrain.cli", "train", "x.yaml"], tmp_path,
                      checkpoint_bytes=21_719_359_488)      # a 1.8b checkpoint: 60 s + 21.7 GB at 200 MB/s
    sb = _lines(s)
    for want in ("--nodes=4", "--ntasks-per-node=8", "--gpus-per-node=8", "--cpus-per-task=12", "--mem=480G",
                 "--time=2-00:00:00", "--partition=gpu", "--account=proj", "--qos=high", "--signal=USR1@169",
                 "--requeue", "--open-mode=append", "--job-name=exp.train-fi"):
        assert f"#SBATCH {want}" in sb, want
    assert not any(line.startswith("#SBATCH --ntasks=") for line in sb)  # breaks Lightning's SLURMEnvironment
    srun = [line for line in s.splitlines() if line.startswith("srun ")]
    # Slurm >= 22.05: srun does not inherit --cpus-per-task from the allocation
    assert srun == ["srun --job-name=exp.train-fi --nodes=4 --ntasks-per-node=8 --cpus-per-task=12 "
                    "--kill-on-bad-exit=1 python -m fitrain.cli train x.yaml"]
    # the job runs from the submit directory, before the set-up (a relative venv) and srun
    assert s.index('cd "${SLURM_SUBMIT_DIR}"') < s.index("module load cuda/12.4") < s.index("srun ")
    # always the job's own first node: a MASTER_ADDR exported in the submitting shell must not win
    assert 'export MASTER_ADDR="$(scontrol show hostnames "$SLURM_JOB_NODELIST" | head -n1)"' in s.splitlines()
    assert "--exclusive" not in s and "--mem=0" not in s


def test_exclusive_without_mem_asks_for_all_of_each_nodes_memory(tmp_path):
    sb = _lines(render_sbatch(SlurmConfig(nodes=2, gpus_per_node=8, exclusive=True), "t", ["x"], tmp_path))
    assert "#SBATCH --exclusive" in sb and "#SBATCH --mem=0" in sb
    sb = _lines(render_sbatch(SlurmConfig(nodes=2, gpus_per_node=8, exclusive=True, mem="900G"), "t", ["x"], tmp_path))
    assert "#SBATCH --mem=900G" in sb and "#SBATCH --mem=0" not in sb


def test_the_warning_lead_is_sized_from_the_checkpoint_unless_set():
    from fitrain.pipeline.slurm import signal_lead

    assert signal_lead(SlurmConfig(), 0) == 60
    assert signal_lead(SlurmConfig(), 90_323_337_216) == 60 + 452               # 7b: 90.3 GB at 200 MB/s, rounded up
    assert signal_lead(SlurmConfig(signal_base_s=30, checkpoint_write_mb_s=1000), 10**10) == 30 + 10
    assert signal_lead(SlurmConfig(signal_lead_s=300), 10**12) == 300 and signal_lead(SlurmConfig(signal_lead_s=0), 1) == 0


def test_workdir_is_the_directory_the_job_runs_in(tmp_path):
    s = render_sbatch(SlurmConfig(setup=["source .venv/bin/activate"]), "j", ["x"], tmp_path / "logs",
                      workdir=tmp_path)
    assert f"#SBATCH --chdir={tmp_path.resolve()}" in _lines(s)
    assert s.index(f"cd {tmp_path.resolve()}") < s.index("source .venv/bin/activate")


def test_array_and_single_task_cpu_job(tmp_path):
    s = render_sbatch(SlurmConfig(nodes=2, tasks_per_node=4, signal_lead_s=0, requeue=False, array_parallelism=2),
                      "dg", ["-m", "x", "--shard", ARRAY_TASK_ID], tmp_path, array=5, distributed=False)
    sb = _lines(s)
    assert "#SBATCH --array=0-4%2" in sb and "#SBATCH --nodes=1" in sb and "#SBATCH --ntasks-per-node=1" in sb
    assert "#SBATCH --no-requeue" in sb and not any("--signal" in x for x in sb)
    assert any(x.endswith("%x-%A_%a.out") for x in sb)
    assert '--shard "${SLURM_ARRAY_TASK_ID}"' in s


def test_quote_and_job_id_parsing():
    assert quote("a b") == "'a b'" and quote("$HOME") == "'$HOME'"
    assert parse_job_id("1234\n") == "1234" and parse_job_id("77;cluster\n") == "77"
    assert parse_job_id("Submitted batch job 9") == "9"
    with pytest.raises(FitrainError, match="job id"):
        parse_job_id("sbatch: error: Batch job submission failed")


@pytest.mark.parametrize("bad,match", [
    (dict(nodes=0), "nodes"), (dict(time="2 days"), "time"), (dict(mem="lots"), "mem"),
    (dict(signal="KILL"), "signal"), (dict(signal_lead_s=-2), "signal_lead_s"),
    (dict(checkpoint_write_mb_s=0), "checkpoint_write_mb_s"), (dict(extra_sbatch=["mail-type=END"]), "extra_sbatch")])
def test_bad_settings_are_clear(bad, match, tmp_path):
    with pytest.raises(FitrainError, match=match):
        render_sbatch(SlurmConfig(**bad), "j", ["x"], tmp_path)


def test_unreachable_slurm_is_a_clear_error(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # no sbatch/sinfo here
    with pytest.raises(FitrainError, match="Slurm is not reachable: sbatch, sinfo, scontrol not found"):
        check_reachable()
    fake = tmp_path / "sinfo"
    fake.write_text("#!/bin/sh\necho 'slurm_load_partitions: Unable to contact slurm controller' >&2\nexit 1\n")
    fake.chmod(0o755)
    for name in ("sbatch", "scontrol"):
        (tmp_path / name).symlink_to(fake)
    with pytest.raises(FitrainError, match="Unable to contact slurm controller"):
        check_reachable()
