"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests (chat + completions + models).

In process: ``ScriptedLLMServer(responder, model=...)``. ``responder(kind, body) -> Reply`` decides each
answer: ``kind`` is ``"chat"`` or ``"completions"``, ``body`` the parsed request JSON. A Reply can carry
text, an HTTP status (500, 429, ...), a delay (to exercise timeouts) or a raw malformed body. All requests
are recorded in ``server.requests``. ``latency_s`` + ``capacity`` make a server of fixed latency that
works on at most ``capacity`` requests at once (the others queue), like a model server's batch.

As its own process, a stand-in for ``vllm serve`` (stdlib only, so any interpreter runs it)::

    python tests/helpers/llm_server.py MODEL --host H --port P [--served-model-name NAME]
        [--latency-ms L] [--capacity C] [--startup-s S] [--die-after N] [--responder datagen|echo]

``--served-model-name`` serves another model than asked (a neighbour's server); ``--die-after N`` exits
abruptly after answering N requests (a server that dies mid-shard); ``datagen`` answers the data_gen
contracts deterministically (instantiate: the document's first sentence quoted; judge: a score from a
hash of the instruction). Requests for a model the server does not serve get 404, as from vLLM.
"""
from __future__ import annotations

import json
import os
import re
import sys
import threading
import time
import zlib
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable


@dataclass
class Reply:
    text: str | None = None
    status: int = 200
    delay_s: float = 0.0
    raw: bytes | None = None  # sent as is (malformed bodies)


def _body(kind: str, model: str, text: str) -> dict:
    usage = {"prompt_tokens": 1, "completion_tokens": max(1, len(text.split())), "total_tokens": 2}
    if kind == "chat":
        return {"id": "x", "object": "chat.completion", "created": 0, "model": model, "usage": usage,
                "choices": [{"index": 0, "finish_reason": "stop",
                             "message": {"role": "assistant", "content": text}}]}
    return {"id": "x", "object": "text_completion", "created": 0, "model": model, "usage": usage,
            "choices": [{"index": 0, "finish_reason": "stop", "text": text, "logprobs": None}]}


class ScriptedLLMServer:
    def __init__(self, responder: Callable[[str, dict], Reply], model: str = "scripted", host: str = "127.0.0.1",
                 port: int = 0, latency_s: float = 0.0, capacity: int = 0,
                 on_answered: Callable[[int], None] | None = None):
        self.responder, self.model = responder, model
        self.requests: list[tuple[str, dict]] = []
        self.answered = 0
        self._lock = threading.Lock()
        self._slots = threading.BoundedSemaphore(capacity) if capacity > 0 else None
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, as a real server

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
                elif self.path.rstrip("/") == "/health":
                    self._send(200, b"{}")
                else:
                    self._send(404, b'{"error": "not found"}')

            def do_POST(self):
                n = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(n) or b"{}")
                kind = "chat" if self.path.endswith("/chat/completions") else "completions"
                if body.get("model") != outer.model:
                    msg = {"error": {"message": f"The model `{body.get('model')}` does not exist.", "code": 404}}
                    return self._send(404, json.dumps(msg).encode())
                with outer._lock:
                    outer.requests.append((kind, body))
                r = outer.responder(kind, body)
                if outer._slots is not None:
                    with outer._slots:  # at most `capacity` requests are worked on at once
                        time.sleep(latency_s)
                elif latency_s:
                    time.sleep(latency_s)
                if r.delay_s:
                    time.sleep(r.delay_s)
                try:
                    if r.raw is not None:
                        self._send(r.status, r.raw)
                    elif r.status != 200:
                        self._send(r.status, json.dumps({"error": {"message": "scripted failure"}}).encode())
                    else:
                        self._send(200, json.dumps(_body(kind, outer.model, r.text or "")).encode())
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client timed out and went away
                with outer._lock:
                    outer.answered += 1
                    answered = outer.answered
                if on_answered is not None:
                    on_answered(answered)

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            request_queue_size = 1024  # a window of hundreds of connections opens at once

        self.httpd = Server((host, port), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    @property
    def base_url(self) -> str:
        host, port = self.httpd.server_address[:2]
        return f"http://{host}:{port}/v1"

    def __enter__(self) -> "ScriptedLLMServer":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def last_user_message(body: dict) -> str:
    msgs = body.get("messages") or []
    return next((m["content"] for m in reversed(msgs) if m.get("role") == "user"), body.get("prompt", ""))


# ------------------------------------------------------------------------------------- data_gen replies
def first_sentence(doc: str) -> str:
    return doc.split(". ")[0].strip() + "."


def judge_score(instruction: str) -> int:
    """A deterministic 1-5 score (about 60% >= 4)."""
    return (2, 3, 4, 4, 5)[zlib.crc32(instruction.encode("utf-8")) % 5]


def datagen_responder(kind: str, body: dict) -> Reply:
    """The instantiate and judge contracts, answered deterministically from the request alone."""
    msg = last_user_message(body)
    try:
        payload = json.loads(msg)
    except ValueError:
        payload = None
    if isinstance(payload, dict) and "instruction_template" in payload:
        doc = payload["document"]
        ins = re.sub(r"<fi>.*?</fi>", doc.split()[0], payload["instruction_template"])
        return Reply(text=json.dumps({"instantiated_instruction": ins,
                                      "answer": f"<excerpt>{first_sentence(doc)}</excerpt>"}))
    if "<instruction>\n" in msg:
        ins = msg.split("<instruction>\n", 1)[1].split("\n</instruction>", 1)[0]
        return Reply(text=f"<feedback>scripted</feedback>\n<score>{judge_score(ins)}</score>")
    return Reply(text=msg)


def main(argv: list[str]) -> None:
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--served-model-name", default="")
    ap.add_argument("--latency-ms", type=float, default=0.0)
    ap.add_argument("--capacity", type=int, default=0)
    ap.add_argument("--startup-s", type=float, default=0.0)
    ap.add_argument("--die-after", type=int, default=0)
    ap.add_argument("--responder", default="datagen", choices=["datagen", "echo"])
    args = ap.parse_args(argv)
    time.sleep(args.startup_s)  # a server that takes a while to come up

    def answered(n: int) -> None:
        if args.die_after and n >= args.die_after:
            print(f"scripted server: dying after {n} requests", flush=True)
            os._exit(3)

    responder = datagen_responder if args.responder == "datagen" else (lambda k, b: Reply(text=last_user_message(b)))
    try:
        srv = ScriptedLLMServer(responder, model=args.served_model_name or args.model, host=args.host,
                                port=args.port, latency_s=args.latency_ms / 1000, capacity=args.capacity,
                                on_answered=answered)
    except OSError as e:
        print(f"scripted server: cannot bind {args.host}:{args.port}: {e}", flush=True)  # 'Address already in use'
        sys.exit(1)
    print(f"scripted server: serving {srv.model} on {srv.base_url}", flush=True)
    srv.httpd.serve_forever()


if __name__ == "__main__":
    main(sys.argv[1:])
