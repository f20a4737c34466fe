"""Atomic file writing and completion markers: a killed job never leaves a half-written file behind.

Files and directories written here get the modes ``open``/``mkdir`` would give under the process umask
(0644/0755 under the usual 022), so colleagues on a shared project directory can read them."""
from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterator

SUCCESS = "_SUCCESS"


def process_umask() -> int:
    """The process umask, read without changing it (``os.umask`` can only be read by setting it, which
    would briefly give other threads' files the wrong mode)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """Yield a temporary path beside ``path``; on success it is fsynced and renamed onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~process_umask())  # mkstemp makes 0600: the file gets the mode open() gives
    finally:
        os.close(fd)
    tmp_path = Path(tmp)
    try:
        with _naming(path):
            yield tmp_path
            with open(tmp_path, "rb") as f:
                os.fsync(f.fileno())
        os.replace(tmp_path, path)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def _naming(path: Path) -> Iterator[None]:
    """An OSError that names no file (a write or fsync on a full disk) names ``path``; a short write that
    carries no errno (numpy's "N requested and M written") on a file system with no space left is ENOSPC."""
    try:
        yield
    except OSError as e:
        if e.filename is not None:
            raise
        code = e.errno
        if code is None:
            try:
                full = shutil.disk_usage(path.parent).free < (1 << 20)
            except OSError:
                full = False
            code = errno.ENOSPC if full else None
        strerror = e.strerror or str(e)
        if code == errno.ENOSPC and e.errno is None:
            strerror = f"No space left on device ({strerror})"
        raise OSError(code, strerror, str(path)) from e


@contextlib.contextmanager
def atomic_dir(path: str | Path) -> Iterator[Path]:
    """Yield a temporary directory beside ``path``; on success it replaces ``path`` (an earlier one is moved
    aside first and removed after), so ``path`` never holds a half-written set of files."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(path), suffix=".tmp", dir=path.parent))
    os.chmod(tmp, 0o777 & ~process_umask())  # mkdtemp makes 0700: the directory gets the mode mkdir() gives
    try:
        with _naming(path):
            yield tmp
            for f in tmp.rglob("*"):
                if f.is_file():
                    with open(f, "rb") as fh:
                        os.fsync(fh.fileno())
        old = None
        if path.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{path.name}.", suffix=".old", dir=path.parent))
            os.replace(path, old / path.name)
        os.replace(tmp, path)
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def file_sha256(path: str | Path, chunk: int = 1 << 22) -> str:
    """The sha256 of a file's bytes (read in 4 MiB chunks)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            b = f.read(chunk)
            if not b:
                break
            h.update(b)
    return h.hexdigest()


def write_json(path: str | Path, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False, default=str) + "\n")


def read_json(path: str | Path) -> Any:
    return json.loads(Path(path).read_text())


def mark_done(directory: str | Path, info: dict | None = None) -> None:
    write_json(Path(directory) / SUCCESS, info or {})


def is_done(directory: str | Path) -> bool:
    return (Path(directory) / SUCCESS).is_file()


def _host() -> str:
    import socket

    return socket.gethostname().replace("~", "-")[:40]


def _temp_prefix(path: Path) -> str:
    """``.<name>~<host>~<pid>~``: whose temporary file it is, so that one left by a killed process can be told
    from one being written (:func:`clean_dead_temps`)."""
    return f".{path.name}~{_host()}~{os.getpid()}~"


def clean_dead_temps(directory: str | Path) -> int:
    """Remove the temporary files and directories (:func:`atomic_path`, :func:`atomic_dir`) in ``directory``
    whose writer was a process of this host that is gone (killed); another host's, or a live process's, stay.
    Safe without a lock; returns how many were removed."""
    host = _host()

    def dead(p: Path) -> bool:
        parts = p.name.rsplit("~", 3)
        return len(parts) == 4 and parts[1] == host and parts[2].isdigit() and not pid_alive(int(parts[2]))

    return _remove_temps(directory, ".*~*~*~*.tmp", dead)


def pid_alive(pid: int) -> bool:
    """Whether a process of this host has that pid (one of another user's counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_stale_temps(directory: str | Path) -> int:
    """Remove what a killed writer left behind in a directory the caller holds the lock of: temporary files
    and directories of :func:`atomic_path` / :func:`atomic_dir` (``.*.tmp``); returns how many."""
    return _remove_temps(directory, ".*.tmp", lambda p: True)


def _remove_temps(directory: str | Path, pattern: str, which) -> int:
    n = 0
    for p in Path(directory).glob(pattern):
        if not which(p):
            continue
        if p.is_dir() and not p.is_symlink():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        n += 1
    return n


def as_os_error(e: BaseException, path: str | Path) -> BaseException:
    """A library's write error that carries an operating-system error only in its text (safetensors:
    ``IoError(Os { code: 28, kind: StorageFull, ... })``) as the :class:`OSError` it is, naming ``path``, so
    the CLI prints its one line (a full disk: ENOSPC); any other error is returned as it is."""
    if isinstance(e, OSError):
        return e if e.filename is not None else OSError(e.errno, e.strerror or str(e), str(path))
    import re

    m = re.search(r"\bcode:\s*(\d+)|\(os error (\d+)\)", str(e))
    if m is None:
        return e
    code = int(m.group(1) or m.group(2))
    return OSError(code, os.strerror(code), str(path))
