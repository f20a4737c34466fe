"""fitrain.train.config end to end on the shared prepared pairs: exact budgets, bit-exact resume, HF export, and
clear errors for bad input."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from fitrain.core.errors import ConfigError, FitrainError
from fitrain.train.trainer import train

from tests.helpers import trainrun as th


@pytest.fixture(scope="module")
def run_a(pairs_shards, tmp_path_factory):
    """8 uninterrupted steps with a checkpoint every 4 (and validation on the same shards every 4)."""
    run_dir = tmp_path_factory.mktemp("run_a")
    cfg = th.tiny_config(run_dir, pairs_shards, max_steps=8, checkpoint_every=4, keep_checkpoints=3, val_every=4)
    cfg.data.val_path = str(pairs_shards)
    cfg.data.val_rows = 16
    return cfg, train(cfg)


def test_run_writes_summary_csv_checkpoints_and_export(run_a):
    cfg, summary = run_a
    run = Path(cfg.run_dir)
    assert summary["status"] == "finished" and summary["steps"] == 8
    assert json.loads((run / "summary.json").read_text())["tokens"] == summary["tokens"]
    rows = th.rows(run)
    assert [int(r["step"]) for r in rows if r["loss"]] == list(range(1, 9))
    val = [r for r in rows if r["val_loss"]]
    assert [int(r["step"]) for r in val] == [4, 8] and 3 < float(val[-1]["val_loss"]) < 8
    last = th.train_rows(run)[8]
    assert int(last["tokens"]) == summary["tokens"] and int(last["supervised_tokens"]) == summary["supervised_tokens"]
    assert 0 < float(last["supervised_fraction"]) < 1 and float(last["tokens_per_s"]) > 0
    assert float(last["grad_norm"]) > 0 and float(last["lr"]) < cfg.optim.lr
    assert sorted(p.name for p in (run / "checkpoints").glob("step-*")) == ["step-00000004.ckpt", "step-00000008.ckpt"]
    assert (run / "hf" / "config.json").is_file() and (run / "wandb" / "run_id").read_text().strip() == summary["wandb_id"]


def test_resume_continues_bit_for_bit(run_a, tmp_path):
    cfg, _ = run_a
    ckpt = Path(cfg.run_dir) / "checkpoints" / "step-00000004.ckpt"
    cfg_b = th.tiny_config(tmp_path / "b", cfg.data.path, max_steps=8, resume=str(ckpt))
    summary = train(cfg_b)
    a, b = th.train_rows(cfg.run_dir), th.train_rows(tmp_path / "b")
    assert sorted(b) == [5, 6, 7, 8]
    for step in b:
        for col in ("loss", "grad_norm", "lr", "tokens", "supervised_tokens"):
            assert a[step][col] == b[step][col], (step, col)  # full-precision repr: bit for bit
    assert summary["tokens"] == int(a[8]["tokens"])
    # the W&B run id travels with the checkpoint
    assert summary["wandb_id"] == json.loads((Path(cfg.run_dir) / "summary.json").read_text())["wandb_id"]


def test_rerun_of_a_finished_run_trains_nothing(run_a):
    cfg, summary = run_a
    again = train(cfg)
    assert again["steps"] == 8 and again["tokens"] == summary["tokens"]
    assert len(th.train_rows(cfg.run_dir)) == 8


@pytest.mark.parametrize("budget", [{"max_tokens": 5001}, {"max_supervised_tokens": 3333}])
def test_budgets_stop_exactly(pairs_shards, tmp_path, budget):
    cfg = th.tiny_config(tmp_path, pairs_shards, **budget)
    cfg.export_hf = False
    summary = train(cfg)
    key, want = next(iter(budget.items()))
    got = summary["tokens"] if key == "max_tokens" else summary["supervised_tokens"]
    assert got == want
    last = th.train_rows(tmp_path)[summary["steps"]]
    assert int(last["tokens"]) == summary["tokens"] and summary["budget"]["planned_steps"] >= summary["steps"] - 1


def test_bad_inputs_give_clear_errors(run_a, pairs_shards, documents_shards, tmp_path):
    cfg, _ = run_a
    with pytest.raises(FitrainError, match="no prepared data"):
        train(th.tiny_config(tmp_path / "x", tmp_path / "missing", max_steps=1))
    with pytest.raises(FitrainError, match="tokenizer has 1000 tokens"):
        bad = th.tiny_config(tmp_path / "x", pairs_shards, max_steps=1)
        bad.model.vocab_size = 512
        train(bad)
    with pytest.raises(ConfigError, match="did you mean 'tiny'"):
        bad = th.tiny_config(tmp_path / "x", pairs_shards, max_steps=1)
        bad.model.preset = "tinny"
        train(bad)
    with pytest.raises(FitrainError, match="cannot be met.*max_epochs=1"):
        train(th.tiny_config(tmp_path / "x", pairs_shards, max_tokens=10**9))
    corrupt = tmp_path / "corrupt.ckpt"
    corrupt.write_bytes(b"PK\x03\x04 not really a checkpoint")
    with pytest.raises(FitrainError, match="corrupt"):
        train(th.tiny_config(tmp_path / "x", pairs_shards, max_steps=8, resume=str(corrupt)))
    ckpt = Path(cfg.run_dir) / "checkpoints" / "step-00000004.ckpt"
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(ckpt.read_bytes()[: ckpt.stat().st_size // 2])
    with pytest.raises(FitrainError, match="corrupt"):
        train(th.tiny_config(tmp_path / "x", pairs_shards, max_steps=8, resume=str(truncated)))
    with pytest.raises(FitrainError, match="trained on data with fingerprint"):
        train(th.tiny_config(tmp_path / "x", documents_shards, max_steps=1, resume=str(ckpt)))
    with pytest.raises(FitrainError, match="does not match the model.*hidden_size"):
        bad = th.tiny_config(tmp_path / "x", pairs_shards, max_steps=8, resume=str(ckpt))
        bad.model.dim = 32
        train(bad)


def test_signal_flag_catches_sigusr1_sigterm_and_sigint():
    import os
    import signal

    from fitrain.train.hooks import SignalFlag

    for sig in (signal.SIGUSR1, signal.SIGTERM, signal.SIGINT):
        old = signal.getsignal(sig)
        with SignalFlag() as flag:
            os.kill(os.getpid(), sig)
            assert flag.received == sig
        assert signal.getsignal(sig) == old


def test_a_second_ctrl_c_stops_at_once():
    import os
    import signal

    from fitrain.train.hooks import SignalFlag

    with pytest.raises(KeyboardInterrupt):
        with SignalFlag() as flag:
            os.kill(os.getpid(), signal.SIGINT)
            assert flag.received == signal.SIGINT
            os.kill(os.getpid(), signal.SIGINT)


@pytest.mark.parametrize("signame", ["SIGTERM"])
def test_preemption_signal_checkpoints_and_resume_matches_uninterrupted_run(run_a, tmp_path, signame):
    import os
    import signal
    import threading
    import time

    cfg_a, _ = run_a
    run_dir = tmp_path / "pre"
    csv_path = run_dir / "logs" / "metrics.csv"

    def send_when_training():
        deadline = time.time() + 120
        while time.time() < deadline:
            if csv_path.is_file() and len(csv_path.read_text().splitlines()) >= 2:  # header + step 1
                os.kill(os.getpid(), getattr(signal, signame))
                return
            time.sleep(0.005)

    threading.Thread(target=send_when_training, daemon=True).start()
    first = train(th.tiny_config(run_dir, cfg_a.data.path, max_steps=8))
    assert first["status"] == "preempted" and 1 <= first["steps"] < 8
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == f"step-{first['steps']:08d}.ckpt"
    assert first["hf_dir"] is None and not (run_dir / "hf").exists()
    second = train(th.tiny_config(run_dir, cfg_a.data.path, max_steps=8))  # resume=auto
    assert second["status"] == "finished" and second["steps"] == 8 and second["wandb_id"] == first["wandb_id"]
    a, b = th.train_rows(cfg_a.run_dir), th.train_rows(run_dir)
    assert sorted(b) == list(range(1, 9))  # each step logged once
    for step in b:
        assert (a[step]["loss"], a[step]["grad_norm"]) == (b[step]["loss"], b[step]["grad_norm"]), step


def test_tokenizer_with_another_pad_id_is_refused(pairs_shards, tmp_path):
    import json
    import shutil

    data = tmp_path / "data"
    shutil.copytree(pairs_shards, data)
    m = json.loads((data / "manifest.json").read_text())
    m["tokenizer"]["pad_token_id"] = 7  # as if prepared with a tokenizer that pads with 7
    from fitrain.data.manifest import checksum

    m["checksum"] = checksum(m)  # (a hand edit without it is refused as such: tests/commands/test_bad_input.py)
    (data / "manifest.json").write_text(json.dumps(m))
    with pytest.raises(FitrainError, match="prepared with pad id 7"):
        train(th.tiny_config(tmp_path / "x", data, max_steps=1))


def test_eval_on_checkpoint_runs_in_the_background_per_checkpoint(pairs_shards, tmp_path):
    import sys
    import time

    marks = tmp_path / "marks"
    marks.mkdir()
    # the command records which checkpoint it was given and that the file existed when it ran
    cmd = (f"{sys.executable} -c \"import pathlib,sys; p=pathlib.Path(sys.argv[1]); "
           f"(pathlib.Path(sys.argv[2])/p.name).write_text(str(p.exists()))\" {{checkpoint}} {marks}")
    cfg = th.tiny_config(tmp_path / "run", pairs_shards, max_steps=4, checkpoint_every=2, keep_checkpoints=0,
                         eval_on_checkpoint=cmd)
    train(cfg)
    deadline = time.time() + 30
    while len(list(marks.iterdir())) < 2 and time.time() < deadline:
        time.sleep(0.2)
    got = {p.name: p.read_text() for p in marks.iterdir()}
    assert got == {"step-00000002.ckpt": "True", "step-00000004.ckpt": "True"}
    assert (tmp_path / "run" / "logs" / "eval-step-00000002.log").is_file()


def test_a_slurm_job_waits_for_its_checkpoint_evaluations(pairs_shards, tmp_path, monkeypatch):
    """Slurm kills a job step's processes when training exits: inside a job, the local evaluation of the
    final checkpoint is waited for (its marker exists when train() returns, 1.5 s after the command began)."""
    import sys

    monkeypatch.setenv("SLURM_JOB_ID", "4242")
    marks = tmp_path / "marks"
    marks.mkdir()
    cmd = (f"{sys.executable} -c \"import pathlib,sys,time; time.sleep(1.5); "
           f"(pathlib.Path(sys.argv[2])/pathlib.Path(sys.argv[1]).name).write_text('done')\" {{checkpoint}} {marks}")
    cfg = th.tiny_config(tmp_path / "run", pairs_shards, max_steps=2, eval_on_checkpoint=cmd, export_hf=False)
    summary = train(cfg)
    assert summary["status"] == "finished"
    assert (marks / "step-00000002.ckpt").read_text() == "done"


def test_ctrl_c_checkpoints_says_how_to_resume_and_the_rerun_is_bit_exact(run_a, tmp_path, capsys):
    """SIGINT (Ctrl-C) mid-training is handled like SIGTERM: a checkpoint at the end of the step, one line
    saying how to resume, status 'interrupted' (exit 130 through the CLI); the rerun resumes bit for bit."""
    import os
    import signal
    import threading
    import time

    from fitrain.commands.train import EXIT_CODES

    cfg_a, _ = run_a
    run_dir = tmp_path / "int"
    csv_path = run_dir / "logs" / "metrics.csv"

    def ctrl_c_when_training():
        deadline = time.time() + 120
        while time.time() < deadline:
            if csv_path.is_file() and len(csv_path.read_text().splitlines()) >= 3:  # header + steps 1, 2
                os.kill(os.getpid(), signal.SIGINT)
                return
            time.sleep(0.005)

    threading.Thread(target=ctrl_c_when_training, daemon=True).start()
    capsys.readouterr()
    first = train(th.tiny_config(run_dir, cfg_a.data.path, max_steps=8))
    err = capsys.readouterr().err
    assert first["status"] == "interrupted" and EXIT_CODES["interrupted"] == 130 and 2 <= first["steps"] < 8
    ckpt = run_dir / "checkpoints" / f"step-{first['steps']:08d}.ckpt"
    assert (run_dir / "checkpoints" / "latest").read_text().strip() == ckpt.name
    assert err.count("rerun to resume") == 1
    assert f"stopped by SIGINT after step {first['steps']} (checkpoint {ckpt}; rerun to resume)" in err
    assert "Traceback" not in err and not (run_dir / "hf").exists()
    second = train(th.tiny_config(run_dir, cfg_a.data.path, max_steps=8))
    assert second["status"] == "finished" and second["steps"] == 8
    a, b = th.train_rows(cfg_a.run_dir), th.train_rows(run_dir)
    assert sorted(b) == list(range(1, 9))
    for step in b:
        for col in ("loss", "grad_norm", "lr", "tokens", "supervised_tokens"):
            assert a[step][col] == b[step][col], (step, col)


def test_verify_checks_a_run_directory_and_a_flipped_byte_in_a_checkpoint(run_a, tmp_path, capsys):
    import shutil

    from tests.helpers.cli import assert_clean_error, run_main

    cfg, _ = run_a
    r = run_main(["verify", cfg.run_dir], capsys)
    assert r.rc == 0, r.err
    assert [line.split()[0] for line in r.out.splitlines()] == ["ok", "ok"]    # step-4, step-8
    bad = tmp_path / "step-00000004.ckpt"
    shutil.copy(Path(cfg.run_dir) / "checkpoints" / bad.name, bad)
    data = bytearray(bad.read_bytes())
    data[len(data) // 2] ^= 0x01                                            # inside the tensor data
    bad.write_bytes(bytes(data))
    line = assert_clean_error(run_main(["verify", bad], capsys), str(bad), "corrupt")
    assert "1 of 1" in line
    with pytest.raises(FitrainError, match="corrupt"):
        train(th.tiny_config(tmp_path / "x", cfg.data.path, max_steps=8, resume=str(bad)))
    with pytest.raises(FitrainError, match="corrupt"):
        from fitrain.train.export import export

        export(bad, tmp_path / "hf")
