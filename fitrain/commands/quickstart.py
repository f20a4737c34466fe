"""`fitrain quickstart`: a complete small experiment on CPU with no network, in minutes."""
from __future__ import annotations

import argparse

HELP = "run a complete small experiment on CPU, offline, in minutes (the first thing to try)"
DESCRIPTION = """\
A complete FineInstructions experiment on this machine, no GPU and no network needed:
the Python documentation every Python installation carries (pydoc topics + standard library docstrings)
-> data_gen with the offline extractive backend, the packaged MiniLM encoder and the shipped template bank
-> a BPE tokenizer trained on that corpus -> a tiny FineInstructions model and its token-matched standard
baseline -> evaluation (local lm-eval tasks, held-out answer loss) -> a report with plots.
The settings are recipes/quickstart.yaml; any key can be overridden. Rerunning skips finished steps.

example:
  fitrain quickstart --out runs/quickstart
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--out", default="runs/quickstart", help="run directory (default: runs/quickstart)")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="override a key of recipes/quickstart.yaml, e.g. train.max_steps=50")
    p.add_argument("--dry-run", action="store_true", help="print the plan only")


def run(args: argparse.Namespace) -> int:
    import os
    import time

    from fitrain.pipeline.run import load_experiment, run_experiment, summary_table

    import warnings

    # Lightning's "srun is available but not used" hint is noise for a local run on a Slurm login node
    warnings.filterwarnings("ignore", message=r".*`srun` command is available")
    os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
    t0 = time.monotonic()

    def log(msg: str) -> None:
        el = time.monotonic() - t0
        print(f"[quickstart {int(el // 60):02d}:{int(el % 60):02d}] {msg}", flush=True)

    from fitrain.commands.experiment import experiment_lock
    from fitrain.core.stop import graceful_stop

    cfg = load_experiment("quickstart", [f"run_dir={args.out}", *args.overrides])
    resume = f"rerun `fitrain quickstart --out {args.out}` to resume: finished steps are skipped"
    with experiment_lock(cfg, args.dry_run), graceful_stop(resume):  # Ctrl-C: stop between steps (exit 3)
        result = run_experiment(cfg, dry_run=args.dry_run, slurm=False, log=log)
    if args.dry_run:
        return 0
    report = cfg.layout.report
    pngs = sorted(report.glob("*.png"))
    log(f"done in {time.monotonic() - t0:.0f} s")
    for line in summary_table(cfg):
        print(line)
    for p in pngs:
        print(f"plot:   {p}")
    print(f"report: {report / 'report.md'}" + (f"  (also {report / 'report.html'})"
                                             if (report / "report.html").is_file() else ""))
    print(f"the whole run: {result['run_dir']}")
    return 0
