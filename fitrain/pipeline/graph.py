"""An experiment and its graph of steps, from source documents to a report, for the FineInstructions arm
and its token-matched standard pre-training baseline.

    corpus -> data_gen ----------------------------> prepare-fi --> train-fi --------> eval-fi ---------> report
           \\-> tokenizer ---------------------------/     |                                              /
                             (budget_from the FI manifest) \\-> prepare-standard -> train-standard -> eval-standard

Both arms use the same source documents, the same tokenizer, the same model and optimiser settings, the
same seed, and the same number of *total* training tokens: the FI arm's prepared pairs are token-for-token
budgeted against the documents (fitrain.data.budget), and the standard arm's prepare takes its budget from
the FI manifest (fitrain/docs/method.md, "Token-matched baselines").

Words: an *experiment step* (:class:`ExperimentStep`, ``--step`` on the command line) is one node of this
graph; a training run's *step* is an optimizer step. This module only describes the graph; running it is
fitrain.pipeline.run, the work of each step is fitrain.pipeline.runners, and Slurm submission is
fitrain.pipeline.submit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from data_gen.config import DataGenConfig
from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout
from fitrain.data.corpus import CorpusConfig
from fitrain.data.prepare import PrepareConfig
from fitrain.data.tokenizer import TokenizerConfig
from fitrain.pipeline.slurm import SlurmConfig
from fitrain.train.config import TrainConfig
from fitrain_eval.report import ReportConfig
from fitrain_eval.run import EvalConfig

ARMS = ("fi", "standard")


@dataclass
class ExperimentSlurm:
    """Slurm resources per kind of step. ``enabled``: `fitrain experiment` submits instead of running here."""

    enabled: bool = False
    train: SlurmConfig = field(default_factory=lambda: SlurmConfig(signal_lead_s=90))
    data_gen: SlurmConfig = field(default_factory=lambda: SlurmConfig(signal_lead_s=0))
    steps: SlurmConfig = field(default_factory=lambda: SlurmConfig(signal_lead_s=0))


@dataclass
class ExperimentConfig:
    name: str = "experiment"
    run_dir: str = ""          # '' = runs/<name>
    size: str = ""             # label in run names; '' = the model preset
    seed: int = 0              # one seed for data_gen, prepare and both arms' training
    arms: list[str] = field(default_factory=lambda: list(ARMS))
    heldout_shards: int = 0    # the last N data_gen shards: held-out pairs for the answer loss of both arms
    corpus: CorpusConfig = field(default_factory=CorpusConfig)
    data_gen: DataGenConfig = field(default_factory=DataGenConfig)
    tokenizer: TokenizerConfig = field(default_factory=TokenizerConfig)
    prepare: PrepareConfig = field(default_factory=PrepareConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    report: ReportConfig = field(default_factory=ReportConfig)
    slurm: ExperimentSlurm = field(default_factory=ExperimentSlurm)

    @property
    def root(self) -> Path:
        return Path(self.run_dir or f"runs/{self.name}").resolve()

    @property
    def layout(self) -> RunLayout:
        return RunLayout(self.root)

    def validate(self) -> None:
        bad = [a for a in self.arms if a not in ARMS]
        if bad or not self.arms:
            raise FitrainError(f"experiment arms must be a non-empty subset of {list(ARMS)}, got {self.arms}")
        if "standard" in self.arms and "fi" not in self.arms:
            raise FitrainError("the standard arm is token-matched to the fi arm: arms must include 'fi'")
        if not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise FitrainError(f"experiment name '{self.name}' may only hold letters, digits and -_.")
        if not 0 <= self.heldout_shards < max(1, self.data_gen.num_shards):
            raise FitrainError(f"heldout_shards ({self.heldout_shards}) must be below data_gen.num_shards "
                               f"({self.data_gen.num_shards}): some shards must remain for training")
        t = self.train
        explicit = t.max_tokens or t.max_supervised_tokens or t.max_steps
        if not explicit and 0 < t.data.max_epochs < t.budget_from_epochs:
            raise FitrainError(f"the budget cannot be met: both arms train train.budget_from_epochs="
                               f"{t.budget_from_epochs} x the FI pairs' tokens, but train.data.max_epochs="
                               f"{t.data.max_epochs} allows fewer passes over the FI data; raise data.max_epochs")
        self.corpus.validate()
        for s in (self.slurm.train, self.slurm.data_gen, self.slurm.steps):
            s.validate()


@dataclass
class ExperimentStep:
    name: str
    deps: list[str]
    kind: str = "steps"        # which Slurm resource set: steps | data_gen | train
    shards: int = 0            # > 0: a job array (data_gen shards); one marker per shard
    distributed: bool = False  # srun over all nodes x tasks (training)
    describe: str = ""


def experiment_steps(cfg: ExperimentConfig) -> list[ExperimentStep]:
    """The experiment's steps in dependency order."""
    Step = ExperimentStep
    dg_shards = max(1, cfg.data_gen.num_shards)
    dg_tasks = data_gen_tasks(cfg)
    steps = [Step("corpus", [], describe="write the built-in corpus" if cfg.corpus.builtin
                  else f"check the corpus files {cfg.corpus.paths}"),
             Step("tokenizer", ["corpus"], describe=f"train a {cfg.tokenizer.vocab_size}-token BPE on the corpus")]
    if "fi" in cfg.arms:
        steps += [Step("data_gen-templates", ["corpus"], kind="data_gen",
                       describe="template bank/queries -> templates -> index"),
                  Step("data_gen", ["data_gen-templates"], kind="data_gen",
                       shards=dg_tasks if dg_tasks > 1 else 0,
                       describe=f"match, instantiate, judge, write ({dg_shards} document shard(s), "
                                f"{cfg.data_gen.shards_per_task} per task, stage after stage)"),
                  Step("prepare-fi", ["data_gen", "tokenizer"],
                       describe="FineInstructions pairs -> token shards, token-for-token budget")]
    if "standard" in cfg.arms:
        steps.append(Step("prepare-standard", ["data_gen", "tokenizer", "prepare-fi"],
                          describe="the same source documents -> token shards (budget from prepare-fi)"))
    if cfg.heldout_shards:
        steps.append(Step("prepare-heldout", ["data_gen", "tokenizer"],
                          describe=f"held-out pairs ({cfg.heldout_shards} data_gen shard(s)) for the answer loss"))
    for arm in cfg.arms:
        deps = [f"prepare-{arm}"] + (["prepare-heldout"] if cfg.heldout_shards else [])
        steps.append(Step(f"train-{arm}", deps, kind="train", distributed=True,
                          describe=f"train the {arm} arm ({run_name(cfg, arm)})"))
    # head-to-head needs the baseline's outputs first
    h2h = cfg.eval.pairwise.enabled and "standard" in cfg.arms
    for arm in sorted(cfg.arms, key=lambda a: (a == "fi") if h2h else 0):
        deps = [f"train-{arm}"] + (["eval-standard"] if h2h and arm == "fi" else [])
        steps.append(Step(f"eval-{arm}", deps, describe=f"evaluate the {arm} arm"))
    steps.append(Step("report", [f"eval-{a}" for a in cfg.arms], describe="tables and plots of both arms"))
    return steps


def data_gen_tasks(cfg: ExperimentConfig) -> int:
    """Array tasks of the data_gen step: each runs a contiguous range of shards_per_task document shards."""
    from data_gen.shards import task_count

    return task_count(cfg.data_gen.num_shards, cfg.data_gen.shards_per_task)


def run_name(cfg: ExperimentConfig, arm: str) -> str:
    return f"{arm}-{cfg.size or cfg.train.model.preset}"


def step_done(layout: RunLayout, step: ExperimentStep) -> bool:
    from fitrain.core.io import is_done

    if step.shards:
        return all(is_done(layout.step_marker_dir(step.name, i)) for i in range(step.shards))
    return is_done(layout.step_marker_dir(step.name))
