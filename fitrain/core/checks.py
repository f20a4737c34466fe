"""Value checks of config dataclasses: each dataclass checks itself on construction, in ``__post_init__``::

    def __post_init__(self) -> None:
        check_fields(self, lr=above(0), beta1=interval("[0, 1)"), schedule=one_of(*SCHEDULES), seed=SEED)
        if self.min_chars > self.max_chars:
            fail("min_chars", f"({self.min_chars}) must be <= max_chars ({self.max_chars})")

A check is a function of a value that returns '' when it passes, else what the value must be. Numeric
checks reject NaN and infinities. The error (:class:`ConfigValueError`) names the key relative to the
dataclass; :mod:`fitrain.core.config`'s loader prefixes the dataclass's path in the tree, so a user reads
``train.optim.beta1 must be in [0, 1), got 1.5``.
"""
from __future__ import annotations

import math
import re
from typing import Any, Callable

from fitrain.core.errors import ConfigError


class ConfigValueError(ConfigError):
    """A value out of range: ``key`` relative to the dataclass that raised it; the loader prefixes the path of
    that dataclass in the tree (``train.optim.beta1 must be in [0, 1), got 1.5``)."""

    def __init__(self, key: str, problem: str):
        super().__init__(f"{key} {problem}")
        self.key, self.problem = key, problem

    def under(self, prefix: str) -> "ConfigValueError":
        return ConfigValueError(f"{prefix}{self.key}", self.problem) if prefix else self


Check = Callable[[Any], str]   # '' when a value passes, else what it must be


def _number(v: Any) -> float | None:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        return None
    return float(v)


def _bounded(test: Callable[[float], bool], must: str) -> Check:
    def check(v: Any) -> str:
        x = _number(v)
        if x is None:
            return "must be a number"
        return "" if math.isfinite(x) and test(x) else f"must be {must}"
    return check


def at_least(lo: float) -> Check:
    """``>= lo`` (and finite)."""
    return _bounded(lambda x: x >= lo, f">= {lo:g}")


def above(lo: float) -> Check:
    """``> lo`` (and finite)."""
    return _bounded(lambda x: x > lo, f"> {lo:g}")


def _bound(text: str) -> float:
    base, _, exp = text.strip().partition("**")
    return float(base) ** float(exp) if exp else float(base)


def interval(spec: str) -> Check:
    """A finite value in an interval written ``[0, 1)``, ``(0, 10]``...; bounds may be ``2**32``-style."""
    lo, hi = (_bound(b) for b in spec[1:-1].split(","))
    lo_b, hi_b = spec[0], spec[-1]
    return _bounded(lambda x: (x >= lo if lo_b == "[" else x > lo) and (x <= hi if hi_b == "]" else x < hi),
                    f"in {spec}")


def one_of(*allowed: Any) -> Check:
    return lambda v: "" if v in allowed else f"must be one of {list(allowed)}"


def finite(v: Any) -> str:
    x = _number(v)
    return "must be a number" if x is None else ("" if math.isfinite(x) else "must be a finite number")


def regex(v: Any) -> str:
    try:
        re.compile(v)
    except (re.error, TypeError) as e:
        return f"must be a valid regular expression ({e})"
    return ""


def integer(check: Check) -> Check:
    """``check`` on a whole number (a seed, a count given as ``1e9`` in YAML is accepted when whole)."""
    def whole(v: Any) -> str:
        x = _number(v)
        if x is not None and math.isfinite(x) and x != int(x):
            return "must be a whole number"
        return check(v)
    return whole


SEED = integer(interval("[0, 2**32)"))   # numpy's and torch's seed range
FRACTION = interval("[0, 1]")
POSITIVE = at_least(1)      # a count
NON_NEGATIVE = at_least(0)  # a count where 0 means "all" / "off"
MAX_SEQ_LEN = 1 << 20       # positions: past this a row's activations or RoPE tables outgrow a node's memory


def seq_len(v: Any) -> str:
    """A sequence length in [2, 2**20], checked before anything is allocated for it."""
    problem = integer(interval("[2, 2**20]"))(v)
    x = _number(v)
    if problem and x is not None and x > MAX_SEQ_LEN:
        return (f"{problem} (2**20 = {MAX_SEQ_LEN:,} positions; one row of {x:,.0f} would need more memory than a "
                "node has)")
    return problem


def check_fields(obj: Any, **checks: Check) -> None:
    """Run each field's check (a ``None`` value is an unset optional and passes); ConfigValueError naming the
    first field that fails. Config dataclasses call this from ``__post_init__``, so they check themselves on
    construction (from YAML, overrides or Python)."""
    for name, check in checks.items():
        value = getattr(obj, name)
        listed = isinstance(value, (list, tuple))
        for i, v in enumerate(value if listed else [value]):
            problem = "" if v is None else check(v)
            if problem:
                raise ConfigValueError(f"{name}[{i}]" if listed else name, f"{problem}, got {v!r}")


def fail(key: str, problem: str) -> None:
    """Raise the error of a cross-field check (``key``: the field to change, relative to the dataclass)."""
    raise ConfigValueError(key, problem)
