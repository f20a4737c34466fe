"""Submitting an experiment to Slurm: one sbatch job per unfinished step, chained with
``--dependency=afterok``; data_gen shards are a job array; training runs ``srun`` over all GPUs. Every job
runs ``fitrain experiment <run_dir>/experiment.yaml --step NAME`` against the frozen config, so a job reads
exactly the settings that were submitted.

Each job id goes into ``slurm/jobs.json`` the moment sbatch returns it, so a submission that fails part way
(the third sbatch refused) leaves the jobs already queued recorded, and the rerun submits only what is
neither finished nor still pending or running. A ``jobs.json`` that cannot be read is an error, not an empty
record: guessing would queue duplicates."""
from __future__ import annotations

from typing import Callable

from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, read_json, write_json
from fitrain.pipeline.graph import ExperimentConfig, ExperimentStep, experiment_steps, step_done
from fitrain.pipeline.slurm import ARRAY_TASK_ID, SlurmConfig, check_reachable, job_states, render_sbatch, submit


def _resources(cfg: ExperimentConfig, step: ExperimentStep) -> SlurmConfig:
    return {"train": cfg.slurm.train, "data_gen": cfg.slurm.data_gen}.get(step.kind, cfg.slurm.steps)


def job_name(cfg: ExperimentConfig, step: ExperimentStep) -> str:
    return f"{cfg.name}.{step.name}"


def step_command(cfg: ExperimentConfig, step: ExperimentStep) -> list[str]:
    cmd = ["-m", "fitrain.cli", "experiment", str(cfg.layout.config), "--step", step.name]
    if step.shards:
        cmd += ["--shard", ARRAY_TASK_ID]
    return cmd


def render_step(cfg: ExperimentConfig, step: ExperimentStep) -> str:
    return render_sbatch(_resources(cfg, step), job_name(cfg, step), step_command(cfg, step),
                         cfg.layout.slurm_logs, array=step.shards,
                         distributed=step.distributed)


def render_all(cfg: ExperimentConfig, steps: list[ExperimentStep] | None = None) -> list[tuple[ExperimentStep, str]]:
    return [(s, render_step(cfg, s)) for s in (steps if steps is not None else experiment_steps(cfg))]


def submission_line(step: ExperimentStep, waits_for: list[str]) -> str:
    """How a dry run shows the dependency a step's job is submitted with (``<step>``: that step's job id)."""
    if not waits_for:
        return "# sbatch --parsable (no dependency)"
    return "# sbatch --parsable --dependency=afterok:" + ":".join(f"<{d}>" for d in waits_for)


ALIVE = {"PENDING", "RUNNING", "REQUEUED", "CONFIGURING", "COMPLETING", "SUSPENDED", "REQUEUE_HOLD",
         "REQUEUE_FED", "RESIZING", "SIGNALING", "STAGE_OUT"}


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
    """Whether any task of an earlier job is still queued or running (finished jobs age out of scontrol)."""
    try:
        states = job_states(job_id)
    except FitrainError:  # "Invalid job id specified": long gone
        return False
    return any(st.split()[0] in ALIVE for st in states.values())


def submit_all(cfg: ExperimentConfig, steps: list[ExperimentStep] | None = None,
               log: Callable[[str], None] = print) -> dict[str, str]:
    """Submit every unfinished step in order; returns ``{step: job id}`` (finished steps are left out)."""
    check_reachable()
    layout = cfg.layout
    jobs: dict[str, str] = {}
    earlier = _earlier_jobs(cfg)
    record = dict(earlier)
    for s in steps if steps is not None else experiment_steps(cfg):
        if step_done(layout, s):
            log(f"  {s.name}: finished earlier, not submitted")
            continue
        if s.name in earlier and _alive(earlier[s.name]):
            jobs[s.name] = earlier[s.name]
            log(f"  {s.name}: still queued or running as job {jobs[s.name]}, not submitted again")
            continue
        script = layout.sbatch_script(s.name)
        with atomic_path(script) as tmp:
            tmp.write_text(render_step(cfg, s))
        layout.slurm_logs.mkdir(parents=True, exist_ok=True)
        deps = [jobs[d] for d in s.deps if d in jobs]
        jobs[s.name] = record[s.name] = submit(script, deps)
        write_json(layout.slurm_jobs, record)  # at once: a later failure must not lose this job
        log(f"  {s.name}: submitted job {jobs[s.name]}" + (f" (afterok:{':'.join(deps)})" if deps else "")
            + f"  script {script}")
    log(f"logs: {layout.slurm_logs}; follow with `squeue -u $USER` / `scontrol show job ID`")
    return jobs
