"""lm-eval tasks (fitrain_eval.harness): on when ``lm_eval.tasks`` is set; metrics
``lm_eval[_instruction]/<task>/<metric>``."""
from __future__ import annotations

from fitrain_eval.benchmarks.base import Benchmark, EvalContext

PREFIXES = ("lm_eval", "lm_eval_instruction")


class LmEval(Benchmark):
    name, prefixes = "lm_eval", PREFIXES
    headline_group = 2

    def enabled(self, cfg) -> bool:
        return bool(cfg.lm_eval.tasks)

    def disable(self, cfg) -> None:
        cfg.lm_eval.tasks = []

    def describe(self, cfg) -> str:
        return f"lm-eval: {', '.join(cfg.lm_eval.tasks)} ({', '.join(cfg.lm_eval.formats)} format)"

    def run(self, ctx: EvalContext) -> dict:
        from fitrain_eval.harness import run_harness

        return run_harness(ctx.model_dir, ctx.cfg.lm_eval, ctx.out, ctx.cfg.generation.format)

    def label(self, metric: str) -> str | None:
        parts = metric.split("/")
        if len(parts) != 3:
            return None
        return f"{parts[1]} {parts[2]}" + (" (instruction format)" if parts[0] == "lm_eval_instruction" else "")

    def headline_metrics(self, present: set[str]) -> list[str]:
        """Each task's accuracy (or its first metric), the plain format first."""
        tasks: dict[tuple[str, str], list[str]] = {}
        for m in sorted(present):
            parts = m.split("/")
            if parts[0] in PREFIXES and len(parts) == 3 and not parts[2].endswith("_stderr") and parts[2] != "n_samples":
                tasks.setdefault((parts[1], parts[0]), []).append(m)
        return [f"{pre}/{task}/acc" if f"{pre}/{task}/acc" in ms else ms[0]
                for (task, pre), ms in sorted(tasks.items(), key=lambda kv: (kv[0][0], kv[0][1] != "lm_eval"))]


BENCHMARK = LmEval()
