"""Running an experiment: every unfinished step in order here, or every one as a Slurm job.

Each step reads and writes files under the run directory and leaves a completion marker
(``steps/<step>/_SUCCESS``, one per shard for an array step, recording the step's dependencies); a rerun
skips finished steps. A rerun with changed settings is refused (the diff is printed), except one that only
adds arms: then only the new arms' steps run, and the steps whose dependencies grew (the report). ``--dry-run``
prints the plan with, for every step, the one command that would do it by hand
(fitrain.pipeline.runners.step_command).
"""
from __future__ import annotations

import os
import shlex
import time
from pathlib import Path
from typing import Callable

from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, is_done, mark_done, read_json
from fitrain.core.stop import check_stop
from fitrain.pipeline.blocks import for_step, parts
from fitrain.pipeline.experiment import ExperimentConfig, ExperimentStep, Runner, step_done
from fitrain.pipeline.graph import RUNNERS, experiment_steps  # noqa: F401  (RUNNERS: the core steps' runners)
from fitrain.pipeline.runners import BEYOND, arm_rows

Log = Callable[[str], None]


def runner_for(step: ExperimentStep, runners: dict[str, Runner] | None = None) -> Runner:
    """The step's own runner, or the one ``runners`` gives for its role (tests inject them this way)."""
    runner = (runners or {}).get(step.role) or step.runner
    if runner is None:
        raise FitrainError(f"no runner for step '{step.name}' (role '{step.role}')")
    return runner


def _rank() -> int:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


def run_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None = None,
             runners: dict[str, Runner] | None = None, log: Log = print,
             graph: list[ExperimentStep] | None = None) -> str:
    """Run one step (one shard of an array step) here unless its marker exists; 'skipped' or 'done'.
    ``graph``: every step of the experiment (built here when not given)."""
    layout = cfg.layout
    marker = layout.step_marker_dir(step.name, shard)
    if step_done(layout, step, shard):
        return "skipped"
    by_name = {s.name: s for s in (graph if graph is not None else experiment_steps(cfg))}
    missing = [d for d in step.deps if not step_done(layout, by_name[d])]
    if missing:
        raise FitrainError(f"step '{step.name}' needs {missing} to finish first (no completion marker under "
                           f"{layout.steps}); run the experiment without --step to run the whole graph")
    t0, c0 = time.perf_counter(), time.process_time()
    own_cfg, own = for_step(cfg, step)  # a block's step: the block's config and its own step
    info = runner_for(own, runners)(own_cfg, own, shard) or {}
    timing = {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2)}
    if _rank() == 0:
        mark_done(marker, {"step": step.name, **({"shard": shard} if shard is not None else {}),
                           "deps": list(step.deps), **timing, **info})
    log(f"    {step.name}{'' if shard is None else f' shard {shard}'} finished in {timing['wall_s']:.1f} s "
        f"(cpu {timing['cpu_s']:.1f} s)")
    return "done"


def save_config(cfg: ExperimentConfig, log: Log = print) -> Path:
    """The frozen, fully merged config every step (and every Slurm job) reads. Once steps have finished it
    may change only by new arms (nothing else, and no existing arm's settings)."""
    import dataclasses

    from fitrain.core.config import load_config, to_yaml

    path = cfg.layout.config
    text = to_yaml(cfg)
    if path.is_file() and any(is_done(p) for p in cfg.layout.steps.glob("*")):
        old = path.read_text()
        if old != text:
            before = load_config(ExperimentConfig, path)
            if to_yaml(dataclasses.replace(before, run_dir=cfg.run_dir)) == text:
                return path  # the same settings, run_dir spelled otherwise (relative, trailing slash): same directory
            added = added_arms(before, cfg)
            if added is None:
                raise FitrainError(f"{path} holds a different config and some steps are finished; a rerun must use "
                                   "the same settings, or only add arms (or use a new run_dir / name). Changed "
                                   "lines:\n" + _diff(old, text))
            rerun = _forget_steps_with_new_deps(before, cfg)
            if added:  # (none: the same arms, spelled otherwise, e.g. `fi` as {name: fi, kind: fi})
                log(f"adding arm(s) {', '.join(added)} to the finished experiment: only their steps run, and "
                    f"{', '.join(rerun) or 'no finished step'} again")
    if path.is_file() and path.read_text() == text:
        return path  # every job of a run reads it; the same text is not written again (by each rank)
    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def added_arms(old: ExperimentConfig, new: ExperimentConfig) -> list[str] | None:
    """The arms ``new`` adds to ``old`` when that is the only difference (every old arm unchanged, with the
    same reference and primary); None for any other change."""
    import copy

    from fitrain.core.config import to_dict, to_yaml

    try:
        before, after = old.arm_set(), new.arm_set()
    except FitrainError:
        return None
    specs = {a.name: to_dict(a) for a in after.specs}
    if any(specs.get(a.name) != to_dict(a) or after.root(a.name) != before.root(a.name) for a in before.specs):
        return None
    if after.primary != before.primary or any(
            after.pairs_source(a.name) != before.pairs_source(a.name) for a in before.specs):
        return None
    same = copy.deepcopy(old)
    same.arms = copy.deepcopy(new.arms)
    if to_yaml(same) != to_yaml(new):
        return None
    return [n for n in after.names if n not in before.names]


def _forget_steps_with_new_deps(old: ExperimentConfig, new: ExperimentConfig) -> list[str]:
    """Remove the markers of finished steps whose dependencies the added arms change (the report), so they
    run again; markers written before dependencies were recorded are covered too."""
    import shutil

    before = {s.name: s for s in experiment_steps(old)}
    changed = [s for s in experiment_steps(new) if s.name in before and sorted(before[s.name].deps) != sorted(s.deps)]
    for s in changed:
        shutil.rmtree(new.layout.step_marker_dir(s.name), ignore_errors=True)
    return [s.name for s in changed]


def _diff(a: str, b: str) -> str:
    import difflib

    return "\n".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "now", lineterm=""))[:40])


def print_plan(cfg: ExperimentConfig, steps: list[ExperimentStep], status: dict[str, str], use_slurm: bool,
               log: Log, commands: bool = False) -> None:
    """The arms and the steps (a block's steps under its heading, named without the ``<block>.`` that
    ``--step`` takes), with ``commands`` each step's by-hand command (fitrain.pipeline.byhand)."""
    fresh = all(v == "todo" for v in status.values())  # (then no status column)
    log(f"experiment {cfg.name}: {len(steps)} steps in {cfg.root} ({'Slurm' if use_slurm else 'locally'})"
        + ("; every step todo" if fresh else ""))
    for line in arms_table(cfg):
        log(line)
    width = max([18] + [len(_local(s.name, s.block)) for s in steps])
    if commands:
        from fitrain.pipeline.byhand import CONFIG, by_hand

        lines = by_hand(cfg, steps)
        log(f"  by-hand commands: RUN={shlex.quote(str(cfg.root))} {CONFIG}=$RUN/{cfg.layout.config.name}")
    block, shown = "", direct_deps(steps)
    for i, s in enumerate(steps, 1):
        if s.block != block:
            block = s.block
            log(f"  block {block} (--step {block}.<step>):" if block else "  the whole experiment:")
        extra = f" [array of {s.shards}]" if s.shards else ""
        state = "" if fresh else f" {status[s.name]:<5}"
        log(f"  {i:2d}. {_local(s.name, s.block):<{width}}{state} {s.describe}{extra}"
            + (f"  (after {deps_text([_local(d, s.block) for d in shown[s.name]])})" if s.deps else ""))
        if commands:
            shards = f" for shard in 0..{s.shards - 1}" if s.shards else ""
            log(f"      by hand{shards}: {lines[s.name]}")


def direct_deps(steps: list[ExperimentStep]) -> dict[str, list[str]]:
    """Each step's dependencies less those another of them already waits for (what the plan prints)."""
    by_name = {s.name: s for s in steps}
    above: dict[str, set[str]] = {}

    def ancestors(name: str) -> set[str]:
        if name not in above:
            deps = by_name[name].deps if name in by_name else []
            above[name] = set(deps).union(*(ancestors(d) for d in deps)) if deps else set()
        return above[name]

    return {s.name: [d for d in s.deps if not any(d in ancestors(o) for o in s.deps if o != d)] for s in steps}


def deps_text(names: list[str]) -> str:
    """Step names, those of three or more sharing a prefix braced: ``eval-{fi,standard,qa}``."""
    groups: dict[str, list[str]] = {}
    for n in names:
        groups.setdefault(n[:n.rfind("-") + 1], []).append(n)
    parts = []
    for prefix, members in groups.items():
        if prefix and len(members) >= 3:
            parts.append(prefix + "{" + ",".join(m[len(prefix):] for m in members) + "}")
        else:
            parts += members
    return ", ".join(parts)


def _local(dep: str, block: str) -> str:
    """A dependency as the plan names it: without the block's prefix inside the same block."""
    return dep[len(block) + 1:] if block and dep.startswith(block + ".") else dep


def arms_table(cfg: ExperimentConfig) -> list[str]:
    """One line per arm: its kind, where its data comes from and whose tokens it trains (block by block)."""
    from fitrain.pipeline.blocks import budget_text

    lines = []
    for block, part in parts(cfg):
        arms = part.arm_set()
        seeds = [r.seed for r in part.runs(arms.names[0])]
        head = f"block {block} ({budget_text(cfg, block)}): " if block else ""
        lines.append(f"  {head}arms ({len(arms.names)}, seeds {seeds}; primary {arms.primary}):")
        lines += [f"    {r.name:<14} {r.kind:<10} {r.data}; trains {r.budget}" + (BEYOND if r.beyond_paper else "")
                  for r in arm_rows(part)]
    return lines


def run_experiment(cfg: ExperimentConfig, dry_run: bool = False, *, slurm: bool | None = None,
                   only: list[str] | None = None, runners: dict[str, Runner] | None = None,
                   log: Log = print) -> dict:
    """Run (or, with Slurm, submit) every unfinished step; ``dry_run`` prints the plan and does nothing."""
    use_slurm = cfg.slurm.enabled if slurm is None else slurm
    layout = cfg.layout
    every = steps = experiment_steps(cfg)
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
            from fitrain.pipeline.submit import render_all, submission_line

            todo = {n for n, st in status.items() if st == "todo"}
            for s, script in render_all(cfg, steps):
                waits = [d for d in s.deps if d in todo]  # finished steps are not waited for
                log(f"\n# ---- {s.name}.sbatch ----\n{submission_line(s, waits)}\n{script}")
        return result
    if use_slurm:
        from fitrain.pipeline.slurm import check_reachable
        from fitrain.pipeline.submit import check_judge_reachable

        check_reachable()  # before anything is written
        check_judge_reachable(cfg, steps)
    # a missing corpus fails now, not after hours of data_gen; a step that does not read it (a training job
    # after the corpus was normalised) does not need the user's download any more
    todo = {s.name for s in steps if status[s.name] == "todo"}
    for block, part in parts(cfg):
        arms = part.arm_set()
        prefix = f"{block}." if block else ""
        arms.check_inputs([a.name for a in arms.specs if f"{prefix}{arms.kind(a.name).data_step(part, arms, a)}" in todo])
    cfg.root.mkdir(parents=True, exist_ok=True)
    save_config(cfg, log)
    if use_slurm:
        from fitrain.pipeline.submit import submit_all

        result["jobs"] = submit_all(cfg, steps, log=log, every=every)  # (it records every job id as sbatch returns it)
        return result
    for i, s in enumerate(steps, 1):
        for shard in list(range(s.shards)) if s.shards else [None]:
            tag = s.name + (f" shard {shard + 1}/{s.shards}" if shard is not None else "")
            if step_done(layout, s, shard):
                log(f"[{i}/{len(steps)}] {tag}: finished earlier, skipped")
                continue
            check_stop(f"before {tag}")  # SIGINT/SIGTERM: stop between steps (fitrain.core.stop)
            log(f"[{i}/{len(steps)}] {tag}: {s.describe} ...")
            run_step(cfg, s, shard, runners=runners, log=log, graph=every)
        result["steps"][s.name] = "done" if status[s.name] == "todo" else "skipped"
    return result


def load_experiment(recipe: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment recipe (a path, or a name under recipes/experiments/ or recipes/) with overrides."""
    from fitrain.core.config import load_config
    from fitrain.core.recipes import resolve_recipe
    from fitrain.pipeline.configs import prepare_config

    cfg = load_config(ExperimentConfig, resolve_recipe(recipe, folder="experiments"), overrides)
    for _, part in parts(cfg):  # every arm's own prepare settings (blocks' too), merged now as its step will
        for a in part.arm_set().specs:
            if a.prepare:
                prepare_config(part, a.name, check=False)
    return cfg


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def summary_table(cfg: ExperimentConfig) -> list[str]:
    """One line per run: tokens trained (total and supervised) from the train summaries."""
    lines = []
    for block, part in parts(cfg):
        for r in part.runs():
            p = part.layout.train(r.id).summary
            if not p.is_file():
                continue
            s = read_json(p)
            lines.append(f"  {(block + '.' if block else '') + r.id:<9} tokens {s.get('tokens', 0):>12,}  "
                         f"supervised {s.get('supervised_tokens', 0):>12,}  final loss {_num(s.get('final_loss'))}"
                         f"  held-out answer loss {_num(s.get('val_loss'))}")
    return lines
