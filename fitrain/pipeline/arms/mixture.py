"""The ``mixture`` arm: weighted ``sources`` (other document arms by name, or paths with a reader), drawn by
its ``source-<arm>`` step to the budget's tokens in proportion to their weights, counted with the
experiment's tokenizer (fitrain.data.corpora.draw_mixture)."""
from __future__ import annotations

from dataclasses import dataclass, field

from fitrain.core.accounting import Rejects
from fitrain.core.checks import above, check_fields
from fitrain.core.errors import FitrainError
from fitrain.data.corpora import ReaderConfig
from fitrain.pipeline.arms.base import ArmKind, ArmSpec, Documents
from fitrain.pipeline.arms.registry import kinds
from fitrain.pipeline.configs import prepare_config
from fitrain.pipeline.experiment import ExperimentConfig, ExperimentStep


@dataclass
class MixtureSource:
    arm: str = ""                # another document arm (documents, corpus, generated, mixture) ...
    paths: list[str] = field(default_factory=list)   # ... or files of documents
    reader: ReaderConfig = field(default_factory=ReaderConfig)
    weight: float = 1.0

    def __post_init__(self) -> None:
        check_fields(self, weight=above(0))


@dataclass
class MixtureSpec(ArmSpec):
    sources: list[MixtureSource] = field(default_factory=list)


def mixture_target(cfg: ExperimentConfig, arm: MixtureSpec) -> int:
    """The tokens a mixture draws: what its runs will train (the root reference's budget, or train.max_tokens)."""
    from fitrain.data.manifest import Manifest

    if cfg.explicit_budget:
        if not cfg.train.max_tokens:
            raise FitrainError(f"arm '{arm.name}': a mixture with an explicit budget needs train.max_tokens")
        return int(cfg.train.max_tokens)
    root = cfg.arm_set().root(arm.name)
    m = Manifest.read(cfg.layout.prepared(root), f"the reference arm '{root}'")
    return int(round(m.counts.total_tokens * cfg.train.budget_from_epochs))


def _source_documents(cfg: ExperimentConfig, s: MixtureSource) -> Documents:
    if s.arm:
        arms = cfg.arm_set()
        return arms.kind(s.arm).read_documents(cfg, arms[s.arm])
    from fitrain.data.corpora import iter_corpus

    return lambda: iter_corpus(s.paths, s.reader, Rejects())


def draw_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    from fitrain.data.corpora import MixturePart, draw_mixture
    from fitrain.data.formatting import Formatter
    from fitrain.data.tokenizer import load_tokenizer

    a = cfg.arm_set()[step.arm]
    out = cfg.layout.arm_data(a.name)
    pc = prepare_config(cfg, a.name, check=False)
    fmt = Formatter(load_tokenizer(cfg.layout.tokenizer), pc.format)  # documents counted exactly as prepare will
    parts = [MixturePart(s.arm or f"paths{j}", _source_documents(cfg, s), s.weight) for j, s in enumerate(a.sources)]
    for old in out.glob("part-*.parquet"):
        old.unlink()
    return draw_mixture(parts, mixture_target(cfg, a), fmt.document_token_counts, out)


class MixtureKind(ArmKind):
    name, settings, label = "mixture", MixtureSpec, "a weighted mixture of other arms or files"
    drawn_to_budget = True

    def check(self, spec, arms) -> None:
        who = f"arm '{spec.name}'"
        if not spec.sources:
            raise FitrainError(f"{who}: a mixture needs sources: [{{arm: NAME, weight: W}} or {{paths: [...], "
                               "weight: W}}]")
        for j, s in enumerate(spec.sources):
            if bool(s.arm) == bool(s.paths):
                raise FitrainError(f"{who}: sources[{j}] must name either an arm or paths")
            if not s.arm:  # files: their reader checked itself on construction
                continue
            if s.arm not in arms.by_name:
                raise FitrainError(f"{who}: sources[{j}] names unknown arm '{s.arm}'; the arms are {list(arms.by_name)}")
            elif s.arm == spec.name:
                raise FitrainError(f"{who}: sources[{j}] is the mixture itself")
            elif not arms.kind(s.arm).documents:
                drawable = [k.name for k in kinds().values() if k.documents]
                raise FitrainError(f"{who}: sources[{j}] '{s.arm}' is an {arms[s.arm].kind} arm (not documents: "
                                   f"response-masked pairs); a mixture draws documents: name a "
                                   f"{', '.join(drawable)} arm")

    def uses(self, spec) -> list[str]:
        return [s.arm for s in spec.sources if s.arm]

    def input_patterns(self, spec) -> list[str]:
        return [p for s in spec.sources for p in s.paths]

    def steps(self, cfg, arms, spec) -> list[ExperimentStep]:
        deps = ["tokenizer"] + ([] if cfg.explicit_budget else [f"prepare-{arms.root(spec.name)}"])
        deps += [d for arm in self.uses(spec) for d in [arms.kind(arm).data_step(cfg, arms, arms[arm])] if d]
        return [ExperimentStep(f"source-{spec.name}", list(dict.fromkeys(deps)), arm=spec.name, role="source",
                               runner=draw_step, describe=f"draw the {spec.name} mixture ({len(spec.sources)} "
                                                          "weighted sources) to the budget")]

    def describe(self, arms, spec) -> str:
        one = [s.paths[0] for s in spec.sources if not s.arm and len(s.paths) == 1]
        if len(one) == len(spec.sources) > 1:  # files of one release: braced, /data/x/{a,b,c}/*.jsonl
            import os

            pre = os.path.commonprefix(one)
            pre = pre[:pre.rfind("/") + 1] if "/" in pre else ""
            suf = os.path.commonprefix([p[len(pre):][::-1] for p in one])[::-1]
            suf = suf[suf.find("/"):] if "/" in suf else ""
            mids = ",".join(p[len(pre):len(p) - len(suf)] for p in one)
            return f"{':'.join(f'{s.weight:g}' for s in spec.sources)} of {pre}{{{mids}}}{suf}"
        return " + ".join(f"{s.weight:g} x {s.arm or list(s.paths)}" for s in spec.sources)

    def prepare_what(self, arms, spec) -> str:
        return "mixture documents"


KIND = MixtureKind()
