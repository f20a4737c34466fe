"""Ctrl-C (SIGINT) and SIGTERM during `fitrain data-gen` (fitrain.core.stop): the shard that runs stops at
its next row, nothing unfinished is marked done, one line says how to resume (exit 3); a second Ctrl-C
stops at once (130); the rerun ends with exactly the rows of an uninterrupted run."""
import os
import signal
import subprocess
import sys
import time

import pytest
import yaml

from data_gen.shards import shard_dir
from fitrain.core.io import is_done
from tests.data_gen.conftest import final_rows
from tests.data_gen.test_infra_failure import uninterrupted  # noqa: F401  (a fixture)
from tests.data_gen.test_server_tasks import SHARDS, setup_run
from tests.helpers.llm_server import ScriptedLLMServer, datagen_responder
from tests.helpers.paths import REPO


def _start(tmp_path, url) -> subprocess.Popen:
    llm = {"model": "scripted", "base_url": url, "max_retries": 1, "backoff_s": 0.01, "timeout_s": 30,
           "max_concurrency": 2}
    recipe = tmp_path / "dg.yaml"
    recipe.write_text(yaml.safe_dump({"run_dir": str(tmp_path), "num_shards": SHARDS, "progress": False,
                                      "instantiate": {"llm": llm}, "judge": {"llm": llm}}))
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    env.pop("SLURM_ARRAY_TASK_ID", None)
    return subprocess.Popen([sys.executable, "-m", "fitrain.cli", "data-gen", "run", str(recipe), "--stages",
                             "instantiate,judge,write"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _when_answered(srv, p, n) -> None:
    deadline = time.monotonic() + 120
    while srv.answered < n and p.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    assert p.poll() is None, p.communicate()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_data_gen_cleanly_and_the_rerun_is_exact(uninterrupted, tmp_path, dolly_contexts, sig):  # noqa: F811
    setup_run(tmp_path, dolly_contexts[:8])
    with ScriptedLLMServer(datagen_responder, latency_s=0.05, capacity=1) as srv:
        p = _start(tmp_path, srv.base_url)
        _when_answered(srv, p, 3)
        p.send_signal(sig)
        out, err = p.communicate(timeout=120)
        assert p.returncode == 3, err[-3000:]
        assert "Traceback" not in err
        lines = [ln for ln in err.splitlines() if f"stopped by {sig.name}" in ln]
        assert len(lines) == 1 and "rerun the same data-gen command to resume" in lines[0], err
        pairs = tmp_path / "data_gen" / "pairs"
        assert not is_done(shard_dir(pairs, 0)) and not (shard_dir(pairs, 0) / "pairs.parquet").exists()
        assert not list(shard_dir(pairs, 0).glob(".*.tmp"))
        if sig == signal.SIGTERM:
            return  # (the rerun is the same as after SIGINT)
        p = _start(tmp_path, srv.base_url)
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0, err[-3000:]
    assert final_rows(tmp_path) == uninterrupted


def test_a_second_ctrl_c_stops_at_once(tmp_path, dolly_contexts):
    setup_run(tmp_path, dolly_contexts[:8])
    with ScriptedLLMServer(datagen_responder, latency_s=1.5, capacity=1) as srv:
        p = _start(tmp_path, srv.base_url)
        _when_answered(srv, p, 1)
        time.sleep(0.3)  # the reply is taken in; the next one is more than a second away
        p.send_signal(signal.SIGINT)
        time.sleep(0.05)
        p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=60)
    assert p.returncode == 130 and "interrupted" in err, err[-3000:]
    assert not is_done(shard_dir(tmp_path / "data_gen" / "pairs", 0))
