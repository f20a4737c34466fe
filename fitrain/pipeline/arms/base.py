"""An arm: a named data source trained to a token budget matched to a reference (fitrain/docs/method.md,
"The paper's baselines (Table 1)"), and the interface every *kind* of arm implements (:class:`ArmKind`).

Every arm has ``name``, ``kind``, ``budget`` and ``prepare`` (:class:`ArmSpec`); its kind adds its own
settings (a dataclass deriving from ArmSpec), its validation, the experiment steps that write its data, how
its prepare reads that data, and its label in reports. Kinds are plug-ins: fitrain.pipeline.arms.registry.

Budget (``budget:``): every arm trains exactly the total tokens of its ``reference`` arm (default: the
experiment's reference, the first arm of a reference kind (fi), else the first arm); references chain to a
*root* arm, which trains its own prepared tokens x ``train.budget_from_epochs``. ``epochs_allowed`` (default
true) lets an arm whose data holds fewer tokens repeat it (the paper's IPT setting trained 4 epochs); false
allows one pass.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, fields
from typing import TYPE_CHECKING, Any, Callable, Iterator

from fitrain.core.errors import FitrainError
from fitrain.core.layout import run_id

if TYPE_CHECKING:
    from fitrain.data.prepare import PrepareConfig
    from fitrain.data.records import Document
# (a kind's hooks receive the experiment (fitrain.pipeline.experiment: ExperimentConfig, ExperimentStep) and
# its arms (fitrain.pipeline.arms.armset.ArmSet), which import this module: named in strings only)

RESERVED = ("heldout",)          # prepared/heldout holds the held-out pairs
_NAME = re.compile(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$")


@dataclass
class ArmBudget:
    reference: str = ""          # the arm whose total training tokens this arm trains ('' = the experiment's)
    epochs_allowed: bool = True  # repeat this arm's data when it is smaller than the budget (false: one pass)


@dataclass
class ArmSpec:
    """The settings every arm has; a kind's settings class derives from it and adds its own."""

    name: str = ""
    kind: str = ""
    prepare: dict[str, Any] = field(default_factory=dict)   # more prepare settings of this arm, merged last
    budget: ArmBudget = field(default_factory=ArmBudget)


COMMON_FIELDS = tuple(f.name for f in fields(ArmSpec))
Documents = Callable[[], Iterator["Document"]]


class ArmKind:
    """One kind of arm. A subclass sets ``name`` (the ``kind:`` value), ``settings`` (its ArmSpec subclass) and
    ``label``, and overrides the hooks its data needs; the defaults describe an arm whose documents a step
    of its own writes under ``arms/<arm>/`` (fitrain.core.layout) as normalised document files."""

    name: str = ""
    settings: type[ArmSpec] = ArmSpec
    label: str = ""              # what the arm trains on, in the plan and the report ("a released corpus")
    reference: bool = False      # an arm of this kind is the experiment's default reference (the first one)
    documents: bool = True       # its data is documents (a mixture may draw it), not response-masked pairs
    data_gen: bool = False       # it trains on data_gen's output (the experiment runs data_gen)
    drawn_to_budget: bool = False  # its data step draws its reference arm's tokens (so it cannot be its own root)
    beyond_paper: bool = False   # not one of the paper's Table 1 rows (the plan and the report say so)

    # ---- settings
    def own_settings(self) -> list[str]:
        return [f.name for f in fields(self.settings) if f.name not in COMMON_FIELDS]

    def check(self, spec: ArmSpec, arms: "ArmSet") -> None:
        """Validate the kind's settings (FitrainError naming the arm) against every arm of the experiment
        (``arms.by_name``, ``arms.kind(name)``; budgets and roots are not resolved yet)."""

    def uses(self, spec: ArmSpec) -> list[str]:
        """The other arms whose data this arm's data is drawn from (checked for cycles)."""
        return []

    def input_patterns(self, spec: ArmSpec) -> list[str]:
        """Files of the user's that must exist before the arm's data step runs."""
        return []

    def pairs_source(self, arms: "ArmSet", spec: ArmSpec) -> str:
        """The arm whose data_gen pairs this arm's data comes from ('' for data of its own)."""
        return ""

    # ---- the experiment's steps
    def steps(self, cfg: "ExperimentConfig", arms: "ArmSet", spec: ArmSpec) -> list["ExperimentStep"]:
        """The steps that write this arm's data, before its prepare (none by default)."""
        return []

    def data_step(self, cfg: "ExperimentConfig", arms: "ArmSet", spec: ArmSpec) -> str | None:
        """The step after which the arm's data is complete, if it has one."""
        own = self.steps(cfg, arms, spec)
        return own[-1].name if own else None

    def prepare_deps(self, cfg: "ExperimentConfig", arms: "ArmSet", spec: ArmSpec) -> list[str]:
        own = self.data_step(cfg, arms, spec)
        return ["tokenizer"] + ([own] if own else [])

    def prepare_input(self, cfg: "ExperimentConfig", arms: "ArmSet", spec: ArmSpec, pc: "PrepareConfig",
                      check: bool) -> "PrepareConfig":
        """``pc`` (the experiment's prepare settings, paths set) reading this arm's data, unbudgeted."""
        from fitrain.data.records import InputConfig

        pc.input = InputConfig(paths=[self.documents_glob(cfg, spec)], kind="documents", text_column="text",
                               id_column="doc_id")
        pc.budget.enabled, pc.documents_from_pairs, pc.budget_from = False, False, ""
        return pc

    def documents_glob(self, cfg: "ExperimentConfig", spec: ArmSpec) -> str:
        """The normalised document files the arm's data step wrote."""
        from fitrain.data.corpora import normalised_glob

        return normalised_glob(cfg.layout.arm_data(spec.name))

    def read_documents(self, cfg: "ExperimentConfig", spec: ArmSpec) -> Documents:
        """The documents the arm trains on, as an iterator factory (what a mixture draws from it)."""
        from fitrain.core.accounting import Rejects
        from fitrain.data.records import InputConfig, iter_documents

        inp = InputConfig(paths=[self.documents_glob(cfg, spec)], kind="documents", text_column="text",
                          id_column="doc_id")
        return lambda: iter_documents(inp, Rejects())

    # ---- reports
    def describe(self, arms: "ArmSet", spec: ArmSpec) -> str:
        """Where this arm's data comes from, in one phrase (the plan's arm table and the report)."""
        return self.label

    def prepare_what(self, arms: "ArmSet", spec: ArmSpec) -> str:
        """What its prepare step turns into token shards (the plan)."""
        return f"{self.label} documents"


def check_name(a: ArmSpec, by_name: dict[str, ArmSpec]) -> None:
    who = f"arm '{a.name}'"
    if not _NAME.match(a.name or ""):
        raise FitrainError(f"arm name '{a.name}' must start with a letter and hold only letters, digits, - and _")
    if a.name in RESERVED:
        raise FitrainError(f"{who}: the name is reserved ({', '.join(RESERVED)})")
    ref = a.budget.reference
    if ref and ref not in by_name:
        raise FitrainError(f"{who}: unknown budget.reference '{ref}'; the arms are {list(by_name)}")


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
