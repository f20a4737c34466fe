"""The optimizer step in named phases, each a function of plain values that a test can call alone:

1. :func:`count_and_reduce` -- every rank's non-padding tokens and supervised targets per micro-batch, and
   whether a rank was asked to stop, in one all-gather (torchtitan does the same: count everything first,
   reduce once, then run the micro-batches);
2. :func:`cut_to_budget` -- trim the last step so the run lands exactly on a token budget;
3. backward every micro-batch with the exact normalisation (:func:`fitrain.train.loss.accumulate_gradients`);
4. :func:`clip_and_step` -- global-norm clipping, the optimizer and the schedule;
5. :func:`log_row` -- the metrics row of the step.

fitrain.train.module wires them into Lightning's ``training_step``.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Sequence

from fitrain.train.microbatches import allowances, cut_step
from fitrain.train.plan import Budget

Gather = Callable[[list[int]], list[list[int]]]   # one integer list per rank, in rank order


@dataclass
class StepCounts:
    """Tokens and supervised targets of one optimizer step: ``[rank][micro-batch]``."""

    tokens: list[list[int]]
    supervised: list[list[int]]
    stop_requested: bool = False
    sum_sq_lengths: int = 0      # all ranks: sum of squared document lengths (attention work, for MFU)

    @property
    def total_tokens(self) -> int:
        return sum(map(sum, self.tokens))

    @property
    def total_supervised(self) -> int:
        return sum(map(sum, self.supervised))

    def reading_order(self, unit: str) -> list[int]:
        """Per-micro-batch counts in the loader's global reading order: micro-batch, then rank."""
        per_rank = self.tokens if unit == "tokens" else self.supervised
        return [per_rank[r][m] for m in range(len(per_rank[0])) for r in range(len(per_rank))]


def count_and_reduce(tokens: Sequence[int], supervised: Sequence[int], grad_accum: int, stop: bool,
                     gather: Gather, sum_sq_lengths: int = 0) -> StepCounts:
    """Phase 1. This rank's per-micro-batch counts (a short last step padded with zeros), its stop flag and
    its attention work, gathered from every rank in one collective."""
    pad = [0] * (grad_accum - len(tokens))
    rows = gather(list(tokens) + pad + list(supervised) + pad + [int(stop), int(sum_sq_lengths)])
    a = grad_accum
    return StepCounts(tokens=[r[:a] for r in rows], supervised=[r[a:2 * a] for r in rows],
                      stop_requested=any(r[2 * a] for r in rows), sum_sq_lengths=sum(r[2 * a + 1] for r in rows))


def cut_to_budget(micro: list[dict], counts: StepCounts, budget: Budget | None, tokens_done: int,
                  supervised_done: int, rank: int, pad_id: int, gather: Gather) -> tuple[list[dict], StepCounts, bool]:
    """Phase 2. When this step reaches a token budget, keep exactly what is left of it (handed out in
    reading order: micro-batch, then rank) and return the cut micro-batches, their counts and ``True``
    (the last step). Otherwise the step is returned as it is."""
    if budget is None:
        return micro, counts, False
    done = tokens_done if budget.unit == "tokens" else supervised_done
    total = counts.total_tokens if budget.unit == "tokens" else counts.total_supervised
    if done + total < budget.amount:
        return micro, counts, False
    world = len(counts.tokens)
    keeps = allowances(counts.reading_order(budget.unit), budget.amount - done)
    by = "tokens" if budget.unit == "tokens" else "supervised"
    parts = [cut_step([mb], keeps[m * world + rank], by, pad_id) for m, mb in enumerate(micro)]
    kept = gather([sum(p[1] for p in parts), sum(p[2] for p in parts), 0])
    return ([p[0][0] for p in parts], StepCounts(tokens=[[r[0]] for r in kept], supervised=[[r[1]] for r in kept]),
            True)


def clip_and_step(parameters: Any, optimizer: Any, scheduler: Any, max_norm: float, grad_scale: float = 1.0):
    """Phase 4. Clip to the global gradient norm (returned, unclipped, as a tensor; over all shards when the
    parameters are FSDP2 DTensors), step the optimizer and the schedule, clear the gradients."""
    from fitrain.train.optim import grad_norm_and_clip

    grad_norm = grad_norm_and_clip(parameters, max_norm, grad_scale=grad_scale)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return grad_norm


def log_row(step: int, tokens: int, supervised: int, loss: float | None, lr: float, grad_norm: Any,
            step_time_s: float, data_wait_s: float, counts: StepCounts, read: StepCounts, epoch: int,
            logged: bool) -> dict:
    """Phase 5. The step's metrics row (fitrain.train.metrics.COLUMNS); values that need a device sync are
    filled on logged steps only. ``counts``: the step as trained (after a budget cut); ``read``: as the model
    ran it (the tokens and documents it computed on, for MFU)."""
    return {"step": step, "tokens": tokens, "supervised_tokens": supervised,
            "supervised_fraction": supervised / tokens if tokens else 0.0, "loss": loss, "lr": lr,
            "grad_norm": float(grad_norm) if logged else None, "step_time_s": step_time_s + data_wait_s,
            "data_wait_s": data_wait_s, "step_tokens": counts.total_tokens, "epoch": epoch, "logged": logged,
            "work": {"tokens": read.total_tokens, "head_positions": counts.total_supervised,
                     "sum_sq_lengths": read.sum_sq_lengths}}
