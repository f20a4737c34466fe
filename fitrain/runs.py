"""The run-directory layout, defined once. Every step reads and writes files under it.

    runs/<experiment>/
      data_gen/{templates,index,matches,pairs,judged,final}/   stage outputs + _SUCCESS + stats.json
      prepared/<arm>/                                           token shards + manifest.json
      train/<arm>/{checkpoints,hf,logs,wandb}/                  arm in {fi, standard, ...}
      eval/<arm>/...                                            generations, judgments, lm-eval JSON
      report/{report.md,report.html,*.png}
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

DATA_GEN_STAGES = ("templates", "index", "matches", "pairs", "judged", "final")


@dataclass(frozen=True)
class RunLayout:
    root: Path

    @classmethod
    def of(cls, root: str | Path) -> "RunLayout":
        return cls(Path(root))

    def data_gen(self, stage: str) -> Path:
        if stage not in DATA_GEN_STAGES:
            raise ValueError(f"unknown data_gen stage directory '{stage}'; one of {DATA_GEN_STAGES}")
        return self.root / "data_gen" / stage

    def prepared(self, arm: str) -> Path:
        return self.root / "prepared" / arm

    def train(self, arm: str) -> Path:
        return self.root / "train" / arm

    def checkpoints(self, arm: str) -> Path:
        return self.train(arm) / "checkpoints"

    def hf(self, arm: str) -> Path:
        return self.train(arm) / "hf"

    def logs(self, arm: str) -> Path:
        return self.train(arm) / "logs"

    def wandb(self, arm: str) -> Path:
        return self.train(arm) / "wandb"

    def eval(self, arm: str) -> Path:
        return self.root / "eval" / arm

    def report(self) -> Path:
        return self.root / "report"
