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


def test_a_held_lock_with_a_bad_start_time_is_refused_in_one_line(tmp_path):
    import os
    import signal

    from fitrain.core.lock import LockedError
    from tests.helpers.paths import REPO

    hold = ("import sys, time\nfrom fitrain.core.lock import dir_lock\n"
            "with dir_lock(sys.argv[1], 'holder'):\n    print('locked', flush=True)\n    time.sleep(600)\n")
    p = subprocess.Popen([sys.executable, "-c", hold, str(tmp_path / "d")], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        assert p.stdout.readline().strip() == "locked"
        info = json.loads((tmp_path / "d" / LOCK_FILE).read_text())
        (tmp_path / "d" / LOCK_FILE).write_text(json.dumps({**info, "since": 1e18}))  # far in the future
        with pytest.raises(LockedError) as e:
            with dir_lock(tmp_path / "d", "me"):
                pass
        assert f"pid {p.pid}" in str(e.value) and "invalid start time 1e+18" in str(e.value)
        assert "\n" not in str(e.value)
    finally:
        p.send_signal(signal.SIGKILL)
        p.wait()
