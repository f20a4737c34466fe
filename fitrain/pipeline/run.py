"""Running an experiment: every unfinished step in order here, or every one as a Slurm job.

Each step reads and writes files under the run directory and leaves a completion marker
(``steps/<step>/_SUCCESS``, one per shard for an array step); a rerun skips finished steps, and a rerun
with changed settings is refused (the diff is printed). ``--dry-run`` prints the plan with, for every
step, the one command that would do it by hand (fitrain.pipeline.runners.step_command).
"""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Callable

from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, is_done, mark_done, read_json, write_json
from fitrain.pipeline.graph import ExperimentConfig, ExperimentStep, experiment_steps, step_done
from fitrain.pipeline.runners import Runner, runner_for, shell_line, step_command

Log = Callable[[str], None]


def _rank() -> int:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def run_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None = None,
             runners: dict[str, Runner] | None = None, log: Log = print) -> str:
    """Run one step (one shard of an array step) here unless its marker exists; 'skipped' or 'done'."""
    layout = cfg.layout
    marker = layout.step_marker_dir(step.name, shard)
    if is_done(marker):
        return "skipped"
    by_name = {s.name: s for s in experiment_steps(cfg)}
    missing = [d for d in step.deps if not step_done(layout, by_name[d])]
    if missing:
        raise FitrainError(f"step '{step.name}' needs {missing} to finish first (no completion marker under "
                           f"{layout.steps}); run the experiment without --step to run the whole graph")
    t0, c0 = time.perf_counter(), time.process_time()
    info = runner_for(step.name, runners)(cfg, step, shard) or {}
    timing = {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2)}
    if _rank() == 0:
        mark_done(marker, {"step": step.name, **({"shard": shard} if shard is not None else {}), **timing, **info})
    log(f"    {step.name}{'' if shard is None else f' shard {shard}'} finished in {timing['wall_s']:.1f} s "
        f"(cpu {timing['cpu_s']:.1f} s)")
    return "done"


def save_config(cfg: ExperimentConfig) -> Path:
    """The frozen, fully merged config every step (and every Slurm job) reads."""
    from fitrain.core.config import to_yaml

    path = cfg.layout.config
    text = to_yaml(cfg)
    if path.is_file() and any(is_done(p) for p in cfg.layout.steps.glob("*")):
        old = path.read_text()
        if old != text:
            raise FitrainError(f"{path} holds a different config and some steps are finished; a rerun must use "
                               "the same settings (or a new run_dir / name). Changed lines:\n" + _diff(old, text))
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _diff(a: str, b: str) -> str:
    import difflib

    return "\n".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "now", lineterm=""))[:40])


def print_plan(cfg: ExperimentConfig, steps: list[ExperimentStep], status: dict[str, str], use_slurm: bool,
               log: Log, commands: bool = False) -> None:
    log(f"experiment {cfg.name}: {len(steps)} steps in {cfg.root} ({'Slurm' if use_slurm else 'locally'})")
    for i, s in enumerate(steps, 1):
        extra = f" [array of {s.shards}]" if s.shards else ""
        log(f"  {i:2d}. {s.name:<18} {status[s.name]:<5} {s.describe}{extra}"
            + (f"  (after {', '.join(s.deps)})" if s.deps else ""))
        if commands:
            shards = f" for shard in 0..{s.shards - 1}" if s.shards else ""
            log(f"      by hand{shards}: {shell_line(step_command(cfg, s))}")


def run_experiment(cfg: ExperimentConfig, dry_run: bool = False, *, slurm: bool | None = None,
                   only: list[str] | None = None, runners: dict[str, Runner] | None = None,
                   log: Log = print) -> dict:
    """Run (or, with Slurm, submit) every unfinished step; ``dry_run`` prints the plan and does nothing."""
    cfg.validate()
    use_slurm = cfg.slurm.enabled if slurm is None else slurm
    layout = cfg.layout
    steps = experiment_steps(cfg)
    names = [s.name for s in steps]
    if only:
        unknown = [o for o in only if o not in names]
        if unknown:
            raise FitrainError(f"unknown step(s) {unknown}; the steps are {names}")
        steps = [s for s in steps if s.name in only]
    status = {s.name: ("done" if step_done(layout, s) else "todo") for s in steps}
    print_plan(cfg, steps, status, use_slurm, log, commands=dry_run)
    result: dict = {"run_dir": str(cfg.root), "steps": dict(status), "report": str(layout.report)}
    if dry_run:
        if use_slurm:
            from fitrain.pipeline.submit import render_all

            for s, script in render_all(cfg, steps):
                log(f"\n# ---- {s.name}.sbatch ----\n{script}")
        return result
    if use_slurm:
        from fitrain.pipeline.slurm import check_reachable

        check_reachable()  # before anything is written
    cfg.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg)
    if use_slurm:
        from fitrain.pipeline.submit import submit_all

        result["jobs"] = submit_all(cfg, steps, log=log)
        jobs = layout.slurm_jobs
        write_json(jobs, {**(read_json(jobs) if jobs.is_file() else {}), **result["jobs"]})
        return result
    for i, s in enumerate(steps, 1):
        for shard in list(range(s.shards)) if s.shards else [None]:
            tag = s.name + (f" shard {shard + 1}/{s.shards}" if shard is not None else "")
            if is_done(layout.step_marker_dir(s.name, shard)):
                log(f"[{i}/{len(steps)}] {tag}: finished earlier, skipped")
                continue
            log(f"[{i}/{len(steps)}] {tag}: {s.describe} ...")
            run_step(cfg, s, shard, runners=runners, log=log)
        result["steps"][s.name] = "done" if status[s.name] == "todo" else "skipped"
    return result


def load_experiment(recipe: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment recipe (a path, or a name under recipes/experiments/ or recipes/) with overrides."""
    from fitrain.core.config import load_config
    from fitrain.core.recipes import resolve_recipe

    return load_config(ExperimentConfig, resolve_recipe(recipe, folder="experiments"), overrides)


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def summary_table(cfg: ExperimentConfig) -> list[str]:
    """One line per arm: tokens trained (total and supervised) from the train summaries."""
    lines = []
    for arm in cfg.arms:
        p = cfg.layout.train(arm).summary
        if p.is_file():
            s = read_json(p)
            lines.append(f"  {arm:<9} tokens {s.get('tokens', 0):>12,}  supervised {s.get('supervised_tokens', 0):>12,}"
                         f"  final loss {_num(s.get('final_loss'))}  held-out answer loss {_num(s.get('val_loss'))}")
    return lines
