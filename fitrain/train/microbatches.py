"""Optimizer steps as units of data: micro-batches pre-fetched per step, token counting, exact budget cuts,
and the held-out validation batches.

:class:`StepStream` groups the loader's micro-batches into optimizer steps, each carrying the loader state
*after* its micro-batches (so a checkpoint taken after step k resumes at step k+1). :func:`cut_step` trims the last step of a run so that the run's total (or supervised) tokens
land exactly on the budget: targets past the cut lose their labels, and since attention is causal the
tokens after the cut cannot change anything before it -- the step is exactly the step on the kept tokens.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from fitrain.data.loader import IGNORE_INDEX


def count_step(micro: list[dict], pad_id: int) -> tuple[int, int]:
    """(non-padding tokens, supervised targets) of a step's micro-batches on this rank."""
    tokens = sum(int((mb["input_ids"] != pad_id).sum()) for mb in micro)
    supervised = sum(int((mb["labels"] != IGNORE_INDEX).sum()) for mb in micro)
    return tokens, supervised


def sum_sq_document_lengths(batch: dict, pad_id: int) -> int:
    """``sum(l^2)`` over the documents packed in a batch (a document starts where ``position_ids`` is 0;
    padding, its own segment, counts 0): the attention work of the batch, for MFU
    (fitrain.train.model.FlopsModel)."""
    import torch

    pos, ids = batch["position_ids"], batch["input_ids"]
    rows, t = pos.shape
    segment = (pos == 0).long().cumsum(1) + torch.arange(rows, device=pos.device)[:, None] * (t + 1)
    lengths = torch.bincount(segment[ids != pad_id].reshape(-1))
    return int((lengths.long() ** 2).sum())


def allowances(local: list[int], remaining: int) -> list[int]:
    """Split ``remaining`` budget over ranks in rank order: rank r keeps what is left after ranks < r."""
    out, left = [], max(0, remaining)
    for n in local:
        k = min(n, left)
        out.append(k)
        left -= k
    return out


def cut_step(micro: list[dict], keep: int, by: str, pad_id: int) -> tuple[list[dict], int, int]:
    """Keep the first ``keep`` tokens (``by='tokens'``) or supervised targets (``by='supervised'``) of the
    step in reading order (micro-batch, row, position); later targets get :data:`IGNORE_INDEX`. Returns the cut
    micro-batches and the (tokens, supervised targets) kept. Shapes are unchanged, so every rank still runs
    the same number of forwards and backwards (DDP/FSDP stay in lockstep)."""
    import torch

    if by not in ("tokens", "supervised"):
        raise ValueError(f"cut_step: by must be 'tokens' or 'supervised', got {by!r}")
    out, seen_tok, seen_sup = [], 0, 0
    for mb in micro:
        nonpad = mb["input_ids"] != pad_id
        sup = mb["labels"] != IGNORE_INDEX
        unit = (nonpad if by == "tokens" else sup).reshape(-1)
        seen = seen_tok if by == "tokens" else seen_sup
        n = int(unit.sum())
        kept = torch.zeros(unit.numel(), dtype=torch.bool, device=unit.device)
        if seen + n <= keep:
            kept[:] = True
        elif seen < keep:  # the cut falls inside this micro-batch, right after the (keep - seen)-th unit
            idx = int(unit.nonzero()[keep - seen - 1])
            kept[: idx + 1] = True
        kept = kept.reshape(sup.shape)
        labels = torch.where(kept, mb["labels"], torch.full_like(mb["labels"], IGNORE_INDEX))
        seen_tok += int((nonpad & kept).sum())
        seen_sup += int((sup & kept).sum())
        out.append({**mb, "labels": labels})
    return out, seen_tok, seen_sup


@dataclass
class StepBatch:
    """One optimizer step of this rank's data: its micro-batches, their non-padding tokens and supervised
    targets (counted on the host, before the batches move to the device: no device sync in the step), the
    squared document lengths (attention work, for MFU) and the loader state *after* them."""

    micro: list[dict]
    tokens: list[int]
    supervised: list[int]
    sum_sq_lengths: int
    loader_state: dict

    @property
    def epoch(self) -> int:
        return int(self.loader_state.get("epoch", 0))


class StepStream:
    """Iterable of optimizer steps (:class:`StepBatch`).

    Continues across epochs up to ``max_epochs`` passes (0 = unlimited), then ends; a last step with fewer
    micro-batches is still a step (the normalisation is per supervised target, so it is exact). The trainer
    restores the loader before the first ``iter()``.
    """

    def __init__(self, loader: Any, grad_accum: int, max_epochs: int, pad_id: int):
        self.loader, self.grad_accum, self.max_epochs, self.pad_id = loader, grad_accum, max_epochs, pad_id

    def __iter__(self) -> Iterator[StepBatch]:
        remaining = None if self.max_epochs <= 0 else self.max_epochs - self._epochs_started()
        if remaining is not None and remaining <= 0:
            return
        micro: list[dict] = []
        for mb in self.loader.iter_epochs(remaining):
            micro.append(mb)
            if len(micro) == self.grad_accum:
                yield self._item(micro)
                micro = []
        if micro:
            yield self._item(micro)

    def _item(self, micro: list[dict]) -> StepBatch:
        counts = [count_step([mb], self.pad_id) for mb in micro]
        return StepBatch(micro, [c[0] for c in counts], [c[1] for c in counts],
                         sum(sum_sq_document_lengths(mb, self.pad_id) for mb in micro), self.loader.state_dict())

    def _epochs_started(self) -> int:
        """Epochs already begun (a state at the very end of an epoch counts that epoch as done)."""
        return int(self.loader.epoch) + (1 if self.loader.rows_consumed >= self.loader.steps_per_epoch
                                         * self.loader.batch_size else 0)


def validation_batches(val_path: str, micro_batch_size: int, max_rows: int) -> Callable[[int, int], list[dict]]:
    """``(rank, world) -> held-out micro-batches``: every row once, the same number of batches on every rank
    (a rank with fewer real batches gets fillers whose labels carry no loss, so collectives stay in step)."""
    import numpy as np
    import torch

    from fitrain.data.loader import batch_arrays
    from fitrain.data.shards import open_prepared

    data = open_prepared(val_path, "data.val_path")
    data.validate()
    n = data.num_rows if not max_rows else min(max_rows, data.num_rows)
    chunks = [np.arange(i, min(i + micro_batch_size, n)) for i in range(0, n, micro_batch_size)]
    pad_id = data.manifest.pad_token_id

    def make(rank: int, world: int) -> list[dict]:
        out = []
        for j in range(math.ceil(len(chunks) / world)):
            k = j * world + rank
            arrays = batch_arrays(*data.rows(chunks[k] if k < len(chunks) else chunks[0]), pad_id=pad_id)
            batch = {name: torch.from_numpy(np.ascontiguousarray(v)) for name, v in arrays.items()}
            if k >= len(chunks):
                batch["labels"] = torch.full_like(batch["labels"], IGNORE_INDEX)
            out.append(batch)
        return out

    return make
