"""Judge settings per benchmark and the local judge server: `fitrain eval` starts its judge itself through
the lifecycle data_gen's servers use (fitrain.core.serve: its own command, a free port, the identity check,
stopped at the end); the stand-in for `vllm serve` is tests/helpers/llm_server.py run as its own process.
The API key is read from the environment variable the config names and is written to no file."""
import json
import re
import socket
import sys

import pytest

from fitrain.core.errors import FitrainError
from fitrain.core.llm import LLMConfig
from fitrain.core.serve import ServeConfig
from fitrain_eval.judges.common import judge_config_for
from fitrain_eval.run import EvalConfig, evaluate
from tests.helpers.eval_clients import DATA
from tests.helpers.llm_server import Reply, ScriptedLLMServer
from tests.helpers.paths import REPO

STAND_IN = [sys.executable, str(REPO / "tests" / "helpers" / "llm_server.py")]
SECRET = "sk-test-0123456789-never-in-a-file"


def _closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def _pairwise_cfg(tiny_model_dir, out, generator_url: str, *serve_args: str) -> EvalConfig:
    cfg = EvalConfig(model=str(tiny_model_dir), out=str(out), arm="fi")
    cfg.generation.llm = LLMConfig(backend="openai", model="gen", base_url=generator_url, max_retries=0)
    cfg.generation.prompt_format = "raw"
    cfg.pairwise.enabled, cfg.pairwise.limit = True, 3
    cfg.pairwise.instructions = cfg.pairwise.baseline_outputs = str(DATA / "alpaca_eval" / "example_outputs.json")
    cfg.judge.llm = LLMConfig(backend="openai", model="local-judge", max_retries=0, api_key_env="FITRAIN_TEST_KEY")
    # a judge that always prefers the first output (AlpacaEval's "m"), started by the eval job itself
    cfg.judges = {"pairwise": {"serve": {"enabled": True, "command": STAND_IN, "health_timeout_s": 60,
                                         "poll_s": 0.2, "extra_args": ["--reply", "m", *serve_args]}}}
    return cfg


def test_eval_starts_its_local_judge_server_uses_it_and_stops_it(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FITRAIN_TEST_KEY", SECRET)
    out = tmp_path / "o"
    with ScriptedLLMServer(lambda kind, body: Reply(text="an answer"), model="gen") as gen:
        res = evaluate(_pairwise_cfg(tiny_model_dir, out, gen.base_url))
    assert res["pairwise/example/n"] == 3 and 0 <= res["pairwise/example/win_rate"] <= 1
    assert json.loads((out / "judges.json").read_text()) == {"pairwise": {"model": "local-judge",
                                                                          "local_server": True}}
    log = (out / "judge-server-0.log").read_text()
    port = int(re.search(r"serving local-judge on http://127\.0\.0\.1:(\d+)", log).group(1))
    assert _closed(port)  # stopped at the end of the job
    # the key came from the environment variable the config names; no file of the job holds it
    for f in [p for p in tmp_path.rglob("*") if p.is_file()]:
        assert SECRET not in f.read_text(errors="replace"), f
    assert "FITRAIN_TEST_KEY" in (out / "eval_config.yaml").read_text()


def test_a_local_judge_that_serves_another_model_is_refused(tiny_model_dir, tmp_path, monkeypatch):
    monkeypatch.setenv("FITRAIN_TEST_KEY", SECRET)
    with ScriptedLLMServer(lambda kind, body: Reply(text="an answer"), model="gen") as gen:
        cfg = _pairwise_cfg(tiny_model_dir, tmp_path / "o", gen.base_url, "--served-model-name", "another-model")
        with pytest.raises(FitrainError, match=r"is not the one this job started: .*another-model"):
            evaluate(cfg)
    assert not (tmp_path / "o" / "results.json").exists()


def test_each_benchmark_gets_its_own_judge_settings_and_unknown_ones_are_named():
    cfg = EvalConfig()
    cfg.judge.llm = LLMConfig(model="gpt-5-mini", base_url="https://api.openai.com/v1", api_key_env="OPENAI_API_KEY")
    cfg.judges = {"pairwise": {"llm": {"model": "gpt-4-turbo"}}}
    assert judge_config_for(cfg, "mixeval").llm.model == "gpt-5-mini"
    pw = judge_config_for(cfg, "pairwise").llm
    assert (pw.model, pw.base_url, pw.api_key_env) == ("gpt-4-turbo", "https://api.openai.com/v1", "OPENAI_API_KEY")
    cfg.judges = {"alpacaeval": {"llm": {"model": "x"}}}
    with pytest.raises(FitrainError, match=r"eval.judges: \['alpacaeval'\] not judged benchmarks"):
        judge_config_for(cfg, "pairwise")
    cfg.judges = {"pairwise": {"llm": {"modle": "x"}}}
    with pytest.raises(FitrainError, match=r"eval.judges.pairwise: .*modle"):
        judge_config_for(cfg, "pairwise")
    assert isinstance(cfg.judge.serve, ServeConfig) and not cfg.judge.serve.enabled


def test_an_unset_key_variable_is_a_one_line_error(monkeypatch):
    from fitrain.core.llm import api_key_of

    monkeypatch.delenv("FITRAIN_NO_SUCH_KEY", raising=False)
    with pytest.raises(FitrainError, match=r"environment variable FITRAIN_NO_SUCH_KEY is not set"):
        api_key_of(LLMConfig(api_key_env="FITRAIN_NO_SUCH_KEY"))
