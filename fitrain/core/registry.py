"""Plug-in registries by name (fitrain/INTERFACES.md, "How to add an arm kind or a benchmark"): the built-in
entries are modules, each defining one object under an agreed attribute, imported on first use (they may
import what imports the registry); others are added with :meth:`Registry.register`."""
from __future__ import annotations

from importlib import import_module
from typing import Generic, Protocol, TypeVar

from fitrain.core.errors import FitrainError


class Named(Protocol):
    name: str


T = TypeVar("T", bound=Named)


class Registry(Generic[T]):
    """``what``: the word for an entry in errors ("kind", "benchmark"); ``builtin``: module names, in order;
    ``attr``: the attribute of each module holding its entry."""

    def __init__(self, what: str, builtin: tuple[str, ...], attr: str):
        self.what, self.builtin, self.attr = what, builtin, attr
        self._entries: dict[str, T] = {}
        self._loaded = False

    def _load(self) -> dict[str, T]:
        if not self._loaded:
            for module in self.builtin:
                entry = getattr(import_module(module), self.attr)
                self._entries[entry.name] = entry
            self._loaded = True
        return self._entries

    def register(self, entry: T) -> T:
        """Add an entry under ``entry.name``; an empty or taken name is refused."""
        entries = self._load()
        if not entry.name or entry.name in entries:
            raise FitrainError(f"{self.what} '{entry.name}' is empty or already registered ({', '.join(entries)})")
        entries[entry.name] = entry
        return entry

    def unregister(self, name: str) -> None:
        self._load().pop(name, None)

    def all(self) -> dict[str, T]:
        """Every entry by name, the built-ins first."""
        return dict(self._load())

    def get(self, name: str, who: str) -> T:
        """The entry ``name``; a FitrainError starting with ``who`` names the known ones."""
        entries = self._load()
        if name not in entries:
            raise FitrainError(f"{who}: unknown {self.what} '{name}'; one of {', '.join(entries)}")
        return entries[name]
