"""MixEval and MixEval-Hard, judged (fitrain_eval.judges.mixeval): ``mixeval[_hard]/...``."""
from __future__ import annotations

from fitrain_eval import data_sources
from fitrain_eval.benchmarks.base import Benchmark, EvalContext
from fitrain_eval.judges import mixeval


class MixEval(Benchmark):
    name, judged, prefixes = "mixeval", True, ("mixeval", "mixeval_hard")
    paper_judge = "gpt-5-mini"  # fitrain/docs/method.md, "Evaluation"
    headline_group = 0
    labels = {"mixeval/overall": "MixEval", "mixeval_hard/overall": "MixEval-Hard",
              "mixeval/free_form": "MixEval free-form", "mixeval/multiple_choice": "MixEval multiple-choice",
              "mixeval_hard/free_form": "MixEval-Hard free-form",
              "mixeval_hard/multiple_choice": "MixEval-Hard multiple-choice"}
    headline = ("mixeval/overall", "mixeval_hard/overall")
    sets = {"mixeval": "mixeval", "mixeval_hard": "mixeval_hard"}

    def describe(self, cfg) -> str:
        return f"MixEval: {', '.join(cfg.mixeval.splits)}"

    def check_data(self, cfg, decontamination: set[str]) -> None:
        splits = list(dict.fromkeys((cfg.mixeval.splits if cfg.mixeval.enabled else [])
                                    + [s for s in self.sets if s in decontamination]))
        if splits:  # `official`: fetched once into the cache and verified (README "Benchmark data")
            cfg.mixeval.root = data_sources.mixeval_root(cfg.mixeval.root, splits)
            mixeval.check_data(cfg.mixeval.root, splits)

    def run(self, ctx: EvalContext) -> dict:
        return mixeval.evaluate_mixeval(ctx.cfg.mixeval, ctx.generator, ctx.judge, ctx.out, ctx.rejects)

    def load_set(self, cfg, name: str, rejects) -> list[tuple[str, str]]:
        return [(it.uid, f"{it.context or ''}\n{it.prompt}") for it in mixeval.load_split(cfg.mixeval.root, name, rejects)]


BENCHMARK = MixEval()
