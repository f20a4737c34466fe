"""Packing tokenized items into fixed ``seq_len`` rows (streaming best-fit-decreasing) and into shards.

Items (a pair or a document, as ``(ids, mask)`` from fitrain.formatting) are packed **whole** when they
fit: items are buffered ``window`` at a time, sorted longest first, and each goes into the open row with
the least room that still fits it (best fit), else into a new row. Rows that are nearly full after a window
are emitted; the ``max_open_rows`` emptiest rows stay open for the next window. Memory stays bounded and the
result depends only on the input order, so prepare is deterministic.

Items longer than ``seq_len`` follow the ``overlong`` policy, counted in :attr:`Packer.overlong`:

* ``truncate`` -- keep the first ``seq_len`` tokens (an item left with no supervised target is dropped
  and counted as ``truncated_to_nothing``);
* ``split`` -- raw documents only: cut into ``seq_len`` pieces, each its own segment (the first token of a
  continuation piece is not a target: its context is in another row);
* ``drop`` -- skip the item.

In a row, item ``k`` gets segment id ``k`` (1-based) and the rest is padding (segment 0). The mask of the
first token of every item is 0 (formatting guarantees it; split pieces get it here), so the label that
would predict across a boundary is never a target.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from fitrain.errors import FitrainError
from fitrain.shards import MAX_SEGMENTS, shard_file, shard_stats, token_dtype, write_shard

POLICIES = ("truncate", "split", "drop")
Item = tuple[np.ndarray, np.ndarray]


@dataclass
class PackConfig:
    seq_len: int = 2048
    overlong: str = "auto"       # truncate | split | drop; auto = split for documents, truncate for pairs
    window: int = 2000           # items buffered per best-fit-decreasing round
    max_open_rows: int = 64      # partly filled rows carried into the next round
    rows_per_shard: int = 0      # 0 = about 2**24 tokens per shard

    def policy(self, kind: str) -> str:
        p = self.overlong if self.overlong != "auto" else ("split" if kind == "documents" else "truncate")
        if p not in POLICIES:
            raise FitrainError(f"pack.overlong must be one of {('auto',) + POLICIES}, got '{self.overlong}'")
        if p == "split" and kind != "documents":
            raise FitrainError("pack.overlong=split is for raw documents only; pairs are never split across "
                               "rows (use truncate or drop)")
        return p

    def validate(self) -> None:
        if self.seq_len < 2:
            raise FitrainError(f"pack.seq_len must be >= 2, got {self.seq_len}")
        if self.window < 1 or self.max_open_rows < 0 or self.rows_per_shard < 0:
            raise FitrainError("pack.window must be >= 1, pack.max_open_rows and pack.rows_per_shard >= 0")

    def shard_rows(self) -> int:
        return self.rows_per_shard or max(1, (1 << 24) // self.seq_len)


class _Row:
    __slots__ = ("id", "items", "used")

    def __init__(self, rid: int):
        self.id, self.items, self.used = rid, [], 0


class Packer:
    """Streaming best-fit-decreasing packer; calls ``emit(items)`` once per finished row."""

    def __init__(self, seq_len: int, policy: str, emit: Callable[[list[Item]], None], window: int = 2000,
                 max_open_rows: int = 64):
        self.seq_len, self.policy, self.emit = seq_len, policy, emit
        self.window, self.max_open = window, max_open_rows
        self.buffer: list[Item] = []
        self.open: dict[int, _Row] = {}
        self.free: list[tuple[int, int]] = []  # sorted (room, row id) of open rows
        self.next_id = 0
        self.overlong = {"policy": policy, "truncated": 0, "truncated_tokens": 0, "truncated_to_nothing": 0,
                         "split": 0, "split_pieces": 0, "dropped": 0, "dropped_tokens": 0}

    def add(self, ids: np.ndarray, mask: np.ndarray) -> bool:
        """Queue one item; returns False when the overlong policy dropped it (counted)."""
        n, L = len(ids), self.seq_len
        if n > L:
            if self.policy == "drop":
                self.overlong["dropped"] += 1
                self.overlong["dropped_tokens"] += n
                return False
            if self.policy == "truncate":
                ids, mask = ids[:L], mask[:L]
                if not mask.any():
                    self.overlong["truncated_to_nothing"] += 1
                    self.overlong["dropped_tokens"] += n
                    return False
                self.overlong["truncated"] += 1
                self.overlong["truncated_tokens"] += n - L
            else:
                self.overlong["split"] += 1
                for start in range(0, n, L):
                    piece_mask = mask[start:start + L].copy()
                    piece_mask[0] = 0
                    self.overlong["split_pieces"] += 1
                    self._queue(ids[start:start + L], piece_mask)
                return True
        self._queue(ids, mask)
        return True

    def _queue(self, ids: np.ndarray, mask: np.ndarray) -> None:
        self.buffer.append((ids, mask))
        if len(self.buffer) >= self.window:
            self._pack_buffer()
            self._close(keep=self.max_open)

    def _pack_buffer(self) -> None:
        lengths = np.fromiter((len(i) for i, _ in self.buffer), dtype=np.int64, count=len(self.buffer))
        for k in np.argsort(-lengths, kind="stable").tolist():
            item, n = self.buffer[k], int(lengths[k])
            pos = bisect.bisect_left(self.free, (n, -1))
            if pos < len(self.free):
                room, rid = self.free.pop(pos)
                row = self.open[rid]
            else:
                row = _Row(self.next_id)
                self.next_id += 1
                self.open[row.id] = row
                room = self.seq_len
            row.items.append(item)
            row.used += n
            if room - n > 0:
                bisect.insort(self.free, (room - n, row.id))
            else:
                self.emit(self.open.pop(row.id).items)
        self.buffer = []

    def _close(self, keep: int) -> None:
        """Emit all open rows except the ``keep`` emptiest ones, in row-creation order."""
        keep_ids = {rid for _, rid in self.free[len(self.free) - keep:]} if keep else set()
        for rid in sorted(self.open):
            if rid not in keep_ids:
                self.emit(self.open.pop(rid).items)
        self.free = [(r, i) for r, i in self.free if i in keep_ids]

    def flush(self) -> None:
        if self.buffer:
            self._pack_buffer()
        self._close(keep=0)


class ShardWriter:
    """Collects rows into ``[rows_per_shard, seq_len]`` arrays and writes each full shard atomically.

    ``done`` maps shard index -> manifest entry of shards a previous (killed) run already wrote; a shard
    whose freshly computed content hash matches is not rewritten (its files are byte-identical).
    """

    def __init__(self, out_dir: Path, seq_len: int, vocab_size: int, rows_per_shard: int,
                 done: dict[int, dict] | None = None, on_shard: Callable[[int, dict], None] | None = None):
        self.out, self.seq_len, self.rows_per_shard = Path(out_dir), seq_len, rows_per_shard
        self.dtype = token_dtype(vocab_size)
        self.vocab_size = vocab_size
        self.done = done or {}
        self.on_shard = on_shard
        self.shards: list[dict] = []
        self.reused = 0
        self._new_buffers()

    def _new_buffers(self) -> None:
        shape = (self.rows_per_shard, self.seq_len)
        self.tokens = np.zeros(shape, dtype=self.dtype)
        self.mask = np.zeros(shape, dtype=np.uint8)
        self.seg = np.zeros(shape, dtype=np.uint16)
        self.n = 0

    def add_row(self, items: list[Item]) -> None:
        if len(items) > MAX_SEGMENTS:
            raise FitrainError(f"a row would hold {len(items)} segments; the seg array holds at most {MAX_SEGMENTS}")
        r, pos = self.n, 0
        for k, (ids, mask) in enumerate(items, 1):
            end = pos + len(ids)
            if ids.size and int(ids.max()) >= self.vocab_size:
                raise FitrainError(f"token id {int(ids.max())} is outside the vocabulary ({self.vocab_size})")
            self.tokens[r, pos:end] = ids
            self.mask[r, pos:end] = mask
            self.seg[r, pos:end] = k
            pos = end
        self.n += 1
        if self.n == self.rows_per_shard:
            self._write()

    def _write(self) -> None:
        i = len(self.shards)
        arrays = (self.tokens[: self.n], self.mask[: self.n], self.seg[: self.n])
        stats = shard_stats(*arrays)
        prev = self.done.get(i)
        if prev and prev.get("sha256") == stats["sha256"] and all(
                shard_file(self.out, i, p).is_file() for p in ("tokens", "mask", "seg")):
            entry = prev
            self.reused += 1
        else:
            entry = write_shard(self.out, i, *arrays, stats=stats)
        self.shards.append(entry)
        if self.on_shard:
            self.on_shard(i, entry)
        self._new_buffers()

    def close(self) -> list[dict]:
        if self.n:
            self._write()
        return self.shards
