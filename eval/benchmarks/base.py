"""A benchmark: what ``fitrain eval`` runs on a model, and what decontamination, the comparisons, the report
and the experiment pipeline need to know about it (fitrain/INTERFACES.md, "Benchmarks").

A built-in benchmark keeps its settings in its own field of the eval config (``eval.<name>``); one registered
from outside fitrain_eval keeps them under ``eval.plugins.<name>`` (a mapping read into ``settings``).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError


@dataclass
class EvalContext:
    """What a benchmark's run gets: the eval config, the exported model, the output directory (results,
    ``items/``), the run's name, the judge (None when no enabled benchmark needs one) and the counted
    rejects; the generator (the model answering prompts) is made on first use."""

    cfg: Any                          # fitrain_eval.run.EvalConfig
    model_dir: Path | None
    out: Path
    arm: str
    rejects: Rejects
    judge: Any = None                 # fitrain_eval.judges.common.Judge
    model_path: Path | None = None    # what ``model`` named (a run, a checkpoint), for the held-out loss
    _generator: Any = field(default=None, repr=False)

    @property
    def generator(self):
        if self._generator is None:
            import dataclasses

            from fitrain_eval.generate import Generator

            g = self.cfg.generation
            if g.llm.backend == "transformers" and not g.llm.model:
                g = dataclasses.replace(g, llm=dataclasses.replace(g.llm, model=str(self.model_dir)))
            self._generator = Generator(g)
        return self._generator


class Benchmark:
    """One benchmark. A subclass sets ``name`` and the attributes its metrics need, and implements
    :meth:`run`; the defaults describe a benchmark switched on by ``enabled`` in its settings."""

    name: str = ""                   # its settings' key (eval.<name>, or eval.plugins.<name>)
    settings: type | None = None     # its settings dataclass (a plug-in's; built-ins are EvalConfig fields)
    judged: bool = False             # scored by the LLM judge (eval.judge): the pipeline checks the judge
    paper_judge: str = ""            # the judge model the paper used for it (the report says when another judged)
    prefixes: tuple[str, ...] = ()   # the first part of its metric names in results.json (``mixeval/...``)
    percent: bool = True             # its scores in [0, 1] are shown in percent (not MT-Bench-101's 1-10)
    labels: dict[str, str] = {}      # metric -> its column label in the report
    headline: tuple[str, ...] = ()   # its metrics in the report's headline table (when present)
    headline_group: int = 1          # where in the headline: judged benchmarks 0, per-task lm-eval scores last (2)
    sets: dict[str, str] = {}        # decontamination set name -> the metric prefix of its items

    # ---- settings
    def config(self, cfg) -> Any:
        if hasattr(cfg, self.name):
            return getattr(cfg, self.name)
        from fitrain.core.config import from_dict

        if self.settings is None:
            return None
        return from_dict(self.settings, dict(cfg.plugins.get(self.name) or {}))

    def enabled(self, cfg) -> bool:
        c = self.config(cfg)
        return bool(getattr(c, "enabled", False))

    def disable(self, cfg) -> None:
        """Switch it off in ``cfg`` (the pipeline's head-to-head step runs only the pairwise judging)."""
        if hasattr(cfg, self.name):
            getattr(cfg, self.name).enabled = False
        elif self.name in cfg.plugins:
            cfg.plugins[self.name] = {**cfg.plugins[self.name], "enabled": False}

    def needs_judge(self, cfg) -> bool:
        return self.judged

    def describe(self, cfg) -> str:
        """What it runs, in one line of the eval log."""
        return self.name

    # ---- running
    def check_data(self, cfg, decontamination: set[str]) -> None:
        """Its data is there (when enabled, or when one of its ``sets`` is decontaminated against)."""

    def run(self, ctx: EvalContext) -> dict:
        """Evaluate the model: flat metrics ``<prefix>/...`` (per-item scores into ``ctx.out/items``). A
        benchmark that only supplies decontamination sets keeps this default: enabling it is a user error."""
        raise FitrainError(f"benchmark '{self.name}' supplies decontamination sets only ({', '.join(self.sets)}): "
                           "it has nothing to evaluate; leave it disabled")

    # load_set(cfg, name, rejects) -> [(item id, the text the model is asked)]: one decontamination set; every
    # benchmark that declares ``sets`` defines it (checked when the class is defined, below)

    def __init_subclass__(cls, **kw) -> None:
        super().__init_subclass__(**kw)
        if cls.sets and not callable(getattr(cls, "load_set", None)):
            raise TypeError(f"benchmark class {cls.__name__} declares decontamination sets {list(cls.sets)} but "
                            "defines no load_set(cfg, name, rejects)")

    # ---- reports
    def owns(self, metric: str) -> bool:
        return metric.split("/", 1)[0] in self.prefixes

    def label(self, metric: str) -> str | None:
        return self.labels.get(metric)

    def headline_metrics(self, present: set[str]) -> list[str]:
        return [m for m in self.headline if m in present]
