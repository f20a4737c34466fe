"""results.json is merged over eval jobs, so a job never merges scores of another model or other settings
into it: one line naming the difference (exit 2) unless --overwrite, which starts the results afresh
(fitrain_eval.scoring). Which benchmarks a job runs, and client settings (timeouts, server address), are not
a difference."""
import json
import shutil

import pytest

from fitrain.core.errors import FitrainError
from fitrain_eval.run import EvalConfig, evaluate
from tests.helpers.cli import assert_clean_error, run_main


@pytest.fixture
def heldout(monkeypatch):
    import fitrain_eval.heldout as h

    value = {"v": 1.0}
    monkeypatch.setattr(h, "evaluate_heldout", lambda *a, **k: {"heldout/answer_loss": value["v"]})
    return value


def _cfg(model, out, **gen):
    cfg = EvalConfig(model=str(model), out=str(out))
    cfg.heldout.enabled = True
    for k, v in gen.items():
        setattr(cfg.generation, k, v)
    return cfg


def test_other_generation_settings_are_refused_until_overwrite(tiny_model_dir, tmp_path, heldout):
    out = tmp_path / "o"
    evaluate(_cfg(tiny_model_dir, out))
    heldout["v"] = 2.0
    with pytest.raises(FitrainError, match=r"another model or settings \(generation.max_new_tokens: 256 -> 128\)"):
        evaluate(_cfg(tiny_model_dir, out, max_new_tokens=128))
    assert json.loads((out / "results.json").read_text()) == {"heldout/answer_loss": 1.0}
    cfg = _cfg(tiny_model_dir, out, max_new_tokens=128)
    cfg.overwrite = True
    assert evaluate(cfg) == {"heldout/answer_loss": 2.0}
    evaluate(_cfg(tiny_model_dir, out, max_new_tokens=128))  # now the recorded settings


def test_another_model_or_judge_is_refused_and_client_settings_are_not(tiny_model_dir, tmp_path, heldout):
    out = tmp_path / "o"
    evaluate(_cfg(tiny_model_dir, out))
    cfg = _cfg(tiny_model_dir, out)
    cfg.generation.llm.timeout_s, cfg.judge.llm.base_url = 5.0, "http://127.0.0.1:1/v1"
    evaluate(cfg)
    other = tmp_path / "other-model"
    shutil.copytree(tiny_model_dir, other)
    with pytest.raises(FitrainError, match="model: "):
        evaluate(_cfg(other, out))
    cfg = _cfg(tiny_model_dir, out)
    cfg.judge.llm.model = "another-judge"
    with pytest.raises(FitrainError, match="judge.model: '' -> 'another-judge'"):
        evaluate(cfg)


def test_cli_refuses_in_one_line(tiny_model_dir, tmp_path, heldout, capsys):
    argv = ["eval", f"model={tiny_model_dir}", f"out={tmp_path}/o", "heldout.enabled=true"]
    assert run_main(argv, capsys).rc == 0
    r = run_main(argv + ["generation.prompt_format=raw"], capsys)
    assert_clean_error(r, "generation.prompt_format: 'instruction' -> 'raw'", "--overwrite")
    assert run_main(argv + ["generation.prompt_format=raw", "--overwrite"], capsys).rc == 0
