"""The training loss with the exact normalisation of an optimizer step.

Loss normalisation (fitrain/docs/engineering.md, "Loss normalisation"): the loss of an optimizer step is

    sum(CE over supervised targets, all micro-batches, all data-parallel ranks)
    / (supervised targets of the whole step, all micro-batches, all ranks)

The micro-batches of a step are fetched before the first forward, their supervised targets counted and the
count all-reduced (fitrain.train.step); each micro-batch then back-propagates ``sum_ce * world_size /
global_count`` (the ``world_size`` undoes the mean that DDP/FSDP take over ranks). Gradient accumulation is
therefore owned here, never Lightning's ``accumulate_grad_batches`` (which averages per micro-batch).

Knows nothing about Lightning, Slurm or W&B: the caller passes in ``backward``/``no_sync``.
"""
from __future__ import annotations

import contextlib
from typing import Any, Callable, Sequence

from fitrain.data.loader import IGNORE_INDEX


def supervised_targets(labels) -> int:
    """Targets that carry loss in an HF-aligned label tensor (the loss compares logits[:, :-1], labels[:, 1:])."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def sum_cross_entropy(logits, labels):
    """Sum (not mean) of CE over supervised targets, in fp32, and the number of those targets."""
    import torch.nn.functional as F

    shift_logits = logits[:, :-1].reshape(-1, logits.size(-1)).float()
    shift_labels = labels[:, 1:].reshape(-1)
    loss = F.cross_entropy(shift_logits, shift_labels, ignore_index=IGNORE_INDEX, reduction="sum")
    return loss, int((shift_labels != IGNORE_INDEX).sum())


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
