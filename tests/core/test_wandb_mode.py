"""W&B online without an API key, or with a key and no route to the server, falls back to offline with one
warning (fitrain.core.wandb_mode), never a traceback or a long wait in wandb.init."""
from __future__ import annotations

import socket

import pytest

from fitrain.core import wandb_mode as wm


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for var in ("WANDB_API_KEY", "WANDB_MODE", "WANDB_BASE_URL"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "netrc"))
    monkeypatch.setenv("HOME", str(tmp_path))


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when this returns: connecting is refused


class FakeInit:
    def __init__(self, fail_online: bool = False):
        self.calls, self.fail_online = [], fail_online

    def __call__(self, **kw):
        self.calls.append(kw["mode"])
        if self.fail_online and kw["mode"] == "online":
            raise RuntimeError("api_key not valid\nmore lines")
        return kw["mode"]


def test_online_without_a_key_runs_offline_with_one_warning(no_credentials, capsys):
    init = FakeInit()
    assert wm.start_run(init, mode="online", dir="/r") == "offline" and init.calls == ["offline"]
    err = capsys.readouterr().err
    assert err.count("warning:") == 1 and "no W&B API key" in err and "/r/wandb" in err and "wandb sync" in err


def test_a_key_and_no_network_runs_offline(no_credentials, monkeypatch, capsys):
    monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{closed_port()}")
    init = FakeInit()
    assert wm.start_run(init, mode="online", dir="/r") == "offline" and init.calls == ["offline"]
    assert "cannot be reached" in capsys.readouterr().err


def test_a_key_and_a_reachable_server_runs_online(no_credentials, monkeypatch, capsys):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{srv.getsockname()[1]}")
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        init = FakeInit()
        assert wm.start_run(init, mode="online") == "online" and init.calls == ["online"]
    assert capsys.readouterr().err == ""


def test_an_online_start_that_fails_falls_back_once(no_credentials, monkeypatch, capsys):
    with socket.socket() as srv:
        srv.bind(("127.0.0.1", 0))
        srv.listen()
        monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{srv.getsockname()[1]}")
        monkeypatch.setenv("WANDB_API_KEY", "k" * 40)
        init = FakeInit(fail_online=True)
        assert wm.start_run(init, mode="online", dir="/r") == "offline" and init.calls == ["online", "offline"]
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "RuntimeError: api_key not valid" in err


@pytest.mark.parametrize("mode", ["offline", "disabled"])
def test_other_modes_are_left_alone(no_credentials, mode):
    init = FakeInit()
    assert wm.start_run(init, mode=mode) == mode


def test_a_netrc_entry_for_the_wandb_host_is_a_key(no_credentials, tmp_path):
    assert not wm.has_api_key()
    (tmp_path / "netrc").write_text("machine api.wandb.ai\n  login user\n  password " + "k" * 40 + "\n")
    assert wm.has_api_key()


def test_metrics_log_writes_an_offline_run_when_online_is_not_possible(no_credentials, tmp_path, capsys):
    from fitrain.train.metrics import MetricsLog, WandbConfig

    log = MetricsLog(tmp_path / "logs" / "metrics.csv")
    log.start_wandb(WandbConfig(mode="online"), "run1", tmp_path / "run", {"a": 1}, "g", "n")
    log.log({"step": 1, "loss": 1.0})
    log.close({"status": "finished"})
    assert list((tmp_path / "run" / "wandb").glob("offline-run-*"))
    assert capsys.readouterr().err.count("W&B online is not possible") == 1
