"""One optimizer step, :func:`train_step`, in named phases, each a function of plain values that a test can
call alone:

1. :func:`count_and_reduce` -- every rank's non-padding tokens and supervised targets per micro-batch, and
   whether a rank was asked to stop, in one all-gather (torchtitan does the same: count everything first,
   reduce once, then run the micro-batches);
2. :func:`cut_to_budget` -- trim the last step so the run lands exactly on a token budget;
3. :func:`accumulate` -- backward every micro-batch with the exact normalisation
   (:func:`fitrain.train.loss.accumulate_gradients`), reducing gradients on the last one only;
4. :func:`clip_and_step` -- global-norm clipping, the optimizer and the schedule;
5. :func:`log_row` -- the step's typed metrics record (:class:`StepRecord`).

The run's counters are a :class:`Progress`; what the step runs on is a :class:`StepContext`
(fitrain.train.trainer builds both; fitrain/INTERFACES.md shows the loop).
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from fitrain.train.microbatches import StepBatch, allowances, cut_step
from fitrain.train.plan import Budget, TrainPlan

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


def accumulate(ctx: "StepContext", micro: list[dict], counts: StepCounts):
    """Phase 3. Forward and backward every micro-batch on the device (Fabric's precision and backward), the
    gradients reduced across ranks on the last micro-batch only (or, under ``fsdp.accumulate=sharded``,
    reduce-scattered after each: ``ctx.no_sync``); the detached sum of this rank's CE."""
    from fitrain.train.loss import accumulate_gradients

    fabric = ctx.fabric
    return accumulate_gradients(
        ctx.objective, [fabric.to_device(mb) for mb in micro], counts.total_supervised, fabric.world_size,
        backward=fabric.backward, no_sync=ctx.no_sync or (lambda: fabric.no_backward_sync(ctx.objective)))


def clip_and_step(ctx: "StepContext", max_norm: float):
    """Phase 4. Clip to the global gradient norm (returned, unclipped, as a tensor; over all shards when the
    parameters are FSDP2 DTensors), step the optimizer and the schedule, clear the gradients. Under fp16
    AMP ('16-mixed') the precision's scaler unscales the gradients first."""
    ctx.fabric.strategy.precision.unscale_gradients(ctx.optimizer.optimizer)   # a no-op but for fp16
    return step_optimizer(ctx.lm.parameters(), ctx.optimizer, ctx.scheduler, max_norm)


def step_optimizer(parameters: Any, optimizer: Any, scheduler: Any, max_norm: float):
    """Phase 4 on plain values (also for loops outside Fabric: benchmarks/gpu_suite.py): clip ``parameters``'
    gradients to the global norm (returned, unclipped), step ``optimizer`` and ``scheduler``, clear the
    gradients."""
    from fitrain.train.optim import grad_norm_and_clip

    grad_norm = grad_norm_and_clip(parameters, max_norm)
    optimizer.step()
    optimizer.zero_grad(set_to_none=True)
    scheduler.step()
    return grad_norm


@dataclass
class Work:
    """What the model computed on in a step, for its FLOPs under both conventions
    (fitrain.train.flops.FlopsModel.both): tokens, head positions and squared document lengths for
    fitrain's count; rows of ``seq_len`` positions (all ranks) for the published one."""

    tokens: int
    head_positions: int
    sum_sq_lengths: int
    rows: int = 0
    seq_len: int = 0

    def flops(self, model) -> dict:
        """``{convention: FLOPs}`` of this step under ``model`` (a FlopsModel)."""
        return model.both(self.tokens, self.head_positions, self.sum_sq_lengths, self.rows, self.seq_len)


@dataclass
class StepRecord:
    """The metrics of one optimizer step (fitrain.train.metrics.COLUMNS, plus what the hooks need). Values
    that need a device sync (loss, grad_norm) are filled on logged steps only; the throughput fields are
    filled after the step (fitrain.train.hooks)."""

    step: int
    tokens: int
    supervised_tokens: int
    loss: float | None
    lr: float
    grad_norm: float | None
    step_time_s: float
    data_wait_s: float
    step_tokens: int
    epoch: int
    logged: bool
    work: Work
    val_loss: float | None = None
    tokens_per_s: float | None = None
    tokens_per_s_per_gpu: float | None = None
    mfu_fitrain: float | None = None        # fitrain.train.flops.CONVENTIONS
    mfu_published: float | None = None
    elapsed_s: float | None = None

    @property
    def supervised_fraction(self) -> float:
        return self.supervised_tokens / self.tokens if self.tokens else 0.0

    def row(self) -> dict[str, Any]:
        from fitrain.train.metrics import COLUMNS

        return {c: getattr(self, c) for c in COLUMNS}


def log_row(progress: "Progress", loss: float | None, lr: float, grad_norm: Any, step_time_s: float,
            data_wait_s: float, counts: StepCounts, read: StepCounts, epoch: int, logged: bool,
            shape: tuple[int, int] = (0, 0)) -> StepRecord:
    """Phase 5. The step's record. ``counts``: the step as trained (after a budget cut); ``read``: as the
    model ran it (the tokens and documents it computed on, for MFU); ``shape``: (rows over all ranks,
    positions per row) it ran."""
    return StepRecord(step=progress.step, tokens=progress.tokens, supervised_tokens=progress.supervised,
                      loss=loss, lr=lr, grad_norm=float(grad_norm) if logged else None,
                      step_time_s=step_time_s + data_wait_s, data_wait_s=data_wait_s,
                      step_tokens=counts.total_tokens, epoch=epoch, logged=logged,
                      work=Work(read.total_tokens, counts.total_supervised, read.sum_sq_lengths, *shape))


@dataclass
class Progress:
    """The run's counters: what a checkpoint's fitrain.train.checkpoint.TrainState carries forward."""

    step: int = 0
    tokens: int = 0
    supervised: int = 0
    finished: bool = False
    stopped_by_signal: bool = False
    last_loss: float | None = None
    last_val_loss: float | None = None
    loader_state: dict | None = None

    def advance(self, counts: StepCounts, loader_state: dict, final: bool, max_steps: int) -> None:
        self.step += 1
        self.tokens += counts.total_tokens
        self.supervised += counts.total_supervised
        self.loader_state = loader_state
        if final or (max_steps and self.step >= max_steps):
            self.finished = True


@dataclass
class StepContext:
    """What a step runs on: Fabric, the objective as Fabric set it up (DDP-wrapped or FSDP2-sharded), the
    bare HF model (its parameters), the optimizer (as Fabric set it up: its step applies the precision's
    scaler) and the schedule, the plan and the held-out batches."""

    fabric: Any
    objective: Any
    lm: Any
    optimizer: Any
    scheduler: Any
    plan: TrainPlan
    val_batches: Callable[[int, int], list[dict]] | None = None
    no_sync: Callable[[], Any] | None = None    # around all micro-batches but the last (fitrain.train.parallel)
    t_end: float | None = field(default=None, repr=False)    # when the previous step ended (data wait)

    def gather(self, values: list[int]) -> list[list[int]]:
        import torch

        t = torch.tensor(values, dtype=torch.long, device=self.fabric.device)
        if self.fabric.world_size == 1:
            return [t.tolist()]
        return [row.tolist() for row in self.fabric.all_gather(t)]

    def sum(self, x):
        return self.fabric.all_reduce(x.clone(), reduce_op="sum") if self.fabric.world_size > 1 else x


def train_step(ctx: StepContext, batch: StepBatch, progress: Progress, stop: bool) -> StepRecord:
    """One optimizer step over ``batch`` (this rank's micro-batches); advances ``progress`` and returns the
    step's record. ``stop``: a signal asked this rank to stop (every rank learns it in phase 1)."""
    t0 = time.perf_counter()
    wait = (t0 - ctx.t_end) if ctx.t_end is not None else 0.0
    plan, rank = ctx.plan, ctx.fabric.global_rank
    read = count_and_reduce(batch.tokens, batch.supervised, plan.grad_accum, stop, ctx.gather, batch.sum_sq_lengths)
    micro, counts, final = cut_to_budget(batch.micro, read, plan.token_budget, progress.tokens, progress.supervised,
                                         rank, plan.pad_id, ctx.gather)
    lr = ctx.optimizer.param_groups[0]["lr"]
    loss_sum = accumulate(ctx, micro, counts)
    grad_norm = clip_and_step(ctx, plan.optim.clip_grad_norm)
    progress.advance(counts, batch.loader_state, final, plan.max_steps)
    validate = bool(ctx.val_batches is not None and plan.val_every
                    and (progress.step % plan.val_every == 0 or progress.finished))
    # the loss all-reduce and the host syncs happen only on logged steps (the same steps on every rank)
    logged = progress.step % plan.log_every == 0 or progress.finished or counts.stop_requested or validate
    loss = None
    if logged:
        n = counts.total_supervised
        loss = progress.last_loss = float(ctx.sum(loss_sum.to(ctx.fabric.device))) / n if n else float("nan")
    rows = sum(mb["input_ids"].shape[0] for mb in batch.micro) * ctx.fabric.world_size
    record = log_row(progress, loss, lr, grad_norm, time.perf_counter() - t0, wait, counts, read, batch.epoch,
                     logged, (rows, int(batch.micro[0]["input_ids"].shape[1])))
    if validate:
        record.val_loss = progress.last_val_loss = validation_loss(ctx)
    progress.stopped_by_signal = counts.stop_requested and not progress.finished
    return record


def validation_loss(ctx: StepContext) -> float:
    """Mean CE per supervised target over the held-out batches (all ranks take part)."""
    import torch

    lm = ctx.lm
    was_training = lm.training
    lm.eval()
    device = ctx.fabric.device
    total = torch.zeros((), dtype=torch.float64, device=device)
    count = torch.zeros((), dtype=torch.float64, device=device)
    with torch.no_grad():
        for mb in ctx.val_batches(ctx.fabric.global_rank, ctx.fabric.world_size):
            s, n = ctx.objective(ctx.fabric.to_device(mb))
            total += s.double()
            count += n
    lm.train(was_training)
    total, count = ctx.sum(total), ctx.sum(count)
    return float(total / count) if float(count) else float("nan")
