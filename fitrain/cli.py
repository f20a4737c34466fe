"""The one ``fitrain`` command. Each subcommand lives in ``fitrain/commands/<name>.py`` and exposes
``HELP`` (one line), ``DESCRIPTION`` (with an example), ``add_arguments(parser)`` and ``run(args) -> int``.
Command modules import nothing heavy at module level, so ``fitrain --help`` stays fast."""
from __future__ import annotations

import argparse
import importlib
import sys

from fitrain.core.errors import FitrainError

COMMANDS = {
    "quickstart": "fitrain.commands.quickstart",
    "data-gen": "fitrain.commands.data_gen",
    "tokenizer": "fitrain.commands.tokenizer",
    "prepare": "fitrain.commands.prepare",
    "train": "fitrain.commands.train",
    "export": "fitrain.commands.export",
    "eval": "fitrain.commands.eval",
    "experiment": "fitrain.commands.experiment",
    "slurm": "fitrain.commands.slurm",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fitrain",
        description="Pre-train language models from scratch on the instruction objective (FineInstructions), "
                    "with token-matched standard baselines, judged evaluation and Slurm launch.",
        epilog="Run `fitrain quickstart` for a complete small experiment on CPU in minutes. "
               "`fitrain COMMAND --help` explains each command with an example.",
        formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, modname in COMMANDS.items():
        try:
            mod = importlib.import_module(modname)
        except ModuleNotFoundError as e:
            if e.name != modname:
                raise
            continue  # a command whose module is not present in this build
        p = sub.add_parser(name, help=mod.HELP, description=mod.DESCRIPTION,
                           formatter_class=argparse.RawDescriptionHelpFormatter)
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    try:
        return int(args._run(args) or 0)
    except FitrainError as e:
        print(f"fitrain {args.command}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `fitrain ... | head`
        sys.stderr.close()
        return 0
    except KeyboardInterrupt:
        print(f"fitrain {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
