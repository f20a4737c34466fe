"""data_gen.serve starts a server process from its own command, waits for /health, stops it afterwards.
A tiny stand-in for `vllm serve` (a real HTTP process) plays the server."""
import socket
import sys
import textwrap

import pytest

from data_gen.config import ServeConfig
from data_gen.serve import served
from fitrain.core.errors import FitrainError
from fitrain.core.llm import LLMConfig, Request, make_backend

FAKE = textwrap.dedent('''
    import json, sys, time
    from http.server import BaseHTTPRequestHandler, HTTPServer
    args = sys.argv[1:]
    model, port = args[1], int(args[args.index("--port") + 1])
    time.sleep(1.0)  # a server that takes a while to come up
    class H(BaseHTTPRequestHandler):
        def log_message(self, *a): pass
        def _send(self, obj):
            b = json.dumps(obj).encode(); self.send_response(200)
            self.send_header("Content-Type", "application/json"); self.send_header("Content-Length", str(len(b)))
            self.end_headers(); self.wfile.write(b)
        def do_GET(self):
            self._send({})
        def do_POST(self):
            self.rfile.read(int(self.headers["Content-Length"]))
            self._send({"id": "x", "object": "chat.completion", "created": 0, "model": model, "choices": [
                {"index": 0, "finish_reason": "stop", "message": {"role": "assistant", "content": "served " + model}}]})
    HTTPServer(("127.0.0.1", port), H).serve_forever()
''')


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_served_waits_for_health_points_the_client_and_stops(tmp_path):
    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE)
    port = free_port()
    serve = ServeConfig(enabled=True, command=[sys.executable, str(script), "serve"], port=port, health_timeout_s=30)
    with served(LLMConfig(model="my-model", base_url="http://nowhere/v1"), serve, tmp_path / "log") as llm:
        assert llm.base_url == f"http://127.0.0.1:{port}/v1"
        [c] = make_backend(llm).complete([Request(messages=[{"role": "user", "content": "hi"}])])
        assert c.text == "served my-model"
    with socket.socket() as s:  # the server is gone
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_served_reports_a_server_that_dies(tmp_path):
    serve = ServeConfig(enabled=True, command=[sys.executable, "-c", "import sys; sys.exit(3)"], port=free_port())
    with pytest.raises(FitrainError, match="exited with status 3"):
        with served(LLMConfig(model="m"), serve, tmp_path / "log"):
            pass
    with pytest.raises(FitrainError, match="cannot start"):
        with served(LLMConfig(model="m"), ServeConfig(command=[str(tmp_path / "no-such-vllm")]), tmp_path / "log"):
            pass


def test_pipeline_stage_runs_behind_the_started_server(tmp_path, dolly_contexts):
    from data_gen.config import DataGenConfig
    from data_gen.pipeline import run
    from tests.data_gen.test_llm_stages import setup_matches

    script = tmp_path / "fake_vllm.py"
    script.write_text(FAKE)
    setup_matches(tmp_path / "data_gen", dolly_contexts[:1])
    cfg = DataGenConfig(run_dir=str(tmp_path), progress=False)
    cfg.instantiate.llm = LLMConfig(backend="openai", model="instantiator", base_url="http://unused/v1", max_retries=0)
    cfg.serve = ServeConfig(enabled=True, command=[sys.executable, str(script), "serve"], port=free_port(),
                            health_timeout_s=30)
    st = run(cfg, ["instantiate"], log=lambda s: None)["instantiate"]
    # the stand-in answers "served instantiator" to every request: reached, and counted as unparsable
    assert st["complete"] and st["stats"]["rejected"]["by_reason"] == {"instantiator_unparsable": 10}
    assert (tmp_path / "data_gen" / "vllm-instantiate.log").is_file()
    with socket.socket() as s:
        assert s.connect_ex(("127.0.0.1", cfg.serve.port)) != 0  # stopped after the stage
