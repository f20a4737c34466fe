"""Token accounting and reject counting, defined once for data_gen, prepare, the trainer and eval.

Two kinds of tokens are always counted apart (fitrain/docs/engineering.md, "Two token counts"):

* ``total_tokens``: every non-padding token placed in a training row, i.e. what the model reads. The
  token-for-token rule of the paper and the token-matched baseline match **this** number.
* ``supervised_tokens``: tokens whose label contributes to the loss (answer + EOS under the response mask).
"""
from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, field, fields


@dataclass
class TokenCounts:
    documents: int = 0
    pairs: int = 0
    rows: int = 0
    total_tokens: int = 0
    supervised_tokens: int = 0
    padding_tokens: int = 0

    @property
    def supervised_fraction(self) -> float:
        return self.supervised_tokens / self.total_tokens if self.total_tokens else 0.0

    @property
    def packing_efficiency(self) -> float:
        """Non-padding fraction of all row slots."""
        slots = self.total_tokens + self.padding_tokens
        return self.total_tokens / slots if slots else 0.0

    def __iadd__(self, other: "TokenCounts") -> "TokenCounts":
        for f in fields(self):
            setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))
        return self

    def to_dict(self) -> dict:
        d = asdict(self)
        d["supervised_fraction"] = round(self.supervised_fraction, 6)
        d["packing_efficiency"] = round(self.packing_efficiency, 6)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TokenCounts":
        return cls(**{f.name: int(d.get(f.name, 0)) for f in fields(cls)})


@dataclass
class Rejects:
    """Counts of rejected inputs by reason, with the first few locations of each for the error report."""

    counts: Counter = field(default_factory=Counter)
    examples: dict = field(default_factory=dict)
    max_examples: int = 3

    def add(self, reason: str, where: str = "", detail: str = "", n: int = 1) -> None:
        self.counts[reason] += n
        ex = self.examples.setdefault(reason, [])
        if len(ex) < self.max_examples and (where or detail):
            ex.append(f"{where}: {detail}" if detail else where)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    def merge(self, other: "Rejects") -> "Rejects":
        self.counts.update(other.counts)
        for reason, ex in other.examples.items():
            mine = self.examples.setdefault(reason, [])
            mine.extend(ex[: max(0, self.max_examples - len(mine))])
        return self

    def to_dict(self) -> dict:
        return {"total": self.total, "by_reason": dict(sorted(self.counts.items())),
                "examples": {k: v for k, v in sorted(self.examples.items())}}

    @classmethod
    def from_dict(cls, d: dict) -> "Rejects":
        r = cls()
        r.counts.update(d.get("by_reason", {}))
        r.examples.update(d.get("examples", {}))
        return r

    def summary(self) -> str:
        if not self.total:
            return "no rejects"
        return ", ".join(f"{k}: {v}" for k, v in self.counts.most_common())

    def describe(self) -> str:
        """Like :meth:`summary`, with the first location of each reason (``empty_file: 1 (e.g. a.jsonl)``)."""
        if not self.total:
            return "no input rows at all"
        return ", ".join(f"{k}: {v}" + (f" (e.g. {self.examples[k][0]})" if self.examples.get(k) else "")
                         for k, v in self.counts.most_common())
