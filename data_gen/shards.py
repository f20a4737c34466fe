"""The shard runner: every stage works shard by shard, writes atomically, marks each finished shard with
``_SUCCESS`` and skips finished shards on rerun, so a killed run loses and duplicates nothing.

Layout of a sharded stage directory (``RunLayout.data_gen(stage)``)::

    <stage>/shard-00000/{<outputs>, stats.json, _SUCCESS}
    <stage>/stats.json + _SUCCESS          once every shard is done (merged statistics)

Shard ``i`` of ``n`` holds the inputs whose running index ``j`` satisfies ``j % n == i`` (a streaming
split that needs no count up front). Jobs are stage-major: array task ``t`` of a job runs the
contiguous shards ``t*k .. t*k+k-1`` (``shards_per_task`` k, :func:`task_shards`) of one stage after the
other, so a model server starts once per LLM stage of a job, not once per shard. On Slurm,
``SLURM_ARRAY_TASK_ID`` is that task; an explicit shard (or list of shards) wins over it.
"""
from __future__ import annotations

import contextlib
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator, Sequence

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.io import atomic_path, clean_stale_temps, is_done, mark_done, read_json, write_json
from fitrain.core.lock import dir_lock
from fitrain.core.server_failures import TrackedRejects, check_share, server_of
from fitrain.core.stop import check_stop


@dataclass
class StageStats:
    """Per-stage statistics (in, out, rejected by reason, tokens, anything else counted)."""

    stage: str
    inputs: int = 0
    outputs: int = 0
    rejects: Rejects = field(default_factory=TrackedRejects)  # also counts requests failed at the server
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


def check_server_failures(stats: StageStats, backend, max_share: float, where: str) -> None:
    """Fail the shard (nothing marked done, exit 2) when more than ``max_share`` of its ``stats.inputs``
    LLM requests failed at the server (fitrain.core.server_failures); call it before the outputs are kept."""
    check_share(stats.rejects, stats.inputs, max_share, server_of(backend), where)


def shard_dir(stage_dir: Path, i: int) -> Path:
    return Path(stage_dir) / f"shard-{i:05d}"


def selected_shards(n: int, shard: int | Sequence[int] | None = None) -> list[int]:
    """The shards this process runs: ``shard`` (one, or a list) if given, else the Slurm array task's, else
    all."""
    if n < 1:
        raise FitrainError(f"num_shards must be >= 1, got {n}")
    if shard is not None and not isinstance(shard, int):
        bad = [i for i in shard if not 0 <= i < n]
        if bad:
            raise FitrainError(f"shards {bad} are outside 0..{n - 1}")
        return list(shard)
    if shard is None:
        task = slurm_array_task()
        if task is not None:
            return [task] if task < n else []  # more array tasks than shards: nothing to do
        return list(range(n))
    if not 0 <= shard < n:
        raise FitrainError(f"shard {shard} is outside 0..{n - 1}")
    return [shard]


def slurm_array_task() -> int | None:
    raw = os.environ.get("SLURM_ARRAY_TASK_ID", "").strip()
    if not raw:
        return None
    try:
        return int(raw)
    except ValueError:
        raise FitrainError(f"SLURM_ARRAY_TASK_ID is not an integer: {raw!r}") from None


def task_count(num_shards: int, per_task: int) -> int:
    """Array tasks (jobs) for ``num_shards`` shards, ``per_task`` contiguous shards each."""
    if per_task < 1:
        raise FitrainError(f"shards_per_task must be >= 1, got {per_task}")
    return max(1, math.ceil(max(1, num_shards) / per_task))


def task_shards(num_shards: int, per_task: int, task: int) -> list[int]:
    """The contiguous shards of array task ``task``: ``task*per_task`` up to the next task's first shard."""
    n_tasks = task_count(num_shards, per_task)
    if not 0 <= task < n_tasks:
        raise FitrainError(f"task {task} is outside 0..{n_tasks - 1} ({num_shards} shards, {per_task} per task)")
    return list(range(task * per_task, min(num_shards, (task + 1) * per_task)))


def run_shards(stage: str, stage_dir: Path, n: int, work: Callable[[int, Path], StageStats],
               shard: int | Sequence[int] | None = None, log: Callable[[str], None] = print,
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
        check_stop(f"before {stage} shard {i}")  # a safe point (fitrain.core.stop)
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


@contextlib.contextmanager
def row_sink(path: Path, schema, stats: StageStats, batch: int = 256) -> Iterator[Callable[[dict], None]]:
    """``add(row)``: rows written to ``path`` in batches (atomically, at the end) and counted as outputs."""
    rows: list[dict] = []
    with parquet_sink(path, schema) as write:
        def add(row: dict) -> None:
            rows.append(row)
            if len(rows) >= batch:
                stats.outputs += len(rows)
                write(rows)
                rows.clear()
        yield add
        stats.outputs += len(rows)
        write(rows)


def iter_parquet(path: Path, batch_size: int = 1024, columns: list[str] | None = None) -> Iterator[list[dict]]:
    import pyarrow.parquet as pq

    pf = pq.ParquetFile(path)
    for batch in pf.iter_batches(batch_size=batch_size, columns=columns):
        yield batch.to_pylist()


def row_count(path: Path) -> int:
    import pyarrow.parquet as pq

    return int(pq.ParquetFile(path).metadata.num_rows)


def read_parquet_rows(path: Path, columns: list[str] | None = None) -> list[dict]:
    return [r for b in iter_parquet(path, columns=columns) for r in b]


class ProgressLog:
    """Plain progress lines every ``every_s`` seconds while a shard runs, written by a helper thread through
    ``log`` (so they appear on schedule even while the stage waits for a server, and in a Slurm log, where a
    terminal progress bar would switch itself off)::

        [instantiate shard 3] 1,200/5,000 rows (24.0%), 41.2 rows/s, 512 in flight, 17 rejects, ETA 1m32s

    ``in_flight()`` (requests at the server) is left out when it returns None."""

    def __init__(self, desc: str, total: int | None, every_s: float, log: Callable[[str], None] = print,
                 enabled: bool = True, rejects: Callable[[], int] = lambda: 0,
                 in_flight: Callable[[], int | None] = lambda: None):
        self.desc, self.total, self.every_s, self.log = desc, total, every_s, log
        self.enabled = enabled and every_s > 0
        self.rejects, self.in_flight = rejects, in_flight
        self.done = 0
        self._t0 = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def update(self, n: int = 1) -> None:
        """Count ``n`` rows; also a safe point to stop at (fitrain.core.stop): the shard's outputs are written
        only when it ends, so a stop here keeps nothing half-done (replies received stay cached)."""
        self.done += n
        check_stop(f"in {self.desc}")

    def line(self) -> str:
        el = max(1e-9, time.monotonic() - self._t0)
        rate = self.done / el
        parts = [f"{self.done:,}/{self.total:,} rows ({100 * self.done / max(1, self.total):.1f}%)"
                 if self.total is not None else f"{self.done:,} rows", f"{rate:.1f} rows/s"]
        flying = self.in_flight()
        if flying is not None:
            parts.append(f"{flying} in flight")
        parts.append(f"{self.rejects()} rejects")
        if self.total is not None:
            left = max(0, self.total - self.done)
            parts.append("ETA " + (_duration(left / rate) if rate > 0 else "?"))
        parts.append(f"elapsed {_duration(el)}")
        return f"[{self.desc}] " + ", ".join(parts)

    def _run(self) -> None:
        while not self._stop.wait(self.every_s):
            self.log(self.line())
            sys.stdout.flush()

    def __enter__(self) -> "ProgressLog":
        self._t0 = time.monotonic()
        if self.enabled:
            self._thread = threading.Thread(target=self._run, name=f"progress {self.desc}", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)


def _duration(s: float) -> str:
    if s < 60:
        return f"{s:.1f}s"
    s = int(round(s))
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    return f"{s // 3600}h{s % 3600 // 60:02d}m"
