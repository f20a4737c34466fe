"""The one ``fitrain`` command. Each subcommand lives in ``fitrain/commands/<name>.py`` and exposes
``HELP`` (one line), ``DESCRIPTION`` (with an example), ``add_arguments(parser)`` and ``run(args) -> int``
(and ``ADD_HELP = False`` when ``add_arguments`` adds its own -h/--help).
Command modules import nothing heavy at module level, so ``fitrain --help`` stays fast.

Options may come anywhere on the line (``fitrain experiment X --slurm key=val``): words argparse leaves
over after an option are the command's overrides (fitrain.commands.common.merge_extras). Every failure a
user can cause -- a :class:`FitrainError`, or an operating-system error such as a full disk, a read-only
directory or a missing permission -- ends in one line ``fitrain CMD: error: ...`` and exit status 2; only a
bug in fitrain itself prints a traceback (status 1).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from fitrain.core.errors import FitrainError, describe_os_error
from fitrain.core.stop import Stopped

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
    "verify": "fitrain.commands.verify",
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
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           add_help=getattr(mod, "ADD_HELP", True))
        mod.add_arguments(p)
        p.set_defaults(_run=mod.run)
        _mark_leaves(p)
    return parser


def _mark_leaves(p: argparse.ArgumentParser) -> None:
    """Record on every (sub-)subparser which parser it is, so an error prints that parser's usage."""
    p.set_defaults(_parser=p)
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            for child in action.choices.values():
                _mark_leaves(child)


def main(argv: list[str] | None = None) -> int:
    from fitrain.commands.common import merge_extras

    parser = build_parser()
    args, extras = parser.parse_known_args(argv)
    if extras:
        unknown = merge_extras(args, extras)
        if unknown:
            (getattr(args, "_parser", None) or parser).error(f"unrecognized arguments: {' '.join(unknown)}")
    if not getattr(args, "_run", None):
        parser.print_help()
        return 0
    name = getattr(getattr(args, "_parser", None), "prog", None) or f"fitrain {args.command}"
    try:
        return int(args._run(args) or 0)
    except Stopped as e:  # SIGINT/SIGTERM, stopped at a safe point (fitrain.core.stop)
        print(f"{name}: {e}", file=sys.stderr)
        return e.exit_code
    except FitrainError as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `fitrain ... | head`
        sys.stderr.close()
        return 0
    except OSError as e:  # full disk, read-only or missing directory, permissions
        print(f"{name}: error: {describe_os_error(e)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        return 130
    except Exception:
        import traceback

        print(f"{name}: internal error (a bug in fitrain, not in your input; please report it with this "
              "traceback):", file=sys.stderr)
        traceback.print_exc()
        return 1


if __name__ == "__main__":
    sys.exit(main())
