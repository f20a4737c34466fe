"""What a training run will do, decided before it starts: the budget, the schedule length, the checks that
the data can meet the budget.

The budget is one typed value, :class:`Budget` (a unit and an amount, like OLMo-core's ``Duration``):
total tokens read by the model, supervised targets, or optimizer steps. A token budget may carry an extra
cap on steps. ``budget_from=<prepared dir>`` makes the budget that directory's total tokens (times
``budget_from_epochs``): that is how a standard arm trains exactly the tokens of a FineInstructions arm
(fitrain/docs/method.md, "Token-matched baselines"). The run stops exactly at the budget
(fitrain.train.microbatches.cut_step trims the last step).

The schedule ends where the budget ends: for a token budget the number of optimizer steps is counted
exactly (:class:`ReadingOrder`) from the loader's row order and every row's token and target counts -- not
estimated from a mean tokens per row, which left the last steps of a short run far above the lr floor.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Callable

import numpy as np

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.data.manifest import Manifest
from fitrain.train.config import TrainConfig
from fitrain.train.optim import OptimConfig

UNITS = ("tokens", "supervised_tokens", "steps")


@dataclass(frozen=True)
class Budget:
    """When a run ends: ``amount`` of ``unit`` (total tokens, supervised targets or optimizer steps)."""

    unit: str
    amount: int

    def __post_init__(self) -> None:
        if self.unit not in UNITS:
            raise ValueError(f"budget unit must be one of {UNITS}, got {self.unit!r}")

    def done(self, step: int, tokens: int, supervised: int) -> int:
        """How much of the budget a run at this point has used."""
        return {"tokens": tokens, "supervised_tokens": supervised, "steps": step}[self.unit]

    def __str__(self) -> str:
        return f"{self.amount:,} {self.unit.replace('_', ' ')}"


@dataclass
class TrainPlan:
    """The budget, the schedule and the cadences of one run, resolved from the config, the data manifest
    and the world size."""

    budget: Budget
    step_cap: int                # a cap on optimizer steps beside a token budget (0 = none)
    total_steps: int             # the schedule length (warmup + decay end here)
    grad_accum: int
    max_epochs: int
    pad_id: int
    optim: OptimConfig
    rows_per_step: int
    log_every: int
    val_every: int
    checkpoint_every: int
    keep_checkpoints: int
    compile: bool
    budget_source: str = ""

    @property
    def max_tokens(self) -> int:
        return self.budget.amount if self.budget.unit == "tokens" else 0

    @property
    def max_supervised_tokens(self) -> int:
        return self.budget.amount if self.budget.unit == "supervised_tokens" else 0

    @property
    def max_steps(self) -> int:
        return self.budget.amount if self.budget.unit == "steps" else self.step_cap

    @property
    def token_budget(self) -> Budget | None:
        """The budget when it is counted in tokens (the last step is then cut exactly), else None."""
        return self.budget if self.budget.unit != "steps" else None

    def describe(self) -> str:
        d = {k: v for k, v in asdict(self).items() if k not in ("optim", "budget")}
        return ", ".join([f"budget={self.budget}"] + [f"{k}={v}" for k, v in d.items() if v not in ("", None)])


@dataclass
class ReadingOrder:
    """What a run reads, in order: every row's count of a unit (``row_counts('tokens')`` non-padding tokens,
    ``row_counts('supervised_tokens')`` targets) and the global row order of each epoch (``epoch_order(e)``;
    a micro-step reads ``rows_per_micro_step`` consecutive rows of it, over all ranks). Enough to count
    exactly how many optimizer steps a token budget takes."""

    row_counts: Callable[[str], np.ndarray]
    epoch_order: Callable[[int], np.ndarray]
    rows_per_micro_step: int

    @classmethod
    def of(cls, loader: Any) -> "ReadingOrder":
        """From a :class:`fitrain.data.loader.PackedLoader` (any rank: the order covers all ranks); the rows'
        counts are the ones stored at prepare time (fitrain.data.rowcounts: O(rows) to read), computed from
        the shards and cached once for a directory prepared without them."""
        from fitrain.data.rowcounts import row_counts

        return cls(lambda unit: row_counts(loader.data, unit), loader.epoch_order, loader.world_size * loader.batch_size)

    @classmethod
    def from_arrays(cls, tokens: np.ndarray, supervised: np.ndarray, epoch_order: Callable[[int], np.ndarray],
                    rows_per_micro_step: int) -> "ReadingOrder":
        return cls({"tokens": tokens, "supervised_tokens": supervised}.__getitem__, epoch_order, rows_per_micro_step)

    def steps_to(self, unit: str, amount: int, grad_accum: int, max_epochs: int) -> int | None:
        """Optimizer steps until ``amount`` tokens (``unit='tokens'``) or supervised targets have been read
        -- the step that reaches it is the run's last, cut to land exactly on it -- or None when
        ``max_epochs`` (0 = unlimited) passes hold less. Steps continue across epoch boundaries, as
        fitrain.train.microbatches.StepStream groups them."""
        per_row = self.row_counts(unit)
        done, micro, epoch = 0, 0, 0
        while max_epochs <= 0 or epoch < max_epochs:
            per_micro = per_row[self.epoch_order(epoch)].reshape(-1, self.rows_per_micro_step).sum(axis=1)
            reached = done + np.cumsum(per_micro)
            j = int(np.searchsorted(reached, amount, side="left"))
            if j < len(reached):
                return (micro + j) // grad_accum + 1
            if not len(reached) or reached[-1] == done:
                return None  # an epoch that reads nothing never reaches the budget
            done, micro, epoch = int(reached[-1]), micro + len(per_micro), epoch + 1
        return None


def resolve_batch(cfg: TrainConfig, world: int, seq_len: int) -> tuple[int, int]:
    """(grad_accum, global batch in rows): the global batch is the experiment (``data.global_batch_rows`` or
    ``data.global_batch_tokens``), ``grad_accum`` what splits it into ``data.micro_batch_size`` rows on each of
    ``world`` ranks. Without a global batch, ``grad_accum`` (0 = 1) and the global batch is their product."""
    d = cfg.data
    rows, what = d.global_batch_rows, f"data.global_batch_rows={d.global_batch_rows}"
    if d.global_batch_tokens:
        if rows:
            raise ConfigError("set data.global_batch_rows or data.global_batch_tokens, not both")
        if d.global_batch_tokens % seq_len:
            raise ConfigError(f"data.global_batch_tokens={d.global_batch_tokens} is not a whole number of the "
                              f"data's {seq_len}-token rows")
        rows, what = d.global_batch_tokens // seq_len, f"data.global_batch_tokens={d.global_batch_tokens}"
    split = d.micro_batch_size * world
    if not rows:
        accum = d.grad_accum or 1
        return accum, split * accum
    if rows % split:
        raise ConfigError(f"{what} ({rows} rows) does not divide by data.micro_batch_size={d.micro_batch_size} "
                          f"x {world} rank(s) = {split} rows; change data.micro_batch_size, the ranks or the global batch")
    accum = rows // split
    if d.grad_accum and d.grad_accum != accum:
        raise ConfigError(f"data.grad_accum={d.grad_accum} but {what} / (data.micro_batch_size="
                          f"{d.micro_batch_size} x {world} rank(s)) = {accum}; leave grad_accum unset (0)")
    return accum, rows


def resolve_budget(cfg: TrainConfig) -> tuple[int, int, int, str]:
    """(max_tokens, max_supervised_tokens, max_steps, where the token budget came from)."""
    max_tokens, source = int(cfg.max_tokens), ""
    if cfg.budget_from:
        if cfg.max_tokens:
            raise ConfigError("set either max_tokens or budget_from, not both")
        m = Manifest.read(cfg.budget_from, "budget_from")
        max_tokens = int(round(m.counts.total_tokens * cfg.budget_from_epochs))
        source = f"budget_from {cfg.budget_from}: total_tokens {m.counts.total_tokens} x {cfg.budget_from_epochs}"
    if max_tokens and cfg.max_supervised_tokens:
        raise ConfigError("set max_tokens (or budget_from) or max_supervised_tokens, not both")
    if min(max_tokens, cfg.max_supervised_tokens, cfg.max_steps) < 0:
        raise ConfigError("budgets must be >= 0")
    return max_tokens, int(cfg.max_supervised_tokens), int(cfg.max_steps), source


def make_plan(cfg: TrainConfig, manifest: Manifest, world: int, pad_id: int, steps_per_epoch: int,
              order: ReadingOrder | None = None) -> TrainPlan:
    """Budgets, the schedule length and the up-front check that the data can meet the budget. A token
    budget needs the ``order`` the data is read in, to count its steps exactly."""
    max_tokens, max_sup, max_steps, source = resolve_budget(cfg)
    d = cfg.data
    grad_accum, rows_per_step = resolve_batch(cfg, world, manifest.seq_len)
    counts = manifest.counts
    epoch_steps = math.ceil(steps_per_epoch / grad_accum)  # optimizer steps in one pass
    if d.max_epochs > 0:
        have_steps = math.ceil(steps_per_epoch * d.max_epochs / grad_accum)
        short = None
        if max_tokens > counts.total_tokens * d.max_epochs:
            short = f"max_tokens={max_tokens} but the data holds {counts.total_tokens} tokens per epoch"
        elif max_sup > counts.supervised_tokens * d.max_epochs:
            short = (f"max_supervised_tokens={max_sup} but the data holds {counts.supervised_tokens} supervised "
                     "tokens per epoch")
        elif max_steps > have_steps:
            short = f"max_steps={max_steps} but one epoch is {epoch_steps} steps at this batch size"
        if short:
            raise FitrainError(f"the budget cannot be met: {short} and data.max_epochs={d.max_epochs}. "
                               "Raise data.max_epochs (0 = unlimited), lower the budget, or prepare more data")
        if not (max_tokens or max_sup or max_steps):
            max_steps = have_steps  # no budget: train max_epochs full passes
    elif not (max_tokens or max_sup or max_steps):
        raise ConfigError("no budget: set max_tokens, max_supervised_tokens, max_steps, budget_from, "
                          "or data.max_epochs > 0")
    if max_tokens:
        budget = Budget("tokens", max_tokens)
    elif max_sup:
        budget = Budget("supervised_tokens", max_sup)
    else:
        budget = Budget("steps", max_steps)
    total_steps = max_steps
    if budget.unit != "steps":
        if order is None:
            raise ValueError("make_plan: a token budget needs the ReadingOrder of the data")
        exact = order.steps_to(budget.unit, budget.amount, grad_accum, d.max_epochs)
        if exact is None:
            raise FitrainError(f"the budget cannot be met: {budget} is more than data.max_epochs={d.max_epochs} "
                               f"pass(es) over the data hold at this batch size; raise "
                               "data.max_epochs (0 = unlimited), lower the budget, or prepare more data")
        total_steps = min(exact, max_steps) if max_steps else exact
    return TrainPlan(budget=budget, step_cap=max_steps if budget.unit != "steps" else 0,
                     total_steps=max(1, total_steps), grad_accum=grad_accum, max_epochs=d.max_epochs,
                     pad_id=pad_id, optim=cfg.optim, rows_per_step=rows_per_step, log_every=max(1, cfg.log_every),
                     val_every=cfg.val_every if cfg.data.val_path else 0, checkpoint_every=cfg.checkpoint_every,
                     keep_checkpoints=cfg.keep_checkpoints, compile=cfg.compile, budget_source=source)
