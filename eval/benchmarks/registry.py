"""The benchmarks, in the order ``fitrain eval`` runs them. A benchmark is one module under eval/benchmarks/
defining a :class:`~fitrain_eval.benchmarks.base.Benchmark` subclass instance as ``BENCHMARK``, plus one line
in :data:`BUILTIN`; one defined elsewhere plugs in with one call to :func:`register`."""
from __future__ import annotations

from importlib import import_module

from fitrain.core.errors import FitrainError
from fitrain_eval.benchmarks.base import Benchmark

BUILTIN = (  # one line per benchmark: the module whose BENCHMARK it is
    "fitrain_eval.benchmarks.lm_eval",
    "fitrain_eval.benchmarks.heldout",
    "fitrain_eval.benchmarks.mixeval",
    "fitrain_eval.benchmarks.mtbench101",
    "fitrain_eval.benchmarks.alpaca_eval",
)
_ALL: dict[str, Benchmark] = {}
_loaded = False


def _load() -> dict[str, Benchmark]:
    global _loaded
    if not _loaded:
        for module in BUILTIN:
            b = import_module(module).BENCHMARK
            _ALL[b.name] = b
        _loaded = True
    return _ALL


def register(benchmark: Benchmark) -> Benchmark:
    """Plug a benchmark in (its settings under ``eval.plugins.<name>``); a name already taken is refused."""
    all_ = _load()
    if not benchmark.name or benchmark.name in all_:
        raise FitrainError(f"benchmark '{benchmark.name}' is empty or already registered ({', '.join(all_)})")
    all_[benchmark.name] = benchmark
    return benchmark


def unregister(name: str) -> None:
    _load().pop(name, None)


def benchmarks() -> list[Benchmark]:
    """Every registered benchmark, the built-ins first."""
    return list(_load().values())


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
