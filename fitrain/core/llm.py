"""The one client layer for language-model calls, shared by data_gen's stages and eval's judges.

Stages build :class:`Request` objects and call :meth:`Backend.complete`; they never look behind it.
Backends:

* ``openai``: any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp). Async with bounded
  concurrency, retries with exponential backoff and jitter, per-request timeouts. Chat requests go to
  ``/chat/completions``, raw-prompt requests to ``/completions``.
* ``transformers``: batched ``generate`` on a local model directory (or an in-memory model), CPU or GPU.
* ``extractive``: no LLM at all; a table of per-task handler functions supplied by the caller (data_gen
  ships them). A lightweight offline fallback, not the paper's method.

:class:`CachedBackend` wraps any backend with an append-only JSONL cache keyed by the request, so a rerun
does not pay twice and a killed run keeps what it finished. :func:`complete_parsed` adds parse-retry
with counted failures: an unparsable reply is retried, then counted, never silently scored.
"""
from __future__ import annotations

import asyncio
import hashlib
import json
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Protocol, Sequence

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError


@dataclass
class LLMConfig:
    backend: str = "openai"            # openai | transformers | extractive
    model: str = ""                    # served model name, or a local model directory for transformers
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str = "EMPTY"             # or set OPENAI_API_KEY; redacted in logged configs
    max_concurrency: int = 16
    max_retries: int = 4
    backoff_s: float = 0.5             # first retry delay; doubles each retry, with jitter
    timeout_s: float = 120.0
    temperature: float = 0.0           # 0 = greedy
    max_new_tokens: int = 512
    batch_size: int = 8                # transformers backend
    device: str = "auto"               # transformers backend: auto | cpu | cuda
    dtype: str = "auto"                # transformers backend: auto | float32 | bfloat16
    cache: str = ""                    # path of a JSONL response cache ('' = none)


@dataclass
class Request:
    """One call. Exactly one of ``messages`` (chat) or ``prompt`` (raw completion) is set."""

    messages: list[dict] | None = None
    prompt: str | None = None
    task: str = "chat"                 # which contract (the extractive backend dispatches on it)
    max_new_tokens: int | None = None
    temperature: float | None = None
    stop: list[str] | None = None
    logprobs: int = 0                  # > 0: also return the top-N log-probabilities of each generated token
    meta: dict = field(default_factory=dict)  # caller's bookkeeping; not sent

    def key(self, model: str) -> str:
        body = json.dumps([model, self.messages, self.prompt, self.task, self.max_new_tokens,
                           self.temperature, self.stop] + ([self.logprobs] if self.logprobs else []),
                          sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(body.encode("utf-8")).hexdigest()


@dataclass
class Completion:
    text: str | None                   # None when every attempt failed
    error: str | None = None
    attempts: int = 1
    cached: bool = False
    logprobs: list[dict[str, float]] | None = None  # per generated token: {token: logprob} of the top N


class Backend(Protocol):
    name: str
    model: str

    def complete(self, requests: Sequence[Request], progress: Callable[[int], None] | None = None
                 ) -> list[Completion]: ...


def truncate_at_stop(text: str, stop: Iterable[str] | None) -> str:
    cut = len(text)
    for s in stop or ():
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]


# ---------------------------------------------------------------------------------------------- openai
class OpenAIBackend:
    name = "openai"

    def __init__(self, cfg: LLMConfig):
        import os

        self.cfg = cfg
        self.model = cfg.model
        self.api_key = os.environ.get("OPENAI_API_KEY", cfg.api_key) if cfg.api_key == "EMPTY" else cfg.api_key

    def complete(self, requests, progress=None):
        return _run_async(self._complete_all(list(requests), progress))

    async def _complete_all(self, requests: list[Request], progress) -> list[Completion]:
        from openai import AsyncOpenAI

        client = AsyncOpenAI(base_url=self.cfg.base_url, api_key=self.api_key, max_retries=0,
                             timeout=self.cfg.timeout_s)
        sem = asyncio.Semaphore(max(1, self.cfg.max_concurrency))

        async def one(r: Request) -> Completion:
            async with sem:
                c = await self._with_retries(client, r)
            if progress:
                progress(1)
            return c

        try:
            return list(await asyncio.gather(*(one(r) for r in requests)))
        finally:
            await client.close()

    async def _with_retries(self, client, r: Request) -> Completion:
        import openai

        last = ""
        for attempt in range(1, self.cfg.max_retries + 2):
            try:
                text, logprobs = await self._call(client, r)
                return Completion(text, attempts=attempt, logprobs=logprobs)
            except (openai.APIConnectionError, openai.APITimeoutError, openai.RateLimitError,
                    openai.InternalServerError, openai.APIStatusError) as e:
                status = getattr(e, "status_code", None)
                last = f"{type(e).__name__}" + (f" {status}" if status else "") + f": {str(e)[:200]}"
                if status is not None and 400 <= status < 500 and status not in (408, 409, 429):
                    break  # a client error will not fix itself
            except Exception as e:  # malformed response bodies and the like
                last = f"{type(e).__name__}: {str(e)[:200]}"
            if attempt <= self.cfg.max_retries:
                await asyncio.sleep(self.cfg.backoff_s * 2 ** (attempt - 1) * (0.5 + random.random()))
        return Completion(None, error=last, attempts=attempt)

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


def _top_logprobs(choice, chat: bool) -> list[dict[str, float]] | None:
    """The top log-probabilities of each generated token, or None when the server sent none."""
    lp = getattr(choice, "logprobs", None)
    if lp is None:
        return None
    if chat:
        return [{t.token: t.logprob for t in (c.top_logprobs or [])} for c in (lp.content or [])] or None
    return [dict(d) for d in (lp.top_logprobs or []) if d is not None] or None


def _run_async(coro):
    """Run a coroutine from sync code, also when called inside a running event loop (e.g. Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    out: dict = {}
    t = threading.Thread(target=lambda: out.setdefault("v", asyncio.run(coro)))
    t.start()
    t.join()
    return out["v"]


# ------------------------------------------------------------------------------------------ transformers
class TransformersBackend:
    name = "transformers"

    def __init__(self, cfg: LLMConfig, model=None, tokenizer=None):
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        self.cfg = cfg
        self.model = cfg.model or getattr(getattr(model, "config", None), "name_or_path", "in-memory")
        if model is None:
            if not cfg.model or not Path(cfg.model).exists():
                raise FitrainError(f"transformers backend: model directory not found: '{cfg.model}'")
            dtype = {"auto": "auto", "float32": torch.float32, "bfloat16": torch.bfloat16}[cfg.dtype]
            model = AutoModelForCausalLM.from_pretrained(cfg.model, dtype=dtype)
        if tokenizer is None:
            tokenizer = AutoTokenizer.from_pretrained(cfg.model)
        device = cfg.device if cfg.device != "auto" else ("cuda" if torch.cuda.is_available() else "cpu")
        self.lm = model.to(device).eval()
        self.tok = tokenizer
        self.tok.padding_side = "left"
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.device = device

    def _prompt_text(self, r: Request) -> str:
        if r.prompt is not None:
            return r.prompt
        if getattr(self.tok, "chat_template", None):
            return self.tok.apply_chat_template(r.messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(m["content"] for m in r.messages or []) + "\n\n"

    def complete(self, requests, progress=None):
        import torch

        out: list[Completion] = []
        reqs = list(requests)
        for i in range(0, len(reqs), self.cfg.batch_size):
            batch = reqs[i:i + self.cfg.batch_size]
            enc = self.tok([self._prompt_text(r) for r in batch], return_tensors="pt", padding=True,
                           add_special_tokens=False).to(self.device)
            enc.pop("token_type_ids", None)  # BERT-style tokenizers add it; causal LMs' generate rejects it
            max_new = max(r.max_new_tokens or self.cfg.max_new_tokens for r in batch)
            temp = batch[0].temperature if batch[0].temperature is not None else self.cfg.temperature
            with torch.no_grad():
                gen = self.lm.generate(**enc, max_new_tokens=max_new, do_sample=temp > 0,
                                       temperature=temp if temp > 0 else None, top_p=None, top_k=None,
                                       pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id)
            for r, row in zip(batch, gen[:, enc["input_ids"].shape[1]:]):
                text = self.tok.decode(row, skip_special_tokens=True)
                out.append(Completion(truncate_at_stop(text, r.stop)))
            if progress:
                progress(len(batch))
        return out


# -------------------------------------------------------------------------------------------- extractive
class ExtractiveBackend:
    """Answers each request with ``handlers[request.task](request)``; no model involved."""

    name = "extractive"

    def __init__(self, handlers: dict[str, Callable[[Request], str | None]], model: str = "extractive"):
        self.handlers = handlers
        self.model = model

    def complete(self, requests, progress=None):
        out = []
        for r in requests:
            h = self.handlers.get(r.task)
            if h is None:
                raise FitrainError(f"extractive backend has no handler for task '{r.task}' "
                                   f"(has: {sorted(self.handlers)})")
            try:
                out.append(Completion(h(r)))
            except Exception as e:  # a handler bug must not kill the batch; it is counted by the caller
                out.append(Completion(None, error=f"{type(e).__name__}: {e}"))
            if progress:
                progress(1)
        return out


# ------------------------------------------------------------------------------------------------ cache
class CachedBackend:
    """Append-only JSONL cache in front of a backend. Failed completions are not cached."""

    def __init__(self, inner: Backend, path: str | Path, defaults: str = ""):
        """``defaults``: the backend's decoding defaults (temperature, token limit) as text; they are part of
        every key, so a changed setting never reads replies made under the old one."""
        self.inner, self.path = inner, Path(path)
        self.name, self.model = inner.name, inner.model
        self._key_model = f"{inner.model}|{defaults}"
        self._mem: dict[str, str] = {}
        self._logprobs: dict[str, list] = {}
        if self.path.is_file():
            for line in self.path.read_text(encoding="utf-8").splitlines():
                try:
                    rec = json.loads(line)
                    self._mem[rec["key"]] = rec["text"]
                    if rec.get("logprobs") is not None:
                        self._logprobs[rec["key"]] = rec["logprobs"]
                except (json.JSONDecodeError, KeyError):
                    continue  # a torn last line from a killed run
        self.path.parent.mkdir(parents=True, exist_ok=True)

    def complete(self, requests, progress=None):
        reqs = list(requests)
        keys = [r.key(self._key_model) for r in reqs]
        todo = [i for i, k in enumerate(keys) if k not in self._mem]
        fresh = self.inner.complete([reqs[i] for i in todo], progress) if todo else []
        with open(self.path, "a", encoding="utf-8") as f:
            for i, c in zip(todo, fresh):
                if c.text is not None:
                    self._write(f, keys[i], c.text, c.logprobs)
        by_index = dict(zip(todo, fresh))
        if progress and len(reqs) > len(todo):
            progress(len(reqs) - len(todo))
        return [by_index[i] if i in by_index else
                Completion(self._mem[keys[i]], cached=True, logprobs=self._logprobs.get(keys[i]))
                for i in range(len(reqs))]

    def _write(self, f, key: str, text: str, logprobs) -> None:
        self._mem[key] = text
        rec: dict[str, Any] = {"key": key, "text": text}
        if logprobs is not None:
            self._logprobs[key] = rec["logprobs"] = logprobs
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")

    def store(self, request: Request, text: str, logprobs=None) -> None:
        """Record a reply obtained past the cache (a parse-retry): a rerun then reads the good reply."""
        with open(self.path, "a", encoding="utf-8") as f:
            self._write(f, request.key(self._key_model), text, logprobs)


def make_backend(cfg: LLMConfig, handlers: dict[str, Callable[[Request], str | None]] | None = None,
                 model=None, tokenizer=None) -> Backend:
    if cfg.backend == "openai":
        if not cfg.model:
            raise FitrainError("llm.model must name the served model for the openai backend")
        b: Backend = OpenAIBackend(cfg)
    elif cfg.backend == "transformers":
        b = TransformersBackend(cfg, model=model, tokenizer=tokenizer)
    elif cfg.backend == "extractive":
        if handlers is None:
            raise FitrainError("the extractive backend needs task handlers (only data_gen provides them)")
        b = ExtractiveBackend(handlers)
    else:
        raise FitrainError(f"unknown llm.backend '{cfg.backend}'; one of openai, transformers, extractive")
    defaults = json.dumps([cfg.backend, cfg.temperature, cfg.max_new_tokens])
    return CachedBackend(b, cfg.cache, defaults) if cfg.cache else b


def check_reachable(cfg: LLMConfig, timeout_s: float = 5.0) -> None:
    """Fail fast with a clear message when an OpenAI-compatible server does not answer."""
    if cfg.backend != "openai":
        return
    import urllib.error
    import urllib.request

    url = cfg.base_url.rstrip("/") + "/models"
    try:
        urllib.request.urlopen(url, timeout=timeout_s).read()
    except (urllib.error.URLError, OSError, TimeoutError) as e:
        raise FitrainError(f"LLM server not reachable at {cfg.base_url} ({e}); start it (e.g. `vllm serve MODEL`) "
                           "or set llm.base_url") from None


def complete_parsed(backend: Backend, requests: Sequence[Request], parse: Callable[[Any], Any],
                    rejects: Rejects, max_parse_retries: int = 2, what: str = "reply",
                    progress: Callable[[int], None] | None = None, parse_completion: bool = False) -> list[Any]:
    """Complete and parse; a reply that fails ``parse`` (raises ValueError) is asked again up to
    ``max_parse_retries`` times, then counted in ``rejects`` (``<what>_unparsable``) and returned as None.
    Transport failures are counted as ``<what>_failed``. Returns one parsed value (or None) per request.
    ``parse`` receives the reply text, or with ``parse_completion`` the whole :class:`Completion`
    (its ``logprobs`` too)."""
    results: list[Any] = [None] * len(requests)
    pending = list(range(len(requests)))
    last_err: dict[int, str] = {}
    cache = backend if isinstance(backend, CachedBackend) else None
    for round_ in range(max_parse_retries + 1):
        if not pending:
            break
        comps = backend.complete([requests[i] for i in pending], progress if round_ == 0 else None)
        retry = []
        for i, c in zip(pending, comps):
            if c.text is None:
                rejects.add(f"{what}_failed", str(requests[i].meta.get("id", i)), c.error or "")
                continue
            try:
                results[i] = parse(c if parse_completion else c.text)
                if round_ and cache is not None:
                    cache.store(requests[i], c.text, c.logprobs)
            except ValueError as e:
                last_err[i] = f"{e}: {c.text[:120]!r}"
                retry.append(i)
        pending = retry
        if pending and isinstance(backend, CachedBackend):
            backend = backend.inner  # asking the cache again would return the same unparsable reply
    for i in pending:
        rejects.add(f"{what}_unparsable", str(requests[i].meta.get("id", i)), last_err.get(i, ""))
    return results
