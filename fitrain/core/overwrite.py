"""The one rule for finished outputs: a command never replaces a finished output of another configuration
unless asked (``--overwrite``, or a new directory). The refusal names what differs, in one line, e.g.
``runs/p holds a finished prepare of another configuration (pack.seq_len: 128 -> 256)``."""
from __future__ import annotations

from pathlib import Path
from typing import Any

from fitrain.core.errors import FitrainError

IGNORED = ("progress", "out", "overwrite")   # how and where a command writes, not what it makes


def flatten(d: Any, prefix: str = "") -> dict[str, Any]:
    """``{"pack": {"seq_len": 128}}`` -> ``{"pack.seq_len": 128}``."""
    if not isinstance(d, dict):
        return {prefix.rstrip("."): d}
    out: dict[str, Any] = {}
    for k, v in d.items():
        out.update(flatten(v, f"{prefix}{k}.") if isinstance(v, dict) and v else {f"{prefix}{k}": v})
    return out


def recorded_settings(path: str | Path) -> dict | None:
    """The settings recorded at ``path`` (a JSON object), or None when there are none or they are unreadable."""
    from fitrain.core.io import read_json

    try:
        recorded = read_json(path) if Path(path).is_file() else None
    except ValueError:
        return None
    return recorded if isinstance(recorded, dict) else None


def differences(old: dict, new: dict, limit: int = 4) -> str:
    """``key: old -> new`` for each key whose value differs (at most ``limit``, then how many more)."""
    a, b = flatten(old), flatten(new)
    keys = sorted(k for k in set(a) | set(b) if a.get(k, "<unset>") != b.get(k, "<unset>"))
    parts = [f"{k}: {_short(a.get(k, '<unset>'))} -> {_short(b.get(k, '<unset>'))}" for k in keys[:limit]]
    if len(keys) > limit:
        parts.append(f"and {len(keys) - limit} more")
    return ", ".join(parts)


def _short(v: Any) -> str:
    s = repr(v)
    return s if len(s) <= 60 else s[:57] + "..."


def refuse_other_config(what: str, where: str | Path, old: dict, new: dict) -> None:
    """Raise the one-line refusal when ``old`` (the finished output's recorded configuration) and ``new``
    differ; nothing when they are the same."""
    diff = differences(old, new)
    if diff:
        raise FitrainError(f"{where} holds a finished {what} of another configuration ({diff}); pass --overwrite "
                           "to replace it, or write to a new directory")
