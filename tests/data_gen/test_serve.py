"""data_gen.serve starts a server process from its own command on a free port, waits until *that process*
serves the model asked for, and stops it afterwards. The stand-in for `vllm serve` is the scripted server
of tests/helpers/llm_server.py run as its own process."""
import socket
import sys

import pytest

from data_gen.config import ServeConfig
from data_gen.serve import free_port, served
from fitrain.core.errors import FitrainError
from fitrain.core.llm import LLMConfig, Request, make_backend
from tests.helpers.llm_server import ScriptedLLMServer, Reply
from tests.helpers.paths import REPO

STAND_IN = [sys.executable, str(REPO / "tests" / "helpers" / "llm_server.py")]


def stand_in(*extra, port=0, **kw) -> ServeConfig:
    return ServeConfig(enabled=True, command=list(STAND_IN), port=port, extra_args=list(extra),
                       health_timeout_s=60, poll_s=0.2, **kw)


def closed(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) != 0


def ask(llm: LLMConfig) -> str:
    [c] = make_backend(llm).complete([Request(messages=[{"role": "user", "content": "hi"}])])
    return c.text


def test_served_waits_for_our_process_points_the_client_and_stops(tmp_path):
    serve = stand_in("--startup-s", "1.0", "--responder", "echo")  # a server that takes a while to come up
    with served(LLMConfig(model="my-model", base_url="http://nowhere/v1"), serve, tmp_path / "log") as llm:
        port = int(llm.base_url.rsplit(":", 1)[1].split("/")[0])
        assert llm.base_url == f"http://127.0.0.1:{port}/v1" and port != 8000
        assert ask(llm) == "hi"
    assert closed(port)  # stopped
    assert "starting" in (tmp_path / "log").read_text()


def test_two_jobs_at_once_each_get_their_own_port_and_model(tmp_path):
    with served(LLMConfig(model="a"), stand_in("--responder", "echo"), tmp_path / "a.log") as a, \
            served(LLMConfig(model="b"), stand_in("--responder", "echo"), tmp_path / "b.log") as b:
        assert a.base_url != b.base_url
        assert (a.model, b.model) == ("a", "b") and ask(a) == ask(b) == "hi"


def test_a_port_held_by_a_neighbours_server_is_never_used(tmp_path):
    """The measured failure: a fixed port where another job's server (another model) already listens."""
    with ScriptedLLMServer(lambda k, b: Reply(text="the neighbour's answer"), model="other-model") as neighbour:
        port = int(neighbour.base_url.rsplit(":", 1)[1].split("/")[0])
        with pytest.raises(FitrainError, match=f"could not bind port {port}|not the one this job started"):
            with served(LLMConfig(model="mine"), stand_in(port=port), tmp_path / "log"):
                pass
        assert neighbour.requests == []  # not one request went to the neighbour


def test_a_neighbours_server_of_the_same_model_on_our_port_is_never_taken_for_ours(tmp_path):
    """Another job's server with the same model name answers on the port while ours still loads (it never
    binds here): the listening socket is not our process group's, so it is refused, not used."""
    with ScriptedLLMServer(lambda k, b: Reply(text="the neighbour's answer"), model="mine") as neighbour:
        port = int(neighbour.base_url.rsplit(":", 1)[1].split("/")[0])
        loading = ServeConfig(enabled=True, command=[sys.executable, "-c", "import time; time.sleep(30)", "--"],
                              port=port, health_timeout_s=20, poll_s=0.2)
        with pytest.raises(FitrainError, match="held by another process"):
            with served(LLMConfig(model="mine"), loading, tmp_path / "log"):
                pass
        assert neighbour.requests == []
    serve = stand_in("--responder", "echo")
    with served(LLMConfig(model="mine"), serve, tmp_path / "log2") as llm:  # our own server: recognised
        assert ask(llm) == "hi"


def test_a_server_serving_another_model_is_refused(tmp_path):
    with pytest.raises(FitrainError, match="not the one this job started: it serves \\['other'\\], not 'mine'"):
        with served(LLMConfig(model="mine"), stand_in("--served-model-name", "other"), tmp_path / "log"):
            pass


def test_a_server_that_exits_or_cannot_start_is_a_clear_error(tmp_path):
    serve = ServeConfig(enabled=True, command=[sys.executable, "-c", "import sys; sys.exit(3)"], poll_s=0.1)
    with pytest.raises(FitrainError, match="exited with status 3"):
        with served(LLMConfig(model="m"), serve, tmp_path / "log"):
            pass
    with pytest.raises(FitrainError, match="cannot start"):
        with served(LLMConfig(model="m"), ServeConfig(command=[str(tmp_path / "no-such-vllm")]), tmp_path / "log"):
            pass


def test_free_port_is_free():
    port = free_port()
    assert closed(port)


def test_pipeline_stage_runs_behind_the_started_server(tmp_path, dolly_contexts):
    from data_gen.config import DataGenConfig
    from data_gen.pipeline import run
    from tests.data_gen.test_llm_stages import setup_matches

    setup_matches(tmp_path / "data_gen", dolly_contexts[:1])
    cfg = DataGenConfig(run_dir=str(tmp_path), progress=False)
    cfg.instantiate.llm = LLMConfig(backend="openai", model="instantiator", base_url="http://unused/v1", max_retries=0)
    cfg.serve = stand_in()
    st = run(cfg, ["instantiate"], log=lambda s: None)["instantiate"]
    # the stand-in answers the instantiate contract: every template x the document gives a pair
    assert st["complete"] and st["stats"]["out"] == 10 and st["stats"]["rejected"]["total"] == 0
    log = (tmp_path / "data_gen" / "vllm-instantiate.log").read_text()
    assert "serving instantiator on http://127.0.0.1:" in log
    port = int(log.split("serving instantiator on http://127.0.0.1:")[1].split("/")[0])
    assert closed(port)  # stopped after the stage


def test_the_encoder_is_released_before_a_server_starts(tmp_path, dolly_contexts, monkeypatch):
    """match holds the encoder (on the GPU of a cluster job); vLLM needs that memory when it starts."""
    import gc
    import weakref

    import data_gen.match
    import data_gen.serve
    from data_gen import pipeline
    from data_gen.config import DataGenConfig
    from tests.data_gen.test_llm_stages import setup_matches

    class Encoder:  # stands in for data_gen.encoder.Encoder
        device = "cpu"

    refs, seen_at_start = [], []
    def load(self):
        self._encoder = self._encoder or Encoder()
        return self._encoder

    monkeypatch.setattr(pipeline._Resources, "encoder", load)

    def fake_match(cfg, stage_dir, index_dir, encoder, shard=None, log=print):
        refs.append(weakref.ref(encoder()))
        return {"complete": True}

    import fitrain.core.serve

    real_served = fitrain.core.serve.served

    def spy_served(*a, **kw):
        gc.collect()
        seen_at_start.append(refs[0]() is None)
        return real_served(*a, **kw)

    monkeypatch.setattr(data_gen.match, "run", fake_match)
    monkeypatch.setattr(fitrain.core.serve, "served", spy_served)  # (the lifecycle data_gen.serve re-exports)
    setup_matches(tmp_path / "data_gen", dolly_contexts[:1])
    cfg = DataGenConfig(run_dir=str(tmp_path), progress=False)
    cfg.match.documents = ["unused"]
    cfg.instantiate.llm = LLMConfig(backend="openai", model="instantiator", max_retries=0)
    cfg.serve = stand_in()
    pipeline.run(cfg, ["match", "instantiate"], log=lambda s: None)
    assert seen_at_start == [True]  # the encoder was gone when the server started
