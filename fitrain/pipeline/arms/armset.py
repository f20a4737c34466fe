"""The arms of an experiment, parsed once: each arm's settings as its kind's dataclass, validated (every
error names the arm), budget references resolved to their roots, the reference and primary arm.

A plain string is shorthand: ``fi`` is ``{name: fi, kind: fi}``, ``standard`` is ``{name: standard,
kind: documents}``, so ``arms: [fi, standard]`` is the two-arm experiment.
"""
from __future__ import annotations

from typing import Any

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.pipeline.arms import registry
from fitrain.pipeline.arms.base import ArmKind, ArmSpec, check_name

SHORTHAND = {"fi": {"name": "fi", "kind": "fi"}, "standard": {"name": "standard", "kind": "documents"}}


def parse_arm(raw: Any, i: int) -> ArmSpec:
    """One arm's settings as its kind's dataclass; a setting of another kind is named as such, any other
    unknown key gets the nearest-key error."""
    from fitrain.core.config import from_dict

    if isinstance(raw, str):
        if raw not in SHORTHAND:
            raise FitrainError(f"arms[{i}] '{raw}': a plain name is only {sorted(SHORTHAND)}; give the arm as "
                               f"{{name: ..., kind: {'|'.join(registry.kinds())}, ...}}")
        raw = SHORTHAND[raw]
    if not isinstance(raw, dict):
        raise FitrainError(f"arms[{i}]: an arm is a name or a mapping, got {type(raw).__name__}")
    name = raw.get("name") if isinstance(raw.get("name"), str) else ""
    label = f"arms[{i}]" + (f" '{name}'" if name else "")
    kind = registry.get(str(raw.get("kind") or ""), f"arm '{name}'")
    own = kind.own_settings()
    others = {s for k in registry.kinds().values() for s in k.own_settings()}
    stray = [k for k in raw if k in others and k not in own and k not in ArmSpec.__dataclass_fields__]
    if stray:
        raise FitrainError(f"arm '{name}': {', '.join(stray)}: not a setting of a {kind.name} arm (it takes "
                           f"{', '.join(sorted(own)) or 'no settings of its own'})")
    try:
        return from_dict(kind.settings, raw)
    except ConfigError as e:
        raise FitrainError(f"{label}: {e}") from None


class ArmSet:
    """The validated arms of an experiment and what follows from them (kinds, roots, the primary arm)."""

    def __init__(self, raw: list[Any], primary: str = "", explicit_budget: bool = False):
        self.specs = [parse_arm(r, i) for i, r in enumerate(raw)]
        if not self.specs:
            raise FitrainError("an experiment needs at least one arm (arms: [...])")
        self.by_name = {a.name: a for a in self.specs}
        if len(self.by_name) != len(self.specs):
            dup = sorted({a.name for a in self.specs if sum(b.name == a.name for b in self.specs) > 1})
            raise FitrainError(f"arm names must be unique; repeated: {dup}")
        for a in self.specs:
            check_name(a, self.by_name)
            self.kind(a.name).check(a, self)
        refs = [a.name for a in self.specs if self.kind(a.name).reference]
        self.reference = refs[0] if refs else self.specs[0].name
        self.primary = primary or self.reference
        if self.primary not in self.by_name:
            raise FitrainError(f"primary arm '{self.primary}' is not one of the arms {self.names}")
        self._roots = {a.name: self._root(a.name) for a in self.specs}
        for a in self.specs:
            if self.kind(a.name).drawn_to_budget and self._roots[a.name] == a.name and not explicit_budget:
                raise FitrainError(f"arm '{a.name}': a {a.kind} draws the tokens of its reference arm; set its "
                                   "budget.reference to another arm (or give train.max_tokens)")
        self._check_use_cycles()

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.specs]

    def __getitem__(self, name: str) -> ArmSpec:
        return self.by_name[name]

    def kind(self, name: str) -> ArmKind:
        """The kind of arm ``name`` (its hooks: steps, prepare input, label)."""
        return registry.get(self.by_name[name].kind, f"arm '{name}'")

    def root(self, name: str) -> str:
        """The arm whose own prepared tokens set ``name``'s budget."""
        return self._roots[name]

    def reference_of(self, name: str) -> str:
        return self.by_name[name].budget.reference or self.reference

    def pairs_source(self, name: str) -> str:
        """The arm whose data_gen pairs ``name``'s data comes from ('' for an arm with data of its own)."""
        return self.kind(name).pairs_source(self, self.by_name[name])

    def check_inputs(self, names: list[str] | None = None) -> None:
        """Every arm's own input files (a corpus arm's, a mixture's paths) exist; the error names the arm.
        ``names``: only these arms (those whose data step is still to run; None: all)."""
        from fitrain.data.records import expand_paths

        for a in self.specs:
            patterns = self.kind(a.name).input_patterns(a) if names is None or a.name in names else []
            try:
                expand_paths(patterns) if patterns else None
            except FitrainError as e:
                raise FitrainError(f"arm '{a.name}': corpus not found: {e}") from None

    def _root(self, name: str) -> str:
        chain = [name]
        while True:
            ref = self.reference_of(chain[-1])
            if ref == chain[-1]:
                return ref
            if ref in chain:
                raise FitrainError(f"arm '{name}': budget references form a cycle: {' -> '.join(chain + [ref])}; "
                                   "one arm of the chain must train its own tokens")
            chain.append(ref)

    def _check_use_cycles(self) -> None:
        def visit(name: str, path: list[str]) -> None:
            for used in self.kind(name).uses(self.by_name[name]):
                if used in path:
                    raise FitrainError(f"arm '{path[0]}': {self.by_name[path[0]].kind} sources form a cycle: "
                                       f"{' -> '.join(path + [used])}")
                visit(used, path + [used])

        for a in self.specs:
            visit(a.name, [a.name])
