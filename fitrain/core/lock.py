"""Directory locks: one writer per output directory (a prepared directory, a training run, a data_gen shard,
an experiment), with stale-lock detection after a kill.

``with dir_lock(path, "fitrain train"):`` holds an exclusive ``flock`` on ``<path>/.fitrain.lock`` and writes
the holder (pid, host, command, start time) into it. The kernel drops a ``flock`` when its process dies,
however it dies (SIGKILL, OOM, a node reboot on a network file system), so a lock left by a killed run is
never held: the next command takes it over and says whose it was. A second command while the first runs
fails at once with a :class:`LockedError` naming the holder -- it never waits and never writes.

The lock file is emptied on release, never deleted: deleting it would let a third process lock a new file
while a second one still holds the old one. Locks are re-entrant within a process (an experiment that
holds its run directory may run a step that takes the same lock). Where ``flock`` is not supported (some
parallel file systems mount without it) the holder's pid and host decide instead: a lock of this host
whose pid is gone is stale; a lock of another host is refused (remove the file when no job runs there).

Only global rank 0 of a distributed job takes a lock (:func:`is_rank_zero`); the other ranks of the same
job write under rank 0's lock.
"""
from __future__ import annotations

import contextlib
import errno
import json
import math
import os
import socket
import sys
import time
from pathlib import Path
from typing import Iterator

from fitrain.core.errors import FitrainError
from fitrain.core.io import pid_alive as _pid_alive

LOCK_FILE = ".fitrain.lock"
_RANK_VARS = ("RANK", "LOCAL_RANK", "NODE_RANK", "SLURM_PROCID")
_held: dict[str, list] = {}   # resolved directory -> [fd, depth]


class LockedError(FitrainError):
    """Another live process holds the directory's lock."""


def is_rank_zero() -> bool:
    """Whether this process is global rank 0 by the launcher's environment (torchrun, srun, Lightning's
    subprocess launcher), before any process group exists."""
    for var in _RANK_VARS:
        v = os.environ.get(var, "").strip()
        if v.isdigit() and int(v) != 0:
            return False
    return True


def holder(directory: str | Path) -> dict:
    """What the lock file of ``directory`` says about its last holder (``{}`` when none)."""
    try:
        text = (Path(directory) / LOCK_FILE).read_text()
        d = json.loads(text) if text.strip() else {}
        return d if isinstance(d, dict) else {}
    except (OSError, ValueError):
        return {}


def _since(since: object) -> str:
    """`` since <local time>`` of a holder's start time; a time that is not one (NaN, infinite, out of
    range, later than now: a hand-edited file or a skewed clock) is named as such, never trusted."""
    if not isinstance(since, (int, float)) or isinstance(since, bool):
        return ""
    if not math.isfinite(since) or since < 0 or since > time.time() + 86400:
        return f" with an invalid start time {since!r}"
    try:
        return time.strftime(" since %Y-%m-%d %H:%M:%S", time.localtime(since))
    except (OverflowError, OSError, ValueError):
        return f" with an invalid start time {since!r}"


def _describe(info: dict) -> str:
    when = _since(info.get("since"))
    return f"{info.get('command') or 'a fitrain command'} (pid {info.get('pid', '?')} on {info.get('host', '?')}{when})"


def _flock(fd: int) -> bool:
    """Try the exclusive flock: True when taken, False when another process holds it; raises OSError when
    the file system does not support flock."""
    import fcntl

    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False
    except OSError as e:
        if e.errno in (errno.EAGAIN, errno.EACCES):
            return False
        raise


def _take(path: Path, fd: int, directory: Path, command: str) -> dict:
    """Take the lock on an open lock file; returns the previous holder's info when it was stale."""
    prev = {}
    try:
        taken = _flock(fd)
        prev = holder(directory)
    except OSError as e:
        if e.errno not in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS, errno.EINVAL):
            raise
        prev = holder(directory)  # no flock here: decide by the recorded pid and host
        same_host = prev.get("host") == socket.gethostname()
        taken = not prev or (same_host and isinstance(prev.get("pid"), int) and not _pid_alive(prev["pid"]))
        if prev and not same_host and not taken:
            raise LockedError(f"{directory} is locked by {_describe(prev)} and this file system cannot tell "
                              f"whether it still runs; if no job uses it, remove {path}") from None
    if not taken:
        raise LockedError(f"{directory} is in use by {_describe(prev)}; wait for it to finish or stop it "
                          "(a lock left by a killed process is taken over automatically)")
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": command, "since": round(time.time(), 3)}
    os.ftruncate(fd, 0)
    os.pwrite(fd, (json.dumps(info) + "\n").encode(), 0)
    return prev


@contextlib.contextmanager
def dir_lock(directory: str | Path, command: str = "", note: bool = True) -> Iterator[Path]:
    """Hold the exclusive lock of ``directory`` (created if missing) for the ``with`` block; only global
    rank 0 locks (:func:`is_rank_zero`). ``command`` names the holder in other processes' errors; ``note``:
    say so when a stale lock is taken over."""
    directory = Path(directory)
    if not is_rank_zero():
        yield directory
        return
    created = _missing(directory)
    directory.mkdir(parents=True, exist_ok=True)
    key = str(directory.resolve())
    if key in _held:
        _held[key][1] += 1
        try:
            yield directory
        finally:
            _held[key][1] -= 1
        return
    path = directory / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        prev = _take(path, fd, directory, command or " ".join(["fitrain", *sys.argv[1:3]]))
    except BaseException:
        os.close(fd)
        raise
    if prev.get("pid") is not None and note:
        print(f"fitrain: note: {directory} was locked by {_describe(prev)}, which ended without releasing it "
              "(killed?); taking the lock over", file=sys.stderr, flush=True)
    _held[key] = [fd, 1]
    ok = False
    try:
        yield directory
        ok = True
    finally:
        del _held[key]
        try:
            os.ftruncate(fd, 0)
        except OSError:
            pass
        os.close(fd)  # closing the last descriptor releases the flock
        if created and not ok:
            _remove_if_only_lock(created)


def _missing(directory: Path) -> list[Path]:
    """``directory`` and those of its parents that do not exist yet, deepest first."""
    missing = []
    while not directory.exists() and directory.parent != directory:
        missing.append(directory)
        directory = directory.parent
    return missing


def _remove_if_only_lock(created: list[Path]) -> None:
    """The directories this lock created (``created``, deepest first) for a command that failed before
    writing anything go again, so a failed command leaves nothing behind: the locked directory when it holds
    only the lock file, then each parent it created while that is empty (another command may have written
    into one meanwhile; that one and those above it stay)."""
    directory = created[0]
    try:
        if [p.name for p in directory.iterdir()] != [LOCK_FILE]:
            return
        (directory / LOCK_FILE).unlink()
        for d in created:
            d.rmdir()  # OSError (not empty) ends it
    except OSError:
        pass


def remove_abandoned(directory: Path) -> bool:
    """Remove a scratch directory (e.g. data_gen's ``.spool-<pid>/``) that its writer held under
    :func:`dir_lock` and left behind when it was killed; one still in use stays. A scratch directory without
    a lock file (written before scratch was locked) is abandoned when the pid at the end of its name is
    gone from this host. Returns whether it was removed."""
    import shutil

    directory = Path(directory)
    if not (directory / LOCK_FILE).is_file():
        pid = directory.name.rpartition("-")[2]
        if not pid.isdigit() or _pid_alive(int(pid)):
            return False
        shutil.rmtree(directory, ignore_errors=True)
        return True
    try:
        with dir_lock(directory, "fitrain scratch cleanup", note=False):
            shutil.rmtree(directory, ignore_errors=True)
    except LockedError:
        return False
    return True
