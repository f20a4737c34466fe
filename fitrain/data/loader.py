"""``PackedLoader``: the deterministic, resumable, distributed-aware training loader over prepared shards.

Batches follow fitrain/INTERFACES.md ("Training batches"): dicts of int64 torch tensors ``[B, T]`` --
``input_ids``; ``labels`` (HF-aligned; :data:`IGNORE_INDEX` off the mask, on padding and at the first token of every
segment, so nothing is predicted across a document boundary); ``position_ids`` restarting at 0 at every
segment start (trailing padding forms its own segment).

**Order.** Epoch ``e`` visits the rows in ``permutation(seed, e)`` (or in file order with
``shuffle=False``). An optimizer step reads the next ``global batch`` = ``world_size * batch_size *
grad_accum`` rows of that order; its micro-step ``m`` takes the ``m``-th ``world_size * batch_size`` of them
and rank ``r`` the ``r``-th block of ``batch_size`` of those, so the ranks' rows are disjoint and their union
over an epoch is every row exactly once -- when ``rows`` divides by the global batch. The **remainder**
otherwise is applied per *optimizer step* (the global batch), never per micro-step, so the rows of every
step depend only on the data, the seed and the global batch, not on how it is split into micro-batches and
ranks (README, "Global batch"):

* ``wrap`` (default): the epoch order is extended cyclically with its own first rows until it divides by the
  global batch, so every row is seen at least once per epoch and ``wrapped_rows`` rows twice;
* ``drop``: the last ``dropped_rows`` rows of the epoch order are skipped (a different set each epoch).

Both numbers are in :meth:`PackedLoader.epoch_info` and logged once; nothing is dropped or duplicated
silently.

**State.** :meth:`state_dict` is O(1): ``{fingerprint, seed, epoch, rows_consumed, world_size,
batch_size, grad_accum, shuffle, remainder}``. ``rows_consumed`` counts rows of batches already *handed to the
consumer* (not ones prefetched by DataLoader workers), so a restore continues with exactly the batch an
uninterrupted run would give next, with or without workers. Loading a state made from other data (a
different fingerprint) raises FitrainError; so does using an iterator created before the state was
loaded (the classic silent-replay trap). A state saved at an optimizer-step boundary loads under another split
of the same global batch (ranks, micro-batch size, grad_accum) and continues at the same place of the epoch's
order; mid-epoch, another global batch, seed, shuffle or remainder is refused.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Iterator

import numpy as np

from fitrain.core.errors import FitrainError
from fitrain.data.shards import PreparedData, open_prepared

log = logging.getLogger(__name__)

REMAINDERS = ("wrap", "drop")
SPLIT = ("world_size", "batch_size", "grad_accum")   # how a global batch is split: a state may change these
STATE_VERSION = 1
IGNORE_INDEX = -100
"""The label of a position that carries no loss (PyTorch's cross-entropy default; defined once, here, where
labels are made)."""


def batch_arrays(tokens: np.ndarray, mask: np.ndarray, seg: np.ndarray,
                 pad_id: int | None = None) -> dict[str, np.ndarray]:
    """Shard rows -> ``input_ids``, ``labels``, ``position_ids`` (int64 numpy arrays, [B, T]).

    Shards hold 0 at padding positions (EOS in fitrain's tokenizers); with ``pad_id`` those positions get
    the pad id, which is how the trainer tells padding from text when it counts tokens."""
    tokens = tokens.astype(np.int64, copy=False)
    if pad_id is not None:
        tokens = np.where(seg == 0, np.int64(pad_id), tokens)
    b, t = tokens.shape
    starts = np.ones((b, t), dtype=bool)
    starts[:, 1:] = seg[:, 1:] != seg[:, :-1]
    idx = np.broadcast_to(np.arange(t, dtype=np.int64), (b, t))
    last_start = np.maximum.accumulate(np.where(starts, idx, 0), axis=1)
    labels = np.where((mask != 0) & (seg != 0) & ~starts, tokens, IGNORE_INDEX)
    return {"input_ids": tokens, "labels": labels, "position_ids": idx - last_start}


def _dist_rank_world() -> tuple[int, int]:
    try:
        import torch.distributed as dist

        if dist.is_available() and dist.is_initialized():
            return dist.get_rank(), dist.get_world_size()
    except ImportError:  # pragma: no cover
        pass
    return int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1))


class _EpochOrder:
    """The row order of one epoch for all ranks (computed once per epoch and process)."""

    def __init__(self, num_rows: int, seed: int, epoch: int, per_step: int, shuffle: bool, remainder: str):
        # per_step: the global batch (rows per optimizer step): the remainder is applied to whole steps
        order = (np.random.default_rng([seed & 0xFFFFFFFF, epoch]).permutation(num_rows) if shuffle
                 else np.arange(num_rows, dtype=np.int64))
        if remainder == "drop":
            self.steps = num_rows // per_step
        else:
            self.steps = -(-num_rows // per_step)
        self.order = np.resize(order, self.steps * per_step)  # wrap: cyclic extension; drop: truncation
        self.epoch = epoch


class _StepDataset:
    """Map-style dataset: item ``(epoch, step)`` is this rank's batch of that step (torch Dataset API)."""

    def __init__(self, data: PreparedData, seed: int, rank: int, world_size: int, batch_size: int,
                 shuffle: bool, remainder: str, grad_accum: int = 1):
        self.data, self.seed, self.rank, self.world = data, seed, rank, world_size
        self.batch, self.shuffle, self.remainder, self.accum = batch_size, shuffle, remainder, grad_accum
        self._order: _EpochOrder | None = None

    def order(self, epoch: int) -> _EpochOrder:
        if self._order is None or self._order.epoch != epoch:
            self._order = _EpochOrder(self.data.num_rows, self.seed, epoch, self.world * self.batch * self.accum,
                                      self.shuffle, self.remainder)
        return self._order

    def row_indices(self, epoch: int, step: int) -> np.ndarray:
        """This rank's rows of micro-step ``step`` of ``epoch``."""
        start = step * self.world * self.batch + self.rank * self.batch
        return self.order(epoch).order[start:start + self.batch]

    def __getitem__(self, key: tuple[int, int]) -> dict:
        import torch

        epoch, step = key
        arrays = batch_arrays(*self.data.rows(self.row_indices(epoch, step)), pad_id=self.data.manifest.pad_token_id)
        return {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in arrays.items()}

    def __getstate__(self) -> dict:
        d = dict(self.__dict__)
        d["_order"] = None
        return d


class PackedLoader:
    """Iterate a prepared directory in batches of ``batch_size`` rows for this data-parallel rank.

    ``iter(loader)`` yields the rest of the current epoch, then moves the state to the next epoch;
    :meth:`iter_epochs` chains epochs. ``len(loader)`` is the number of steps in a full epoch.
    """

    def __init__(self, path: Any, batch_size: int, seed: int = 0, rank: int | None = None,
                 world_size: int | None = None, shuffle: bool = True, remainder: str = "wrap",
                 num_workers: int = 0, prefetch_factor: int = 2, pin_memory: bool = False, grad_accum: int = 1):
        if batch_size < 1 or grad_accum < 1:
            raise FitrainError(f"batch_size and grad_accum must be >= 1, got {batch_size} and {grad_accum}")
        if remainder not in REMAINDERS:
            raise FitrainError(f"remainder must be one of {REMAINDERS}, got '{remainder}'")
        if rank is None or world_size is None:
            r, w = _dist_rank_world()
            rank = r if rank is None else rank
            world_size = w if world_size is None else world_size
        if not 0 <= rank < world_size:
            raise FitrainError(f"rank {rank} is outside world_size {world_size}")
        self.data = path if isinstance(path, PreparedData) else open_prepared(path)
        self.data.validate()
        n, per_step = self.data.num_rows, world_size * batch_size * grad_accum
        if n == 0:
            raise FitrainError(f"prepared data {self.data.directory} has no rows")
        if remainder == "drop" and n < per_step:
            raise FitrainError(f"{n} rows is less than one global batch ({world_size} ranks x {batch_size} x "
                               f"{grad_accum} micro-batches); use a smaller global batch or remainder=wrap")
        self.batch_size, self.seed, self.rank, self.world_size = batch_size, seed, rank, world_size
        self.grad_accum = grad_accum
        self.shuffle, self.remainder = shuffle, remainder
        self.num_workers, self.prefetch_factor, self.pin_memory = num_workers, prefetch_factor, pin_memory
        self.dataset = _StepDataset(self.data, seed, rank, world_size, batch_size, shuffle, remainder, grad_accum)
        self.epoch = 0
        self.rows_consumed = 0
        self._generation = 0
        info = self.epoch_info()
        if info["wrapped_rows"] or info["dropped_rows"]:
            (log.warning if info["dropped_rows"] else log.info)("PackedLoader: %d rows do not divide by the global batch of %d rows; remainder=%s: %d rows %s per epoch",
                     n, per_step, remainder, info["wrapped_rows"] or info["dropped_rows"],
                     "repeated" if remainder == "wrap" else "skipped")

    # ------------------------------------------------------------------------------------------ facts
    @property
    def fingerprint(self) -> str:
        return self.data.fingerprint

    @property
    def global_batch(self) -> int:
        """Rows per optimizer step over all ranks: ``world_size * batch_size * grad_accum``."""
        return self.world_size * self.batch_size * self.grad_accum

    @property
    def steps_per_epoch(self) -> int:
        """Micro-steps in one epoch: whole optimizer steps (the remainder applied per global batch)."""
        n, per_step = self.data.num_rows, self.global_batch
        return (n // per_step if self.remainder == "drop" else -(-n // per_step)) * self.grad_accum

    def __len__(self) -> int:
        return self.steps_per_epoch

    def epoch_order(self, epoch: int) -> np.ndarray:
        """The global row order of ``epoch`` for all ranks: micro-step ``s`` reads rows ``[s * W * B, (s + 1) * W
        * B)`` of it, rank ``r`` the ``r``-th block of ``B`` (wrapped or dropped to whole optimizer steps of
        ``W * B * grad_accum`` rows by ``remainder``)."""
        return self.dataset.order(epoch).order

    def epoch_info(self) -> dict:
        n, steps = self.data.num_rows, self.steps_per_epoch
        used = steps * self.world_size * self.batch_size
        return {"rows": n, "steps_per_epoch": steps, "rows_per_epoch": used, "global_batch_rows": self.global_batch,
                "tokens_per_step": self.world_size * self.batch_size * self.data.seq_len,
                "wrapped_rows": max(0, used - n), "dropped_rows": max(0, n - used)}

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict:
        return {"version": STATE_VERSION, "fingerprint": self.fingerprint, "seed": self.seed, "epoch": self.epoch,
                "rows_consumed": self.rows_consumed, "world_size": self.world_size,
                "batch_size": self.batch_size, "grad_accum": self.grad_accum, "shuffle": self.shuffle,
                "remainder": self.remainder}

    def load_state_dict(self, state: dict) -> None:
        if state.get("fingerprint") != self.fingerprint:
            raise FitrainError(f"cannot resume: the loader state was saved for data with fingerprint "
                               f"{state.get('fingerprint')}, but {self.data.directory} has {self.fingerprint} "
                               "(different prepared data); resume with the same prepared directory")
        mine = self.state_dict()
        rows = int(state["rows_consumed"])
        # a state from before grad_accum was recorded has none: its micro-step positions are the same
        changed = [k for k in ("seed", "world_size", "batch_size", "grad_accum", "shuffle", "remainder")
                   if (k in state or k != "grad_accum") and state.get(k) != mine[k]]
        resplit = self._resplit(state, rows) if changed and rows else None
        if resplit is not None:   # the same global batch split otherwise: the same place in the epoch's order
            changed, rows = [k for k in changed if k not in SPLIT], resplit
        if changed and rows:
            raise FitrainError(f"cannot resume mid-epoch with a different {', '.join(changed)} "
                               f"(saved {[state.get(k) for k in changed]}, now {[mine[k] for k in changed]})")
        if "seed" in changed:
            raise FitrainError(f"cannot resume with a different seed (saved {state.get('seed')}, now {self.seed})")
        if rows % self.batch_size:
            raise FitrainError(f"loader state rows_consumed={rows} is not a multiple of batch_size {self.batch_size}")
        self.epoch, self.rows_consumed = int(state["epoch"]), rows
        self._generation += 1

    def _resplit(self, state: dict, rows: int) -> int | None:
        """This rank's ``rows_consumed`` for a state saved at an optimizer-step boundary by another split of
        the same global batch (other ranks, micro-batch size, grad_accum: a requeue on another cluster shape),
        else None. The epoch's order depends only on the global batch, so the position is the same."""
        if not all(isinstance(state.get(k), int) for k in SPLIT):
            return None
        global_batch = state["world_size"] * state["batch_size"] * state["grad_accum"]
        done = rows * state["world_size"]                 # rows of the epoch's order read by all ranks
        if global_batch != self.global_batch or done % global_batch:
            return None
        return done // self.world_size

    # ------------------------------------------------------------------------------------------ iteration
    def __iter__(self) -> Iterator[dict]:
        return self._iterate(self._generation)

    def iter_epochs(self, num_epochs: int | None = None) -> Iterator[dict]:
        """Batches across epochs (``None``: forever), continuing from the current state."""
        done = 0
        while num_epochs is None or done < num_epochs:
            yield from self
            done += 1

    def _check(self, generation: int) -> None:
        if generation != self._generation:
            raise FitrainError("this PackedLoader iterator was created before load_state_dict(); "
                               "create a new iterator after restoring the state")

    def _iterate(self, generation: int) -> Iterator[dict]:
        steps = self.steps_per_epoch
        if self.rows_consumed >= steps * self.batch_size:  # the saved state sat at the end of an epoch
            self.epoch, self.rows_consumed = self.epoch + 1, 0
        epoch, start = self.epoch, self.rows_consumed // self.batch_size
        for step, batch in enumerate(self._batches(epoch, start, steps), start):
            self._check(generation)
            self.rows_consumed = (step + 1) * self.batch_size  # counted when handed over, not when prefetched
            yield batch
        self._check(generation)
        self.epoch, self.rows_consumed = epoch + 1, 0

    def _batches(self, epoch: int, start: int, steps: int) -> Iterator[dict]:
        keys = [(epoch, s) for s in range(start, steps)]
        if self.num_workers <= 0:
            for k in keys:
                yield self.dataset[k]
            return
        from torch.utils.data import DataLoader

        try:
            yield from DataLoader(self.dataset, batch_size=None, sampler=keys, num_workers=self.num_workers,
                                  prefetch_factor=self.prefetch_factor, pin_memory=self.pin_memory,
                                  persistent_workers=False)
        except FitrainError as e:  # raised in a worker: torch re-raises it with the worker's traceback as text
            raise FitrainError(_worker_message(str(e))) from None


def _worker_message(text: str) -> str:
    """The message of an error a loader worker raised, without the traceback torch wraps it in (its last line
    is ``fitrain.core.errors.FitrainError: <message>``)."""
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if len(lines) < 2 or not lines[0].startswith("Caught "):
        return text
    last = lines[-1]
    return last.split(": ", 1)[1] if last.split(": ", 1)[0].endswith("Error") else last
