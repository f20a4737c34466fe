"""The ``fi`` arm: this experiment's data_gen pairs, token-for-token budgeted against their documents.

Variants are settings: ``min_judge_score`` (a threshold below data_gen's ``judge.min_score`` re-writes the
pairs from the judged shards in a ``pairs-<arm>`` step, e.g. ``0`` for the paper's no-judge ablation; above
it filters the final pairs), ``loss_mask`` (``response`` | ``all``), and ``prepare:`` for any other prepare
setting (e.g. ``{format: {template: ...}}``).
"""
from __future__ import annotations

from dataclasses import dataclass

from fitrain.core.checks import check_fields, finite
from fitrain.core.errors import FitrainError
from fitrain.data.formatting import LOSS_MASKS
from fitrain.pipeline.arms.base import ArmKind, ArmSpec
from fitrain.pipeline.configs import data_gen_config, final_pairs
from fitrain.pipeline.experiment import ExperimentConfig, ExperimentStep


@dataclass
class FiSpec(ArmSpec):
    min_judge_score: float | None = None   # None = data_gen's final pairs as written (judge.min_score)
    loss_mask: str = ""                    # '' = prepare.format.loss_mask

    def __post_init__(self) -> None:
        check_fields(self, min_judge_score=finite)


def rewrites_pairs(cfg: ExperimentConfig, spec: FiSpec) -> bool:
    """A judge threshold below data_gen's: the arm's pairs come from the judged shards (``pairs-<arm>``)."""
    return spec.min_judge_score is not None and spec.min_judge_score < cfg.data_gen.judge.min_score


def pairs_step(cfg: ExperimentConfig, step: ExperimentStep, shard: int | None) -> dict:
    """data_gen's write stage run again over the judged shards with the arm's threshold, into ``arms/<arm>``."""
    from data_gen.write import run

    a = cfg.arm_set()[step.arm]
    dg = data_gen_config(cfg)
    dg.judge.min_score = float(a.min_judge_score)  # type: ignore[attr-defined]
    layout = cfg.layout
    status = run(dg, layout.arm_data(a.name), layout.data_gen("judged"), layout.data_gen("matches"), None, print)
    if not status.get("complete"):
        raise FitrainError(f"arm '{a.name}': re-writing the judged pairs did not finish: {status}")
    return {"pairs": status["stats"].get("out"), "filtered": status["stats"].get("filtered")}


class FiKind(ArmKind):
    name, settings, label = "fi", FiSpec, "FineInstructions pairs"
    reference, documents, data_gen = True, False, True

    def check(self, spec, arms) -> None:
        if spec.loss_mask and spec.loss_mask not in LOSS_MASKS:
            raise FitrainError(f"arm '{spec.name}': loss_mask must be one of {LOSS_MASKS}, got '{spec.loss_mask}'")

    def pairs_source(self, arms, spec) -> str:
        return spec.name

    def steps(self, cfg, arms, spec) -> list[ExperimentStep]:
        if not rewrites_pairs(cfg, spec):
            return []
        return [ExperimentStep(f"pairs-{spec.name}", ["data_gen"], arm=spec.name, role="pairs", runner=pairs_step,
                               describe=f"the judged pairs with score >= {spec.min_judge_score:g} in the released "
                                        "layout")]

    def prepare_deps(self, cfg, arms, spec) -> list[str]:
        return ["data_gen"] + super().prepare_deps(cfg, arms, spec)

    def prepare_input(self, cfg, arms, spec, pc, check):
        own = cfg.layout.arm_data(spec.name) if rewrites_pairs(cfg, spec) else None
        pc.input.kind = "pairs"
        pc.input.paths = final_pairs(cfg, check=check, stage_dir=own)
        pc.budget.enabled, pc.documents_from_pairs, pc.budget_from = True, False, ""
        if spec.min_judge_score is not None and not own:
            pc.input.min_judge_score = spec.min_judge_score
        pc.format.loss_mask = spec.loss_mask or pc.format.loss_mask
        return pc

    def describe(self, arms, spec) -> str:
        return ("data_gen pairs" + (f", judge >= {spec.min_judge_score:g}" if spec.min_judge_score is not None else "")
                + (f", loss_mask {spec.loss_mask}" if spec.loss_mask else ""))

    def prepare_what(self, arms, spec) -> str:
        return "pairs (token-for-token budget)"


KIND = FiKind()
