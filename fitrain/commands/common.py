"""Argument helpers shared by the subcommands: RECIPE [key=value ...] and --print-config, with options
allowed anywhere on the line."""
from __future__ import annotations

import argparse
from typing import TypeVar

T = TypeVar("T")


def add_recipe_arguments(p: argparse.ArgumentParser, recipe_required: bool = False, example: str = "") -> None:
    """RECIPE, key=value overrides and --print-config; ``example`` is an override of this command's own
    config (tests/commands/test_help.py loads it)."""
    p.add_argument("recipe", nargs=None if recipe_required else "?", default=None,
                   help="YAML recipe (merged over the defaults); omit to use the defaults")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="override a config key (key=value or section.key=value" + (f", e.g. {example}" if example else "")
                   + "); --print-config shows the keys")
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")


def _is_override(word: str) -> bool:
    return "=" in word and not word.endswith((".yaml", ".yml"))


def merge_extras(args: argparse.Namespace, extras: list[str]) -> list[str]:
    """Words argparse left over because they followed an option (``RECIPE --slurm a=1 b=2``) are the
    command's overrides (or its recipe, when none was given before the option); returns what is still
    unknown (options the command does not have, words a command without overrides cannot take)."""
    unknown = [x for x in extras if x.startswith("-")]
    words = [x for x in extras if not x.startswith("-")]
    if not words or not hasattr(args, "overrides"):
        return unknown + words
    if hasattr(args, "recipe") and args.recipe is None and not _is_override(words[0]):
        args.recipe = words.pop(0)
    args.overrides = list(args.overrides or []) + words
    return unknown


def recipe_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """A first positional containing '=' is an override, not a recipe."""
    recipe, overrides = args.recipe, list(args.overrides)
    if recipe is not None and _is_override(recipe):
        overrides.insert(0, recipe)
        recipe = None
    return recipe, overrides


def load(args: argparse.Namespace, schema: type[T], section: str | None = None) -> T | None:
    """Load the command's config (RECIPE is a path or a shipped recipe's name, e.g. ``train/fi-300m``);
    with --print-config print it and return None (the caller exits 0)."""
    from fitrain.core.config import load_config, to_yaml
    from fitrain.core.recipes import resolve_recipe

    recipe, overrides = recipe_and_overrides(args)
    if recipe is not None:
        recipe = resolve_recipe(recipe)
    cfg = load_config(schema, recipe, overrides, section=section)
    if getattr(args, "print_config", False):
        print(to_yaml(cfg), end="")
        return None
    return cfg
