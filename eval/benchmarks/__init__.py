"""The benchmark registry: one module per benchmark (its settings, data check, run, decontamination sets,
metric labels) and one line each in ``registry.BUILTIN``; eval (fitrain_eval.run), decontamination, the
comparisons, the report and the experiment pipeline read it."""
from fitrain_eval.benchmarks.base import Benchmark, EvalContext
from fitrain_eval.benchmarks.registry import (benchmarks, enabled, of_metric, owner_of_set, register, set_names,
                                              unregister)

__all__ = ["Benchmark", "EvalContext", "benchmarks", "enabled", "of_metric", "owner_of_set", "register",
           "set_names", "unregister"]
