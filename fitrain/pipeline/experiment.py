"""An experiment's settings (:class:`ExperimentConfig`) and the node of its graph (:class:`ExperimentStep`):
what every step runner, arm kind and the graph (fitrain.pipeline.graph) share.

Words: an *experiment step* (``--step`` on the command line) is one node of the graph; a training run's
*step* is an optimizer step. A step carries its runner (the function doing its work, fitrain.pipeline.runners
or an arm kind's module) and the equivalent single ``fitrain`` command.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from data_gen.config import DataGenConfig
from fitrain.core.checks import NON_NEGATIVE, SEED, check_fields, fail
from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout
from fitrain.data.corpus import CorpusConfig
from fitrain.data.prepare import PrepareConfig
from fitrain.data.tokenizer import TokenizerConfig
from fitrain.pipeline.arms import ArmSet, Run, runs_of
from fitrain.pipeline.blocks import BlockConfig, check_blocks
from fitrain.pipeline.slurm import SlurmConfig
from fitrain.train.config import TrainConfig
from fitrain_eval.report import ReportConfig
from fitrain_eval.run import EvalConfig

ARMS = ("fi", "standard")


Runner = Callable[["ExperimentConfig", "ExperimentStep", "int | None"], dict]
Command = Callable[["ExperimentConfig", "ExperimentStep"], list[str]]


@dataclass
class ExperimentSlurm:
    """Slurm resources per kind of step. ``enabled``: `fitrain experiment` submits instead of running here."""

    enabled: bool = False
    train: SlurmConfig = field(default_factory=SlurmConfig)   # warning lead sized from the checkpoint
    data_gen: SlurmConfig = field(default_factory=lambda: SlurmConfig(signal_lead_s=0))
    steps: SlurmConfig = field(default_factory=lambda: SlurmConfig(signal_lead_s=0))
    eval: SlurmConfig = field(default_factory=lambda: SlurmConfig(signal_lead_s=0))  # eval-* and h2h-* steps


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    run_dir: str = ""          # '' = runs/<name>
    size: str = ""             # label in run names; '' = the model preset
    seed: int = 0              # data_gen, prepare and (without `seeds`) training
    seeds: list[int] = field(default_factory=list)   # train every arm once per seed ([] = [seed])
    # the arms: names (fi, standard) or specs {name, kind, ...} (fitrain.pipeline.arms)
    arms: list[Any] = field(default_factory=lambda: list(ARMS))
    primary: str = ""          # the arm compared head-to-head with every other ('' = the first fi arm)
    heldout_shards: int = 0    # the last N data_gen shards: held-out pairs for the answer loss of every arm
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    data_gen: DataGenConfig = field(default_factory=DataGenConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    slurm: ExperimentSlurm = field(default_factory=ExperimentSlurm)
    # corpus blocks (fitrain.pipeline.blocks): sub-experiments with their own corpus, arms and budget; [] = none
    blocks: list[BlockConfig] = field(default_factory=list)

    @property
    def root(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}").resolve()

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    @property
    def explicit_budget(self) -> bool:
        t = self.train
        return bool(t.max_tokens or t.max_supervised_tokens or t.max_steps)

    def arm_set(self) -> ArmSet:
        """The arms, parsed and validated once (again only when ``arms``, ``primary`` or the budget changed)."""
        key = (self.arms, self.primary, self.explicit_budget)
        cached = self.__dict__.get("_arm_set")
        if cached is None or cached[0] != key:
            cached = (copy.deepcopy(key), ArmSet(self.arms, self.primary, self.explicit_budget))
            self.__dict__["_arm_set"] = cached
        return cached[1]

    def runs(self, arm: str | None = None) -> list[Run]:
        names = self.arm_set().names if arm is None else [arm]
        return runs_of(names, self.seeds, self.seed)

    def __post_init__(self) -> None:
        if self.blocks:
            check_blocks(self)  # each block checked as an experiment of its own
            return
        arms = self.arm_set()
        if not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            fail("name", f"'{self.name}' may only hold letters, digits and -_.")
        check_fields(self, seed=SEED, seeds=SEED, heldout_shards=NON_NEGATIVE)
        if len(set(self.seeds)) != len(self.seeds):
            fail("seeds", f"must be distinct, got {self.seeds}")
        if not self.heldout_shards < max(1, self.data_gen.num_shards):
            fail("heldout_shards", f"({self.heldout_shards}) must be below data_gen.num_shards "
                 f"({self.data_gen.num_shards}): some shards must remain for training")
        if self.eval.heldout.enabled and not self.eval.heldout.path and not self.heldout_shards:
            fail("eval.heldout.enabled", "scores the held-out pairs (prepared/heldout), but heldout_shards is 0: set "
                 "heldout_shards >= 1 or eval.heldout.enabled=false")
        if not self.explicit_budget and self.train.budget_from_epochs > 1:
            for a in arms.specs:
                if arms.root(a.name) == a.name and not a.budget.epochs_allowed:
                    raise FitrainError(f"arm '{a.name}': the budget cannot be met: every arm trains "
                                       f"train.budget_from_epochs={self.train.budget_from_epochs} x this arm's "
                                       "tokens, but its budget.epochs_allowed=false allows one pass")


@dataclass
class ExperimentStep:
    name: str
    deps: list[str]
    kind: str = "steps"        # which Slurm resource set: steps | data_gen | train
    shards: int = 0            # > 0: a job array (data_gen shards); one marker per shard
    distributed: bool = False  # srun over all nodes x tasks (training)
    describe: str = ""
    arm: str = ""              # the arm a prepare/data/train/eval step belongs to
    run: str = ""              # train/eval/h2h: the run id (train/<run>, eval/<run>)
    seed: int | None = None    # train: the training seed
    baseline: str = ""         # h2h: the baseline run judged against `run`
    role: str = ""             # what the step does (corpus, prepare, train, source, ...): `runners` overrides by it
    block: str = ""            # the corpus block the step belongs to (its name is <block>.<its block's step>)
    local: "ExperimentStep | None" = field(default=None, repr=False, compare=False)  # that block's own step
    runner: Runner | None = field(default=None, repr=False, compare=False)    # does the step's work here
    command: Command | None = field(default=None, repr=False, compare=False)  # the one `fitrain` command doing
    #                          the same by hand (None: `fitrain experiment <config> --step <name>`)


def training_shards(cfg: ExperimentConfig) -> int:
    return max(1, cfg.data_gen.num_shards) - cfg.heldout_shards


def run_name(cfg: ExperimentConfig, arm: str, run: str = "") -> str:
    """The W&B run name: arm and size (``fi-1.8b``), plus the seed when there are several (``fi-1.8b.seed1``)."""
    base = f"{arm}-{cfg.size or cfg.train.model.preset}"
    return base + run[len(arm):] if run.startswith(arm) else base


def task_count(cfg: ExperimentConfig, shards: int) -> int:
    """Array tasks over ``shards`` document shards: contiguous ranges of ``data_gen.shards_per_task`` (one
    model server start per task)."""
    from data_gen.shards import task_count as count

    return count(shards, cfg.data_gen.shards_per_task)


def step_done(layout: RunLayout, step: ExperimentStep, shard: int | None = None) -> bool:
    """Whether the step (one shard of it, or every shard) finished, with the dependencies it has now: a step
    finished before an arm was added has other dependencies (the report) and runs again."""
    if step.shards and shard is None:
        return all(step_done(layout, step, i) for i in range(step.shards))
    from fitrain.core.io import SUCCESS, is_done, read_json

    marker = layout.step_marker_dir(step.name, shard)
    if not is_done(marker):
        return False
    try:
        recorded = read_json(marker / SUCCESS).get("deps")
    except (ValueError, AttributeError):
        return True  # an old or empty marker: finished, dependencies not recorded
    return recorded is None or sorted(recorded) == sorted(step.deps)
