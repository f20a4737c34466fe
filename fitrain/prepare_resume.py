"""Checkpoints that let a killed ``prepare`` resume without re-tokenizing what it already packed.

After each input batch that completed at least one shard, prepare saves the full state of the pipeline
at that batch boundary: the packer's buffered items and open rows, the writer's partly filled shard and
the list of finished shards, the token-for-token budget and the running counts. The arrays go to
``_resume_<batches>.npz`` and the rest into ``_progress.json`` (both written atomically, the json last, so
it always points at a complete checkpoint). A rerun with the same settings re-reads the input (rejects
are counted while reading, so they are recounted, not restored), skips the batches the checkpoint covers
without tokenizing them, restores the state and carries on; the shards come out byte-identical to an
uninterrupted run (tests/fitrain/data/test_prepare_kill.py kills a real subprocess to check).
"""
from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np

from fitrain.budget import TokenBudget
from fitrain.io import atomic_path, read_json, write_json
from fitrain.packing import Packer, ShardWriter, _Row

PROGRESS = "_progress.json"


def _pack_items(items: list) -> dict[str, np.ndarray]:
    lengths = np.array([len(i) for i, _ in items], dtype=np.int64)
    ids = np.concatenate([i for i, _ in items]) if items else np.zeros(0, dtype=np.int64)
    mask = np.concatenate([m for _, m in items]) if items else np.zeros(0, dtype=np.uint8)
    return {"item_lengths": lengths, "item_ids": ids.astype(np.int64), "item_mask": mask.astype(np.uint8)}


def _unpack_items(z: Any) -> list:
    bounds = np.cumsum(z["item_lengths"])[:-1]
    if len(z["item_lengths"]) == 0:
        return []
    return list(zip(np.split(z["item_ids"], bounds), np.split(z["item_mask"], bounds)))


def read_progress(out: Path, settings: str) -> dict:
    """The progress record of an interrupted run with these settings, else a fresh one."""
    p = out / PROGRESS
    try:
        prog = read_json(p) if p.is_file() else {}
    except ValueError:
        prog = {}
    if prog.get("settings") != settings:
        return {"settings": settings, "shards": {}, "checkpoint": None}
    ck = prog.get("checkpoint")
    prog["checkpoint"] = ck if ck and (out / ck["npz"]).is_file() else None
    prog.setdefault("shards", {})
    return prog


def save_checkpoint(out: Path, progress: dict, batches: int, run: Any, packer: Packer, writer: ShardWriter) -> None:
    """Save the pipeline state after ``batches`` input batches into ``progress`` (and to disk)."""
    rows = [packer.open[rid] for rid in sorted(packer.open)]
    items = list(packer.buffer) + [it for r in rows for it in r.items]
    arrays = _pack_items(items)
    arrays.update(row_ids=np.array([r.id for r in rows], dtype=np.int64),
                  row_counts=np.array([len(r.items) for r in rows], dtype=np.int64),
                  w_tokens=writer.tokens[: writer.n], w_mask=writer.mask[: writer.n], w_seg=writer.seg[: writer.n])
    name = f"_resume_{batches:08d}.npz"
    with atomic_path(out / name) as tmp:
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)
    old = progress.get("checkpoint")
    # copies: the live objects keep changing, and on_shard rewrites this record after every shard
    progress["checkpoint"] = {"npz": name, "batches": batches, "buffer_items": len(packer.buffer),
                       "free": [list(x) for x in packer.free], "next_id": packer.next_id,
                       "overlong": dict(packer.overlong), "writer_shards": list(writer.shards),
                       "writer_reused": writer.reused,
                       "counts": asdict(run.counts), "items_in": run.items_in,
                       "budget": asdict(run.budget) if run.budget is not None else None}
    write_json(out / PROGRESS, progress)
    if old and old.get("npz") != name:
        (out / old["npz"]).unlink(missing_ok=True)


def load_checkpoint(out: Path, progress: dict, run: Any, packer: Packer, writer: ShardWriter) -> int:
    """Restore the last checkpoint into fresh pipeline objects; returns how many input batches it covers
    (0 when there is none, or it does not belong to these settings)."""
    from fitrain.accounting import TokenCounts

    ck = progress.get("checkpoint")
    if ck is None or not all((out / f"{s['name']}.{p}.npy").is_file()
                             for s in ck["writer_shards"] for p in ("tokens", "mask", "seg")):
        return 0
    with np.load(out / ck["npz"], allow_pickle=False) as z:
        items = _unpack_items(z)
        row_ids, row_counts = z["row_ids"].tolist(), z["row_counts"].tolist()
        w = (z["w_tokens"], z["w_mask"], z["w_seg"])
    nb = int(ck["buffer_items"])
    packer.buffer, pos = items[:nb], nb
    packer.open = {}
    for rid, k in zip(row_ids, row_counts):
        row = _Row(rid)
        row.items = items[pos:pos + k]
        row.used = sum(len(i) for i, _ in row.items)
        packer.open[rid] = row
        pos += k
    packer.free = [tuple(x) for x in ck["free"]]
    packer.next_id = int(ck["next_id"])
    packer.overlong = dict(ck["overlong"])
    writer.shards, writer.reused = list(ck["writer_shards"]), int(ck["writer_reused"])
    writer.n = len(w[0])
    writer.tokens[: writer.n], writer.mask[: writer.n], writer.seg[: writer.n] = w
    run.counts = TokenCounts(**ck["counts"])
    run.items_in = int(ck["items_in"])
    if ck["budget"] is not None:
        run.budget = TokenBudget(**ck["budget"])
    return int(ck["batches"])


def remove_checkpoints(out: Path) -> None:
    for p in Path(out).glob("_resume_*.npz"):
        p.unlink(missing_ok=True)
