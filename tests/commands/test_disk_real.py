"""The disk faults of test_bad_state.py on real file systems: a full tmpfs and a read-only bind mount. Needs
permission to mount (root with CAP_SYS_ADMIN, as in this workplace's containers); skipped otherwise."""
from __future__ import annotations

import contextlib
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.helpers.cli import assert_clean_error, run_main


def _mount(*args: str) -> None:
    r = subprocess.run(["mount", *args], capture_output=True, text=True, timeout=30)
    if r.returncode != 0:
        pytest.skip(f"cannot mount here ({r.stderr.strip()[:200]}); the monkeypatched cases still run")


@contextlib.contextmanager
def mounted(target: Path, *args: str):
    if shutil.which("mount") is None:
        pytest.skip("no mount command")
    target.mkdir(parents=True, exist_ok=True)
    _mount(*args, str(target))
    try:
        yield target
    finally:
        subprocess.run(["umount", "-l", str(target)], capture_output=True, timeout=30)


def test_prepare_onto_a_really_full_disk(tmp_path, tokenizer_dir, dolly_pairs_file, capsys):
    with mounted(tmp_path / "small", "-t", "tmpfs", "-o", "size=64k", "tmpfs") as small:
        out = small / "out"
        r = run_main(["prepare", f"input.paths=[{dolly_pairs_file}]", f"tokenizer={tokenizer_dir}", "pack.seq_len=256",
                      "progress=false", f"out={out}"], capsys)
        assert_clean_error(r, "No space left on device", "(ENOSPC) at", str(out))
        assert not (out / "manifest.json").exists() and not list(out.glob(".*.tmp"))


def test_train_into_a_read_only_mount(tmp_path, pairs_shards, capsys):
    src = tmp_path / "src"
    src.mkdir()
    with mounted(tmp_path / "ro", "--bind", str(src)) as ro:
        _mount("-o", "remount,bind,ro", str(ro))
        r = run_main(["train", "train/fi-tiny", f"data.path={pairs_shards}", f"run_dir={ro / 'run'}", "max_steps=1",
                      "progress_bar=false", "wandb.mode=disabled"], capsys)
        assert_clean_error(r, "Read-only file system (EROFS) at", str(ro / "run"), "choose a writable location")
    assert not any(src.iterdir())
