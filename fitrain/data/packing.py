"""Packing tokenized items into fixed ``seq_len`` rows (streaming best-fit-decreasing) and into shards.

Items (a pair or a document, as ``(ids, mask)`` from fitrain.data.formatting) are packed **whole** when they
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
import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from fitrain.core.checks import NON_NEGATIVE, POSITIVE, check_fields, one_of, seq_len
from fitrain.core.errors import FitrainError
from fitrain.data.manifest import ShardEntry
from fitrain.data.shards import MAX_SEGMENTS, shard_file, shard_stats, token_dtype, write_shard

POLICIES = ("truncate", "split", "drop")
Item = tuple[np.ndarray, np.ndarray]


@dataclass
class PackConfig:
    seq_len: int = 2048
    overlong: str = "auto"       # truncate | split | drop; auto = split for documents, truncate for pairs
    window: int = 2000           # items buffered per best-fit-decreasing round
    max_open_rows: int = 64      # partly filled rows carried into the next round
    rows_per_shard: int = 0      # 0 = about 2**24 tokens per shard

    def __post_init__(self) -> None:
        check_fields(self, seq_len=seq_len, window=POSITIVE, max_open_rows=NON_NEGATIVE, rows_per_shard=NON_NEGATIVE,
                     overlong=one_of("auto", *POLICIES))

    def policy(self, kind: str) -> str:
        p = self.overlong if self.overlong != "auto" else ("split" if kind == "documents" else "truncate")
        if p == "split" and kind != "documents":
            raise FitrainError("pack.overlong=split is for raw documents only; pairs are never split across "
                               "rows (use truncate or drop)")
        return p

    def shard_rows(self) -> int:
        return self.rows_per_shard or max(1, (1 << 24) // self.seq_len)


class _Row:
    __slots__ = ("id", "items", "used")

    def __init__(self, rid: int, items: list[Item] | None = None):
        self.id, self.items = rid, items if items is not None else []
        self.used = sum(len(i) for i, _ in self.items)


def items_to_arrays(items: list[Item]) -> dict[str, np.ndarray]:
    """Items as three flat arrays (lengths, ids, mask): how packer state is saved."""
    lengths = np.array([len(i) for i, _ in items], dtype=np.int64)
    ids = np.concatenate([i for i, _ in items]).astype(np.int64) if items else np.zeros(0, dtype=np.int64)
    mask = np.concatenate([m for _, m in items]).astype(np.uint8) if items else np.zeros(0, dtype=np.uint8)
    return {"item_lengths": lengths, "item_ids": ids, "item_mask": mask}


def arrays_to_items(state: dict[str, Any]) -> list[Item]:
    lengths = np.asarray(state["item_lengths"])
    if len(lengths) == 0:
        return []
    bounds = np.cumsum(lengths)[:-1]
    return list(zip(np.split(np.asarray(state["item_ids"]), bounds), np.split(np.asarray(state["item_mask"]), bounds)))


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

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """Everything a resumed packer needs to emit exactly the rows this one would (numpy arrays for the
        buffered and open items, plain values for the rest)."""
        rows = [self.open[rid] for rid in sorted(self.open)]
        return {**items_to_arrays(list(self.buffer) + [it for r in rows for it in r.items]),
                "buffer_items": len(self.buffer),
                "row_ids": np.array([r.id for r in rows], dtype=np.int64),
                "row_counts": np.array([len(r.items) for r in rows], dtype=np.int64),
                "free": [list(x) for x in self.free], "next_id": self.next_id, "overlong": dict(self.overlong)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        items = arrays_to_items(state)
        nb = int(state["buffer_items"])
        self.buffer, pos = items[:nb], nb
        self.open = {}
        for rid, k in zip(np.asarray(state["row_ids"]).tolist(), np.asarray(state["row_counts"]).tolist()):
            self.open[rid] = _Row(rid, items[pos:pos + k])
            pos += k
        self.free = [tuple(x) for x in state["free"]]  # type: ignore[misc]
        self.next_id = int(state["next_id"])
        self.overlong = dict(state["overlong"])


class ShardWriter:
    """Collects rows into ``[rows_per_shard, seq_len]`` arrays and writes each full shard atomically.

    ``done`` maps shard index -> manifest entry of shards a previous (killed) run already wrote; a shard
    whose freshly computed content hash matches is not rewritten (its files are byte-identical).
    """

    def __init__(self, out_dir: Path, seq_len: int, vocab_size: int, rows_per_shard: int,
                 done: dict[int, ShardEntry] | None = None,
                 on_shard: Callable[[int, ShardEntry], None] | None = None):
        self.out, self.seq_len, self.rows_per_shard = Path(out_dir), seq_len, rows_per_shard
        self.dtype = token_dtype(vocab_size)
        self.vocab_size = vocab_size
        self.done = done or {}
        self.on_shard = on_shard
        self.shards: list[ShardEntry] = []
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
        if prev and prev.sha256 == stats["sha256"] and all(
                shard_file(self.out, i, p).is_file() for p in ("tokens", "mask", "seg")):
            entry = prev
            self.reused += 1
        else:
            entry = write_shard(self.out, i, *arrays, stats=stats)
        self.shards.append(entry)
        if self.on_shard:
            self.on_shard(i, entry)
        self._new_buffers()

    def close(self) -> list[ShardEntry]:
        if self.n:
            self._write()
        return self.shards

    # ------------------------------------------------------------------------------------------ state
    def state_dict(self) -> dict[str, Any]:
        """The partly filled shard (numpy arrays) and the finished shards' entries."""
        return {"tokens": self.tokens[: self.n].copy(), "mask": self.mask[: self.n].copy(),
                "seg": self.seg[: self.n].copy(), "shards": [dataclasses.asdict(e) for e in self.shards],
                "reused": self.reused}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shards = [ShardEntry.from_dict(e) for e in state["shards"]]
        self.reused = int(state["reused"])
        self.n = len(state["tokens"])
        self.tokens[: self.n], self.mask[: self.n], self.seg[: self.n] = state["tokens"], state["mask"], state["seg"]
