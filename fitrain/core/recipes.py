"""Named recipes: ``train/fi-300m`` or ``tiny-cpu`` -> a YAML file under the shipped recipes/ folder.

This is the one place that knows where the recipes live: the checkout's ``recipes/`` for an editable
install, the installed ``fitrain_recipes`` package for a wheel. A path to an existing file is taken as is.
An unknown name fails with the nearest known recipe.
"""
from __future__ import annotations

import difflib
import importlib.util
from pathlib import Path

from fitrain.core.errors import ConfigError


def recipes_root() -> Path:
    """The shipped recipes/ folder: the checkout's (editable install) or the installed ``fitrain_recipes``."""
    here = Path(__file__).resolve().parents[2] / "recipes"
    if here.is_dir():
        return here
    spec = importlib.util.find_spec("fitrain_recipes")
    if spec and spec.submodule_search_locations:
        return Path(next(iter(spec.submodule_search_locations)))
    return here


def known_recipes(under: str = "") -> list[str]:
    """Names of the shipped recipes (``train/fi-tiny``...), optionally only those under one folder."""
    root = recipes_root()
    base = root / under if under else root
    if not base.is_dir():
        return []
    return sorted(str(p.relative_to(root).with_suffix("")) for p in base.rglob("*.yaml"))


def resolve_recipe(name: str, folder: str = "") -> str:
    """A recipe path, or a shipped recipe's name. With ``folder`` (e.g. ``experiments``) a bare name is looked
    up there first (``tiny-cpu`` -> recipes/experiments/tiny-cpu.yaml), then at the top (``quickstart``)."""
    p = Path(name).expanduser()
    if p.is_file():
        return str(p)
    root = recipes_root()
    prefixes = ([f"{folder}/"] if folder else []) + [""]
    for prefix in prefixes:
        for cand in (root / f"{prefix}{name}", root / f"{prefix}{name}.yaml"):
            if cand.is_file():
                return str(cand)
    if folder:
        known = [k[len(folder) + 1:] for k in known_recipes(folder)] + [k for k in known_recipes() if "/" not in k]
        what = f"{folder[:-1] if folder.endswith('s') else folder} recipe"
    else:
        known, what = known_recipes(), "recipe"
    close = difflib.get_close_matches(name, known, n=1, cutoff=0.5)
    raise ConfigError(f"unknown {what} '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
                      + (f" Known: {', '.join(known)} (or give a path to a YAML file)" if known else ""))


def packaged_path(path: str) -> str:
    """A relative path to a file fitrain ships (``data_gen/assets/quickstart_templates.jsonl``), made absolute
    so recipes that name it work from any directory: under the working directory if it is there, else in the
    source tree or the installed packages. Anything else is returned unchanged."""
    p = Path(path).expanduser()
    if p.is_absolute():
        return path
    if p.exists():
        return str(p.resolve())
    roots = [Path(__file__).resolve().parents[2]]
    spec = importlib.util.find_spec(p.parts[0]) if p.parts and p.parts[0].isidentifier() else None
    if spec and spec.submodule_search_locations:
        roots += [Path(loc).parent for loc in spec.submodule_search_locations]
    for root in roots:
        if (root / p).exists():
            return str(root / p)
    return path
