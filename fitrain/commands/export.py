"""fitrain export: a training checkpoint -> a Hugging Face model directory."""
from __future__ import annotations

import argparse

HELP = "export a checkpoint as a Hugging Face model directory (AutoModelForCausalLM, lm-eval hf)"
DESCRIPTION = """\
Write a save_pretrained directory (safetensors, config, generation config) with the run's tokenizer,
loadable by AutoModelForCausalLM.from_pretrained and lm-eval's `hf` model without conversion.
CHECKPOINT is a .ckpt file, a sharded (FSDP) checkpoint directory, or a run's checkpoints/ folder (its
latest checkpoint).

example:
  fitrain export runs/quick/train/fi/checkpoints runs/quick/train/fi/hf-latest
"""


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", help="checkpoint file/dir, or a checkpoints/ folder (uses its latest)")
    p.add_argument("out", help="output directory")
    p.add_argument("--tokenizer", default=None, help="tokenizer directory (default: the one the run used)")


def run(args: argparse.Namespace) -> int:
    from pathlib import Path

    from fitrain.train.export import export
    from fitrain.train.export_failure import recording

    with recording(Path(args.out)):  # a failed export leaves no half-written directory
        out = export(args.checkpoint, args.out, tokenizer=args.tokenizer)
    print(f"exported to {out}")
    return 0
