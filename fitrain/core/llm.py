"""The one client layer for language-model calls, shared by data_gen's stages and eval's judges.

Stages build :class:`Request` objects and call :meth:`Backend.complete` (a list) or :func:`stream_parsed`
(an iterator over inputs of any length); they never look behind it. Backends:

* ``openai``: any OpenAI-compatible server (vLLM, SGLang, TGI, llama.cpp), in fitrain.core.llm_openai: a
  bounded window of async requests refilled as each finishes, results in input order
  (fitrain.core.llm_stream), retries with exponential backoff and jitter, per-request timeouts. Chat
  requests go to ``/chat/completions``, raw-prompt requests to ``/completions``. An infrastructure
  failure (server down, unreachable, serving another model) raises :class:`ServerUnavailable`.
* ``transformers``: batched ``generate`` on a local model directory (or an in-memory model), CPU or GPU.
* ``extractive``: no LLM at all; a table of per-task handler functions supplied by the caller (data_gen
  ships them). A lightweight offline fallback, not the paper's method.

:class:`CachedBackend` wraps any backend with an append-only JSONL cache keyed by the request, so a rerun
does not pay twice and a killed run keeps what it finished. :func:`complete_parsed` /
:func:`stream_parsed` add parse-retry with counted failures: an unparsable reply is retried, then
counted, never silently scored.
"""
from __future__ import annotations

import contextlib
import json
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Sequence

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError
from fitrain.core.llm_openai import OpenAIBackend, check_served, served_models
from fitrain.core.llm_types import (Backend, Completion, LLMConfig, Request, ServerUnavailable,  # noqa: F401
                                    api_key_of, truncate_at_stop)

__all__ = ["LLMConfig", "Request", "Completion", "Backend", "ServerUnavailable", "OpenAIBackend",
           "TransformersBackend", "ExtractiveBackend", "CachedBackend", "make_backend", "check_reachable",
           "check_served", "served_models", "complete_parsed", "stream_parsed", "ParsedStream",
           "truncate_at_stop"]


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

    def key(self, request: Request) -> str:
        return request.key(self._key_model)

    def get(self, request: Request) -> Completion | None:
        key = self.key(request)
        if key not in self._mem:
            return None
        return Completion(self._mem[key], cached=True, logprobs=self._logprobs.get(key))

    def complete(self, requests, progress=None):
        reqs = list(requests)
        keys = [self.key(r) for r in reqs]
        todo = [i for i, k in enumerate(keys) if k not in self._mem]
        fresh = self.inner.complete([reqs[i] for i in todo], progress) if todo else []
        for i, c in zip(todo, fresh):
            if c.text is not None:
                self.store(reqs[i], c.text, c.logprobs)
        by_index = dict(zip(todo, fresh))
        if progress and len(reqs) > len(todo):
            progress(len(reqs) - len(todo))
        return [by_index[i] if i in by_index else self.get(reqs[i]) for i in range(len(reqs))]

    def store(self, request: Request, text: str, logprobs=None) -> None:
        """Record a reply (also one obtained past the cache, a parse-retry: a rerun then reads the good
        reply). Each reply is appended as it arrives, so a killed run keeps what it finished."""
        key = self.key(request)
        self._mem[key] = text
        rec: dict[str, Any] = {"key": key, "text": text}
        if logprobs is not None:
            self._logprobs[key] = rec["logprobs"] = logprobs
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(rec, ensure_ascii=False) + "\n")


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


def check_reachable(cfg: LLMConfig, timeout_s: float = 5.0, check_model: bool = False) -> None:
    """Fail fast with a clear message when an OpenAI-compatible server does not answer (``check_model``:
    or does not serve ``cfg.model``). Other backends need no server."""
    if cfg.backend == "openai":
        check_served(cfg, timeout_s, check_model=check_model)


# ------------------------------------------------------------------------------------------- parsing
class ParsedStream:
    """The iterator :func:`stream_parsed` returns: ``(request, parsed value or None)`` in input order,
    ``in_flight`` requests at the server right now. Use it in a ``with`` block (or exhaust it), so that an
    error stops the requests still in flight."""

    def __init__(self, items: Iterator[tuple[Request, Any]], backend: Backend):
        self._items, self._backend = items, backend

    @property
    def in_flight(self) -> int:
        return int(getattr(self._backend, "in_flight", 0))

    def __iter__(self):
        return self._items

    def __next__(self):
        return next(self._items)

    def close(self) -> None:
        close = getattr(self._items, "close", None)
        if close is not None:
            close()

    def __enter__(self) -> "ParsedStream":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def stream_parsed(backend: Backend, requests: Iterable[Request], parse: Callable[[Any], Any], rejects: Rejects,
                  max_parse_retries: int = 2, what: str = "reply", chunk: int = 256,
                  parse_completion: bool = False) -> ParsedStream:
    """Complete and parse every request, streaming: yields ``(request, value)`` in input order. A reply that
    fails ``parse`` (raises ValueError) is asked again (past the cache) up to ``max_parse_retries`` times,
    then counted in ``rejects`` as ``<what>_unparsable`` with value None; a request that failed every
    transport attempt is counted as ``<what>_failed``. Rejects are counted in input order. ``parse``
    receives the reply text, or with ``parse_completion`` the whole :class:`Completion` (its logprobs too).

    An OpenAI-compatible backend (also behind a cache) keeps a window of ``max_concurrency`` requests in
    flight across the whole input, a parse-retry inside the same window; other backends work through
    batches of ``chunk`` requests."""
    cache = backend if isinstance(backend, CachedBackend) else None
    inner = cache.inner if cache is not None else backend
    if isinstance(inner, OpenAIBackend):
        items = _stream_openai(inner, cache, requests, parse, rejects, max_parse_retries, what, parse_completion)
    else:
        items = _stream_batches(backend, requests, parse, rejects, max_parse_retries, what, chunk, parse_completion)
    return ParsedStream(items, inner)


def _stream_openai(be: OpenAIBackend, cache: CachedBackend | None, requests: Iterable[Request], parse,
                   rejects: Rejects, max_parse_retries: int, what: str,
                   parse_completion: bool) -> Iterator[tuple[Request, Any]]:
    async def one(client, r: Request):
        c = cache.get(r) if cache is not None else None
        err = ""
        for round_ in range(max_parse_retries + 1):
            if c is None:
                c = await be.acomplete(client, r)
                if c.text is None:
                    return r, None, f"{what}_failed", c.error or ""
                if cache is not None and round_ == 0:
                    cache.store(r, c.text, c.logprobs)
            try:
                value = parse(c if parse_completion else c.text)
            except ValueError as e:
                err, c = f"{e}: {c.text[:120]!r}", None  # ask again, past the cache
                continue
            if cache is not None and round_:
                cache.store(r, c.text, c.logprobs)
            return r, value, None, ""
        return r, None, f"{what}_unparsable", err

    with contextlib.closing(be.run_items(requests, one)) as results:
        for r, value, reason, detail in results:
            if reason:
                rejects.add(reason, str(r.meta.get("id", "")), detail)
            yield r, value


def _stream_batches(backend: Backend, requests: Iterable[Request], parse, rejects: Rejects, max_parse_retries: int,
                    what: str, chunk: int, parse_completion: bool) -> Iterator[tuple[Request, Any]]:
    batch: list[Request] = []
    for r in requests:
        batch.append(r)
        if len(batch) >= chunk:
            yield from zip(batch, _parsed_batch(backend, batch, parse, rejects, max_parse_retries, what,
                                                parse_completion))
            batch = []
    if batch:
        yield from zip(batch, _parsed_batch(backend, batch, parse, rejects, max_parse_retries, what, parse_completion))


def _parsed_batch(backend: Backend, requests: Sequence[Request], parse, rejects: Rejects, max_parse_retries: int,
                  what: str, parse_completion: bool) -> list[Any]:
    results: list[Any] = [None] * len(requests)
    pending = list(range(len(requests)))
    last_err: dict[int, str] = {}
    failed: dict[int, str] = {}
    cache = backend if isinstance(backend, CachedBackend) else None
    for round_ in range(max_parse_retries + 1):
        if not pending:
            break
        comps = backend.complete([requests[i] for i in pending])
        retry = []
        for i, c in zip(pending, comps):
            if c.text is None:
                failed[i] = c.error or ""
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
    unparsable = set(pending)
    for i in range(len(requests)):  # counted in input order
        if i in failed:
            rejects.add(f"{what}_failed", str(requests[i].meta.get("id", i)), failed[i])
        elif i in unparsable:
            rejects.add(f"{what}_unparsable", str(requests[i].meta.get("id", i)), last_err.get(i, ""))
    return results


def complete_parsed(backend: Backend, requests: Sequence[Request], parse: Callable[[Any], Any],
                    rejects: Rejects, max_parse_retries: int = 2, what: str = "reply",
                    progress: Callable[[int], None] | None = None, parse_completion: bool = False) -> list[Any]:
    """Complete and parse a list of requests: :func:`stream_parsed` collected into a list (one parsed
    value or None per request). ``progress(n)`` is called as results arrive; ``parse`` receives the reply
    text, or with ``parse_completion`` the whole :class:`Completion` (its ``logprobs`` too)."""
    out = []
    with stream_parsed(backend, requests, parse, rejects, max_parse_retries, what,
                       parse_completion=parse_completion) as stream:
        for _, value in stream:
            out.append(value)
            if progress:
                progress(1)
    return out
