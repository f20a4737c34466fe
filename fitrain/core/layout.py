"""The run-directory layout, defined once: every path a command reads or writes under a run comes from here.

    runs/<experiment>/                       RunLayout
      experiment.yaml                        the frozen, merged experiment config every step reads
      corpus/  tokenizer/                    the source documents and the experiment's tokenizer
      data_gen/{templates,index,matches,pairs,judged,final}/   stage outputs + _SUCCESS + stats.json
      data_gen/report.json                   merged statistics of every finished stage
      arms/<arm>/                            an arm's own documents or pairs before prepare (a corpus arm's
                                             normalised files, a mixture's draw, a generated arm's shards,
                                             the re-written pairs of an FI variant)
      prepared/<arm>/                        token shards + manifest.json
      train/<run>/                           TrainDir: the trainer's run_dir (<run> = run_id(arm, seed))
        checkpoints/ hf/ logs/metrics.csv summary.json wandb/
      eval/<run>/                            results.json, generations, judgments, lm-eval JSON
        pairwise/<baseline run>/             one head-to-head judging (merged into results.json)
      report/                                report.md, report.html, *.png
      steps/<step>[/shard-NNNNN]/_SUCCESS    experiment step completion markers
      slurm/<step>.sbatch slurm/logs/ slurm/jobs.json

A :class:`TrainDir` stands alone too (``fitrain train run_dir=...`` outside any experiment); when it sits at
``<root>/train/<arm>`` it knows its experiment (:meth:`TrainDir.experiment`).

Every directory one command writes -- the experiment root, ``prepared/<arm>/``, ``train/<run>/``, each
``data_gen/<stage>/shard-NNNNN/`` -- holds a ``.fitrain.lock`` while it is written (fitrain.core.lock).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_GEN_STAGES = ("templates", "index", "matches", "pairs", "judged", "final")
SEED_SEP = ".seed"


def run_id(arm: str, seed: int | None = None) -> str:
    """The ``train/`` and ``eval/`` directory name of one run: the arm alone (one seed), or ``<arm>.seed<k>``
    when an experiment trains several seeds of every arm (prepared data stays per arm: ``prepared/<arm>``)."""
    return arm if seed is None else f"{arm}{SEED_SEP}{int(seed)}"


def parse_run_id(name: str) -> tuple[str, int | None]:
    """``fi.seed2`` -> (``fi``, 2); ``fi`` -> (``fi``, None)."""
    arm, sep, seed = name.rpartition(SEED_SEP)
    return (arm, int(seed)) if sep and arm and seed.isdigit() else (name, None)


@dataclass(frozen=True)
class TrainDir:
    """One training run's directory (``train/<arm>/`` in an experiment)."""

    root: Path

    @classmethod
    def of(cls, root: str | Path) -> "TrainDir":
        return cls(Path(root))

    @property
    def checkpoints(self) -> Path:
        return self.root / "checkpoints"

    @property
    def hf(self) -> Path:
        return self.root / "hf"

    @property
    def logs(self) -> Path:
        return self.root / "logs"

    @property
    def metrics_csv(self) -> Path:
        return self.logs / "metrics.csv"

    @property
    def summary(self) -> Path:
        return self.root / "summary.json"

    @property
    def wandb(self) -> Path:
        return self.root / "wandb"

    @property
    def wandb_run_id(self) -> Path:
        return self.wandb / "run_id"

    def eval_log(self, checkpoint: Path) -> Path:
        """Output of the evaluation command started after ``checkpoint`` (``eval_on_checkpoint``)."""
        return self.logs / f"eval-{Path(checkpoint).stem}.log"

    @property
    def arm(self) -> str:
        return self.root.name

    def experiment(self) -> "RunLayout | None":
        """The experiment this run belongs to, when it sits at ``<root>/train/<arm>``."""
        return RunLayout(self.root.parent.parent) if self.root.parent.name == "train" else None

    @classmethod
    def containing(cls, path: str | Path) -> "TrainDir | None":
        """The ``train/<arm>`` directory that holds ``path`` (a checkpoint, its ``hf/``...), if any."""
        p = Path(path)
        for q in [p, *p.parents]:
            if q.parent.name == "train":
                return cls(q)
        return None


@dataclass(frozen=True)
class RunLayout:
    """An experiment's directory (``runs/<experiment>/``)."""

    root: Path

    @classmethod
    def of(cls, root: str | Path) -> "RunLayout":
        return cls(Path(root))

    # ------------------------------------------------------------------------------------------ inputs
    @property
    def config(self) -> Path:
        return self.root / "experiment.yaml"

    @property
    def corpus(self) -> Path:
        return self.root / "corpus"

    @property
    def tokenizer(self) -> Path:
        return self.root / "tokenizer"

    # ------------------------------------------------------------------------------------------ data
    def data_gen(self, stage: str) -> Path:
        if stage not in DATA_GEN_STAGES:
            raise ValueError(f"unknown data_gen stage directory '{stage}'; one of {DATA_GEN_STAGES}")
        return self.root / "data_gen" / stage

    @property
    def data_gen_report(self) -> Path:
        return self.root / "data_gen" / "report.json"

    def server_log(self, stage: str, first_shard: int | None = None) -> Path:
        """Log of the model server a data_gen stage started (``serve.enabled``); one per job, named by the
        first shard of the job's range (two jobs on one node never write one log)."""
        tail = "" if first_shard is None else f".shard-{first_shard:05d}"
        return self.root / "data_gen" / f"vllm-{stage}{tail}.log"

    def arm_data(self, arm: str) -> Path:
        """What an arm's prepare reads when it is not data_gen's output (see the module docstring)."""
        return self.root / "arms" / arm

    def prepared(self, arm: str) -> Path:
        return self.root / "prepared" / arm

    # ------------------------------------------------------------------------------------------ runs
    def train(self, arm: str) -> TrainDir:
        return TrainDir(self.root / "train" / arm)

    def train_arms(self) -> list[str]:
        d = self.root / "train"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    def eval(self, arm: str) -> Path:
        return self.root / "eval" / arm

    def head_to_head(self, run: str, baseline: str) -> Path:
        """The judging of ``run`` against ``baseline`` (an experiment step of its own)."""
        return self.eval(run) / "pairwise" / baseline

    def eval_arms(self) -> list[str]:
        d = self.root / "eval"
        return sorted(p.name for p in d.iterdir() if p.is_dir()) if d.is_dir() else []

    @property
    def report(self) -> Path:
        return self.root / "report"

    # ------------------------------------------------------------------------------------------ orchestration
    @property
    def steps(self) -> Path:
        return self.root / "steps"

    def step_marker_dir(self, step: str, shard: int | None = None) -> Path:
        d = self.steps / step
        return d / f"shard-{shard:05d}" if shard is not None else d

    @property
    def slurm(self) -> Path:
        return self.root / "slurm"

    @property
    def slurm_logs(self) -> Path:
        return self.slurm / "logs"

    @property
    def slurm_jobs(self) -> Path:
        return self.slurm / "jobs.json"

    def sbatch_script(self, step: str) -> Path:
        return self.slurm / f"{step}.sbatch"
