"""The "by hand" lines of ``fitrain experiment --dry-run``: for every step the one command doing its work
(fitrain.pipeline.runners.step_command), kept readable for an experiment of many arms and blocks:

* paths under the run directory are written ``$RUN/...`` (the plan prints ``RUN=`` once);
* a command of the same kind as an earlier step's (``fitrain train``, ``fitrain prepare``...) is written as
  that step's settings plus the ones that differ (``<step 12's settings> run_dir=... arm=...``);
* file lists are globs (data_gen's shards: fitrain.pipeline.configs.range_globs), never every shard.
"""
from __future__ import annotations

import shlex

from fitrain.pipeline.experiment import ExperimentConfig, ExperimentStep
from fitrain.pipeline.runners import step_command

SHORT = 6   # a command of at most this many words is always written whole


def _word(a: str, root: str) -> str:
    if a == "{shard}":
        return a
    q = shlex.quote(a)
    if root not in a:
        return q
    return q.replace(root, "$RUN") if q == a else q.replace(root, "'\"$RUN\"'")


def by_hand(cfg: ExperimentConfig, steps: list[ExperimentStep]) -> dict[str, str]:
    """Step name -> its by-hand command line (see the module docstring). A command is written against the first
    step of the same program in its block (else in the experiment)."""
    root = str(cfg.root)
    first: dict[tuple[str, ...], tuple[int, list[str]]] = {}
    out = {}
    for i, s in enumerate(steps, 1):
        argv = step_command(cfg, s)
        p = next((k for k, a in enumerate(argv) if a.startswith("-") or "=" in a), len(argv))  # the program
        n = _settings_start(argv)
        prog, own = tuple(argv[:p]), (s.block, *argv[:p])
        earlier = first.get(own) or first.get(prog)
        first.setdefault(prog, (i, argv))
        first.setdefault(own, (i, argv))
        if len(argv) <= SHORT or earlier is None:
            out[s.name] = " ".join(_word(a, root) for a in argv)
            continue
        j, base = earlier
        m = _settings_start(base)
        had, keys = set(base[m:]), {a.split("=", 1)[0] for a in argv[n:]}
        changed = [a for a in argv[n:] if a not in had]
        dropped = [a.split("=", 1)[0] for a in base[m:] if a.split("=", 1)[0] not in keys]
        out[s.name] = " ".join([*(_word(a, root) for a in argv[:n]), f"<step {j}'s settings>",
                                *(_word(a, root) for a in changed)]) + (
            f" (without {', '.join(dropped)})" if dropped else "")
    return out


def _settings_start(argv: list[str]) -> int:
    return next((k for k, a in enumerate(argv) if "=" in a and not a.startswith("-")), len(argv))
