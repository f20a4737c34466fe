"""The held-out answer loss per item (fitrain_eval.heldout): ``heldout/answer_loss``."""
from __future__ import annotations

from pathlib import Path

from fitrain_eval.benchmarks.base import Benchmark, EvalContext


class Heldout(Benchmark):
    name, prefixes, percent = "heldout", ("heldout",), False
    labels = {"heldout/answer_loss": "held-out answer loss"}
    headline = ("heldout/answer_loss",)

    def describe(self, cfg) -> str:
        return "held-out answer loss per item"

    def run(self, ctx: EvalContext) -> dict:
        from fitrain_eval.heldout import evaluate_heldout

        return evaluate_heldout(ctx.cfg.heldout, ctx.model_dir, ctx.out, Path(ctx.cfg.model).resolve())


BENCHMARK = Heldout()
