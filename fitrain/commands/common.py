"""Argument helpers shared by the subcommands: RECIPE [key=value ...] and --print-config."""
from __future__ import annotations

import argparse
from typing import TypeVar

T = TypeVar("T")


def add_recipe_arguments(p: argparse.ArgumentParser, recipe_required: bool = False) -> None:
    p.add_argument("recipe", nargs=None if recipe_required else "?", default=None,
                   help="YAML recipe (merged over the defaults); omit to use the defaults")
    p.add_argument("overrides", nargs="*", default=[], metavar="key=value",
                   help="override any config key, e.g. model.dim=512 train.max_tokens=1e8")
    p.add_argument("--print-config", action="store_true", help="print the merged config and exit")


def recipe_and_overrides(args: argparse.Namespace) -> tuple[str | None, list[str]]:
    """A first positional containing '=' is an override, not a recipe."""
    recipe, overrides = args.recipe, list(args.overrides)
    if recipe is not None and "=" in recipe and not recipe.endswith((".yaml", ".yml")):
        overrides.insert(0, recipe)
        recipe = None
    return recipe, overrides


def load(args: argparse.Namespace, schema: type[T], section: str | None = None) -> T | None:
    """Load the command's config (RECIPE is a path or a shipped recipe's name, e.g. ``train/fi-300m``);
    with --print-config print it and return None (the caller exits 0)."""
    from fitrain.config import load_config, to_yaml

    recipe, overrides = recipe_and_overrides(args)
    if recipe is not None:
        recipe = resolve_recipe(recipe)
    cfg = load_config(schema, recipe, overrides, section=section)
    if getattr(args, "print_config", False):
        print(to_yaml(cfg), end="")
        return None
    return cfg


def resolve_recipe(name: str) -> str:
    """A recipe path, or a name under the packaged recipes/ folder (``train/tiny`` -> recipes/train/tiny.yaml)."""
    from pathlib import Path

    from fitrain.errors import ConfigError

    p = Path(name)
    if p.is_file():
        return str(p)
    root = recipes_root()
    for cand in (root / name, root / f"{name}.yaml"):
        if cand.is_file():
            return str(cand)
    known = sorted(str(x.relative_to(root).with_suffix("")) for x in root.rglob("*.yaml")) if root.is_dir() else []
    import difflib

    close = difflib.get_close_matches(name, known, n=1)
    raise ConfigError(f"unknown recipe '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
                      + (f" Known recipes: {', '.join(known)}" if known else ""))


def recipes_root():
    """The shipped recipes/ folder: the checkout's (editable install) or the installed ``fitrain_recipes``."""
    import importlib.util
    from pathlib import Path

    here = Path(__file__).resolve().parents[2] / "recipes"
    if here.is_dir():
        return here
    spec = importlib.util.find_spec("fitrain_recipes")
    return Path(next(iter(spec.submodule_search_locations))) if spec and spec.submodule_search_locations else here
