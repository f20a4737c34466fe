"""The "by hand" lines of ``fitrain experiment --dry-run``: for every step the one command doing its work
(fitrain.pipeline.runners.step_command), kept readable for an experiment of many arms and blocks:

* paths under the run directory are written ``$RUN/...``, its config ``$CFG`` (the plan sets both once);
* a command of the same program as an earlier step's (``fitrain train``, ``fitrain prepare``...) is written
  as that step's settings plus the ones that differ (``<step 12's settings> run_dir=... arm=...``), against
  the earlier step that makes it shortest;
* file lists are globs (data_gen's shards: fitrain.pipeline.configs.range_globs), never every shard.
"""
from __future__ import annotations

import shlex

from fitrain.pipeline.experiment import ExperimentConfig, ExperimentStep
from fitrain.pipeline.runners import step_command

SHORT = 5   # a command of at most this many words is always written whole
CONFIG = "CFG"   # the experiment's frozen config, $RUN/experiment.yaml, in the commands


def _word(a: str, root: str) -> str:
    if a == "{shard}":
        return a
    if a == f"{root}/experiment.yaml":
        return f"${CONFIG}"
    q = shlex.quote(a)
    if root not in a:
        return q
    return q.replace(root, "$RUN") if q == a else q.replace(root, "'\"$RUN\"'")


def by_hand(cfg: ExperimentConfig, steps: list[ExperimentStep]) -> dict[str, str]:
    """Step name -> its by-hand command line (see the module docstring). A command with settings is written
    against the earlier step of the same program whose settings differ least from its own."""
    root = str(cfg.root)
    earlier: dict[tuple[str, ...], list[tuple[int, list[str]]]] = {}
    out = {}
    for i, s in enumerate(steps, 1):
        argv = step_command(cfg, s)
        p = next((k for k, a in enumerate(argv) if a.startswith("-") or "=" in a), len(argv))  # the program
        n = _settings_start(argv)
        whole = " ".join(_word(a, root) for a in argv)
        options = [_relative(argv, n, j, base, root) for j, base in earlier.get(tuple(argv[:p]), [])]
        out[s.name] = min([whole] + options, key=len) if len(argv) > SHORT and n < len(argv) else whole
        if n < len(argv):
            earlier.setdefault(tuple(argv[:p]), []).append((i, argv))
    return out


def _relative(argv: list[str], n: int, j: int, base: list[str], root: str) -> str:
    """``argv`` as step ``j``'s settings (``base``) and the settings that differ."""
    m = _settings_start(base)
    had, keys = set(base[m:]), {a.split("=", 1)[0] for a in argv[n:]}
    changed = [a for a in argv[n:] if a not in had]
    dropped = [a.split("=", 1)[0] for a in base[m:] if a.split("=", 1)[0] not in keys]
    return " ".join([*(_word(a, root) for a in argv[:n]), f"<step {j}'s settings>",
                     *(_word(a, root) for a in changed)]) + (f" (without {', '.join(dropped)})" if dropped else "")


def _settings_start(argv: list[str]) -> int:
    return next((k for k, a in enumerate(argv) if "=" in a and not a.startswith("-")), len(argv))
