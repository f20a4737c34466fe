"""Typed configuration: dataclass schemas, YAML recipes merged over them, ``key=value`` overrides.

Every component defines a dataclass of its settings with the method's numbers as defaults. A command
loads its root schema with :func:`load_config`, which merges, in order:

1. the dataclass defaults;
2. the recipe YAML (which may name a base recipe with ``_base_: other.yaml``, resolved relative to it,
   applied first; ``_base_`` may be a list);
3. ``key=value`` overrides from the command line (``model.dim=512``, ``train.max_tokens=1e9``).

An unknown key fails with the nearest valid key; a wrong type fails naming the key and the expected
type; an override that is not valid YAML fails naming the override. The merged result is an instance of
the schema (real dataclasses, not DictConfig), so downstream code gets plain attribute access and type
checkers help.

**Value checks.** Every config dataclass checks itself on construction: its ``__post_init__`` calls
:mod:`fitrain.core.checks` (``check_fields`` with a check per field, ``fail`` for checks across fields).
The error is a ``ConfigValueError`` whose key is relative to the dataclass; :func:`load_config` and
:func:`from_dict` build nested dataclasses themselves and prefix the path, so a user sees the full key (``train.optim.beta1 must be in [0, 1), got 1.5``). A config built in
Python is checked the same way when it is constructed (``dataclasses.replace`` too);
:func:`validate_config` re-runs the checks of a tree whose fields were assigned after construction.
"""
from __future__ import annotations

import dataclasses
import difflib
import re
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml
from omegaconf import DictConfig, ListConfig, OmegaConf
from omegaconf.errors import ConfigAttributeError, ConfigKeyError, OmegaConfBaseException, ValidationError

from fitrain.core.checks import ConfigValueError
from fitrain.core.errors import ConfigError

T = TypeVar("T")

SECRET_KEY = re.compile(r"(api_?key|secret|password|(^|_)token)$", re.IGNORECASE)


def _default_instance(schema: Any, dotted: str) -> Any:
    obj = schema() if isinstance(schema, type) else schema
    for part in [p for p in dotted.split(".") if p]:
        obj = getattr(obj, part, None)
    return obj


def _nearest_hint(schema: Any, full_key: str) -> str:
    parent, _, leaf = full_key.rpartition(".")
    valid = _valid_keys_of_instance(schema, parent)
    close = difflib.get_close_matches(leaf, valid, n=1, cutoff=0.5)
    where = f" under '{parent}'" if parent else ""
    hint = f"; did you mean '{(parent + '.') if parent else ''}{close[0]}'?" if close else ""
    listing = f" Valid keys{where}: {', '.join(sorted(valid))}." if valid else ""
    return f"unknown config key '{full_key}'{hint}{listing}"


def _valid_keys_of_instance(schema: Any, dotted_parent: str) -> list[str]:
    obj = _default_instance(schema, dotted_parent)
    if obj is not None and dataclasses.is_dataclass(obj):
        return [f.name for f in dataclasses.fields(obj)]
    return []


def _load_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"recipe {path} includes itself through _base_ ({' -> '.join(map(str, seen))})")
    if not path.is_file():
        raise ConfigError(f"recipe not found: {path}")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"recipe {path} is not valid YAML: {_yaml_problem(e)}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"recipe {path} must be a mapping of keys to values, got {type(data).__name__}")
    bases = data.pop("_base_", None)
    if bases is None:
        return data
    merged: dict = {}
    for base in [bases] if isinstance(bases, str) else list(bases):
        merged = _deep_merge(merged, _load_yaml(path.parent / base, seen + (path,)))
    return _deep_merge(merged, data)


def _deep_merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep_merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def _translate(e: OmegaConfBaseException, schema: Any) -> ConfigError:
    full_key = getattr(e, "full_key", None) or ""
    if isinstance(e, (ConfigKeyError, ConfigAttributeError)) and "not in" in str(e):
        return ConfigError(_nearest_hint(schema, full_key))
    if isinstance(e, ValidationError):
        expected = _field_type(schema, full_key)
        msg = str(e).splitlines()[0]
        exp = f" (expected {expected})" if expected else ""
        return ConfigError(f"bad value for config key '{full_key}'{exp}: {msg}")
    return ConfigError(f"config error at '{full_key}': {str(e).splitlines()[0]}")


def _field_type(schema: Any, full_key: str) -> str:
    parent, _, leaf = full_key.rpartition(".")
    obj = _default_instance(schema, parent)
    if obj is None or not dataclasses.is_dataclass(obj):
        return ""
    try:
        t = typing.get_type_hints(type(obj)).get(leaf)
    except Exception:
        return ""
    return "" if t is None else getattr(t, "__name__", None) or str(t).replace("typing.", "")


def _yaml_problem(e: yaml.YAMLError, position: bool = True) -> str:
    """A YAML error in one line: the problem and (``position``) where, line and column."""
    mark = getattr(e, "problem_mark", None)
    problem = getattr(e, "problem", None) or str(e).splitlines()[0]
    where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None and position else ""
    return " ".join(f"{problem}{where}".split())


def parse_overrides(overrides: list[str]) -> list[str]:
    bad = [o for o in overrides if "=" not in o or o.startswith("=")]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {' '.join(bad)}")
    return list(overrides)


def _dotlist(overrides: list[str]) -> Any:
    """The overrides as one OmegaConf layer; a value that is not valid YAML fails naming its override."""
    for o in overrides:
        key, _, value = o.partition("=")
        try:
            OmegaConf.from_dotlist([o])
        except yaml.YAMLError as e:
            raise ConfigError(f"override '{o}': the value is not valid YAML ({_yaml_problem(e, position=False)}); quote a string "
                              f"that holds brackets, braces or a colon, e.g. {key}='\"{value}\"'") from None
        except OmegaConfBaseException as e:
            raise ConfigError(f"override '{o}': {str(e).splitlines()[0]}") from None
    return OmegaConf.from_dotlist(overrides)


def _culprit(base: Any, layers: list, overrides: list[str]) -> str:
    """The first override that alone fails to merge (names the key when OmegaConf's error has none)."""
    for o in overrides:
        try:
            OmegaConf.merge(base, *layers, OmegaConf.from_dotlist([o]))
        except (OmegaConfBaseException, TypeError):
            return o
    return ""


def load_config(schema: type[T], recipe: str | Path | None = None, overrides: list[str] | None = None,
                section: str | None = None) -> T:
    """Merge defaults <- recipe (or its ``section`` sub-mapping) <- overrides into an instance of ``schema``."""
    base = OmegaConf.structured(schema)
    layers = []
    if recipe is not None:
        data = _load_yaml(Path(recipe))
        if section is not None:
            data = data.get(section, {}) or {}
        layers.append(OmegaConf.create(data))
    dotlist = _dotlist(parse_overrides(overrides)) if overrides else None
    try:
        merged = OmegaConf.merge(base, *layers, *([dotlist] if dotlist is not None else []))
        OmegaConf.resolve(merged)
        cfg = _build(merged)
    except OmegaConfBaseException as e:
        err = _translate(e, schema)
        if not getattr(e, "full_key", None) and overrides:
            culprit = _culprit(base, layers, overrides)
            if culprit:
                err = ConfigError(f"override '{culprit}': {str(e).splitlines()[0]}")
        raise err from None
    except TypeError as e:  # OmegaConf cannot merge an indexed key (`arms.0=...`) into a list setting
        culprit = _culprit(base, layers, overrides or [])
        raise ConfigError(f"override '{culprit or overrides}': a list setting cannot be changed item by item "
                          f"({e}); give the whole list, e.g. blocks=[...]") from None
    return cfg  # type: ignore[return-value]


def from_dict(schema: type[T] | T, data: dict) -> T:
    """Validate a plain mapping (e.g. one section of an experiment recipe) against ``schema``, a config dataclass
    or an instance of one to merge the mapping over; built and checked as :func:`load_config` does."""
    try:
        cfg = _build(OmegaConf.merge(OmegaConf.structured(schema), OmegaConf.create(data)))
    except OmegaConfBaseException as e:
        raise _translate(e, schema) from None
    return cfg  # type: ignore[return-value]


# ------------------------------------------------------------------------------------------ value checks
def _build(node: Any, prefix: str = "") -> Any:
    """``OmegaConf.to_object`` that constructs nested dataclasses itself, so that a ConfigValueError raised in a
    nested ``__post_init__`` names its full dotted key."""
    if isinstance(node, ListConfig):
        return [_build(c, f"{prefix.rstrip('.')}[{i}].") for i, c in enumerate(node)]
    if not isinstance(node, DictConfig):
        return node
    schema = OmegaConf.get_type(node)
    if schema is None or not dataclasses.is_dataclass(schema):
        return {k: _build(node[k], f"{prefix}{k}.") for k in node}
    init = {f.name for f in dataclasses.fields(schema) if f.init}
    kwargs, late = {}, {}
    for k in node:
        value = _build(node[k], f"{prefix}{k}.")
        (kwargs if k in init else late)[k] = value
    try:
        obj = schema(**kwargs)
    except ConfigValueError as e:
        raise e.under(prefix) from None
    for k, v in late.items():
        setattr(obj, k, v)
    return obj


def validate_config(cfg: Any, prefix: str = "") -> None:
    """Re-run the construction checks (``__post_init__``) of every dataclass of a tree, e.g. after a setting was
    changed in Python; ConfigValueError naming the full key of the first that fails."""
    if not dataclasses.is_dataclass(cfg):
        return
    for f in dataclasses.fields(cfg):
        value = getattr(cfg, f.name)
        if dataclasses.is_dataclass(value):
            validate_config(value, f"{prefix}{f.name}.")
    post = getattr(cfg, "__post_init__", None)
    if post is not None:
        try:
            post()
        except ConfigValueError as e:
            raise e.under(prefix) from None


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg), resolve=True)  # type: ignore[return-value]


def to_yaml(cfg: Any) -> str:
    return OmegaConf.to_yaml(OmegaConf.structured(cfg))


def redact(d: Any) -> Any:
    """Copy of a config mapping with secret-looking values (api keys, tokens, passwords) replaced."""
    if isinstance(d, dict):
        return {k: ("***" if isinstance(k, str) and SECRET_KEY.search(k) and isinstance(v, str) and v
                    else redact(v)) for k, v in d.items()}
    if isinstance(d, list):
        return [redact(v) for v in d]
    return d


_PLAIN = re.compile(r"^[\w./:@+-]+$")


def _flow(value: Any) -> str:
    """A value as command-line text that ``OmegaConf.from_dotlist`` reads back as the same value."""
    import json

    if isinstance(value, str):
        if _PLAIN.match(value) and yaml.safe_load(value) == value:
            return value
        return json.dumps(value).replace("${", "\\${")
    return json.dumps(value).replace("${", "\\${")


def overrides_from_defaults(cfg: Any) -> list[str]:
    """``key=value`` overrides that turn the defaults of ``type(cfg)`` into ``cfg``: with them,
    ``load_config(type(cfg), None, overrides)`` equals ``cfg``. Used to print the one command an
    experiment step stands for."""
    out: list[str] = []

    def walk(prefix: str, have: Any, default: Any) -> None:
        for key, value in have.items():
            dflt = default.get(key, _MISSING) if isinstance(default, dict) else _MISSING
            name = f"{prefix}{key}"
            if isinstance(value, dict) and isinstance(dflt, dict) and value and not set(dflt) - set(value):
                walk(name + ".", value, dflt)
            elif value != dflt:
                out.append(f"{name}={_flow(value)}")

    walk("", to_dict(cfg), to_dict(type(cfg)()))
    return out


_MISSING = object()


def merge_settings(obj: Any, overrides: dict, what: str) -> Any:
    """``obj`` (a config dataclass) with a mapping of settings merged over it (unknown keys, wrong types and
    values out of range: a ConfigError naming ``what`` and the full key): an arm's prepare settings, a block's
    corpus, a benchmark's judge."""
    try:
        return from_dict(obj, overrides)
    except ConfigError as e:
        raise ConfigError(f"{what}: {e}") from None
