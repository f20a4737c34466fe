"""The training loss: its settings, the shift of the labels, and the exact normalisation of an optimizer
step.

Loss normalisation (fitrain/docs/engineering.md, "Loss normalisation"): the loss of an optimizer step is

    sum(CE over supervised targets, all micro-batches, all data-parallel ranks)
    / (supervised targets of the whole step, all micro-batches, all ranks)

The micro-batches of a step are fetched before the first forward, their supervised targets counted and the
count all-reduced (fitrain.train.step); each micro-batch then back-propagates ``sum_ce * world_size /
global_count`` (the ``world_size`` undoes the mean that DDP/FSDP take over ranks). Gradient accumulation is
therefore owned here, never a framework's gradient accumulation (Lightning's ``accumulate_grad_batches``
averages per micro-batch).

The head and the cross-entropy themselves (chunked for large vocabularies) are fitrain.train.objective.

Knows nothing about Fabric, Slurm or W&B: the caller passes in ``backward``/``no_sync``.
"""
from __future__ import annotations

import contextlib
from dataclasses import dataclass
from typing import Any, Callable, Sequence

from fitrain.core.checks import NON_NEGATIVE, POSITIVE, check_fields, one_of
from fitrain.data.loader import IGNORE_INDEX

LOSS_KINDS = ("auto", "chunked", "plain")


@dataclass
class LossConfig:
    kind: str = "auto"             # auto (chunked from auto_min_vocab) | chunked | plain
    chunk_tokens: int = 1024       # targets per chunk of the chunked head + cross-entropy
    auto_min_vocab: int = 32768    # auto: chunked for vocabularies at least this large

    def __post_init__(self) -> None:
        check_fields(self, kind=one_of(*LOSS_KINDS), chunk_tokens=POSITIVE, auto_min_vocab=NON_NEGATIVE)

    def chunked(self, vocab_size: int) -> bool:
        return self.kind == "chunked" or (self.kind == "auto" and vocab_size >= self.auto_min_vocab)


def supervised_targets(labels) -> int:
    """Targets that carry loss in an HF-aligned label tensor (the loss compares logits[:, :-1], labels[:, 1:])."""
    return int((labels[:, 1:] != IGNORE_INDEX).sum())


def shifted_targets(labels):
    """``[B, T]`` targets aligned with the model's positions: position t predicts ``labels[:, t + 1]``; the
    last position of a row predicts nothing. Shifting the (small, integer) labels instead of the logits
    avoids copying the logits."""
    import torch.nn.functional as F

    return F.pad(labels[:, 1:], (0, 1), value=IGNORE_INDEX)


def sum_cross_entropy(logits, labels):
    """Sum (not mean) of CE over supervised targets of full ``[B, T, V]`` logits, in fp32, and the number
    of those targets (for evaluation code that has logits already)."""
    import torch.nn.functional as F

    targets = shifted_targets(labels).reshape(-1)
    loss = F.cross_entropy(logits.reshape(-1, logits.size(-1)).float(), targets, ignore_index=IGNORE_INDEX,
                           reduction="sum")
    return loss, int((targets != IGNORE_INDEX).sum())


def accumulate_gradients(loss_of: Callable[[dict], Any], micro_batches: Sequence[dict], global_count: int,
                         world_size: int = 1, backward: Callable[[Any], None] | None = None,
                         no_sync: Callable[[], Any] | None = None):
    """Back-propagate one optimizer step's micro-batches with the exact normalisation; returns the
    (detached) sum of CE over this rank's supervised targets.

    ``loss_of(batch) -> (sum of CE over its supervised targets, count)`` (e.g.
    fitrain.train.objective.CausalLMLoss);
    ``backward(loss)`` defaults to ``loss.backward()``; ``no_sync()`` is a context manager that skips the
    gradient reduction (used for all but the last micro-batch).
    """
    import torch

    backward = backward or (lambda loss: loss.backward())
    scale = world_size / global_count if global_count > 0 else 0.0
    total = None
    n = len(micro_batches)
    for i, mb in enumerate(micro_batches):
        ctx = no_sync() if (no_sync is not None and i < n - 1) else contextlib.nullcontext()
        with ctx:
            loss_sum, _ = loss_of(mb)
            if global_count > 0:
                backward(loss_sum * scale)
        part = loss_sum.detach().double()
        total = part if total is None else total + part
    return total if total is not None else torch.zeros((), dtype=torch.float64)
