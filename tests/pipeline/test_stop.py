"""SIGINT and SIGTERM in `fitrain experiment` (fitrain.core.stop): the step that runs finishes, the
experiment stops before the next one with one line saying how to resume (exit 3), a second signal stops at
once (130), and the rerun goes on from the next step."""
import os
import signal

import pytest

from fitrain.core.io import is_done
from fitrain.core.stop import Stopped, check_stop, graceful_stop, stop_requested
from fitrain.pipeline.run import run_experiment
from tests.helpers.cli import run_main
from tests.pipeline.test_run import Recorder, _cfg, _runners


class SignalDuring(Recorder):
    """Records the steps; sends ``sig`` to this process while ``step`` runs (``times`` times)."""

    def __init__(self, step, sig=signal.SIGINT, times=1):
        super().__init__()
        self.step, self.sig, self.times = step, sig, times

    def __call__(self, cfg, step, shard):
        out = super().__call__(cfg, step, shard)
        if step.name == self.step:
            for _ in range(self.times):
                os.kill(os.getpid(), self.sig)
        return out


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM])
def test_a_signal_stops_the_experiment_after_the_running_step_and_the_rerun_goes_on(tmp_path, capsys, sig):
    cfg = _cfg(tmp_path)
    rec = SignalDuring("tokenizer", sig)
    with pytest.raises(Stopped, match=f"stopped by {sig.name} before data_gen-templates.*rerun it"):
        with graceful_stop("rerun it to resume"):
            run_experiment(cfg, runners=_runners(rec), log=lambda m: None)
    assert rec.calls == ["corpus", "tokenizer"]
    assert is_done(cfg.layout.step_marker_dir("tokenizer"))  # the step that ran finished
    assert f"{sig.name} received: stopping at the next safe point" in capsys.readouterr().err
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler and stop_requested() is None
    rec2 = Recorder()
    run_experiment(cfg, runners=_runners(rec2), log=lambda m: None)
    assert rec2.calls[0] == "data_gen-templates" and rec2.calls[-1] == "report"


def test_a_second_signal_stops_at_once(tmp_path):
    rec = SignalDuring("tokenizer", times=2)
    with pytest.raises(KeyboardInterrupt):
        with graceful_stop("rerun"):
            run_experiment(_cfg(tmp_path), runners=_runners(rec), log=lambda m: None)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_nested_blocks_share_the_outer_message_and_no_signal_means_no_stop():
    with graceful_stop("outer hint"):
        with graceful_stop("inner hint"):
            check_stop("anywhere")  # nothing asked: goes on
            os.kill(os.getpid(), signal.SIGINT)
            with pytest.raises(Stopped, match="outer hint"):
                check_stop("here")


def test_cli_experiment_stops_with_exit_3_and_one_line(tmp_path, capsys, monkeypatch):
    import fitrain.pipeline.run as run_mod

    def fake_run(cfg, **kw):
        os.kill(os.getpid(), signal.SIGINT)
        check_stop("before train-fi")
        return {}

    monkeypatch.setattr(run_mod, "run_experiment", fake_run)
    recipe = tmp_path / "exp.yaml"
    recipe.write_text(f"name: stop-test\nrun_dir: {tmp_path}/run\n")
    r = run_main(["experiment", recipe], capsys)
    assert r.rc == 3 and "Traceback" not in r.err
    lines = [ln for ln in r.err.splitlines() if "stopped by SIGINT" in ln]
    assert len(lines) == 1 and f"rerun `fitrain experiment {recipe}`" in lines[0], r.err
