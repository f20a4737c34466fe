"""Stale scratch goes when a stage starts: the ``.spool-<pid>/`` of a killed data-gen job (data_gen.match)
and temporary files and directories a killed writer left in a shard (fitrain.core.io.clean_stale_temps);
scratch of a job that still runs stays."""
import json
import os
import signal
import subprocess
import sys

from data_gen import match
from data_gen.config import DataGenConfig
from fitrain.core.io import clean_stale_temps
from fitrain.core.lock import LOCK_FILE, remove_abandoned
from tests.helpers.paths import REPO

HOLD = ("import sys, time\nfrom fitrain.core.lock import dir_lock\n"
        "with dir_lock(sys.argv[1], 'data_gen match spool'):\n    print('locked', flush=True)\n    time.sleep(600)\n")


def _holder(directory):
    p = subprocess.Popen([sys.executable, "-c", HOLD, str(directory)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "locked"
    return p


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_spools_of_killed_jobs_are_removed_and_a_live_ones_stays(tmp_path, capsys):
    stage = tmp_path / "matches"
    killed = stage / ".spool-4242"
    live = stage / ".spool-4343"
    old_format = stage / f".spool-{_dead_pid()}"  # written before spools were locked: no lock file
    p_killed, p_live = _holder(killed), _holder(live)
    for d in (killed, live, old_format):
        d.mkdir(parents=True, exist_ok=True)
        (d / "shard-00000.parquet").write_bytes(b"x" * 1000)
    p_killed.send_signal(signal.SIGKILL)
    p_killed.wait()
    try:
        corpus = tmp_path / "docs.jsonl"
        corpus.write_text("".join(json.dumps({"id": f"d{j}", "text": f"doc {j}"}) + "\n" for j in range(6)))
        cfg = DataGenConfig(run_dir=str(tmp_path), num_shards=2)
        cfg.match.documents, cfg.match.id_column = [str(corpus)], "id"
        with match.TaskDocuments(cfg, stage, [0, 1]) as docs:
            assert [d.doc_id for d in docs(0, match.Rejects())] == ["d0", "d2", "d4"]
        assert "removed 2 spool(s) of killed jobs" in capsys.readouterr().out
        assert sorted(p.name for p in stage.iterdir()) == [".spool-4343"]
        assert (live / "shard-00000.parquet").is_file()  # its job still runs
    finally:
        p_live.send_signal(signal.SIGKILL)
        p_live.wait()
    assert remove_abandoned(live) and not live.exists()


def test_a_spool_named_after_a_live_pid_without_a_lock_stays(tmp_path):
    d = tmp_path / f".spool-{os.getpid()}"
    d.mkdir()
    assert not remove_abandoned(d) and d.is_dir()
    odd = tmp_path / ".spool-abc"
    odd.mkdir()
    assert not remove_abandoned(odd) and odd.is_dir()  # not a name we wrote: left alone


def test_temporary_files_and_directories_of_a_killed_writer_are_removed(tmp_path):
    (tmp_path / ".pairs.parquet.abc123.tmp").write_bytes(b"half")
    (tmp_path / ".index.xyz.tmp").mkdir()
    (tmp_path / ".index.xyz.tmp" / "part.bin").write_bytes(b"half")
    (tmp_path / "pairs.parquet").write_bytes(b"kept")
    (tmp_path / LOCK_FILE).write_text("")
    assert clean_stale_temps(tmp_path) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == [LOCK_FILE, "pairs.parquet"]


KILLED_WRITER = ("import sys, time\nfrom fitrain.core.io import atomic_path, atomic_dir\n"
                 "with atomic_path(sys.argv[1] + '/stats.json') as t, atomic_dir(sys.argv[1] + '/index') as d:\n"
                 "    t.write_text('half'); (d / 'part').write_text('half')\n"
                 "    print('writing', flush=True); time.sleep(600)\n")


def test_temporaries_of_a_killed_writer_go_when_the_stage_starts_and_a_live_ones_stay(tmp_path, dolly_contexts):
    from data_gen.pipeline import run
    from fitrain.core.io import atomic_path, clean_dead_temps
    from tests.data_gen.test_server_tasks import SHARDS, setup_run
    from tests.helpers.llm_server import ScriptedLLMServer, datagen_responder

    setup_run(tmp_path, dolly_contexts[:4])
    stage = tmp_path / "data_gen" / "pairs"
    stage.mkdir(parents=True)
    p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(stage)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGKILL)
    p.wait()
    foreign = stage / ".stats.json~otherhost~1~abc.tmp"  # another node's writer: cannot tell, stays
    foreign.write_text("x")
    assert len(list(stage.glob(".*.tmp"))) == 3
    with atomic_path(stage / "mine.json") as mine:
        mine.write_text("being written")
        assert clean_dead_temps(stage) == 2 and mine.exists()  # this live process's stays
    assert sorted(x.name for x in stage.glob(".*.tmp")) == [foreign.name]
    (stage / "mine.json").unlink()
    p = subprocess.Popen([sys.executable, "-c", KILLED_WRITER, str(stage)], stdout=subprocess.PIPE, text=True,
                         env={**os.environ, "PYTHONPATH": str(REPO)})
    assert p.stdout.readline().strip() == "writing"
    p.send_signal(signal.SIGKILL)
    p.wait()
    with ScriptedLLMServer(datagen_responder) as srv:
        cfg = DataGenConfig(run_dir=str(tmp_path), num_shards=SHARDS, progress=False)
        from fitrain.core.llm import LLMConfig

        cfg.instantiate.llm = LLMConfig(model="scripted", base_url=srv.base_url, max_retries=1)
        run(cfg, ["instantiate"], log=lambda s: None)
    assert sorted(x.name for x in stage.glob(".*.tmp")) == [foreign.name]
