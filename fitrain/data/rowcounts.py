"""Per-row counts of a prepared directory, stored once so that planning a run reads O(rows), not every token.

``row_counts-<fingerprint>.npy`` ([rows, 2]: non-padding tokens, supervised targets of every row in global
row order; uint16 when the rows are shorter than 65,536 tokens, else uint32) is written by ``fitrain prepare``
beside the shards. A directory prepared before it existed gets it computed once from the seg and mask arrays
(:meth:`fitrain.data.shards.PreparedData.row_counts`) and cached there: written atomically, with the
permissions of the process's umask (a shared data directory stays readable by the group that reads the
shards); where the directory is read-only the counts are computed and used without a cache. The name carries
the data's fingerprint, so counts of other data are never read (fitrain.train.plan.ReadingOrder uses them to
count a token budget's optimizer steps exactly).
"""
from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np

from fitrain.core.io import atomic_path
from fitrain.data.shards import PreparedData

UNITS = {"tokens": 0, "supervised_tokens": 1}
PATTERN = "row_counts-*.npy"


def counts_path(data: PreparedData) -> Path:
    return Path(data.directory) / f"row_counts-{data.fingerprint[:16]}.npy"


def write_row_counts(data: PreparedData) -> Path:
    """Count every row's tokens and targets from the shards (one pass) and store them; the file's path."""
    counts = np.stack([data.row_counts(unit) for unit in UNITS], axis=1)
    dtype = np.uint16 if data.seq_len < 2**16 else np.uint32
    path = counts_path(data)
    for stale in Path(data.directory).glob(PATTERN):
        if stale != path:
            stale.unlink(missing_ok=True)
    with atomic_path(path) as tmp:
        with open(tmp, "wb") as f:
            np.save(f, counts.astype(dtype), allow_pickle=False)
        os.chmod(tmp, 0o666 & ~_umask())          # mkstemp's 0600 would hide it from the shards' readers
    return path


def row_counts(data: PreparedData, unit: str) -> np.ndarray:
    """Every row's count of ``unit`` (``tokens`` | ``supervised_tokens``) as int64, in global row order: from
    the stored file, else computed once and cached (see the module docstring)."""
    if unit not in UNITS:
        raise ValueError(f"row_counts: unit must be one of {tuple(UNITS)}, got {unit!r}")
    stored = _read(data)
    if stored is None:
        try:
            write_row_counts(data)
            stored = _read(data)
        except OSError as e:                       # a read-only data directory: count without a cache
            print(f"fitrain: cannot cache the row counts in {data.directory} ({e.strerror or e}); counted "
                  "from the shards", file=sys.stderr)
            return data.row_counts(unit)
    return np.asarray(stored[:, UNITS[unit]], dtype=np.int64)


def _read(data: PreparedData) -> np.ndarray | None:
    path = counts_path(data)
    try:
        arr = np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError):
        return None
    return arr if arr.shape == (data.num_rows, len(UNITS)) else None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
