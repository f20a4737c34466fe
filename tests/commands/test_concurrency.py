"""Two real processes on one output directory: the second fails at once with one line naming the holder,
and a lock left by a killed process is taken over (fitrain.core.lock)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.helpers.cli import assert_clean_error, run_cli, run_main
from tests.helpers.paths import REPO

HOLD = ("import sys, time\nfrom fitrain.core.lock import dir_lock\n"
        "with dir_lock(sys.argv[1], sys.argv[2]):\n    print('locked', flush=True)\n    time.sleep(600)\n")


def _holder(directory: Path, command: str) -> subprocess.Popen:
    """Another process that holds ``directory``'s lock until it is killed."""
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(directory), command], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "locked"
    return p


def _kill(p: subprocess.Popen) -> None:
    p.send_signal(signal.SIGKILL)
    p.wait(timeout=30)


def _prepare(tok: Path, dolly: Path, out: Path, seq_len: int = 64) -> list[str]:
    return ["prepare", f"input.paths=[{dolly}]", f"tokenizer={tok}", f"pack.seq_len={seq_len}", "progress=false",
            f"out={out}"]


def test_prepare_into_a_locked_directory_then_after_the_holder_is_killed(tmp_path, tokenizer_dir, dolly_pairs_file,
                                                                        capsys):
    out = tmp_path / "out"
    holder = _holder(out, "fitrain prepare")
    try:
        r = run_main(_prepare(tokenizer_dir, dolly_pairs_file, out), capsys)
        assert_clean_error(r, f"{out} is in use by fitrain prepare (pid {holder.pid} on ")
        assert not (out / "manifest.json").exists()
    finally:
        _kill(holder)
    r = run_main(_prepare(tokenizer_dir, dolly_pairs_file, out), capsys)  # the stale lock is taken over
    assert r.rc == 0, r.err
    assert f"locked by fitrain prepare (pid {holder.pid}" in r.err and "ended without releasing it" in r.err
    assert run_main(["verify", out], capsys).rc == 0


def test_two_prepares_at_once_with_different_seq_len_leave_a_consistent_directory(tmp_path, tokenizer_dir,
                                                                                 dolly_pairs_file):
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    procs = [subprocess.Popen([sys.executable, "-m", "fitrain.cli", *_prepare(tokenizer_dir, dolly_pairs_file, out, n)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env) for n in (64, 128)]
    results = [(p.wait(timeout=300), p.stderr.read()) for p in procs]
    for rc, err in results:
        assert rc in (0, 2) and "Traceback" not in err, err
        if rc == 2:  # refused while the other runs, or (when the other already finished) as another configuration
            assert "is in use by fitrain prepare" in err or "holds a finished prepare of another configuration" in err, err
    assert [rc for rc, _ in results].count(0) == 1, results  # exactly one wrote the directory; nothing replaced
    m = json.loads((out / "manifest.json").read_text())
    assert run_cli(["verify", out]).rc == 0  # the manifest describes exactly the shards beside it
    assert m["seq_len"] in (64, 128)


def test_two_trains_on_one_run_directory(tmp_path, pairs_shards, capsys):
    run = tmp_path / "run"
    argv = ["train", "train/fi-tiny", f"data.path={pairs_shards}", f"run_dir={run}", "progress_bar=false",
            "wandb.mode=disabled", "export_hf=false", "checkpoint_every=0", "data.micro_batch_size=2"]
    env = {**os.environ, "PYTHONPATH": str(REPO), "WANDB_MODE": "disabled"}
    a = subprocess.Popen([sys.executable, "-m", "fitrain.cli", *argv, "max_steps=100000", "data.max_epochs=0"],
                         stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
    try:
        from fitrain.core.lock import holder

        deadline = time.monotonic() + 240
        while holder(run).get("pid") != a.pid:
            assert a.poll() is None, a.stderr.read()
            assert time.monotonic() < deadline, "the first train never took the lock"
            time.sleep(0.2)
        r = run_main([*argv, "max_steps=2"], capsys)
        assert_clean_error(r, f"{run} is in use by fitrain train (pid {a.pid} on ")
        assert not (run / "summary.json").exists()
    finally:
        _kill(a)
    r = run_main([*argv, "max_steps=2"], capsys)  # after the kill: taken over, and the run completes
    assert r.rc == 0 and "ended without releasing it" in r.err, r.err[-2000:]
    assert json.loads((run / "summary.json").read_text())["steps"] == 2


def test_experiment_in_a_locked_run_directory(tmp_path, capsys):
    root = tmp_path / "exp"
    holder = _holder(root, "fitrain experiment")
    try:
        r = run_main(["experiment", "tiny-cpu", f"run_dir={root}"], capsys)
        assert_clean_error(r, f"{root} is in use by fitrain experiment (pid {holder.pid}")
        assert not (root / "experiment.yaml").exists()
    finally:
        _kill(holder)


def test_data_gen_shard_locked_by_another_process(tmp_path):
    from data_gen.shards import StageStats, run_shards, shard_dir
    from fitrain.core.lock import LockedError

    stage = tmp_path / "matches"
    holder = _holder(shard_dir(stage, 1), "fitrain data-gen match")
    ran = []
    try:
        with pytest.raises(LockedError, match="shard-00001 is in use by fitrain data-gen match"):
            run_shards("match", stage, 2, lambda i, d: ran.append(i) or StageStats("match"), shard=1, log=lambda s: None)
        run_shards("match", stage, 2, lambda i, d: ran.append(i) or StageStats("match"), shard=0, log=lambda s: None)
    finally:
        _kill(holder)
    assert ran == [0]
