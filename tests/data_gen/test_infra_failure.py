"""Requests that fail at the server (HTTP 5xx, timeouts while it is up) beyond ``max_failed_share`` are an
infrastructure failure (fitrain.core.server_failures): the shard is not marked done, the command exits 2
naming the server and the share, and a rerun against a healthy server ends with exactly the rows of an
uninterrupted run. Below the share they stay counted rejects."""
import json

import pytest
import yaml

from data_gen.config import DataGenConfig
from data_gen.pipeline import run
from data_gen.shards import shard_dir
from fitrain.core.config import from_dict
from fitrain.core.errors import ConfigError
from fitrain.core.io import is_done
from fitrain.core.llm import LLMConfig
from fitrain.core.server_failures import InfrastructureFailure, TrackedRejects, check_share, is_server_error
from tests.data_gen.conftest import final_rows
from tests.data_gen.test_server_tasks import SHARDS, setup_run
from tests.helpers.cli import assert_clean_error, run_cli
from tests.helpers.llm_server import Reply, ScriptedLLMServer, datagen_responder

STAGES = ["instantiate", "judge", "write"]


class Switch:
    """A responder that answers HTTP ``status`` to every request until ``healthy`` is set."""

    def __init__(self, status: int = 500):
        self.status, self.healthy = status, False

    def __call__(self, kind, body):
        return datagen_responder(kind, body) if self.healthy else Reply(status=self.status)


def config(root, url, **kw) -> DataGenConfig:
    cfg = DataGenConfig(run_dir=str(root), num_shards=SHARDS, progress=False, **kw)
    llm = dict(base_url=url, max_retries=1, backoff_s=0.01, timeout_s=30.0)
    cfg.instantiate.llm = LLMConfig(model="scripted", **llm)
    cfg.judge.llm = LLMConfig(model="scripted", **llm)
    return cfg


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, dolly_contexts):
    root = tmp_path_factory.mktemp("uninterrupted")
    setup_run(root, dolly_contexts[:8])
    with ScriptedLLMServer(datagen_responder) as srv:
        run(config(root, srv.base_url), STAGES, log=lambda s: None)
    rows = final_rows(root)
    assert rows
    return rows


@pytest.mark.parametrize("status", [500, 503])
def test_a_server_failing_every_request_marks_nothing_done_and_the_rerun_is_exact(
        uninterrupted, tmp_path, dolly_contexts, status):
    setup_run(tmp_path, dolly_contexts[:8])
    responder = Switch(status)
    with ScriptedLLMServer(responder) as srv:
        with pytest.raises(InfrastructureFailure) as e:
            run(config(tmp_path, srv.base_url), STAGES, log=lambda s: None)
        msg = str(e.value)
        assert srv.base_url in msg and "16 of 16 requests (100%)" in msg and "[instantiate] shard 0" in msg
        pairs = tmp_path / "data_gen" / "pairs"
        assert not any(is_done(shard_dir(pairs, i)) for i in range(SHARDS)) and not is_done(pairs)
        assert not (shard_dir(pairs, 0) / "pairs.parquet").exists()
        responder.healthy = True  # the server is fixed: the rerun resumes and completes
        run(config(tmp_path, srv.base_url), STAGES, log=lambda s: None)
    assert final_rows(tmp_path) == uninterrupted


def test_the_judge_stage_follows_the_same_rule(uninterrupted, tmp_path, dolly_contexts):
    setup_run(tmp_path, dolly_contexts[:8])
    with ScriptedLLMServer(datagen_responder) as srv:
        run(config(tmp_path, srv.base_url), ["instantiate"], log=lambda s: None)
    judge_down = Switch(502)
    with ScriptedLLMServer(judge_down) as srv:
        with pytest.raises(InfrastructureFailure, match=r"\[judge\] shard 0: \d+ of \d+ requests \(100%\)"):
            run(config(tmp_path, srv.base_url), ["judge"], log=lambda s: None)
        assert not is_done(shard_dir(tmp_path / "data_gen" / "judged", 0))
        judge_down.healthy = True
        run(config(tmp_path, srv.base_url), ["judge", "write"], log=lambda s: None)
    assert final_rows(tmp_path) == uninterrupted


def test_failures_below_the_share_stay_counted_rejects(tmp_path, dolly_contexts):
    setup_run(tmp_path, dolly_contexts[:8])
    seen: set = set()

    def one_bad(kind, body):  # the first request that names "What is" fails, every time it is asked
        msg = json.dumps(body)
        if "What is" in msg and (not seen or msg in seen):
            seen.add(msg)
            return Reply(status=500)
        return datagen_responder(kind, body)

    with ScriptedLLMServer(one_bad) as srv:
        cfg = config(tmp_path, srv.base_url, max_failed_share=0.1)  # 1 of 16 (6%) is below 10%
        st = run(cfg, ["instantiate"], log=lambda s: None)["instantiate"]
    assert st["complete"] and st["stats"]["rejected"]["by_reason"].get("instantiator_failed") == 1


def test_a_zero_share_fails_on_the_first_server_failure(tmp_path):
    r = TrackedRejects()
    r.add("judge_failed", "x", "InternalServerError 500: boom")
    with pytest.raises(InfrastructureFailure, match="1 of 1000 requests"):
        check_share(r, 1000, 0.0, "http://127.0.0.1:1/v1", "[judge] shard 3")
    check_share(r, 1000, 0.001, "http://127.0.0.1:1/v1", "[judge] shard 3")  # 0.1% is not above 0.1%


@pytest.mark.parametrize("detail,server", [
    ("InternalServerError 500: boom", True), ("APIStatusError 503: unavailable", True),
    ("APITimeoutError: Request timed out.", True), ("RateLimitError 429: slow down", True),
    ("BadRequestError 400: prompt too long", False), ("ValueError: bad body", False), ("", False)])
def test_only_server_side_errors_count_toward_the_share(detail, server):
    assert is_server_error(detail) is server
    r = TrackedRejects()
    r.add("instantiator_failed", "id", detail)
    assert r.server_failed == int(server) and r.total == 1


@pytest.mark.parametrize("share", [-0.1, 1.5, float("nan")])
def test_a_share_outside_0_1_is_a_config_error(share):
    with pytest.raises(ConfigError, match="max_failed_share"):
        from_dict(DataGenConfig, {"max_failed_share": share})


def test_cli_exits_2_with_one_line_naming_the_server_and_the_share(tmp_path, dolly_contexts):
    setup_run(tmp_path, dolly_contexts[:4])
    with ScriptedLLMServer(Switch(500)) as srv:
        llm = {"model": "scripted", "base_url": srv.base_url, "max_retries": 0, "timeout_s": 30}
        recipe = tmp_path / "dg.yaml"
        recipe.write_text(yaml.safe_dump({"run_dir": str(tmp_path), "num_shards": SHARDS, "progress": False,
                                          "instantiate": {"llm": llm}, "judge": {"llm": llm}}))
        r = run_cli(["data-gen", "run", recipe, "--stages", "instantiate"])
    line = assert_clean_error(r, srv.base_url, "100%", "max_failed_share")
    assert "marked done" in line
    assert not is_done(shard_dir(tmp_path / "data_gen" / "pairs", 0))
