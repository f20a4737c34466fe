"""A lock file whose holder's start time is not a time (NaN, infinite, far in the future, a string): the
message names it as invalid, never a traceback, and a stale lock is still taken over (fitrain.core.lock)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from fitrain.core.lock import LOCK_FILE, _describe, dir_lock, holder


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


@pytest.mark.parametrize("since", ["NaN", "Infinity", "-Infinity", "1e300", "4102444800", "-5", '"yesterday"', "true"])
def test_a_stale_lock_with_a_bad_start_time_is_taken_over_with_one_note(tmp_path, capsys, since):
    d = tmp_path / "d"
    d.mkdir()
    (d / LOCK_FILE).write_text(f'{{"pid": {_dead_pid()}, "host": "h", "command": "old", "since": {since}}}\n')
    with dir_lock(d, "me"):
        assert holder(d)["command"] == "me"
    err = capsys.readouterr().err
    assert "was locked by old" in err and "Traceback" not in err
    if since not in ('"yesterday"', "true"):
        assert "invalid start time" in err


def test_a_valid_start_time_is_shown_as_a_local_time():
    assert "since 20" in _describe({"command": "c", "pid": 1, "host": "h", "since": 1.7e9})
    assert "invalid start time" in _describe({"since": float("nan")})
