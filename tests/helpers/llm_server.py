"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests (chat + completions + models).

``responder(kind, body) -> Reply`` decides each answer: ``kind`` is ``"chat"`` or ``"completions"``,
``body`` the parsed request JSON. A Reply can carry text, an HTTP status (500, 429, ...), a delay (to
exercise timeouts), a raw malformed body, or the top log-probabilities of its first token (sent only when
the request asks for ``logprobs``, in the OpenAI layout). All requests are recorded in ``server.requests``.
"""
from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    text: str | None = None
    status: int = 200
    delay_s: float = 0.0
    raw: bytes | None = None  # sent as is (malformed bodies)
    top_logprobs: dict[str, float] | None = None  # the first token's top log-probabilities


def _logprobs(kind: str, text: str, top: dict[str, float] | None):
    if top is None:
        return None
    if kind == "chat":
        return {"content": [{"token": text, "logprob": top.get(text, -20.0), "bytes": None,
                             "top_logprobs": [{"token": t, "logprob": v, "bytes": None} for t, v in top.items()]}]}
    return {"tokens": [text], "token_logprobs": [top.get(text, -20.0)], "top_logprobs": [top], "text_offset": [0]}


def _body(kind: str, model: str, text: str, top: dict[str, float] | None = None) -> dict:
    usage = {"prompt_tokens": 1, "completion_tokens": max(1, len(text.split())), "total_tokens": 2}
    if kind == "chat":
        return {"id": "x", "object": "chat.completion", "created": 0, "model": model, "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop", "logprobs": _logprobs(kind, text, top),
                             "message": {"role": "assistant", "content": text}}]}
    return {"id": "x", "object": "text_completion", "created": 0, "model": model, "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop", "text": text, "logprobs": _logprobs(kind, text, top)}]}


class ScriptedLLMServer:
    def __init__(self, responder: Callable[[str, dict], Reply], model: str = "scripted"):
        self.responder, self.model = responder, model
        self.requests: list[tuple[str, dict]] = []
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):  # quiet
                pass

            def _send(self, status: int, payload: bytes) -> None:
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def do_GET(self):
                if self.path.rstrip("/").endswith("/models"):
                    self._send(200, json.dumps({"object": "list", "data": [
                        {"id": outer.model, "object": "model", "created": 0, "owned_by": "test"}]}).encode())
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                kind = "chat" if self.path.endswith("/chat/completions") else "completions"
                with outer._lock:
                    outer.requests.append((kind, body))
                r = outer.responder(kind, body)
                if r.delay_s:
                    time.sleep(r.delay_s)
                try:
                    if r.raw is not None:
                        self._send(r.status, r.raw)
                    elif r.status != 200:
                        self._send(r.status, json.dumps({"error": {"message": "scripted failure"}}).encode())
                    else:
                        top = r.top_logprobs if body.get("logprobs") else None
                        self._send(200, json.dumps(_body(kind, outer.model, r.text or "", top)).encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"

    def __enter__(self) -> "ScriptedLLMServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def last_user_message(body: dict) -> str:
    msgs = body.get("messages") or []
    return next((m["content"] for m in reversed(msgs) if m.get("role") == "user"), body.get("prompt", ""))
