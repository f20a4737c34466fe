"""AlpacaEval: the model's outputs on its instructions, and head-to-head win rates against baseline runs
judged pairwise (fitrain_eval.judges.pairwise): ``pairwise/<baseline>/...``. Its settings are
``eval.pairwise``."""
from __future__ import annotations

from pathlib import Path

from fitrain_eval import data_sources
from fitrain_eval.benchmarks.base import Benchmark, EvalContext
from fitrain_eval.judges import pairwise


class AlpacaEval(Benchmark):
    name, judged, prefixes = "pairwise", True, ("pairwise",)
    paper_judge = "gpt-4-turbo"  # fitrain/docs/method.md, "Evaluation"
    headline_group = 0
    sets = {"alpaca_eval": "pairwise"}

    def needs_judge(self, cfg) -> bool:
        return bool(pairwise.baseline_paths(cfg.pairwise))  # the outputs alone are not judged

    def describe(self, cfg) -> str:
        bases = pairwise.baseline_paths(cfg.pairwise)
        return "AlpacaEval outputs" + (f" + head-to-head vs {', '.join(bases)}" if bases else "")

    def check_data(self, cfg, decontamination: set[str]) -> None:
        if cfg.pairwise.enabled or "alpaca_eval" in decontamination:
            cfg.pairwise.instructions = data_sources.alpaca_instructions(cfg.pairwise.instructions)
        if cfg.pairwise.enabled:
            pairwise.check_data(cfg.pairwise)
        elif "alpaca_eval" in decontamination:
            pairwise.check_data(pairwise.PairwiseConfig(instructions=cfg.pairwise.instructions))

    def run(self, ctx: EvalContext) -> dict:
        return pairwise.evaluate_pairwise(ctx.cfg.pairwise, ctx.generator, ctx.judge, ctx.out, ctx.rejects, ctx.arm)

    def load_set(self, cfg, name: str, rejects) -> list[tuple[str, str]]:
        return [(str(i), r["instruction"]) for i, r in
                enumerate(pairwise.load_outputs(Path(cfg.pairwise.instructions), need_output=False))]


BENCHMARK = AlpacaEval()
