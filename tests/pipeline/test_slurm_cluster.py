"""Against a real Slurm (skipped with a message when none is reachable; see conftest.slurm_cluster):
a 2-task DDP (gloo, CPU) training step of an experiment, preemption by SIGUSR1 with requeue and resume
to the same token count, a data_gen job array chained with afterok, and a rerun that submits nothing."""
from __future__ import annotations

import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from fitrain.pipeline.graph import ExperimentConfig
from fitrain.pipeline.run import run_experiment
from fitrain.core.io import is_done, mark_done, read_json
from fitrain.pipeline.slurm import SlurmConfig, job_field, wait

pytestmark = [pytest.mark.slurm, pytest.mark.slow]
TOKENS = 60_000


def _train_experiment(root: Path, tokenizer_dir: Path, pairs: Path, documents: Path) -> ExperimentConfig:
    cfg = ExperimentConfig(name="slurm-train", run_dir=str(root), size="tiny")
    cfg.train.model.preset = "tiny"
    cfg.train.max_tokens = TOKENS
    cfg.train.accelerator = "cpu"
    cfg.train.data.micro_batch_size = 4
    cfg.train.data.max_epochs = 0
    cfg.train.optim.warmup_steps = 2
    cfg.train.checkpoint_every = 4
    cfg.train.log_every = 1
    cfg.train.export_hf = False
    cfg.train.progress_bar = False
    cfg.train.wandb.mode = "disabled"
    cfg.slurm.train = SlurmConfig(tasks_per_node=2, cpus_per_task=1, signal_lead_s=0, python=sys.executable,
                                  env={"WANDB_MODE": "disabled", "MASTER_ADDR": "127.0.0.1"})
    shutil.copytree(tokenizer_dir, root / "tokenizer")
    shutil.copytree(pairs, root / "prepared" / "fi")
    shutil.copytree(documents, root / "prepared" / "standard")
    for step in ("corpus", "tokenizer", "data_gen-templates", "data_gen", "prepare-fi", "prepare-standard"):
        mark_done(cfg.layout.step_marker_dir(step), {"prepared by": "test fixture"})
    return cfg


def _wait_for(pred, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not pred():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_ddp_training_job_then_preempted_job_resumes_to_the_same_tokens(
        slurm_cluster, tmp_path, tokenizer_dir, pairs_shards, documents_shards):
    cfg = _train_experiment(tmp_path / "exp", tokenizer_dir, pairs_shards, documents_shards)
    # 1. an uninterrupted 2-rank DDP run of the fi arm
    jobs = run_experiment(cfg, slurm=True, only=["train-fi"], log=lambda m: None)["jobs"]
    states = wait(jobs["train-fi"], timeout=150)
    log_a = next((cfg.root / "slurm" / "logs").glob("slurm-train.train-fi-*.out")).read_text()
    assert set(states.values()) == {"COMPLETED"}, log_a[-3000:]
    a = read_json(cfg.root / "train" / "fi" / "summary.json")
    assert a["status"] == "finished" and a["tokens"] == TOKENS
    assert is_done(cfg.layout.step_marker_dir("train-fi"))
    assert "fitrain train: world=2 " in log_a and log_a.count("[fitrain] job") == 1, log_a[-3000:]

    # 2. the standard arm, preempted with SIGUSR1 as soon as it has trained a step (long before the end of
    # its ~30 steps, however fast the machine): checkpoint at the end of that step, requeue, resume
    jobs = run_experiment(cfg, slurm=True, only=["train-standard"], log=lambda m: None)["jobs"]
    jid = jobs["train-standard"]
    metrics = cfg.root / "train" / "standard" / "logs" / "metrics.csv"
    _wait_for(lambda: metrics.is_file() and len(metrics.read_text().splitlines()) >= 2, 120, "the first step")
    subprocess.run(["scancel", "--signal=USR1", jid], check=True)
    _wait_for(lambda: job_field(jid, "Restarts") not in ("", "0"), 60, "the requeue")
    states = wait(jid, timeout=150)
    log_b = next((cfg.root / "slurm" / "logs").glob("slurm-train.train-standard-*.out")).read_text()
    assert set(states.values()) == {"COMPLETED"}, log_b[-3000:]
    assert "received SIGUSR1" in log_b and "restart 1" in log_b and "(resuming " in log_b, log_b[-3000:]
    assert log_b.count("fitrain train: world=2 ") == 2  # both runs (the first and the requeued one) were 2-rank
    b = read_json(cfg.root / "train" / "standard" / "summary.json")
    assert b["status"] == "finished" and b["tokens"] == TOKENS == a["tokens"]
    import csv

    rows = [r for r in csv.DictReader(open(cfg.root / "train" / "standard" / "logs" / "metrics.csv")) if r["loss"]]
    steps = [int(r["step"]) for r in rows]
    assert steps == sorted(set(steps)) and steps[-1] == b["steps"]  # resumed: no step logged twice
    assert int(rows[-1]["tokens"]) == TOKENS
    assert is_done(cfg.layout.step_marker_dir("train-standard"))

    # 3. a rerun submits nothing for finished steps
    out = run_experiment(cfg, slurm=True, only=["train-fi", "train-standard"], log=lambda m: None)
    assert out["jobs"] == {}


def test_data_gen_array_chained_with_afterok_then_rerun_submits_nothing(slurm_cluster, tmp_path):
    from fitrain.pipeline.run import load_experiment

    cfg = load_experiment("tiny-cpu", [f"run_dir={tmp_path / 'dg'}", "name=slurm-dg", "corpus.max_documents=12",
                                       "corpus.max_chars=1200", "data_gen.num_shards=2", "heldout_shards=0",
                                       "eval.heldout.enabled=false",
                                       f"slurm.steps.python={sys.executable}",
                                       f"slurm.data_gen.python={sys.executable}"])
    steps = ["corpus", "tokenizer", "data_gen-templates", "data_gen"]  # data_gen's write counts tokens
    jobs = run_experiment(cfg, slurm=True, only=steps, log=lambda m: None)["jobs"]
    assert list(jobs) == steps
    script = (cfg.root / "slurm" / "data_gen.sbatch").read_text()
    assert "#SBATCH --array=0-1" in script
    dep = job_field(jobs["data_gen"], "Dependency")  # what is still pending of afterok:<templates>:<tokenizer>
    assert dep in ("(null)", "") or any(f"afterok:{jobs[d]}" in dep for d in ("data_gen-templates", "tokenizer")), dep
    states = wait(jobs["data_gen"], timeout=240)
    logs = "\n".join(p.read_text() for p in sorted((cfg.root / "slurm" / "logs").glob("*.out")))
    assert sorted(states) == [f"{jobs['data_gen']}_0", f"{jobs['data_gen']}_1"], logs[-3000:]
    assert set(states.values()) == {"COMPLETED"}, logs[-3000:]
    for shard in (0, 1):
        assert is_done(cfg.layout.step_marker_dir("data_gen", shard))
        assert (cfg.root / "data_gen" / "final" / f"shard-{shard:05d}" / "pairs.parquet").is_file()
    assert is_done(cfg.root / "data_gen" / "final")  # data_gen merged the shards' statistics
    assert read_json(cfg.root / "data_gen" / "final" / "stats.json")["out"] > 0
    import pyarrow.parquet as pq  # the experiment's tokenizer counted the tokens of the written pairs

    rows = pq.read_table(cfg.root / "data_gen" / "final" / "shard-00000" / "pairs.parquet").to_pylist()
    assert rows and all(r["synthetic_token_count"] > 0 for r in rows) and rows[0]["token_count"] > 0
    assert run_experiment(cfg, slurm=True, only=steps, log=lambda m: None)["jobs"] == {}


def test_every_arms_jobs_chained_and_an_added_arm_submits_only_its_own(slurm_cluster, tmp_path):
    """Two corpus arms (IPT and Nemotron-CC layouts) as chained jobs: corpus -> tokenizer -> each arm's
    normalisation and prepare; then a third arm added to the finished experiment submits only its jobs."""
    import json

    import pyarrow as pa

    root = tmp_path / "data"
    (root / "ipt" / "part-0" / "shard").mkdir(parents=True)
    (root / "ipt" / "part-0" / "shard" / "00000.txt").write_text(
        "".join(json.dumps({"text": f"Document {i} about arms.\n\nQuestion: Which?\nAnswer: {i}."}) + "\n"
                for i in range(20)))
    (root / "nemo").mkdir()
    with pa.output_stream(str(root / "nemo" / "part-0.jsonl.zstd"), compression="zstd") as f:
        f.write("".join(json.dumps({"text": f"Synthetic text {i}, rephrased."}) + "\n" for i in range(20)).encode())
    (root / "docs.jsonl").write_text("".join(json.dumps({"text": f"Source document number {i}."}) + "\n"
                                             for i in range(30)))
    cfg = ExperimentConfig(name="slurm-arms", run_dir=str(tmp_path / "exp"))
    cfg.corpus.builtin, cfg.corpus.paths, cfg.corpus.id_column = False, [str(root / "docs.jsonl")], ""
    cfg.tokenizer.vocab_size = 300
    cfg.prepare.pack.seq_len, cfg.prepare.progress = 64, False
    cfg.arms = [{"name": "ipt", "kind": "corpus", "paths": [str(root / "ipt" / "part-*" / "shard" / "*.txt")]},
                {"name": "nemo", "kind": "corpus", "paths": [str(root / "nemo" / "*.jsonl.zstd")],
                 "budget": {"reference": "ipt"}}]
    cfg.slurm.steps = SlurmConfig(cpus_per_task=1, signal_lead_s=0, python=sys.executable,
                                  env={"WANDB_MODE": "disabled"})
    steps = ["corpus", "tokenizer", "source-ipt", "prepare-ipt", "source-nemo", "prepare-nemo"]
    jobs = run_experiment(cfg, slurm=True, only=steps, log=lambda m: None)["jobs"]
    assert list(jobs) == steps
    assert job_field(jobs["prepare-nemo"], "Dependency") in (
        f"afterok:{jobs['tokenizer']}(unfulfilled)_afterok:{jobs['source-nemo']}(unfulfilled)",
        f"afterok:{jobs['tokenizer']}(unfulfilled),afterok:{jobs['source-nemo']}(unfulfilled)",
        f"afterok:{jobs['source-nemo']}(unfulfilled)", "(null)", "")
    for name in steps:  # in submission order: a failure shows at once
        states = wait(jobs[name], timeout=300)
        logs = "\n".join(p.read_text() for p in sorted((cfg.root / "slurm" / "logs").glob("*.out")))
        assert set(states.values()) == {"COMPLETED"}, (name, logs[-3000:])
    assert all(is_done(cfg.layout.step_marker_dir(s)) for s in steps)
    assert read_json(cfg.root / "prepared" / "nemo" / "manifest.json")["counts"]["documents"] == 20

    cfg.arms = cfg.arms + [{"name": "more", "kind": "corpus", "paths": [str(root / "docs.jsonl")]}]
    jobs = run_experiment(cfg, slurm=True, only=steps + ["source-more", "prepare-more"], log=lambda m: None)["jobs"]
    assert list(jobs) == ["source-more", "prepare-more"]
    assert set(wait(jobs["prepare-more"], timeout=300).values()) == {"COMPLETED"}
