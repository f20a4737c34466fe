"""An experiment and its graph of steps, from source documents to a report, for any number of named arms
(fitrain.pipeline.arms), each trained with every seed.

    corpus -> data_gen ---------------------------------> prepare-fi ----> train-fi[.seedK] -> eval-fi... -\\
           \\-> tokenizer -------------------------------/  |  (budget)                                      |
                      prepare-standard (same documents) <--/-> train-standard... -> eval-standard... ----------> report
      source-<corpus arm>  -> prepare-<arm> -> train-<arm>... -> eval-<arm>...  (h2h-fi-vs-<arm> when pairwise)
      generate-<arm> (shards) -/      (every train step's budget: the reference's prepared tokens)

Every arm uses the same tokenizer, the same model and optimiser settings and the same number of *total*
training tokens: its reference arm's (fitrain/docs/method.md, "Token-matched baselines"). With several
``seeds`` every arm trains once per seed (data order and initialisation; prepared data stays per arm), runs
are named ``<arm>.seed<k>`` (fitrain.core.layout.run_id) and evaluated into ``eval/<run>``.

Words: an *experiment step* (:class:`ExperimentStep`, ``--step`` on the command line) is one node of this
graph; a training run's *step* is an optimizer step. This module only describes the graph; running it is
fitrain.pipeline.run, the work of each step is fitrain.pipeline.runners, and Slurm submission is
fitrain.pipeline.submit.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from data_gen.config import DataGenConfig
from fitrain.core.errors import FitrainError
from fitrain.core.layout import RunLayout
from fitrain.data.corpus import CorpusConfig
from fitrain.data.prepare import PrepareConfig
from fitrain.data.tokenizer import TokenizerConfig
from fitrain.pipeline.arms import ArmSet, Run, runs_of
from fitrain.pipeline.slurm import SlurmConfig
from fitrain.train.config import TrainConfig
from fitrain_eval.report import ReportConfig
from fitrain_eval.run import EvalConfig

ARMS = ("fi", "standard")


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
        return ArmSet(self.arms, self.primary, self.explicit_budget)

    def runs(self, arm: str | None = None) -> list[Run]:
        names = self.arm_set().names if arm is None else [arm]
        return runs_of(names, self.seeds, self.seed)

    def validate(self) -> None:
        arms = self.arm_set()
        if not self.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
            raise FitrainError(f"experiment name '{self.name}' may only hold letters, digits and -_.")
        if len(set(self.seeds)) != len(self.seeds):
            raise FitrainError(f"seeds must be distinct, got {self.seeds}")
        if not 0 <= self.heldout_shards < max(1, self.data_gen.num_shards):
            raise FitrainError(f"heldout_shards ({self.heldout_shards}) must be below data_gen.num_shards "
                               f"({self.data_gen.num_shards}): some shards must remain for training")
        if self.eval.heldout.enabled and not self.eval.heldout.path and not self.heldout_shards:
            raise FitrainError("eval.heldout.enabled scores the held-out pairs (prepared/heldout), but heldout_shards "
                               "is 0: set heldout_shards >= 1 or eval.heldout.enabled=false")
        if not self.explicit_budget and self.train.budget_from_epochs > 1:
            for a in arms.specs:
                if arms.root(a.name) == a.name and not a.budget.epochs_allowed:
                    raise FitrainError(f"arm '{a.name}': the budget cannot be met: every arm trains "
                                       f"train.budget_from_epochs={self.train.budget_from_epochs} x this arm's "
                                       "tokens, but its budget.epochs_allowed=false allows one pass")
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
    arm: str = ""              # the arm a prepare/data/train/eval step belongs to
    run: str = ""              # train/eval/h2h: the run id (train/<run>, eval/<run>)
    seed: int | None = None    # train: the training seed
    baseline: str = ""         # h2h: the baseline run judged against `run`


def needs_data_gen(cfg: ExperimentConfig, arms: ArmSet) -> bool:
    return bool(arms.of_kind("fi", "documents")) or cfg.heldout_shards > 0


def rewrites_pairs(cfg: ExperimentConfig, arm) -> bool:
    """An fi variant whose judge threshold is below data_gen's: its pairs come from the judged shards."""
    return arm.kind == "fi" and arm.min_judge_score is not None and arm.min_judge_score < cfg.data_gen.judge.min_score


def training_shards(cfg: ExperimentConfig) -> int:
    return max(1, cfg.data_gen.num_shards) - cfg.heldout_shards


def data_step(cfg: ExperimentConfig, arms: ArmSet, name: str) -> str | None:
    """The step that writes an arm's own documents or pairs (``arms/<arm>/``), if it has one."""
    a = arms[name]
    if a.kind in ("corpus", "mixture"):
        return f"source-{name}"
    if a.kind == "generated":
        return f"generate-{name}"
    if a.kind == "fi" and rewrites_pairs(cfg, a):
        return f"pairs-{name}"
    if a.kind == "documents":
        return data_step(cfg, arms, arms.pairs_source(name))
    return None


def _arm_steps(cfg: ExperimentConfig, arms: ArmSet) -> list[ExperimentStep]:
    Step, out = ExperimentStep, []
    for a in arms.specs:
        n = a.name
        if a.kind == "corpus":
            out.append(Step(f"source-{n}", [], arm=n, describe=f"read the {n} corpus ({len(a.paths)} pattern(s)) "
                                                               "into normalised document files"))
        elif a.kind == "mixture":
            deps = ["tokenizer"] + ([] if cfg.explicit_budget else [f"prepare-{arms.root(n)}"])
            deps += [d for s in a.sources if s.arm for d in [data_step(cfg, arms, s.arm) or "data_gen"]]
            out.append(Step(f"source-{n}", list(dict.fromkeys(deps)), arm=n,
                            describe=f"draw the {n} mixture ({len(a.sources)} weighted sources) to the budget"))
        elif a.kind == "generated":
            k, tasks = training_shards(cfg), generate_tasks(cfg)
            out.append(Step(f"generate-{n}", ["corpus"], kind="data_gen", shards=tasks if tasks > 1 else 0, arm=n,
                            describe=f"{a.method} baseline from the corpus ({a.llm.backend}, {k} document shard(s), "
                                     f"{cfg.data_gen.shards_per_task} per task)"))
        elif rewrites_pairs(cfg, a):
            out.append(Step(f"pairs-{n}", ["data_gen"], arm=n,
                            describe=f"the judged pairs with score >= {a.min_judge_score:g} in the released layout"))
        deps = ["tokenizer"]
        if a.kind in ("fi", "documents"):
            src = arms.pairs_source(n)
            deps = ["data_gen", "tokenizer"] + ([f"prepare-{src}"] if a.kind == "documents" else [])
        own = data_step(cfg, arms, n)
        deps += [own] if own else []
        what = {"fi": "pairs (token-for-token budget)",
                "documents": f"the source documents of {arms.pairs_source(n)}'s pairs (budget from it)",
                "corpus": "corpus documents", "mixture": "mixture documents", "generated": f"{a.method} documents"}
        out.append(Step(f"prepare-{n}", list(dict.fromkeys(deps)), arm=n, describe=f"{n}: {what[a.kind]} -> token shards"))
    return out


def experiment_steps(cfg: ExperimentConfig) -> list[ExperimentStep]:
    """The experiment's steps in dependency order."""
    arms = cfg.arm_set()
    Step = ExperimentStep
    dg_shards = max(1, cfg.data_gen.num_shards)
    dg_tasks = data_gen_tasks(cfg)
    steps = [Step("corpus", [], describe="write the built-in corpus" if cfg.corpus.builtin
                  else f"check the corpus files {cfg.corpus.paths}"),
             Step("tokenizer", ["corpus"], describe=f"train a {cfg.tokenizer.vocab_size}-token BPE on the corpus")]
    if needs_data_gen(cfg, arms):
        steps += [Step("data_gen-templates", ["corpus"], kind="data_gen",
                       describe="template bank/queries -> templates -> index"),
                  Step("data_gen", ["data_gen-templates", "tokenizer"], kind="data_gen",  # write counts tokens
                       shards=dg_tasks if dg_tasks > 1 else 0,
                       describe=f"match, instantiate, judge, write ({dg_shards} document shard(s), "
                                f"{cfg.data_gen.shards_per_task} per task, stage after stage)")]
    steps += _arm_steps(cfg, arms)
    if cfg.heldout_shards:
        steps.append(Step("prepare-heldout", ["data_gen", "tokenizer"],
                          describe=f"held-out pairs ({cfg.heldout_shards} data_gen shard(s)) for the answer loss"))
    runs = cfg.runs()
    for r in runs:
        root = arms.root(r.arm)
        deps = [f"prepare-{r.arm}"] + ([f"prepare-{root}"] if root != r.arm and not cfg.explicit_budget else [])
        deps += ["prepare-heldout"] if cfg.heldout_shards else []
        steps.append(Step(f"train-{r.id}", deps, kind="train", distributed=True, arm=r.arm, run=r.id, seed=r.seed,
                          describe=f"train {r.id} ({run_name(cfg, r.arm, r.id)}, seed {r.seed})"))
    for r in runs:
        steps.append(Step(f"eval-{r.id}", [f"train-{r.id}"], arm=r.arm, run=r.id, seed=r.seed,
                          describe=f"evaluate {r.id}"))
    steps += _head_to_head_steps(cfg, arms, runs)
    steps.append(Step("report", [s.name for s in steps if s.name.startswith(("eval-", "h2h-"))],
                      describe=f"tables and plots of {len(arms.names)} arm(s), {len(runs)} run(s)"))
    return _in_dependency_order(steps)


def _head_to_head_steps(cfg: ExperimentConfig, arms: ArmSet, runs: list[Run]) -> list[ExperimentStep]:
    """The primary arm judged against every other arm, seed by seed, one step per pair (so an added arm adds
    its own step); a primary run's steps are chained because they write into the same eval directory."""
    if not cfg.eval.pairwise.enabled:
        return []
    out = []
    for p in (r for r in runs if r.arm == arms.primary):
        prev = f"eval-{p.id}"
        for b in (r for r in runs if r.arm != arms.primary and r.seed == p.seed):
            name = f"h2h-{p.id}-vs-{b.id}"
            out.append(ExperimentStep(name, list(dict.fromkeys([prev, f"eval-{p.id}", f"eval-{b.id}"])), arm=p.arm,
                                      run=p.id, seed=p.seed, baseline=b.id,
                                      describe=f"head-to-head: {p.id} vs {b.id} (pairwise judge)"))
            prev = name
    return out


def data_gen_tasks(cfg: ExperimentConfig) -> int:
    """Array tasks of the data_gen step: each runs a contiguous range of shards_per_task document shards."""
    from data_gen.shards import task_count

    return task_count(cfg.data_gen.num_shards, cfg.data_gen.shards_per_task)


def generate_tasks(cfg: ExperimentConfig) -> int:
    """Array tasks of a generated arm's step: contiguous ranges of shards_per_task training shards (one
    model server start per task, as data_gen's)."""
    from data_gen.shards import task_count

    return task_count(training_shards(cfg), cfg.data_gen.shards_per_task)


def _in_dependency_order(steps: list[ExperimentStep]) -> list[ExperimentStep]:
    """A stable topological order: each step as early as listed, after its dependencies."""
    by_name = {s.name: s for s in steps}
    missing = {d for s in steps for d in s.deps if d not in by_name}
    if missing:
        raise FitrainError(f"internal: steps depend on unknown steps {sorted(missing)}")
    placed: dict[str, None] = {}
    pending = list(steps)
    while pending:
        step = next((s for s in pending if all(d in placed for d in s.deps)), None)
        if step is None:
            raise FitrainError(f"internal: the steps {[s.name for s in pending]} depend on each other")
        placed[step.name] = None
        pending.remove(step)
    return [by_name[n] for n in placed]


def run_name(cfg: ExperimentConfig, arm: str, run: str = "") -> str:
    """The W&B run name: arm and size (``fi-1.8b``), plus the seed when there are several (``fi-1.8b.seed1``)."""
    base = f"{arm}-{cfg.size or cfg.train.model.preset}"
    return base + run[len(arm):] if run.startswith(arm) else base


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
