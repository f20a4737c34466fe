"""MT-Bench-101, judged per turn (fitrain_eval.judges.mtbench101): ``mtbench101/...`` on its 1-10 scale."""
from __future__ import annotations

from fitrain_eval import data_sources
from fitrain_eval.benchmarks.base import Benchmark, EvalContext
from fitrain_eval.judges import mtbench101


class MTBench101(Benchmark):
    name, judged, prefixes, percent = "mtbench101", True, ("mtbench101",), False
    paper_judge = "gpt-5-mini"  # fitrain/docs/method.md, "Evaluation"
    headline_group = 0
    labels = {"mtbench101/overall": "MT-Bench-101"}
    headline = ("mtbench101/overall",)
    sets = {"mtbench101": "mtbench101"}

    def describe(self, cfg) -> str:
        return "MT-Bench-101"

    def check_data(self, cfg, decontamination: set[str]) -> None:
        if cfg.mtbench101.enabled or "mtbench101" in decontamination:
            cfg.mtbench101.path = data_sources.mtbench101_path(cfg.mtbench101.path)
            mtbench101.check_data(cfg.mtbench101.path)

    def run(self, ctx: EvalContext) -> dict:
        return mtbench101.evaluate_mtbench101(ctx.cfg.mtbench101, ctx.generator, ctx.judge, ctx.out, ctx.rejects)

    def load_set(self, cfg, name: str, rejects) -> list[tuple[str, str]]:
        return [(d.key, "\n".join(h["user"] for h in d.history)) for d in mtbench101.load(cfg.mtbench101.path, rejects)]


BENCHMARK = MTBench101()
