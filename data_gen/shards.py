"""The shard runner: every stage works shard by shard, writes atomically, marks each finished shard with
``_SUCCESS`` and skips finished shards on rerun, so a killed run loses and duplicates nothing.

Layout of a sharded stage directory (``RunLayout.data_gen(stage)``)::

    <stage>/shard-00000/{<outputs>, stats.json, _SUCCESS}
    <stage>/stats.json + _SUCCESS          once every shard is done (merged statistics)

Shard ``i`` of ``n`` holds the inputs whose running index ``j`` satisfies ``j % n == i`` (a streaming
split that needs no count up front). On Slurm, ``SLURM_ARRAY_TASK_ID`` picks the one shard a task runs
(``--array=0-(n-1)``); an explicit ``shard`` argument wins over it.
"""
from __future__ import annotations

import contextlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator


from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, clean_stale_temps, is_done, mark_done, read_json, write_json
from fitrain.core.lock import dir_lock


@dataclass
class StageStats:
    """Per-stage statistics (in, out, rejected by reason, tokens, anything else counted)."""

    stage: str
    inputs: int = 0
    outputs: int = 0
    rejects: Rejects = field(default_factory=Rejects)
    filtered: Rejects = field(default_factory=Rejects)  # dropped by design (e.g. judge score < 4), not defects
    counters: dict = field(default_factory=dict)
    seconds: float = 0.0

    def count(self, key: str, n: int | float = 1) -> None:
        self.counters[key] = self.counters.get(key, 0) + n

    def to_dict(self) -> dict:
        return {"stage": self.stage, "in": self.inputs, "out": self.outputs, "rejected": self.rejects.to_dict(),
                "filtered": self.filtered.to_dict(), "counters": dict(sorted(self.counters.items())),
                "seconds": round(self.seconds, 3)}

    @classmethod
    def from_dict(cls, d: dict) -> "StageStats":
        return cls(d["stage"], d.get("in", 0), d.get("out", 0), Rejects.from_dict(d.get("rejected", {})),
                   Rejects.from_dict(d.get("filtered", {})), dict(d.get("counters", {})), d.get("seconds", 0.0))

    def merge(self, other: "StageStats") -> "StageStats":
        self.inputs += other.inputs
        self.outputs += other.outputs
        self.rejects.merge(other.rejects)
        self.filtered.merge(other.filtered)
        for k, v in other.counters.items():
            if isinstance(v, dict):
                mine = self.counters.setdefault(k, {})
                for kk, vv in v.items():
                    mine[kk] = mine.get(kk, 0) + vv
            else:
                self.counters[k] = self.counters.get(k, 0) + v
        self.seconds += other.seconds
        return self


def shard_dir(stage_dir: Path, i: int) -> Path:
    return Path(stage_dir) / f"shard-{i:05d}"


def selected_shards(n: int, shard: int | None = None) -> list[int]:
    """The shards this process runs: ``shard`` if given, else the Slurm array task's, else all."""
    if n < 1:
        raise FitrainError(f"num_shards must be >= 1, got {n}")
    if shard is None and os.environ.get("SLURM_ARRAY_TASK_ID", "").strip():
        try:
            shard = int(os.environ["SLURM_ARRAY_TASK_ID"])
        except ValueError:
            raise FitrainError(f"SLURM_ARRAY_TASK_ID is not an integer: {os.environ['SLURM_ARRAY_TASK_ID']!r}")
        if shard >= n:
            return []  # more array tasks than shards: nothing to do
    if shard is None:
        return list(range(n))
    if not 0 <= shard < n:
        raise FitrainError(f"shard {shard} is outside 0..{n - 1}")
    return [shard]


def run_shards(stage: str, stage_dir: Path, n: int, work: Callable[[int, Path], StageStats],
               shard: int | None = None, log: Callable[[str], None] = print,
               on_complete: Callable[[StageStats], None] | None = None) -> dict:
    """Run ``work(i, out_dir)`` for each selected unfinished shard; return the stage's status.
    ``on_complete(total)`` runs once when every shard is done, before the stage is marked (e.g. a merge)."""
    stage_dir = Path(stage_dir)
    _check_shard_count(stage, stage_dir, n)
    ran, skipped = [], []
    for i in selected_shards(n, shard):
        d = shard_dir(stage_dir, i)
        if is_done(d):
            skipped.append(i)
            continue
        with dir_lock(d, f"data_gen {stage} shard {i}"):  # one writer per shard (fitrain.core.lock)
            clean_stale_temps(d)
            t0 = time.perf_counter()
            stats = work(i, d)
            stats.seconds = time.perf_counter() - t0
            write_json(d / "stats.json", stats.to_dict())
            mark_done(d, {"shard": i, "of": n})
        log(f"[{stage}] shard {i}/{n}: in {stats.inputs}, out {stats.outputs}, {stats.rejects.summary()}")
        ran.append(i)
    return {"ran": ran, "skipped": skipped, **finalize(stage, stage_dir, n, on_complete)}


def _check_shard_count(stage: str, stage_dir: Path, n: int) -> None:
    """Refuse to mix two shardings: shards finished under another shard count hold other rows
    (``j % n``), so skipping them would duplicate some rows and lose others."""
    if not stage_dir.is_dir():
        return
    for d in sorted(stage_dir.glob("shard-*")):
        if not is_done(d):
            continue
        try:
            of = read_json(d / "_SUCCESS").get("of")
        except (ValueError, OSError, AttributeError):
            of = None
        if of is not None and int(of) != n:
            raise FitrainError(f"[{stage}] {d} was finished as one of {of} shards, but this run uses {n}; "
                               f"rerun with the same shard count or remove {stage_dir}")


def finalize(stage: str, stage_dir: Path, n: int, on_complete: Callable[[StageStats], None] | None = None) -> dict:
    """When all ``n`` shards are done, merge their statistics into ``<stage>/stats.json`` and mark the stage."""
    if is_done(stage_dir) and (stage_dir / "stats.json").is_file():
        return {"complete": True, "stats": read_json(stage_dir / "stats.json")}
    missing = [i for i in range(n) if not is_done(shard_dir(stage_dir, i))]
    if missing:
        return {"complete": False, "missing": missing}
    total = StageStats(stage)
    for i in range(n):
        total.merge(StageStats.from_dict(read_json(shard_dir(stage_dir, i) / "stats.json")))
    if on_complete is not None:
        on_complete(total)
    write_json(stage_dir / "stats.json", total.to_dict())
    mark_done(stage_dir, {"shards": n})
    return {"complete": True, "stats": total.to_dict()}


def require_done(directory: Path, what: str) -> None:
    if not is_done(directory):
        raise FitrainError(f"{what} is not finished: {directory} has no _SUCCESS marker; run that stage first")



# ---------------------------------------------------------------------------------------------- parquet
@contextlib.contextmanager
def parquet_sink(path: Path, schema) -> Iterator[Callable[[list[dict]], None]]:
    """Write row batches into ``path`` through one ParquetWriter; the file appears atomically at the end."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    with atomic_path(path) as tmp:
        writer = pq.ParquetWriter(tmp, schema)
        try:
            def write(rows: list[dict]) -> None:
                if rows:
                    writer.write_table(pa.Table.from_pylist(rows, schema=schema))
            yield write
        finally:
            writer.close()


def iter_parquet(path: Path, batch_size: int = 1024, columns: list[str] | None = None) -> Iterator[list[dict]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        yield batch.to_pylist()


def read_parquet_rows(path: Path, columns: list[str] | None = None) -> list[dict]:
    return [r for b in iter_parquet(path, columns=columns) for r in b]


def progress_bar(enabled: bool, total: int | None, desc: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, desc=desc, unit="it", disable=None if enabled else True, leave=False)
