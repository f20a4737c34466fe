"""The OpenAI-compatible client against servers that misbehave at the HTTP level: a reply trickled a byte at a
time must end at the client's total deadline (connect + send + receive), not per read; a /v1/models answer that
is not an OpenAI model list is a one-line error naming the server."""
from __future__ import annotations

import json
import socket
import threading
import time

import pytest

from fitrain.core.llm import LLMConfig, OpenAIBackend, Request, ServerUnavailable, check_served, served_models
from fitrain.core.llm_openai import BadModelList

MODEL = "/models/dir:Model.Q4_1.gguf"


class RawServer:
    """A 127.0.0.1 HTTP server written on bare sockets: ``answer(path) -> (body, trickle)``; with ``trickle`` the
    body is sent one byte every ``gap_s`` seconds (the headers at once)."""

    def __init__(self, answer, gap_s: float = 0.5):
        self.answer, self.gap_s = answer, gap_s
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(16)
        self.base = f"http://127.0.0.1:{self.sock.getsockname()[1]}/v1"
        self.stopped = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            threading.Thread(target=self._one, args=(conn,), daemon=True).start()

    def _one(self, conn: socket.socket) -> None:
        with conn:
            try:
                data = b""
                while b"\r\n\r\n" not in data:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    data += chunk
                head, rest = data.split(b"\r\n\r\n", 1)
                length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                               if line.lower().startswith(b"content-length:")), 0)
                while len(rest) < length:
                    rest += conn.recv(65536)
                path = head.split(b" ")[1].decode()
                body, trickle = self.answer(path)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(body))
                for i in range(len(body)):
                    if not trickle:
                        conn.sendall(body[i:])
                        break
                    if self.stopped.is_set():
                        return
                    conn.sendall(body[i:i + 1])
                    time.sleep(self.gap_s)
            except OSError:
                return

    def close(self) -> None:
        self.stopped.set()
        self.sock.close()


def _models(ids=(MODEL,)) -> bytes:
    return json.dumps({"object": "list", "data": [{"id": i, "object": "model"} for i in ids]}).encode()


def _chat(text: str) -> bytes:
    return json.dumps({"id": "x", "object": "chat.completion", "created": 0, "model": MODEL,
                       "choices": [{"index": 0, "finish_reason": "stop",
                                    "message": {"role": "assistant", "content": text}}]}).encode()


@pytest.fixture
def raw_server():
    servers = []

    def make(answer, gap_s=0.5):
        servers.append(RawServer(answer, gap_s))
        return servers[-1]

    yield make
    for s in servers:
        s.close()


def _run_within(fn, limit_s: float):
    """``fn()``'s result or exception; fails the test if it has not returned within ``limit_s`` (the trickled
    replies below take minutes to arrive, so a client without a total deadline hangs past any such limit)."""
    out: dict = {}

    def target():
        try:
            out["value"] = fn()
        except BaseException as e:  # noqa: BLE001 - handed to the test
            out["error"] = e

    t = threading.Thread(target=target, daemon=True)
    t.start()
    t.join(limit_s)
    assert not t.is_alive(), f"the request did not end within {limit_s}s"
    return out


def test_a_trickled_chat_reply_ends_at_the_request_deadline_and_is_counted_failed(raw_server):
    # /models answers at once (the server is up); each chat reply would take ~100 s at a byte per 0.5 s
    srv = raw_server(lambda path: (_models(), False) if path.endswith("/models")
                     else (_chat("x" * 40), True))
    cfg = LLMConfig(model=MODEL, base_url=srv.base, timeout_s=2.0, max_retries=1, backoff_s=0.1)
    out = _run_within(lambda: OpenAIBackend(cfg).complete([Request(messages=[{"role": "user", "content": "hi"}])]),
                      limit_s=30)
    assert "error" not in out, out.get("error")
    (c,) = out["value"]
    assert c.text is None and c.attempts == 2 and "no complete reply within 2s" in c.error


def test_a_trickled_models_list_ends_at_the_check_deadline_naming_the_server(raw_server):
    srv = raw_server(lambda path: (_models(), True))
    out = _run_within(lambda: check_served(LLMConfig(model=MODEL, base_url=srv.base), timeout_s=2.0), limit_s=20)
    err = out.get("error")
    assert isinstance(err, ServerUnavailable), out
    assert srv.base in str(err) and "within 2s" in str(err) and "\n" not in str(err)


@pytest.mark.parametrize("body, shape", [(b'{"data": null}', '"data": null'), (b'[{"id": "m"}]', "a bare list"),
                                         (b"<html>hi</html>", "not JSON")])
def test_a_models_answer_that_is_no_model_list_is_one_line_naming_the_server(raw_server, body, shape):
    srv = raw_server(lambda path: (body, False))
    with pytest.raises(BadModelList, match="not"):
        served_models(srv.base)
    with pytest.raises(ServerUnavailable) as e:
        check_served(LLMConfig(model=MODEL, base_url=srv.base))
    msg = str(e.value)
    assert srv.base in msg and shape in msg and "not an OpenAI-compatible server" in msg and "\n" not in msg


def test_a_model_id_with_colon_and_slashes_is_served_and_checked_as_is(raw_server):
    """transformers serve lists a GGUF model as ``<dir>:<file>.gguf``: the id is compared and sent verbatim."""
    srv = raw_server(lambda path: (_models(), False) if path.endswith("/models") else (_chat("Paris."), False))
    cfg = LLMConfig(model=MODEL, base_url=srv.base, timeout_s=10.0)
    check_served(cfg)
    (c,) = OpenAIBackend(cfg).complete([Request(messages=[{"role": "user", "content": "capital?"}], logprobs=3)])
    assert c.text == "Paris."
    assert c.logprobs is None  # asked for, none sent (transformers serve): None, never an empty or made-up list


def test_a_first_answer_slower_than_the_deadline_is_asked_again_and_answered(raw_server):
    """A server that loads its model lazily answers its first request late: that attempt ends at the deadline
    and the retry is answered (README "Tests against a real server")."""
    chats = []

    def answer(path):
        if path.endswith("/models"):
            return _models(), False
        chats.append(path)
        return _chat("Paris."), len(chats) == 1  # only the first reply is slow

    srv = raw_server(answer)
    cfg = LLMConfig(model=MODEL, base_url=srv.base, timeout_s=2.0, max_retries=2, backoff_s=0.1)
    out = _run_within(lambda: OpenAIBackend(cfg).complete([Request(messages=[{"role": "user", "content": "?"}])]),
                      limit_s=30)
    (c,) = out["value"]
    assert c.text == "Paris." and c.attempts == 2 and len(chats) == 2
