"""`fitrain experiment RECIPE`: the whole graph, data_gen -> prepare -> train every arm (each seed) -> eval -> report."""
from __future__ import annotations

import argparse

HELP = "run an experiment end to end (FineInstructions + token-matched baseline arms, each seed), locally or on Slurm"
DESCRIPTION = """\
Run every step of an experiment recipe: data_gen -> prepare each arm's data (the FineInstructions pairs with
a token-for-token budget; the standard corpus of the same documents, or any other baseline arm: downloaded
or generated corpora, mixtures) with one tokenizer -> train every arm once per seed (same model, same
optimiser, total tokens matched to the reference arm) -> evaluate every run (head-to-head against the
primary arm when pairwise judging is on) -> report. Each step leaves a completion marker under
<run_dir>/steps/; rerunning skips finished steps. With --slurm (or slurm.enabled=true) every step is a Slurm
job chained with --dependency=afterok; array steps (data_gen, generate-<arm>) are job arrays.

RECIPE is a path or a name under recipes/experiments/ (e.g. fi-vs-standard-300m).

examples:
  fitrain experiment tiny-cpu --dry-run
  fitrain experiment fi-vs-standard-300m --slurm slurm.train.account=myproj
  fitrain experiment runs/tiny-cpu/experiment.yaml --step train-fi
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("recipe", help="experiment recipe: a path or a name under recipes/experiments/")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="override a key of the experiment (e.g. train.max_steps=100); --print-config shows the keys")
    p.add_argument("--dry-run", action="store_true", help="print the plan (and the sbatch scripts with --slurm)")
    p.add_argument("--slurm", action="store_true", help="submit the steps to Slurm instead of running them here")
    p.add_argument("--step", action="append", default=None,
                   help="run only this step (repeatable); used by the Slurm jobs")
    p.add_argument("--shard", default=None, metavar="T",
                   help="with one --step of an array step (data_gen, generate-<arm>): run array task T, its "
                        "shards_per_task shards (the Slurm job passes SLURM_ARRAY_TASK_ID)")
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")


def run(args: argparse.Namespace) -> int:
    from fitrain.core.config import to_yaml
    from fitrain.core.errors import FitrainError
    from fitrain.pipeline.graph import experiment_steps
    from fitrain.pipeline.run import load_experiment, run_experiment, run_step

    cfg = load_experiment(args.recipe, args.overrides)
    if args.print_config:
        print(to_yaml(cfg), end="")
        return 0
    if args.shard is not None:
        if not args.step or len(args.step) != 1:
            raise FitrainError("--shard needs exactly one --step")
        graph = experiment_steps(cfg)
        step = {s.name: s for s in graph}.get(args.step[0])
        if step is None or not step.shards:
            raise FitrainError(f"step '{args.step[0]}' is not an array step")
        if not str(args.shard).isdigit() or int(args.shard) >= step.shards:
            raise FitrainError(f"--shard must be 0..{step.shards - 1}, got {args.shard}")
        print(f"{step.name} shard {args.shard}: {run_step(cfg, step, int(args.shard), graph=graph)}", flush=True)
        return 0
    # --step runs here (that is what a Slurm job does), even when the recipe says slurm.enabled
    slurm = True if args.slurm else (False if args.step else None)
    # the whole graph (or its submission) holds the run directory; a --step job (one of several running at
    # once under Slurm) relies on the lock of the directory its step writes
    from fitrain.core.stop import graceful_stop

    resume = f"rerun `fitrain experiment {args.recipe}` (same settings) to resume: finished steps are skipped"
    with experiment_lock(cfg, args.dry_run or bool(args.step)), graceful_stop(resume):
        result = run_experiment(cfg, dry_run=args.dry_run, slurm=slurm, only=args.step)
    if not args.dry_run and "jobs" not in result and not args.step:
        print(f"experiment {cfg.name} finished; report: {result['report']}")
    return 0


def experiment_lock(cfg, skip: bool = False):
    """The experiment's run-directory lock (fitrain.core.lock), taken after the config is checked so that a
    bad config leaves nothing behind; ``skip`` for a dry run or a single --step."""
    import contextlib

    from fitrain.core.lock import dir_lock

    if skip:
        return contextlib.nullcontext()
    return dir_lock(cfg.root, "fitrain experiment")
