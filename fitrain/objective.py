"""The training objective and the optimisation step: exact loss normalisation, AdamW, schedules, clipping.

Loss normalisation (engineering notes, point 1): the loss of an optimizer step is

    sum(CE over supervised targets, all micro-batches, all data-parallel ranks)
    / (supervised targets of the whole step, all micro-batches, all ranks)

The micro-batches of a step are fetched before the first forward, their supervised targets counted and the
count all-reduced; each micro-batch then back-propagates ``sum_ce * world_size / global_count`` (the
``world_size`` undoes the mean that DDP/FSDP take over ranks). Gradient accumulation is therefore owned here,
never Lightning's ``accumulate_grad_batches`` (which averages per micro-batch).

This module knows nothing about Lightning, Slurm or W&B: the trainer passes in ``backward``/``no_sync``.
"""
from __future__ import annotations

import contextlib
import math
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from fitrain.errors import ConfigError

IGNORE = -100
SCHEDULES = ("cosine", "wsd", "constant", "linear")


@dataclass
class OptimConfig:
    """AdamW + schedule. Defaults are Meta Lingua's llama_1B settings (method.md)."""

    lr: float = 3e-3
    beta1: float = 0.9
    beta2: float = 0.95
    eps: float = 1e-8
    weight_decay: float = 0.033
    decay_norms_and_biases: bool = False   # weight decay on RMSNorm weights and biases
    decay_embeddings: bool = False         # weight decay on the token embedding / output head
    schedule: str = "cosine"               # cosine | wsd (warmup-stable-decay) | linear | constant
    warmup_steps: int = 5000
    min_lr_ratio: float = 1e-6             # final lr = lr * min_lr_ratio
    decay_fraction: float = 0.2            # wsd: the last fraction of steps that decays (linearly)
    clip_grad_norm: float = 1.0            # 0 = no clipping (the norm is still logged)
    fused: bool = False                    # torch's fused AdamW (GPU)


class LRSchedule:
    """lr multiplier as a function of the optimizer step (a picklable callable for LambdaLR)."""

    def __init__(self, cfg: OptimConfig, total_steps: int):
        if cfg.schedule not in SCHEDULES:
            raise ConfigError(f"optim.schedule must be one of {SCHEDULES}, got '{cfg.schedule}'")
        if total_steps < 1:
            raise ConfigError(f"the schedule needs at least one step, got total_steps={total_steps}")
        self.schedule, self.total = cfg.schedule, int(total_steps)
        self.warmup = min(int(cfg.warmup_steps), self.total)
        self.floor, self.decay_fraction = float(cfg.min_lr_ratio), float(cfg.decay_fraction)

    def __call__(self, step: int) -> float:
        if step < self.warmup:
            return (step + 1) / self.warmup
        if self.schedule == "constant":
            return 1.0
        span = max(1, self.total - 1 - self.warmup)  # the last step reaches the floor
        if self.schedule == "wsd":
            decay_start = self.total - max(1, int(round(self.decay_fraction * self.total)))
            decay_start = max(decay_start, self.warmup)
            if step < decay_start:
                return 1.0
            frac = min(1.0, (step - decay_start) / max(1, self.total - 1 - decay_start))
            return 1.0 - (1.0 - self.floor) * frac
        frac = min(1.0, (step - self.warmup) / span)
        if self.schedule == "linear":
            return 1.0 - (1.0 - self.floor) * frac
        return self.floor + (1.0 - self.floor) * 0.5 * (1.0 + math.cos(math.pi * frac))


def param_groups(model, cfg: OptimConfig) -> list[dict]:
    """Two AdamW groups: decayed matrices, and (by default) undecayed norms, biases and embeddings."""
    emb_ids = {id(model.get_input_embeddings().weight)}
    out = model.get_output_embeddings()
    if out is not None:
        emb_ids.add(id(out.weight))
    decay, no_decay, seen = [], [], set()
    for name, p in model.named_parameters():
        if not p.requires_grad or id(p) in seen:
            continue
        seen.add(id(p))
        is_emb = id(p) in emb_ids
        is_norm_or_bias = p.ndim < 2 or name.endswith(".bias") or "norm" in name.lower()
        if (is_emb and not cfg.decay_embeddings) or (is_norm_or_bias and not cfg.decay_norms_and_biases):
            no_decay.append(p)
        else:
            decay.append(p)
    return [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def build_optimizer(model, cfg: OptimConfig, total_steps: int):
    """(AdamW, LambdaLR) for ``total_steps`` optimizer steps."""
    import torch

    kwargs: dict[str, Any] = {"fused": True} if cfg.fused else {}
    opt = torch.optim.AdamW(param_groups(model, cfg), lr=cfg.lr, betas=(cfg.beta1, cfg.beta2), eps=cfg.eps,
                            **kwargs)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, LRSchedule(cfg, total_steps))
    return opt, sched


# --------------------------------------------------------------------------------------------- the loss
def supervised_targets(labels) -> int:
    """Targets that carry loss in an HF-aligned label tensor (the loss compares logits[:, :-1], labels[:, 1:])."""
    return int((labels[:, 1:] != IGNORE).sum())


def sum_cross_entropy(logits, labels):
    """Sum (not mean) of CE over supervised targets, in fp32, and the number of those targets."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    shift_labels = labels[:, 1:].reshape(-1)
    loss = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE, reduction="sum")
    return loss, int((shift_labels != IGNORE).sum())


def accumulate_gradients(forward: Callable[[dict], Any], micro_batches: Sequence[dict], global_count: int,
                         world_size: int = 1, backward: Callable[[Any], None] | None = None,
                         no_sync: Callable[[], Any] | None = None):
    """Back-propagate one optimizer step's micro-batches with the exact normalisation; returns the
    (detached) sum of CE over this rank's supervised targets.

    ``forward(batch) -> logits``; ``backward(loss)`` defaults to ``loss.backward()``; ``no_sync()`` is a
    context manager that skips the gradient all-reduce (used for all but the last micro-batch).
    """
    import torch

    backward = backward or (lambda loss: loss.backward())
    scale = world_size / global_count if global_count > 0 else 0.0
    total = None
    n = len(micro_batches)
    for i, mb in enumerate(micro_batches):
        ctx = no_sync() if (no_sync is not None and i < n - 1) else contextlib.nullcontext()
        with ctx:
            loss_sum, _ = sum_cross_entropy(forward(mb), mb["labels"])
            if global_count > 0:
                backward(loss_sum * scale)
        part = loss_sum.detach().double()
        total = part if total is None else total + part
    return total if total is not None else torch.zeros((), dtype=torch.float64)


def grad_norm_and_clip(parameters, max_norm: float, module=None, grad_scale: float = 1.0):
    """Total gradient L2 norm before clipping, as a tensor (no device sync); clips to ``max_norm`` when > 0.
    Under FSDP pass the wrapped ``module``: its ``clip_grad_norm_`` reduces over shards.

    ``grad_scale``: the AMP loss scale the gradients still carry (fp16 '16-mixed' under manual optimisation:
    Lightning unscales only inside ``optimizer.step()``); the limit and the returned norm are in unscaled
    units."""
    import torch

    limit = max_norm * grad_scale if max_norm and max_norm > 0 else float("inf")
    if module is not None and hasattr(module, "clip_grad_norm_"):
        return module.clip_grad_norm_(limit) / grad_scale
    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    return torch.nn.utils.clip_grad_norm_(params, limit) / grad_scale
