"""fitrain.core.lock: exclusive, re-entrant, stale after a kill, and decided by pid and host without flock."""
from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys

import pytest

from fitrain.core import lock
from fitrain.core.lock import LOCK_FILE, LockedError, dir_lock, holder
from tests.helpers.paths import REPO

HOLD = ("import sys, time\nfrom fitrain.core.lock import dir_lock\n"
        "with dir_lock(sys.argv[1], 'holder'):\n    print('locked', flush=True)\n    time.sleep(600)\n")


def _spawn(directory):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "locked"
    return p


def test_exclusive_between_processes_and_taken_over_after_a_kill(tmp_path, capsys):
    p = _spawn(tmp_path / "d")
    try:
        assert holder(tmp_path / "d")["pid"] == p.pid
        with pytest.raises(LockedError, match=f"in use by holder \\(pid {p.pid} on {socket.gethostname()}"):
            with dir_lock(tmp_path / "d", "me"):
                pass
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
    with dir_lock(tmp_path / "d", "me"):
        assert holder(tmp_path / "d")["command"] == "me"
    assert "ended without releasing it" in capsys.readouterr().err
    assert (tmp_path / "d" / LOCK_FILE).read_text() == ""  # released: emptied, never deleted


def test_reentrant_in_one_process_and_released_after(tmp_path):
    with dir_lock(tmp_path, "outer"):
        with dir_lock(tmp_path, "inner"):
            assert holder(tmp_path)["command"] == "outer"
        assert holder(tmp_path)["command"] == "outer"
    assert holder(tmp_path) == {}
    with dir_lock(tmp_path, "again"):
        pass


def test_a_failed_command_leaves_no_directory_it_created(tmp_path):
    with pytest.raises(RuntimeError):
        with dir_lock(tmp_path / "new", "x"):
            raise RuntimeError("failed before writing anything")
    assert not (tmp_path / "new").exists()
    with pytest.raises(RuntimeError):
        with dir_lock(tmp_path / "new", "x"):
            (tmp_path / "new" / "partial").write_text("")
            raise RuntimeError("failed after writing")
    assert (tmp_path / "new" / "partial").exists()  # what a resume may need stays


def test_a_failed_command_leaves_none_of_the_parents_it_created(tmp_path, monkeypatch):
    with pytest.raises(RuntimeError):
        with dir_lock(tmp_path / "runs" / "exp" / "train", "x"):
            raise RuntimeError("failed its checks")
    assert list(tmp_path.iterdir()) == []  # no empty runs/ or runs/exp left
    monkeypatch.chdir(tmp_path)  # a relative path, as on the command line
    with pytest.raises(RuntimeError):
        with dir_lock("runs/exp", "x"):
            raise RuntimeError("failed its checks")
    assert list(tmp_path.iterdir()) == []
    (tmp_path / "runs").mkdir()  # a parent that was there before stays, empty or not
    with pytest.raises(RuntimeError):
        with dir_lock(tmp_path / "runs" / "a" / "b", "x"):
            (tmp_path / "runs" / "a" / "other").mkdir()  # another command wrote beside it meanwhile
            raise RuntimeError("failed its checks")
    assert sorted(p.name for p in (tmp_path / "runs").rglob("*")) == ["a", "other"]


def test_only_rank_zero_locks(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCAL_RANK", "1")
    with dir_lock(tmp_path / "d", "rank1"):
        assert not (tmp_path / "d" / LOCK_FILE).exists()


def _no_flock(monkeypatch):
    import fcntl

    def flock(fd, op):
        raise OSError(errno.EOPNOTSUPP, "flock not supported")
    monkeypatch.setattr(fcntl, "flock", flock)


def test_without_flock_the_recorded_pid_and_host_decide(tmp_path, monkeypatch):
    _no_flock(monkeypatch)
    d = tmp_path / "d"
    d.mkdir()
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (d / LOCK_FILE).write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "command": "gone"}))
    with dir_lock(d, "me"):  # this host, pid gone: stale
        assert holder(d)["command"] == "me"
    (d / LOCK_FILE).write_text(json.dumps({"pid": os.getppid(), "host": socket.gethostname(), "command": "alive"}))
    with pytest.raises(LockedError, match="in use by alive"):
        with dir_lock(d, "me"):
            pass
    (d / LOCK_FILE).write_text(json.dumps({"pid": 1, "host": "another-node", "command": "remote"}))
    with pytest.raises(LockedError, match=f"cannot tell whether it still runs; if no job uses it, remove {d / LOCK_FILE}"):
        with dir_lock(d, "me"):
            pass


def test_rank_zero_from_launcher_variables(monkeypatch):
    for var in lock._RANK_VARS:
        monkeypatch.delenv(var, raising=False)
    assert lock.is_rank_zero()
    monkeypatch.setenv("SLURM_PROCID", "3")
    assert not lock.is_rank_zero()
