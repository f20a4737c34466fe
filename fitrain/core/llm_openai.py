"""The OpenAI-compatible backend (vLLM, SGLang, TGI, llama.cpp): a streaming window of async requests
with retries, backoff and timeouts; an infrastructure failure fails the job instead of counting a reject.

A request that fails every attempt is either a problem of that request (the server answered 500 for it,
or it timed out while the server is healthy: counted by the caller as ``<what>_failed``) or of the
server (connection refused or reset, the server gone, or a server that no longer serves our model):
then :class:`~fitrain.core.llm_types.ServerUnavailable` is raised, the stream stops, and nothing of the
shard is marked done, so that a rerun redoes it on a working server.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import random
import ssl
import time
from typing import Any, Awaitable, Callable, Iterable, Iterator, TypeVar

from fitrain.core.llm_stream import WindowStream
from fitrain.core.llm_types import Completion, LLMConfig, Request, ServerUnavailable, api_key_of, truncate_at_stop

T = TypeVar("T")
R = TypeVar("R")
PROBE_TTL_S = 2.0   # concurrent failures share one probe of the server
POOL_CONNECTIONS = 16  # HTTP connections per client of a ClientPool


class BadModelList(ValueError):
    """A server answered ``GET /models`` with something that is not an OpenAI model list: the server is
    there but is not (or not yet) an OpenAI-compatible one, so waiting for it does not help."""


def served_models(base_url: str, api_key: str = "EMPTY", timeout_s: float = 5.0) -> list[str]:
    """The model ids ``GET {base_url}/models`` lists; raises OSError/ValueError when there is no answer
    within ``timeout_s`` in all (connect, send and receive: a server that trickles its answer a byte at a
    time is cut at the deadline) and :class:`BadModelList` when the answer is no ``{"data": [...]}``."""
    url = base_url.rstrip("/") + "/models"
    body = _get_within(url, {"Authorization": f"Bearer {api_key}"}, timeout_s)
    try:
        doc = json.loads(body or b"{}")
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise BadModelList(f"GET {url} answered {body[:80]!r}, not JSON") from None
    data = doc.get("data") if isinstance(doc, dict) else None
    if not isinstance(data, list):
        shape = ("a bare list" if isinstance(doc, list) else
                 f'"data": {json.dumps(data)[:40]}' if isinstance(doc, dict) else type(doc).__name__)
        raise BadModelList(f"GET {url} answered {shape}, not an OpenAI model list "
                           '({"data": [{"id": ...}]}); is it an OpenAI-compatible server?')
    return [str(m.get("id")) for m in data if isinstance(m, dict)]


def _get_within(url: str, headers: dict, timeout_s: float) -> bytes:
    """The body of ``GET url`` (status 2xx), all of it within ``timeout_s``: one deadline over connect, send
    and receive (a socket timeout is per read: a reply trickled byte by byte would never reach it)."""
    import httpx

    async def get() -> httpx.Response:
        async with httpx.AsyncClient(timeout=timeout_s) as client:
            return await client.get(url, headers=headers)

    try:
        resp = asyncio.run(asyncio.wait_for(get(), timeout_s))
    except asyncio.TimeoutError:
        raise TimeoutError(f"no complete answer within {timeout_s:g}s") from None
    except httpx.HTTPError as e:
        raise OSError(f"{type(e).__name__}: {e}") from None
    if not 200 <= resp.status_code < 300:
        raise OSError(f"HTTP {resp.status_code} {resp.reason_phrase}")
    return resp.content


def identity_problem(model: str, models: list[str]) -> str | None:
    """Why a server listing ``models`` is not the one serving ``model`` (None when it is)."""
    if model in models:
        return None
    return f"it serves {models or 'no model'}, not '{model}'"


class OpenAIBackend:
    name = "openai"

    def __init__(self, cfg: LLMConfig):
        self.cfg = cfg
        self.model = cfg.model
        self.api_key = api_key_of(cfg)
        self._window: WindowStream | None = None
        self._probe_at = 0.0
        self._probe_result: str | None = None
        self._probe_lock: asyncio.Lock | None = None

    @property
    def in_flight(self) -> int:
        return self._window.in_flight if self._window is not None else 0

    # ------------------------------------------------------------------------------------------ streaming
    def run_items(self, items: Iterable[T], work: Callable[[Any, T], Awaitable[R]]) -> Iterator[R]:
        """``work(clients, item)`` for every item through a window of ``max_concurrency``, in input order
        (``clients``: the :class:`ClientPool` that :meth:`acomplete` takes)."""
        window = WindowStream(self.cfg.max_concurrency)
        self._window = window

        async def open_pool():
            self._probe_lock = asyncio.Lock()
            return ClientPool(self.cfg, self.api_key, window.window)

        async def close_pool(pool):
            await pool.close()

        return window.run(items, work, open_pool, close_pool)

    def stream(self, requests: Iterable[Request]) -> Iterator[Completion]:
        return self.run_items(requests, self.acomplete)

    def complete(self, requests, progress=None):
        out = []
        for c in self.stream(requests):
            out.append(c)
            if progress:
                progress(1)
        return out

    # ------------------------------------------------------------------------------------------ one call
    async def acomplete(self, pool: "ClientPool", r: Request) -> Completion:
        """One request with retries; raises ServerUnavailable when the failure is the server's."""
        import openai

        last, connection_lost = "", False
        for attempt in range(1, self.cfg.max_retries + 2):
            try:
                async with pool.client() as client:
                    # one deadline for the whole attempt (connect, send, receive): httpx's timeout is per
                    # read, so a server trickling its reply byte by byte would otherwise never time out
                    text, logprobs = await asyncio.wait_for(self._call(client, r), self.cfg.timeout_s)
                return Completion(text, attempts=attempt, logprobs=logprobs)
            except (openai.APITimeoutError, asyncio.TimeoutError) as e:  # the server may be alive
                last = f"timeout: no complete reply within {self.cfg.timeout_s:g}s" + (f" ({str(e)[:160]})" if str(e) else "")
                connection_lost = False
            except openai.APIConnectionError as e:
                last, connection_lost = f"{type(e).__name__}: {str(e)[:200]}", True
            except openai.APIStatusError as e:
                status = e.status_code
                last, connection_lost = f"{type(e).__name__} {status}: {_reason(e)}", False
                if 400 <= status < 500 and status not in (408, 409, 429):
                    break  # a client error will not fix itself
            except Exception as e:  # malformed response bodies and the like
                last, connection_lost = f"{type(e).__name__}: {str(e)[:200]}", False
            if attempt <= self.cfg.max_retries:
                await asyncio.sleep(self.cfg.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
        problem = f"connection lost ({last})" if connection_lost else await self._probe()
        if problem:
            raise ServerUnavailable(f"LLM server at {self.cfg.base_url} is not usable: {problem}; the job "
                                    "stops here (nothing of this shard is marked done), rerun it once the "
                                    "server serves the model")
        return Completion(None, error=last, attempts=attempt)

    async def _probe(self) -> str | None:
        """None when the server answers /models and serves our model, else what is wrong."""
        assert self._probe_lock is not None
        async with self._probe_lock:
            if time.monotonic() - self._probe_at > PROBE_TTL_S:
                try:
                    models = await asyncio.to_thread(served_models, self.cfg.base_url, self.api_key,
                                                     min(10.0, self.cfg.timeout_s))
                    self._probe_result = identity_problem(self.model, models)
                except (OSError, ValueError) as e:
                    self._probe_result = f"GET /models failed ({e})"
                self._probe_at = time.monotonic()
            return self._probe_result

    async def _call(self, client, r: Request) -> tuple[str, list[dict[str, float]] | None]:
        kw: dict[str, Any] = dict(model=self.model, max_tokens=r.max_new_tokens or self.cfg.max_new_tokens,
                                  temperature=self.cfg.temperature if r.temperature is None else r.temperature)
        if r.stop:
            kw["stop"] = r.stop
        chat = r.messages is not None
        if r.logprobs and chat:
            kw.update(logprobs=True, top_logprobs=r.logprobs)
        elif r.logprobs:
            kw["logprobs"] = r.logprobs
        if chat:
            resp = await client.chat.completions.create(messages=r.messages, **kw)
            text = resp.choices[0].message.content
        else:
            resp = await client.completions.create(prompt=r.prompt, **kw)
            text = resp.choices[0].text
        if text is None:
            raise ValueError("reply has no text")
        return truncate_at_stop(text, r.stop), (_top_logprobs(resp.choices[0], chat) if r.logprobs else None)


def _reason(e) -> str:
    """The server's own words for an HTTP error (``{"detail": ...}`` of FastAPI servers such as transformers
    serve, ``{"error": {"message": ...}}`` of vLLM), else the client's message."""
    try:
        text = e.response.text
    except Exception:  # noqa: BLE001 - a streamed or closed response
        text = ""
    return " ".join((text or str(e)).split())[:300]


def _top_logprobs(choice, chat: bool) -> list[dict[str, float]] | None:
    """The top log-probabilities of each generated token, or None when the server sent none."""
    lp = getattr(choice, "logprobs", None)
    if lp is None:
        return None
    if chat:
        return [{t.token: t.logprob for t in (c.top_logprobs or [])} for c in (lp.content or [])] or None
    return [dict(d) for d in (lp.top_logprobs or []) if d is not None] or None


class ClientPool:
    """Async OpenAI clients of at most ``POOL_CONNECTIONS`` connections each, enough for ``window``
    requests at once. One HTTP connection pool of hundreds of connections costs the client more time per
    request the more connections it holds (measured with httpx 0.28: 230 requests/s at 64 connections,
    44 at 512, against 640 at 1); small pools keep the client far faster than any model server
    (benchmarks/llm_request_throughput.py). Each request borrows a client with a free connection."""

    def __init__(self, cfg: LLMConfig, api_key: str, window: int):
        import httpx
        from openai import AsyncOpenAI

        n = max(1, -(-window // POOL_CONNECTIONS))
        limits = httpx.Limits(max_connections=POOL_CONNECTIONS, max_keepalive_connections=POOL_CONNECTIONS)
        tls = ssl.create_default_context()  # one for all: building one per client costs ~50 ms each
        self.clients = [AsyncOpenAI(base_url=cfg.base_url, api_key=api_key, max_retries=0, timeout=cfg.timeout_s,
                                    http_client=httpx.AsyncClient(limits=limits, timeout=cfg.timeout_s, verify=tls))
                        for _ in range(n)]
        self._free: asyncio.Queue = asyncio.Queue()
        for _ in range(POOL_CONNECTIONS):
            for c in self.clients:
                self._free.put_nowait(c)

    @contextlib.asynccontextmanager
    async def client(self):
        c = await self._free.get()
        try:
            yield c
        finally:
            self._free.put_nowait(c)

    async def close(self) -> None:
        for c in self.clients:
            await c.close()


def check_served(cfg: LLMConfig, timeout_s: float = 5.0, check_model: bool = True) -> None:
    """Raise ServerUnavailable unless the server at ``cfg.base_url`` answers (and serves ``cfg.model``)."""
    api_key = api_key_of(cfg)
    try:
        models = served_models(cfg.base_url, api_key, timeout_s)
    except BadModelList as e:
        raise ServerUnavailable(f"the LLM server at {cfg.base_url} is not an OpenAI-compatible server: {e}; "
                                "set llm.base_url") from None
    except (OSError, ValueError) as e:
        raise ServerUnavailable(f"LLM server not reachable at {cfg.base_url} ({e}); start it (e.g. `vllm serve "
                                "MODEL`) or set llm.base_url") from None
    problem = identity_problem(cfg.model, models) if check_model else None
    if problem:
        raise ServerUnavailable(f"the LLM server at {cfg.base_url} is not the one asked for: {problem} (another "
                                "job's server on this port?); set llm.base_url / llm.model")
