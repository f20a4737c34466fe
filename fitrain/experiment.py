"""An experiment: the whole graph from source documents to a report, for the FineInstructions arm and its
token-matched standard pre-training baseline.

    corpus -> data_gen ----------------------------> prepare-fi --> train-fi --------> eval-fi ---------> report
           \-> tokenizer ---------------------------/     |                                              /
                             (budget_from the FI manifest) \-> prepare-standard -> train-standard -> eval-standard

Both arms use the same source documents, the same tokenizer, the same model and optimiser settings, the
same seed, and the same number of *total* training tokens: the FI arm's prepared pairs are token-for-token
budgeted against the documents (fitrain.budget), and the standard arm's prepare takes its budget from the
FI manifest. Each step reads and writes files under the run directory and leaves a completion marker
(``steps/<step>/_SUCCESS``); a rerun skips finished steps. Locally the steps run one after another in this
process; with Slurm every step is one job (data_gen shards a job array, training ``srun`` over all GPUs)
chained with ``--dependency=afterok``. The step functions live in :mod:`fitrain.experiment_steps`.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from data_gen.config import DataGenConfig
from fitrain.corpus import CorpusConfig
from fitrain.errors import FitrainError
from fitrain.io import is_done, mark_done, read_json, write_json
from fitrain.prepare import PrepareConfig
from fitrain.slurm import SlurmConfig
from fitrain.tokenizer import TokenizerConfig
from fitrain.train import TrainConfig
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
class Step:
    name: str
    deps: list[str]
    kind: str = "steps"        # which Slurm resource set: steps | data_gen | train
    shards: int = 0            # > 0: a job array (data_gen shards); one marker per shard
    distributed: bool = False  # srun over all nodes x tasks (training)
    describe: str = ""


def plan(cfg: ExperimentConfig) -> list[Step]:
    """The steps in dependency order."""
    dg_shards = max(1, cfg.data_gen.num_shards)
    steps = [Step("corpus", [], describe="write the built-in corpus" if cfg.corpus.builtin
                  else f"check the corpus files {cfg.corpus.paths}"),
             Step("tokenizer", ["corpus"], describe=f"train a {cfg.tokenizer.vocab_size}-token BPE on the corpus")]
    if "fi" in cfg.arms:
        steps += [Step("data_gen-templates", ["corpus"], kind="data_gen",
                       describe="template bank/queries -> templates -> index"),
                  Step("data_gen", ["data_gen-templates"], kind="data_gen", shards=dg_shards if dg_shards > 1 else 0,
                       describe=f"match, instantiate, judge, write ({dg_shards} document shard(s))"),
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


def run_name(cfg: ExperimentConfig, arm: str) -> str:
    return f"{arm}-{cfg.size or cfg.train.model.preset}"


# ------------------------------------------------------------------------------------------ markers
def marker_dir(root: Path, step: str, shard: int | None = None) -> Path:
    d = root / "steps" / step
    return d / f"shard-{shard:05d}" if shard is not None else d


def step_done(root: Path, step: Step) -> bool:
    if step.shards:
        return all(is_done(marker_dir(root, step.name, i)) for i in range(step.shards))
    return is_done(marker_dir(root, step.name))


def _rank() -> int:
    for var in ("RANK", "SLURM_PROCID"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return 0


Runner = Callable[[ExperimentConfig, Step, "int | None"], dict]


def _runners() -> dict[str, Runner]:
    from fitrain import experiment_steps

    return experiment_steps.RUNNERS


def _runner_for(runners: dict[str, Runner], name: str) -> Runner:
    key = name if name in runners else name.split("-")[0]
    if key not in runners:
        raise FitrainError(f"no runner for step '{name}'")
    return runners[key]


def run_step(cfg: ExperimentConfig, step: Step, shard: int | None = None,
             runners: dict[str, Runner] | None = None, log: Callable[[str], None] = print) -> str:
    """Run one step (one shard of an array step) here unless its marker exists; 'skipped' or 'done'."""
    root = cfg.root
    mdir = marker_dir(root, step.name, shard)
    if is_done(mdir):
        return "skipped"
    by_name = {s.name: s for s in plan(cfg)}
    missing = [d for d in step.deps if not step_done(root, by_name[d])]
    if missing:
        raise FitrainError(f"step '{step.name}' needs {missing} to finish first (no completion marker under "
                           f"{root / 'steps'}); run the experiment without --step to run the whole graph")
    import time

    t0, c0 = time.perf_counter(), time.process_time()
    info = _runner_for(runners or _runners(), step.name)(cfg, step, shard) or {}
    timing = {"wall_s": round(time.perf_counter() - t0, 2), "cpu_s": round(time.process_time() - c0, 2)}
    if _rank() == 0:
        mark_done(mdir, {"step": step.name, **({"shard": shard} if shard is not None else {}), **timing, **info})
    log(f"    {step.name}{'' if shard is None else f' shard {shard}'} finished in {timing['wall_s']:.1f} s "
        f"(cpu {timing['cpu_s']:.1f} s)")
    return "done"


def save_config(cfg: ExperimentConfig) -> Path:
    """The frozen, fully merged config every step (and every Slurm job) reads."""
    from fitrain.config import to_yaml

    path = cfg.root / "experiment.yaml"
    text = to_yaml(cfg)
    if path.is_file() and any(is_done(p) for p in (cfg.root / "steps").glob("*")):
        old = path.read_text()
        if old != text:
            raise FitrainError(f"{path} holds a different config and some steps are finished; a rerun must use "
                               "the same settings (or a new run_dir / name). Changed lines:\n" + _diff(old, text))
    from fitrain.io import atomic_path

    with atomic_path(path) as tmp:
        tmp.write_text(text)
    return path


def _diff(a: str, b: str) -> str:
    import difflib

    return "\n".join(list(difflib.unified_diff(a.splitlines(), b.splitlines(), "before", "now", lineterm=""))[:40])


def run_experiment(cfg: ExperimentConfig, dry_run: bool = False, *, slurm: bool | None = None,
                   only: list[str] | None = None, runners: dict[str, Runner] | None = None,
                   log: Callable[[str], None] = print) -> dict:
    """Run (or, with Slurm, submit) every unfinished step; ``dry_run`` prints the plan and does nothing."""
    cfg.validate()
    use_slurm = cfg.slurm.enabled if slurm is None else slurm
    root = cfg.root
    steps = plan(cfg)
    names = [s.name for s in steps]
    if only:
        unknown = [o for o in only if o not in names]
        if unknown:
            raise FitrainError(f"unknown step(s) {unknown}; the steps are {names}")
        steps = [s for s in steps if s.name in only]
    status = {s.name: ("done" if step_done(root, s) else "todo") for s in steps}
    log(f"experiment {cfg.name}: {len(steps)} steps in {root} ({'Slurm' if use_slurm else 'locally'})")
    for i, s in enumerate(steps, 1):
        extra = f" [array of {s.shards}]" if s.shards else ""
        log(f"  {i:2d}. {s.name:<18} {status[s.name]:<5} {s.describe}{extra}"
            + (f"  (after {', '.join(s.deps)})" if s.deps else ""))
    result: dict = {"run_dir": str(root), "steps": dict(status), "report": str(root / "report")}
    if dry_run:
        if use_slurm:
            from fitrain.experiment_slurm import render_all

            for s, script in render_all(cfg, steps):
                log(f"\n# ---- {s.name}.sbatch ----\n{script}")
        return result
    if use_slurm:
        from fitrain.slurm import check_reachable

        check_reachable()  # before anything is written
    root.mkdir(parents=True, exist_ok=True)
    save_config(cfg)
    if use_slurm:
        from fitrain.experiment_slurm import submit_all

        result["jobs"] = submit_all(cfg, steps, log=log)
        jobs_path = root / "slurm" / "jobs.json"
        write_json(jobs_path, {**(read_json(jobs_path) if jobs_path.is_file() else {}), **result["jobs"]})
        return result
    for i, s in enumerate(steps, 1):
        shards = list(range(s.shards)) if s.shards else [None]
        for shard in shards:
            tag = s.name + (f" shard {shard + 1}/{s.shards}" if shard is not None else "")
            if is_done(marker_dir(root, s.name, shard)):
                log(f"[{i}/{len(steps)}] {tag}: finished earlier, skipped")
                continue
            log(f"[{i}/{len(steps)}] {tag}: {s.describe} ...")
            run_step(cfg, s, shard, runners=runners, log=log)
        result["steps"][s.name] = "done" if status[s.name] == "todo" else "skipped"
    return result


def load_experiment(recipe: str, overrides: list[str] | None = None) -> ExperimentConfig:
    """Load an experiment recipe (a path or a name under recipes/experiments/) with key=value overrides."""
    from fitrain.config import load_config

    if not Path(recipe).is_file():
        recipe = resolve_experiment_recipe(recipe)
    return load_config(ExperimentConfig, recipe, overrides)


def resolve_experiment_recipe(name: str) -> str:
    """``fi-vs-standard-300m`` -> recipes/experiments/fi-vs-standard-300m.yaml (``quickstart`` too); an unknown
    name fails with the nearest experiment recipe."""
    import difflib

    from fitrain.commands.common import resolve_recipe
    from fitrain.errors import ConfigError

    for cand in (f"experiments/{name}", name):
        try:
            return resolve_recipe(cand)
        except ConfigError:
            pass
    root = Path(__file__).resolve().parents[1] / "recipes"
    known = sorted(p.stem for p in (root / "experiments").glob("*.yaml")) + ["quickstart"]
    close = difflib.get_close_matches(Path(name).stem, known, n=1, cutoff=0.5)
    raise ConfigError(f"unknown experiment recipe '{name}'" + (f"; did you mean '{close[0]}'?" if close else "")
                      + f" Experiment recipes: {', '.join(known)} (or give a path to a YAML file)")


def _num(v) -> str:
    return f"{v:.4f}" if isinstance(v, (int, float)) else "-"


def summary_table(cfg: ExperimentConfig) -> list[str]:
    """One line per arm: tokens trained (total and supervised) from the train summaries."""
    lines = []
    for arm in cfg.arms:
        p = cfg.root / "train" / arm / "summary.json"
        if p.is_file():
            s = read_json(p)
            lines.append(f"  {arm:<9} tokens {s.get('tokens', 0):>12,}  supervised {s.get('supervised_tokens', 0):>12,}"
                         f"  final loss {_num(s.get('final_loss'))}  held-out answer loss {_num(s.get('val_loss'))}")
    return lines
