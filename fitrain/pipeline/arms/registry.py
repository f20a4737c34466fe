"""The kinds of arm, by their ``kind:`` value. A kind is one module under fitrain/pipeline/arms/ defining an
:class:`~fitrain.pipeline.arms.base.ArmKind` subclass as ``KIND``, plus one line in :data:`BUILTIN`; a kind
defined elsewhere (a project's own, a test's) plugs in with one call to :func:`register`.

The built-in modules are imported on first use: they build experiment steps, so they import the experiment
(fitrain.pipeline.experiment), which itself only needs the arm interface (fitrain.pipeline.arms.base).
"""
from __future__ import annotations

from importlib import import_module

from fitrain.core.errors import FitrainError
from fitrain.pipeline.arms.base import ArmKind

BUILTIN = (  # one line per kind: the module whose KIND it is
    "fitrain.pipeline.arms.fi",
    "fitrain.pipeline.arms.documents",
    "fitrain.pipeline.arms.corpus",
    "fitrain.pipeline.arms.mixture",
    "fitrain.pipeline.arms.generated",
)
_KINDS: dict[str, ArmKind] = {}
_loaded = False


def _load() -> dict[str, ArmKind]:
    global _loaded
    if not _loaded:
        for module in BUILTIN:
            k = import_module(module).KIND
            _KINDS[k.name] = k
        _loaded = True
    return _KINDS


def register(kind: ArmKind) -> ArmKind:
    """Plug a kind in (``kind.name`` is its ``kind:`` value); a name already taken is refused."""
    kinds = _load()
    if not kind.name or kind.name in kinds:
        raise FitrainError(f"arm kind '{kind.name}' is empty or already registered ({', '.join(kinds)})")
    kinds[kind.name] = kind
    return kind


def unregister(name: str) -> None:
    _load().pop(name, None)


def kinds() -> dict[str, ArmKind]:
    """Every registered kind, the built-ins first."""
    return dict(_load())


def get(name: str, who: str) -> ArmKind:
    kinds = _load()
    if name not in kinds:
        raise FitrainError(f"{who}: unknown kind '{name}'; one of {', '.join(kinds)}")
    return kinds[name]
