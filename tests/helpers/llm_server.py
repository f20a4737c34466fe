"""A scripted OpenAI-compatible HTTP server on 127.0.0.1 for tests (chat + completions + models).

In process: ``ScriptedLLMServer(responder, model=...)``. ``responder(kind, body) -> Reply`` decides each
answer: ``kind`` is ``"chat"`` or ``"completions"``, ``body`` the parsed request JSON. A Reply can carry
text, an HTTP status (500, 429, ...), a delay (to exercise timeouts) or a raw malformed body. All requests
are recorded in ``server.requests``. ``latency_s`` + ``capacity`` make a server of fixed latency that
works on at most ``capacity`` requests at once (the others queue), like a model server's batch.

As its own process, a stand-in for ``vllm serve`` (stdlib only, so any interpreter runs it)::

    python tests/helpers/llm_server.py MODEL --host H --port P [--served-model-name NAME]
        [--latency-ms L] [--latency-jitter J] [--capacity C] [--startup-s S] [--die-after N]
        [--responder datagen|echo] [--reply TEXT]

``--served-model-name`` serves another model than asked (a neighbour's server); ``--die-after N`` exits
abruptly after answering N requests (a server that dies mid-shard); ``datagen`` answers the data_gen
contracts deterministically (instantiate: the document's first sentence quoted; judge: a score from a
hash of the instruction); ``--reply TEXT`` answers everything with TEXT (a judge's verdict). Requests for a model the server does not serve get 404, as from vLLM.
"""
from __future__ import annotations

import asyncio
import json
import os
import re
import sys
import threading
import time
import zlib
from dataclasses import dataclass
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
    """An HTTP/1.1 keep-alive server on an asyncio loop in a helper thread (hundreds of connections at once
    cost it no thread each, so the server is never what a client benchmark measures)."""

    def __init__(self, responder: Callable[[str, dict], Reply], model: str = "scripted", host: str = "127.0.0.1",
                 port: int = 0, latency_s: float = 0.0, capacity: int = 0, jitter: float = 0.0,
                 on_answered: Callable[[int], None] | None = None):
        self.responder, self.model = responder, model
        self.host, self.port = host, port
        self.latency_s, self.capacity, self.jitter, self.on_answered = latency_s, capacity, jitter, on_answered
        self.requests: list[tuple[str, dict]] = []
        self.answered = 0
        self._lock = threading.Lock()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server = None
        self._slots: asyncio.Semaphore | None = None

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}/v1"

    # ------------------------------------------------------------------------------------------- lifecycle
    def start(self) -> "ScriptedLLMServer":
        """Bind and serve; raises OSError when the port is taken."""
        async def up():
            self._slots = asyncio.Semaphore(self.capacity) if self.capacity > 0 else None
            self._server = await asyncio.start_server(self._connection, self.host, self.port, backlog=1024)
            self.port = self._server.sockets[0].getsockname()[1]

        self._thread.start()
        try:
            asyncio.run_coroutine_threadsafe(up(), self._loop).result()
        except OSError:
            self._loop.call_soon_threadsafe(self._loop.stop)
            raise
        return self

    def __enter__(self) -> "ScriptedLLMServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        async def down():
            self._server.close()
            for t in [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]:
                t.cancel()

        asyncio.run_coroutine_threadsafe(down(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=30)

    # ------------------------------------------------------------------------------------------------ http
    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                line = await reader.readline()
                if not line.strip():
                    break
                method, path = line.decode("latin-1").split()[:2]
                headers = {}
                while (h := await reader.readline()) not in (b"\r\n", b"\n", b""):
                    k, _, v = h.decode("latin-1").partition(":")
                    headers[k.strip().lower()] = v.strip()
                n = int(headers.get("content-length") or 0)
                raw = await reader.readexactly(n) if n else b""
                status, payload = await (self._get(path) if method == "GET" else self._post(path, raw))
                writer.write(f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: "
                             f"{len(payload)}\r\n\r\n".encode() + payload)
                await writer.drain()
                if method == "POST":
                    with self._lock:
                        self.answered += 1
                        answered = self.answered
                    if self.on_answered is not None:
                        self.on_answered(answered)
        except (ConnectionError, asyncio.IncompleteReadError, ValueError):
            pass  # the client timed out and went away, or sent garbage
        finally:
            writer.close()

    async def _get(self, path: str) -> tuple[int, bytes]:
        if path.rstrip("/").endswith("/models"):
            return 200, json.dumps({"object": "list", "data": [
                {"id": self.model, "object": "model", "created": 0, "owned_by": "test"}]}).encode()
        if path.rstrip("/") == "/health":
            return 200, b"{}"
        return 404, b'{"error": "not found"}'

    async def _post(self, path: str, raw: bytes) -> tuple[int, bytes]:
        body = json.loads(raw or b"{}")
        kind = "chat" if path.endswith("/chat/completions") else "completions"
        if body.get("model") != self.model:
            return 404, json.dumps({"error": {"message": f"The model `{body.get('model')}` does not exist.",
                                              "code": 404}}).encode()
        with self._lock:
            self.requests.append((kind, body))
        r = self.responder(kind, body)
        wait = self.latency_s
        if self.jitter:  # a latency of its own per request (deterministic), like varying output lengths
            u = zlib.crc32(json.dumps(body, sort_keys=True).encode()) / 0xFFFFFFFF
            wait = self.latency_s * (1 - self.jitter + 2 * self.jitter * u)
        if self._slots is not None:
            async with self._slots:  # at most `capacity` requests are worked on at once
                await asyncio.sleep(wait)
        elif wait:
            await asyncio.sleep(wait)
        if r.delay_s:
            await asyncio.sleep(r.delay_s)
        if r.raw is not None:
            return r.status, r.raw
        if r.status != 200:
            return r.status, json.dumps({"error": {"message": "scripted failure"}}).encode()
        top = r.top_logprobs if body.get("logprobs") else None
        return 200, json.dumps(_body(kind, self.model, r.text or "", top)).encode()


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
    ap.add_argument("--latency-jitter", type=float, default=0.0, help="latency uniform in L*(1 +- J)")
    ap.add_argument("--capacity", type=int, default=0)
    ap.add_argument("--startup-s", type=float, default=0.0)
    ap.add_argument("--die-after", type=int, default=0)
    ap.add_argument("--responder", default="datagen", choices=["datagen", "echo"])
    ap.add_argument("--reply", default=None, help="answer every request with this text (a judge's verdict)")
    args = ap.parse_args(argv)
    time.sleep(args.startup_s)  # a server that takes a while to come up

    def answered(n: int) -> None:
        if args.die_after and n >= args.die_after:
            print(f"scripted server: dying after {n} requests", flush=True)
            os._exit(3)

    responder = datagen_responder if args.responder == "datagen" else (lambda k, b: Reply(text=last_user_message(b)))
    if args.reply is not None:
        responder = lambda k, b: Reply(text=args.reply)  # noqa: E731
    srv = ScriptedLLMServer(responder, model=args.served_model_name or args.model, host=args.host,
                            port=args.port, latency_s=args.latency_ms / 1000, capacity=args.capacity,
                            jitter=args.latency_jitter, on_answered=answered)
    try:
        srv.start()
    except OSError as e:
        print(f"scripted server: cannot bind {args.host}:{args.port}: {e}", flush=True)  # 'Address already in use'
        sys.exit(1)
    print(f"scripted server: serving {srv.model} on {srv.base_url}", flush=True)
    threading.Event().wait()  # until SIGTERM (its default action ends the process)


if __name__ == "__main__":
    main(sys.argv[1:])
