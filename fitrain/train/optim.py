"""The optimiser side of a step: AdamW with parameter groups, learning-rate schedules, clipping.

Defaults are Meta Lingua's llama_1B settings (fitrain/docs/method.md, "Pre-training"). Knows nothing about
Fabric, Slurm or W&B.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from fitrain.core.checks import FRACTION, above, at_least, check_fields, integer, interval, one_of
from fitrain.core.errors import ConfigError

SCHEDULES = ("cosine", "wsd", "constant", "linear")


@dataclass
class OptimConfig:
    """AdamW + schedule (Meta Lingua's llama_1B settings by default)."""

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

    def __post_init__(self) -> None:
        check_fields(self, lr=above(0), beta1=interval("[0, 1)"), beta2=interval("[0, 1)"), eps=above(0),
                     weight_decay=at_least(0), schedule=one_of(*SCHEDULES), warmup_steps=integer(at_least(0)),
                     min_lr_ratio=FRACTION, decay_fraction=FRACTION, clip_grad_norm=at_least(0))


class LRSchedule:
    """lr multiplier as a function of the optimizer step (a picklable callable for LambdaLR)."""

    def __init__(self, cfg: OptimConfig, total_steps: int):
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


def grad_norm_and_clip(parameters, max_norm: float):
    """Total gradient L2 norm before clipping, as a tensor (no device sync); clips to ``max_norm`` when > 0.

    Under FSDP2 the gradients are DTensor shards: the norm of each shard is reduced over the mesh
    (``full_tensor``), so every rank clips by the same *global* norm (clipping by a rank's own shard norm
    would clip each shard differently). Under fp16 AMP the caller unscales the gradients first
    (fitrain.train.step.clip_and_step)."""
    import torch

    params = [p for p in parameters if p.grad is not None]
    if not params:
        return torch.zeros(())
    total = torch.nn.utils.get_total_norm([p.grad for p in params], 2.0, error_if_nonfinite=False, foreach=True)
    if hasattr(total, "full_tensor"):          # a DTensor (FSDP2): reduce the shards' norms over the mesh
        total = total.full_tensor()
    if max_norm and max_norm > 0:
        torch.nn.utils.clip_grads_with_norm_(params, max_norm, total, foreach=True)
    return total
