"""Corpus blocks: an experiment that compares arms on several source corpora at once, as the paper's Table 1
does (the IPT corpus, ~23B tokens x 4 epochs; Nemotron-CC, ~300B tokens x 1 epoch; fitrain/docs/method.md,
"The paper's baselines (Table 1)").

A block is a sub-experiment: it shares the experiment's model, optimiser, tokenizer setting, eval and seeds,
and has its own ``corpus`` and ``data_gen`` settings (merged over the experiment's), its own ``arms`` and
``primary``, and its own ``budget``. Its files live under ``<run_dir>/blocks/<block>/`` (the usual run
layout, fitrain.core.layout) and its steps are the usual graph's, named ``<block>.<step>``; the experiment's
``report`` step puts the blocks' reports together, each block's differences and paired intervals taken
within the block. An experiment without ``blocks`` is unchanged.

Budget (``budget:``): ``tokens`` > 0 is an absolute count per pass and every arm of the block trains
``tokens x epochs`` (the paper's); ``tokens: 0`` trains the reference arm's prepared tokens x ``epochs``
(fitrain.pipeline.arms.base, "Budget"). ``epochs: 0`` keeps the experiment's ``train.budget_from_epochs``.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any

from fitrain.core.checks import at_least, check_fields
from fitrain.core.errors import FitrainError

# (the functions receive the experiment, fitrain.pipeline.experiment's ExperimentConfig and ExperimentStep,
# which imports this module for BlockConfig: named in strings only)

SEP = "."   # <block>.<step>: arm names and block names hold no dot


@dataclass
class BlockBudget:
    tokens: float = 0      # training tokens per pass (0 = the reference arm's prepared tokens)
    epochs: float = 0      # passes: every arm trains tokens x epochs (0 = the experiment's train.budget_from_epochs)

    def __post_init__(self) -> None:
        check_fields(self, tokens=at_least(0), epochs=at_least(0))


@dataclass
class BlockConfig:
    name: str = ""
    title: str = ""        # the block's heading in the plan and the report ('' = its name)
    arms: list[Any] = field(default_factory=list)       # [] = the experiment's arms
    primary: str = ""
    budget: BlockBudget = field(default_factory=BlockBudget)
    corpus: dict[str, Any] = field(default_factory=dict)     # merged over the experiment's corpus settings
    data_gen: dict[str, Any] = field(default_factory=dict)   # merged over the experiment's data_gen settings
    heldout_shards: int | None = None                        # None = the experiment's


def block_names(cfg: "ExperimentConfig") -> list[str]:
    return [b.name for b in cfg.blocks]


def check_blocks(cfg: "ExperimentConfig") -> None:
    """Names (letters, digits, - and _; unique), then each block validated as an experiment of its own."""
    import re

    names = block_names(cfg)
    for n in names:
        if not re.match(r"^[A-Za-z][A-Za-z0-9_-]{0,63}$", n or ""):
            raise FitrainError(f"block name '{n}' must start with a letter and hold only letters, digits, - and _")
    if len(set(names)) != len(names):
        raise FitrainError(f"block names must be unique, got {names}")
    from fitrain.core.config import validate_config

    for n in names:
        validate_config(block_config(cfg, n))


def block_config(cfg: "ExperimentConfig", name: str) -> "ExperimentConfig":
    """The block as an experiment of its own (its run directory ``<run_dir>/blocks/<name>``); cached on ``cfg``
    until any of its settings changes."""
    from fitrain.core.config import merge_settings

    cache = cfg.__dict__.setdefault("_blocks", {})
    b = next((x for x in cfg.blocks if x.name == name), None)
    if b is None:
        raise FitrainError(f"unknown block '{name}'; the blocks are {block_names(cfg)}")
    key = repr(cfg)  # (every setting; cheaper than YAML)
    if name in cache and cache[name][0] == key:
        return cache[name][1]
    sub = copy.deepcopy(cfg)
    sub.__dict__.pop("_blocks", None)
    sub.__dict__.pop("_arm_set", None)
    sub.blocks = []
    sub.name = f"{cfg.name}-{name}"
    sub.run_dir = str(cfg.root / "blocks" / name)
    sub.arms = copy.deepcopy(b.arms) or sub.arms
    sub.primary = b.primary or ("" if b.arms else sub.primary)
    sub.corpus = merge_settings(sub.corpus, b.corpus, f"block '{name}': corpus") if b.corpus else sub.corpus
    sub.data_gen = merge_settings(sub.data_gen, b.data_gen, f"block '{name}': data_gen") if b.data_gen else sub.data_gen
    if b.heldout_shards is not None:
        sub.heldout_shards = b.heldout_shards
    t = sub.train
    t.wandb.group = t.wandb.group or cfg.name
    if b.budget.epochs:
        t.budget_from_epochs = b.budget.epochs
    if b.budget.tokens:
        t.max_tokens, t.max_supervised_tokens = b.budget.tokens * t.budget_from_epochs, 0
        t.data.max_epochs = 0  # the budget sets the tokens; an arm with budget.epochs_allowed=false reads one pass
    sub.report.title = f"{cfg.report.title or cfg.name}: {b.title or name}"
    cache[name] = (key, sub)
    return sub


def budget_text(cfg: "ExperimentConfig", name: str) -> str:
    """The block's budget in words (the plan, --print-config's readers, the report)."""
    b = next(x for x in cfg.blocks if x.name == name)
    epochs = b.budget.epochs or cfg.train.budget_from_epochs
    per = f"{tokens_text(b.budget.tokens)} tokens" if b.budget.tokens else "the reference arm's tokens"
    return f"{per} x {epochs:g} epoch(s)"


def tokens_text(n: float) -> str:
    """A token count as people write it: 23B, 1.5M, 40,000."""
    for unit, size in (("T", 1e12), ("B", 1e9), ("M", 1e6)):
        if n >= size and round(n / size, 2) * size == n:
            return f"{n / size:g}{unit}"
    return f"{n:,.0f}"


def local_step(step: "ExperimentStep") -> "ExperimentStep":
    """The block's own step behind a ``<block>.<step>`` step (itself for a step of no block)."""
    return step.local or step


def prefixed(block: str, steps: list["ExperimentStep"]) -> list["ExperimentStep"]:
    """A block's steps named ``<block>.<step>`` (dependencies too), each keeping the block's own step."""
    return [replace(s, name=f"{block}{SEP}{s.name}", deps=[f"{block}{SEP}{d}" for d in s.deps], block=block,
                    local=s) for s in steps]


def for_step(cfg: "ExperimentConfig", step: "ExperimentStep") -> tuple["ExperimentConfig", "ExperimentStep"]:
    """The config and the step a runner gets: the block's, for a step of a block."""
    if not step.block:
        return cfg, step
    return block_config(cfg, step.block), local_step(step)


def parts(cfg: "ExperimentConfig") -> list[tuple[str, "ExperimentConfig"]]:
    """(block, its config) for every block; [('', cfg)] for an experiment without blocks."""
    return [(n, block_config(cfg, n)) for n in block_names(cfg)] if cfg.blocks else [("", cfg)]


def blocks_report_step(cfg: "ExperimentConfig", step: "ExperimentStep", shard: int | None) -> dict:
    """``<run_dir>/report/report.md``: every block's report (its own step's: arms compared with the block's
    primary arm, paired intervals over the block's items, its token table), one section per block."""
    import re

    from fitrain.core.io import atomic_path, read_json, write_json

    out = cfg.layout.report
    out.mkdir(parents=True, exist_ok=True)
    lines = [f"# {cfg.report.title or cfg.name}", "",
             f"{len(cfg.blocks)} corpus blocks; every difference and paired interval is taken within its block "
             "(each block's arms against its primary arm).", ""]
    matching = {}
    for b in cfg.blocks:
        sub = block_config(cfg, b.name)
        rel = f"../blocks/{b.name}/report"
        md = (sub.layout.report / "report.md").read_text(encoding="utf-8")
        md = re.sub(r"!\[([^\]]*)\]\((?!/|https?:)([^)]+)\)", lambda m: f"![{m[1]}]({rel}/{m[2]})", md)
        body = [("#" + line) if line.startswith("#") else line for line in md.splitlines()]
        if body and body[0].startswith("## "):
            body = body[1:]  # the block's own title: the section heading says it
        lines += [f"## Block {b.name}: {b.title or b.name} ({budget_text(cfg, b.name)})", "", *body, ""]
        tm = sub.layout.report / "token_matching.json"
        matching[b.name] = read_json(tm) if tm.is_file() else {}
    with atomic_path(out / "report.md") as tmp:
        tmp.write_text("\n".join(lines) + "\n", encoding="utf-8")
    write_json(out / "token_matching.json", matching)
    return {"report": str(out / "report.md"), "blocks": [b.name for b in cfg.blocks]}
