"""fitrain train: pre-train a from-scratch Llama on prepared shards (either arm)."""
from __future__ import annotations

import argparse

HELP = "pre-train a from-scratch model on prepared shards (FI or standard arm)"
DESCRIPTION = """\
Train a Llama-style model from random init on a directory made by `fitrain prepare`, with the exact
per-token loss normalisation, document-isolated packing, a token budget that stops exactly, checkpoints
(periodic, at the end, on SIGUSR1/SIGTERM/SIGINT) and exact resume from the latest checkpoint in run_dir, W&B
(offline without credentials) and logs/metrics.csv, then an HF export in <run_dir>/hf.

RECIPE is a YAML file or a name under recipes/ (e.g. train/fi-tiny). Budgets: max_tokens,
max_supervised_tokens, max_steps, or budget_from=<FI prepared dir> (standard arm: the FI arm's total
tokens). Multi-GPU: launch with torchrun or srun and set devices/num_nodes/strategy (ddp|fsdp).
Exit status: 0 finished, 2 an error, 3 stopped by SIGTERM/SIGUSR1 and 130 by Ctrl-C (SIGINT) after a
checkpoint (rerun the same command to resume); a second Ctrl-C stops at once without one.

examples:
  fitrain train train/fi-tiny data.path=runs/quick/prepared/fi run_dir=runs/quick/train/fi
  fitrain train train/standard-tiny data.path=runs/quick/prepared/standard budget_from=runs/quick/prepared/fi
  torchrun --nproc_per_node 8 -m fitrain.cli train train/fi-1.8b devices=8 strategy=fsdp
  fitrain train train/fi-300m --print-config
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    from fitrain.commands.common import add_recipe_arguments

    add_recipe_arguments(p, example="model.dim=512 max_tokens=1e8")


def run(args: argparse.Namespace) -> int:
    import json

    from fitrain.commands.common import load
    from fitrain.train.config import TrainConfig
    from fitrain.train.trainer import train

    cfg = load(args, TrainConfig)
    if cfg is None:
        return 0
    summary = train(cfg)
    print(json.dumps(summary, indent=2))
    return EXIT_CODES[summary.get("status", "")]


# finished; preempted (SIGTERM, SIGUSR1: checkpoint written, rerun to resume); interrupted (Ctrl-C / SIGINT:
# checkpoint written, rerun to resume). A second Ctrl-C stops at once (fitrain.cli: "interrupted", 130 too).
EXIT_CODES = {"finished": 0, "preempted": 3, "interrupted": 130}
