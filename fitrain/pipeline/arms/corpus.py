"""The ``corpus`` arm: files a user downloaded (``paths`` + ``reader``: IPT's instruction-augmented corpora,
Nemotron-CC's diverse-QA / WRAP / mixture JSONL, any parquet/JSONL with a text column; fitrain.data.corpora),
normalised into document files by its ``source-<arm>`` step, file by file."""
from __future__ import annotations

from dataclasses import dataclass, field

from fitrain.core.errors import FitrainError
from fitrain.data.corpora import ReaderConfig
from fitrain.pipeline.arms.base import ArmKind, ArmSpec
from fitrain.pipeline.experiment import ExperimentConfig, ExperimentStep


@dataclass
class CorpusSpec(ArmSpec):
    paths: list[str] = field(default_factory=list)
    reader: ReaderConfig = field(default_factory=ReaderConfig)


def source_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.data.corpora import normalise

    arms = cfg.arm_set()
    a = arms[step.arm]
    arms.check_inputs([a.name])
    return normalise(a.paths, a.reader, cfg.layout.arm_data(a.name), log=print)


class CorpusKind(ArmKind):
    name, settings, label = "corpus", CorpusSpec, "a released corpus"

    def check(self, spec, arms) -> None:
        if not spec.paths:
            raise FitrainError(f"arm '{spec.name}': a corpus arm needs paths (the files of the corpus)")

    def input_patterns(self, spec) -> list[str]:
        return list(spec.paths)

    def steps(self, cfg, arms, spec) -> list[ExperimentStep]:
        return [ExperimentStep(f"source-{spec.name}", [], arm=spec.name, role="source", runner=source_step,
                               describe=f"read the {spec.name} corpus ({len(spec.paths)} pattern(s)) into "
                                        "normalised document files")]

    def describe(self, arms, spec) -> str:
        return f"files {list(spec.paths)}"

    def prepare_what(self, arms, spec) -> str:
        return "corpus documents"


KIND = CorpusKind()
