"""The arms of an experiment: named specs, each a data source and a token budget matched to a reference
(fitrain/docs/method.md, "The paper's baselines (Table 1)").

Kinds (``kind:``), with the settings each takes:

* ``fi``: this experiment's data_gen pairs, token-for-token budgeted against their documents. Variants are
  settings: ``min_judge_score`` (a threshold below data_gen's ``judge.min_score`` re-writes the pairs from
  the judged shards, e.g. ``0`` for the paper's no-judge ablation; above it filters the final pairs),
  ``loss_mask`` (``response`` | ``all``), and ``prepare:`` for any other prepare setting (e.g.
  ``{format: {template: ...}}``).
* ``documents``: the source documents of an fi arm's pairs (``pairs_of``, default the first fi arm):
  standard pre-training on the same documents, checked against that arm's budget.
* ``corpus``: files a user downloaded (``paths`` + ``reader``: IPT's instruction-augmented corpora,
  Nemotron-CC's diverse-QA / WRAP / mixture JSONL, any parquet/JSONL with a text column;
  fitrain.data.corpora).
* ``mixture``: weighted ``sources`` (other document arms by name, or paths with a reader), drawn to the
  budget's tokens in proportion to their weights.
* ``generated``: a synthetic corpus made from the experiment's own documents (``method``: ``qa_appended``
  | ``rephrase``; ``llm``; ``generate`` options), through data_gen's LLM client layer and shard runner
  (data_gen/baselines.py; ``llm.backend: extractive`` is the offline fallback).

Budget (``budget:``): every arm trains exactly the total tokens of its ``reference`` arm (default: the
experiment's reference, the first fi arm, else the first arm); references chain to a *root* arm, which
trains its own prepared tokens x ``train.budget_from_epochs``. ``epochs_allowed`` (default true) lets an arm
whose data holds fewer tokens repeat it (the paper's IPT setting trained 4 epochs); false allows one pass.

A plain string is shorthand: ``fi`` is ``{name: fi, kind: fi}``, ``standard`` is ``{name: standard,
kind: documents}``, so ``arms: [fi, standard]`` is the two-arm experiment. Every validation error names
the arm.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import Any

from data_gen.baselines import METHODS, GenerateOptions
from fitrain.core.checks import above, check_fields, finite
from fitrain.core.errors import ConfigError, FitrainError
from fitrain.core.layout import run_id
from fitrain.core.llm import LLMConfig
from fitrain.data.corpora import ReaderConfig
from fitrain.data.formatting import LOSS_MASKS

KINDS = ("fi", "documents", "corpus", "mixture", "generated")
SHORTHAND = {"fi": {"name": "fi", "kind": "fi"}, "standard": {"name": "standard", "kind": "documents"}}
RESERVED = ("heldout",)          # prepared/heldout holds the held-out pairs
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")
# the settings of each kind (beside name, kind, budget, prepare)
KIND_FIELDS = {"fi": {"min_judge_score", "loss_mask"}, "documents": {"pairs_of"}, "corpus": {"paths", "reader"},
               "mixture": {"sources"}, "generated": {"method", "llm", "generate"}}
COMMON_FIELDS = {"name", "kind", "budget", "prepare"}


@dataclass
class ArmBudget:
    reference: str = ""          # the arm whose total training tokens this arm trains ('' = the experiment's)
    epochs_allowed: bool = True  # repeat this arm's data when it is smaller than the budget (false: one pass)


@dataclass
class MixtureSource:
    arm: str = ""                # another document arm (documents, corpus, generated, mixture) ...
    paths: list[str] = field(default_factory=list)   # ... or files of documents
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self, weight=above(0))


@dataclass
class ArmSpec:
    name: str = ""
    kind: str = ""
    # fi
    min_judge_score: float | None = None   # None = data_gen's final pairs as written (judge.min_score)
    loss_mask: str = ""                    # '' = prepare.format.loss_mask
    # documents
    pairs_of: str = ""                     # the fi arm whose source documents this arm trains on ('' = the first)
    # corpus
    paths: list[str] = field(default_factory=list)
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    # mixture
    sources: list[MixtureSource] = field(default_factory=list)
    # generated
    method: str = ""                       # qa_appended | rephrase
    llm: LLMConfig = field(default_factory=LLMConfig)
    generate: GenerateOptions = field(default_factory=GenerateOptions)
    # every kind
    prepare: dict[str, Any] = field(default_factory=dict)   # more prepare settings of this arm, merged last
    budget: ArmBudget = field(default_factory=ArmBudget)

    def __post_init__(self) -> None:
        check_fields(self, min_judge_score=finite)


def parse_arm(raw: Any, i: int) -> ArmSpec:
    from fitrain.core.config import from_dict

    if isinstance(raw, str):
        if raw not in SHORTHAND:
            raise FitrainError(f"arms[{i}] '{raw}': a plain name is only {sorted(SHORTHAND)}; give the arm as "
                               "{name: ..., kind: fi|documents|corpus|mixture|generated, ...}")
        raw = SHORTHAND[raw]
    if not isinstance(raw, dict):
        raise FitrainError(f"arms[{i}]: an arm is a name or a mapping, got {type(raw).__name__}")
    label = f"arms[{i}]" + (f" '{raw['name']}'" if isinstance(raw.get("name"), str) else "")
    try:
        return from_dict(ArmSpec, raw)
    except ConfigError as e:
        raise FitrainError(f"{label}: {e}") from None


class ArmSet:
    """The validated arms of an experiment and what follows from them (roots, the primary arm)."""

    def __init__(self, raw: list[Any], primary: str = "", explicit_budget: bool = False):
        self.specs = [parse_arm(r, i) for i, r in enumerate(raw)]
        if not self.specs:
            raise FitrainError("an experiment needs at least one arm (arms: [...])")
        self.by_name = {a.name: a for a in self.specs}
        if len(self.by_name) != len(self.specs):
            dup = sorted({a.name for a in self.specs if sum(b.name == a.name for b in self.specs) > 1})
            raise FitrainError(f"arm names must be unique; repeated: {dup}")
        for a in self.specs:
            _check_spec(a, self.by_name)
        fi = [a.name for a in self.specs if a.kind == "fi"]
        self.reference = fi[0] if fi else self.specs[0].name
        self.primary = primary or self.reference
        if self.primary not in self.by_name:
            raise FitrainError(f"primary arm '{self.primary}' is not one of the arms {self.names}")
        self._roots = {a.name: self._root(a.name) for a in self.specs}
        for a in self.specs:
            if a.kind == "mixture" and self._roots[a.name] == a.name and not explicit_budget:
                raise FitrainError(f"arm '{a.name}': a mixture draws the tokens of its reference arm; set its "
                                   "budget.reference to another arm (or give train.max_tokens)")
        self._check_mixture_cycles()

    @property
    def names(self) -> list[str]:
        return [a.name for a in self.specs]

    def __getitem__(self, name: str) -> ArmSpec:
        return self.by_name[name]

    def of_kind(self, *kinds: str) -> list[ArmSpec]:
        return [a for a in self.specs if a.kind in kinds]

    def root(self, name: str) -> str:
        """The arm whose own prepared tokens set ``name``'s budget."""
        return self._roots[name]

    def reference_of(self, name: str) -> str:
        return self.by_name[name].budget.reference or self.reference

    def pairs_source(self, name: str) -> str:
        """The fi arm whose pairs (documents) a documents arm trains on ('' for arms of other kinds when the
        experiment has no fi arm)."""
        a = self.by_name[name]
        fi = self.of_kind("fi")
        return a.name if a.kind == "fi" else (a.pairs_of or (fi[0].name if fi else ""))

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

    def _check_mixture_cycles(self) -> None:
        def visit(name: str, path: list[str]) -> None:
            for s in self.by_name[name].sources:
                if s.arm in path:
                    raise FitrainError(f"arm '{path[0]}': mixture sources form a cycle: {' -> '.join(path + [s.arm])}")
                if s.arm and self.by_name[s.arm].kind == "mixture":
                    visit(s.arm, path + [s.arm])

        for a in self.of_kind("mixture"):
            visit(a.name, [a.name])


def _check_spec(a: ArmSpec, by_name: dict[str, ArmSpec]) -> None:
    who = f"arm '{a.name}'"
    if not _NAME.match(a.name or ""):
        raise FitrainError(f"arm name '{a.name}' must start with a letter and hold only letters, digits, - and _")
    if a.name in RESERVED:
        raise FitrainError(f"{who}: the name is reserved ({', '.join(RESERVED)})")
    if a.kind not in KINDS:
        raise FitrainError(f"{who}: unknown kind '{a.kind}'; one of {', '.join(KINDS)}")
    default, allowed = ArmSpec(), COMMON_FIELDS | KIND_FIELDS[a.kind]
    stray = [f.name for f in fields(a) if f.name not in allowed and getattr(a, f.name) != getattr(default, f.name)]
    if stray:
        raise FitrainError(f"{who}: {', '.join(stray)}: not a setting of a {a.kind} arm (it takes "
                           f"{', '.join(sorted(KIND_FIELDS[a.kind])) or 'no settings of its own'})")
    ref = a.budget.reference
    if ref and ref not in by_name:
        raise FitrainError(f"{who}: unknown budget.reference '{ref}'; the arms are {list(by_name)}")
    if a.kind == "fi" and a.loss_mask and a.loss_mask not in LOSS_MASKS:
        raise FitrainError(f"{who}: loss_mask must be one of {LOSS_MASKS}, got '{a.loss_mask}'")
    if a.kind == "documents":
        fi = [b.name for b in by_name.values() if b.kind == "fi"]
        if not fi:
            raise FitrainError(f"{who}: a documents arm trains on the source documents of an fi arm's pairs; "
                               "add an fi arm (or use a corpus arm for other documents)")
        if a.pairs_of and a.pairs_of not in fi:
            raise FitrainError(f"{who}: pairs_of '{a.pairs_of}' is not an fi arm; fi arms: {fi}")
    if a.kind == "corpus":
        if not a.paths:
            raise FitrainError(f"{who}: a corpus arm needs paths (the files of the corpus)")
    if a.kind == "mixture":
        _check_sources(a, by_name)
    if a.kind == "generated":
        if a.method not in METHODS:
            raise FitrainError(f"{who}: method must be one of {list(METHODS)}, got '{a.method}'")
        if a.llm.backend == "openai" and not a.llm.model:
            raise FitrainError(f"{who}: llm.model is empty; name the served model, or use llm.backend=extractive "
                               "(the offline fallback)")


def _check_sources(a: ArmSpec, by_name: dict[str, ArmSpec]) -> None:
    who = f"arm '{a.name}'"
    if not a.sources:
        raise FitrainError(f"{who}: a mixture needs sources: [{{arm: NAME, weight: W}} or {{paths: [...], weight: W}}]")
    for j, s in enumerate(a.sources):
        if bool(s.arm) == bool(s.paths):
            raise FitrainError(f"{who}: sources[{j}] must name either an arm or paths")
        if s.arm:
            if s.arm not in by_name:
                raise FitrainError(f"{who}: sources[{j}] names unknown arm '{s.arm}'; the arms are {list(by_name)}")
            if s.arm == a.name:
                raise FitrainError(f"{who}: sources[{j}] is the mixture itself")
            if by_name[s.arm].kind == "fi":
                raise FitrainError(f"{who}: sources[{j}] '{s.arm}' is an fi arm (response-masked pairs); a mixture "
                                   "draws documents: name a documents, corpus, generated or mixture arm")


# ------------------------------------------------------------------------------------------------ runs
@dataclass(frozen=True)
class Run:
    """One training run: an arm trained with one seed, in ``train/<id>`` and evaluated into ``eval/<id>``."""

    arm: str
    seed: int
    id: str


def runs_of(arms: list[str], seeds: list[int], seed: int) -> list[Run]:
    """Every arm x seed; run ids are ``<arm>`` with one seed, ``<arm>.seed<k>`` with several."""
    chosen = list(seeds) or [seed]
    several = len(chosen) > 1
    return [Run(a, k, run_id(a, k if several else None)) for a in arms for k in chosen]
