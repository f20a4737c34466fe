"""`fitrain slurm submit|render RECIPE`: an experiment's steps as sbatch scripts, submitted or written out."""
from __future__ import annotations

import argparse

HELP = "submit an experiment to Slurm (one job per step, afterok dependencies), or render its sbatch scripts"
DESCRIPTION = """\
submit: render one sbatch script per unfinished step of an experiment into <run_dir>/slurm/ and submit them,
chained with --dependency=afterok (training: srun with one task per GPU on every node, --signal=USR1@90,
checkpoint + requeue on preemption; data_gen shards: a job array). --dry-run prints the scripts instead.
render: write the scripts to a folder without submitting (the examples in slurm/ are made this way).

examples:
  fitrain slurm submit fi-vs-standard-1.8b --dry-run
  fitrain slurm submit fi-vs-standard-300m slurm.train.account=myproj slurm.train.partition=gpu
  fitrain slurm render fi-vs-standard-1.8b --out slurm/fi-vs-standard-1.8b
"""


SUBMIT_DESCRIPTION = """\
Render one sbatch script per unfinished step of an experiment into <run_dir>/slurm/ and submit them with
sbatch, chained with --dependency=afterok (training: srun with one task per GPU on every node,
--signal=USR1@90, checkpoint + requeue on preemption; data_gen shards: a job array). Steps already done
(<run_dir>/steps/<step>/_SUCCESS) are skipped. --dry-run prints the plan and the scripts and submits nothing.
RECIPE is a path or a name under recipes/experiments/; key=value overrides any key of the experiment
(slurm.train|data_gen|eval|steps.account, .partition, .time, ...; `fitrain experiment RECIPE --print-config`
shows them).

examples:
  fitrain slurm submit fi-vs-standard-1.8b --dry-run
  fitrain slurm submit table1-1.8b slurm.train.account=MYPROJ
  fitrain slurm submit fi-vs-standard-300m slurm.train.account=myproj slurm.train.partition=gpu --step train-fi
"""
RENDER_DESCRIPTION = """\
Write the sbatch script of every step of an experiment to a folder, without submitting anything (the
examples in slurm/ are made this way; slurm/README.md has the exact commands). RECIPE and key=value as for
`fitrain slurm submit`.

examples:
  fitrain slurm render fi-vs-standard-1.8b run_dir=/scratch/fitrain/runs/fi-vs-standard-1.8b --out slurm/fi-vs-standard-1.8b
  fitrain slurm render tiny-cpu --out /tmp/sbatch --step report
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    sub = p.add_subparsers(dest="slurm_command", metavar="ACTION", required=True)
    for name, help_, description in (
            ("submit", "submit the experiment's unfinished steps", SUBMIT_DESCRIPTION),
            ("render", "write the sbatch scripts of every step to a folder", RENDER_DESCRIPTION)):
        q = sub.add_parser(name, help=help_, description=description,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        q.add_argument("recipe", help="experiment recipe: a path or a name under recipes/experiments/")
        q.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                       help="override a key of the experiment (--print-config of `fitrain experiment` shows them)")
        q.add_argument("--step", action="append", default=None, help="only this step (repeatable)")
        if name == "submit":
            q.add_argument("--dry-run", action="store_true", help="print the plan and the scripts; submit nothing")
        else:
            q.add_argument("--out", required=True, help="folder for <step>.sbatch files")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fitrain.pipeline.run import load_experiment, run_experiment
    from fitrain.pipeline.submit import render_all
    from fitrain.core.io import atomic_path

    cfg = load_experiment(args.recipe, args.overrides)
    if args.slurm_command == "submit":
        from fitrain.commands.experiment import experiment_lock

        with experiment_lock(cfg, args.dry_run):
            run_experiment(cfg, dry_run=args.dry_run, slurm=True, only=args.step)
        return 0
    out = Path(args.out)
    for step, script in render_all(cfg):
        if args.step and step.name not in args.step:
            continue
        with atomic_path(out / f"{step.name}.sbatch") as tmp:
            tmp.write_text(script)
        print(out / f"{step.name}.sbatch")
    return 0
