"""The benchmarks, in the order ``fitrain eval`` runs them. A benchmark is one module under eval/benchmarks/
defining a :class:`~fitrain_eval.benchmarks.base.Benchmark` subclass instance as ``BENCHMARK``, plus one line
in :data:`BUILTIN`; one defined elsewhere plugs in with one call to :func:`register`."""
from __future__ import annotations

from fitrain.core.errors import FitrainError
from fitrain.core.registry import Registry
from fitrain_eval.benchmarks.base import Benchmark

BUILTIN = (  # one line per benchmark: the module whose BENCHMARK it is
    "fitrain_eval.benchmarks.lm_eval",
    "fitrain_eval.benchmarks.heldout",
    "fitrain_eval.benchmarks.mixeval",
    "fitrain_eval.benchmarks.mtbench101",
    "fitrain_eval.benchmarks.alpaca_eval",
)
BENCHMARKS: Registry[Benchmark] = Registry("benchmark", BUILTIN, "BENCHMARK")


register = BENCHMARKS.register    # register(benchmark): plug one in (its settings under eval.plugins.<name>)
unregister = BENCHMARKS.unregister


def benchmarks() -> list[Benchmark]:
    """Every registered benchmark, the built-ins first (the order ``fitrain eval`` runs them)."""
    return list(BENCHMARKS.all().values())


def enabled(cfg) -> list[Benchmark]:
    """The benchmarks ``cfg`` (an EvalConfig) switches on, in running order."""
    return [b for b in benchmarks() if b.enabled(cfg)]


def of_metric(metric: str) -> Benchmark | None:
    """The benchmark a results.json metric belongs to."""
    return next((b for b in benchmarks() if b.owns(metric)), None)


def set_names() -> list[str]:
    """Every decontamination set (``decontamination.benchmarks``)."""
    return [s for b in benchmarks() for s in b.sets]


def owner_of_set(name: str) -> Benchmark:
    for b in benchmarks():
        if name in b.sets:
            return b
    raise FitrainError(f"unknown decontamination benchmark '{name}'; one of {tuple(set_names())}")
