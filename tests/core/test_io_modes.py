"""Atomic writes keep the process umask's modes (0644/0755 under 022), not mkstemp's 0600/0700
(fitrain.core.io)."""
from __future__ import annotations

import os
import stat

import pytest

from fitrain.core.io import atomic_dir, atomic_path, mark_done, process_umask, write_json


@pytest.fixture
def umask():
    old = os.umask(0o022)
    yield lambda m: os.umask(m)
    os.umask(old)


def mode(p) -> int:
    return stat.S_IMODE(os.stat(p).st_mode)


@pytest.mark.parametrize("mask,file_mode,dir_mode", [(0o022, 0o644, 0o755), (0o002, 0o664, 0o775),
                                                     (0o077, 0o600, 0o700)])
def test_atomic_files_and_directories_follow_the_umask(tmp_path, umask, mask, file_mode, dir_mode):
    umask(mask)
    assert process_umask() == mask
    write_json(tmp_path / "a.json", {"x": 1})
    mark_done(tmp_path)
    with atomic_path(tmp_path / "b.bin") as tmp:
        tmp.write_bytes(b"x")
    with atomic_dir(tmp_path / "d") as tmp:
        (tmp / "f.txt").write_text("x")
    assert [mode(tmp_path / n) for n in ("a.json", "_SUCCESS", "b.bin", "d/f.txt")] == [file_mode] * 4
    assert mode(tmp_path / "d") == dir_mode


def test_a_rewrite_of_an_existing_file_is_still_atomic_and_leaves_no_temporary(tmp_path, umask):
    write_json(tmp_path / "a.json", {"x": 1})
    with pytest.raises(RuntimeError):
        with atomic_path(tmp_path / "a.json") as tmp:
            tmp.write_text("half")
            raise RuntimeError("killed")
    assert (tmp_path / "a.json").read_text().strip().startswith("{") and sorted(os.listdir(tmp_path)) == ["a.json"]
