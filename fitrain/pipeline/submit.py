"""Submitting an experiment to Slurm: one sbatch job per unfinished step, chained with
``--dependency=afterok``; data_gen shards are a job array; training runs ``srun`` over all GPUs. Every job
runs ``fitrain experiment <run_dir>/experiment.yaml --step NAME`` against the frozen config, so a job reads
exactly the settings that were submitted.

Each job id goes into ``slurm/jobs.json`` the moment sbatch returns it, so a submission that fails part way
(the third sbatch refused) leaves the jobs already queued recorded, and the rerun submits only what is
neither finished nor still pending or running. A ``jobs.json`` that cannot be read is an error, not an empty
record: guessing would queue duplicates. A job left pending because a job it waits for failed
(``Reason=DependencyNeverSatisfied``; scripts also ask Slurm to cancel such jobs, ``--kill-on-invalid-dep``)
is dead: it is cancelled and submitted again. A step waits for the jobs of its dependencies submitted in this
call, and for those recorded earlier that are still queued or running (``--step X`` after a full submission);
a dependency neither finished nor queued is refused, since the job could only fail."""
from __future__ import annotations

import subprocess
from typing import Callable
from urllib.parse import urlparse

from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, read_json, write_json
from fitrain.pipeline.graph import ExperimentConfig, ExperimentStep, experiment_steps, step_done
from fitrain.pipeline.slurm import ARRAY_TASK_ID, SlurmConfig, job_info, render_sbatch, submit
from fitrain.train.model import checkpoint_bytes


def _evaluates(step: ExperimentStep) -> bool:
    """eval-<run> and h2h-<run>-vs-<run>: the steps of kind ``steps`` that belong to a trained run."""
    return step.kind == "steps" and bool(step.run)


def _resources(cfg: ExperimentConfig, step: ExperimentStep) -> SlurmConfig:
    """slurm.train / data_gen by kind; eval and h2h steps slurm.eval (a GPU); the rest slurm.steps (CPU)."""
    if _evaluates(step):
        return cfg.slurm.eval
    return {"train": cfg.slurm.train, "data_gen": cfg.slurm.data_gen}.get(step.kind, cfg.slurm.steps)


def job_name(cfg: ExperimentConfig, step: ExperimentStep) -> str:
    return f"{cfg.name}.{step.name}"


def job_argv(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    cmd = ["-m", "fitrain.cli", "experiment", str(cfg.layout.config), "--step", step.name]
    if step.shards:
        cmd += ["--shard", ARRAY_TASK_ID]
    return cmd


def render_step(cfg: ExperimentConfig, step: ExperimentStep) -> str:
    ckpt = checkpoint_bytes(cfg.train.model, cfg.tokenizer.vocab_size) if step.kind == "train" else 0
    return render_sbatch(_resources(cfg, step), job_name(cfg, step), job_argv(cfg, step),
                         cfg.layout.slurm_logs, array=step.shards,
                         distributed=step.distributed, checkpoint_bytes=ckpt)


def render_all(cfg: ExperimentConfig, steps: list[ExperimentStep] | None = None) -> list[tuple[ExperimentStep, str]]:
    return [(s, render_step(cfg, s)) for s in (steps if steps is not None else experiment_steps(cfg))]


def submission_line(step: ExperimentStep, waits_for: list[str]) -> str:
    """How a dry run shows the dependency a step's job is submitted with (``<step>``: that step's job id)."""
    if not waits_for:
        return "# sbatch --parsable (no dependency)"
    return "# sbatch --parsable --dependency=afterok:" + ":".join(f"<{d}>" for d in waits_for)


ALIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUE_HOLD",
         "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}
NEVER = "DependencyNeverSatisfied"   # pending on a job that failed: it can never start
JUDGED = ("mixeval", "mtbench101", "pairwise")


def check_judge_reachable(cfg: ExperimentConfig, steps: list[ExperimentStep]) -> None:
    """Refuse to submit eval jobs whose judge is the compute node's own loopback, where no step serves one."""
    e = cfg.eval
    judged = [n for n in JUDGED if getattr(e, n).enabled]
    llm = e.judge.llm
    host = urlparse(llm.base_url).hostname or ""
    loopback = host == "localhost" or host.startswith("127.") or host == "::1"
    if judged and llm.backend == "openai" and loopback and any(
            _evaluates(s) and not step_done(cfg.layout, s) for s in steps):
        raise FitrainError(f"eval.judge.llm.base_url is {llm.base_url}, the compute node itself, where no step "
                           "starts a judge server, so every eval job would fail: set eval.judge.llm.base_url to a "
                           "judge server the compute nodes can reach (e.g. http://judge-host:8000/v1), or disable "
                           + "/".join(f"eval.{n}" for n in judged))


def _earlier_jobs(cfg: ExperimentConfig) -> dict[str, str]:
    p = cfg.layout.slurm_jobs
    if not p.is_file():
        return {}
    try:
        jobs = read_json(p)
    except ValueError as e:
        jobs = e
    if not isinstance(jobs, dict):
        raise FitrainError(f"{p} cannot be read ({jobs}), so the jobs submitted earlier are unknown and submitting "
                           "again could queue duplicates; check `squeue -u $USER`, then fix or remove that file")
    return {k: str(v) for k, v in jobs.items()}


def _alive(job_id: str) -> bool:
    """Whether any task of an earlier job is still queued or running (finished jobs age out of scontrol). A job
    pending on a dependency that failed is not: it is cancelled here, so that it can be submitted again."""
    try:
        tasks = job_info(job_id)
    except FitrainError:  # "Invalid job id specified": long gone
        return False
    alive = [f for f in tasks.values() if f["JobState"].split()[0] in ALIVE]
    if alive and all(f["JobState"].startswith("PENDING") and f.get("Reason") == NEVER for f in alive):
        subprocess.run(["scancel", job_id], capture_output=True, text=True, timeout=60)
        return False
    return bool(alive)


def submit_all(cfg: ExperimentConfig, steps: list[ExperimentStep] | None = None,
               log: Callable[[str], None] = print) -> dict[str, str]:
    """Submit every unfinished step in order; returns ``{step: job id}`` (finished steps are left out).
    fitrain.pipeline.run.run_experiment checks Slurm (``slurm.check_reachable``) and the judge
    (:func:`check_judge_reachable`) before it writes anything, then calls this."""
    every = {s.name: s for s in experiment_steps(cfg)}
    steps = steps if steps is not None else list(every.values())
    layout = cfg.layout
    jobs: dict[str, str] = {}
    earlier = _earlier_jobs(cfg)
    record = dict(earlier)
    alive: dict[str, bool] = {}

    def queued(name: str) -> bool:  # the job recorded earlier for step `name` is still queued or running
        if name not in alive:
            alive[name] = name in earlier and _alive(earlier[name])
        return alive[name]

    names = {s.name for s in steps}
    for s in steps:
        if step_done(layout, s):
            log(f"  {s.name}: finished earlier, not submitted")
            continue
        if queued(s.name):
            jobs[s.name] = earlier[s.name]
            log(f"  {s.name}: still queued or running as job {jobs[s.name]}, not submitted again")
            continue
        deps = []
        for d in s.deps:
            if d in jobs:
                deps.append(jobs[d])
            elif d not in names and not step_done(layout, every[d]):
                if not queued(d):
                    raise FitrainError(f"step {s.name} needs step {d}, which is neither finished nor queued: "
                                       f"submit it too (--step {d}) or submit without --step")
                deps.append(earlier[d])
        script = layout.sbatch_script(s.name)
        with atomic_path(script) as tmp:
            tmp.write_text(render_step(cfg, s))
        layout.slurm_logs.mkdir(parents=True, exist_ok=True)
        jobs[s.name] = record[s.name] = submit(script, deps)
        write_json(layout.slurm_jobs, record)  # at once: a later failure must not lose this job
        log(f"  {s.name}: submitted job {jobs[s.name]}" + (f" (afterok:{':'.join(deps)})" if deps else "")
            + f"  script {script}")
    log(f"logs: {layout.slurm_logs}; follow with `squeue -u $USER` / `scontrol show job ID`")
    return jobs
