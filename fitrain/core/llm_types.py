"""The types of the LLM client layer (re-exported by :mod:`fitrain.core.llm`, which callers import)."""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Callable, Iterable, Protocol, Sequence

from fitrain.core.checks import NON_NEGATIVE, POSITIVE, above, at_least, check_fields, one_of
from fitrain.core.errors import FitrainError


@dataclass
class LLMConfig:
    backend: str = "openai"            # openai | transformers | extractive
    model: str = ""                    # served model name, or a local model directory for transformers
    base_url: str = "http://127.0.0.1:8000/v1"
    api_key: str = "EMPTY"             # or set OPENAI_API_KEY; redacted in logged configs
    api_key_env: str = ""              # the environment variable holding the key (read there, never written)
    max_concurrency: int = 16          # openai: requests in flight, refilled as each finishes (a window)
    max_retries: int = 4
    backoff_s: float = 0.5             # first retry delay; doubles each retry, with jitter
    timeout_s: float = 120.0
    temperature: float = 0.0           # 0 = greedy
    max_new_tokens: int = 512
    batch_size: int = 8                # transformers backend
    device: str = "auto"               # transformers backend: auto | cpu | cuda
    dtype: str = "auto"                # transformers backend: auto | float32 | bfloat16
    cache: str = ""                    # path of a JSONL response cache ('' = none)

    def __post_init__(self) -> None:
        check_fields(self, backend=one_of("openai", "transformers", "extractive"), max_concurrency=POSITIVE,
                     max_retries=NON_NEGATIVE, backoff_s=at_least(0), timeout_s=above(0), temperature=at_least(0),
                     max_new_tokens=POSITIVE, batch_size=POSITIVE, device=one_of("auto", "cpu", "cuda"))


def api_key_of(cfg: LLMConfig) -> str:
    """The API key: from the environment variable ``api_key_env`` names (a one-line error when it is unset),
    else ``api_key``, else OPENAI_API_KEY."""
    import os

    if cfg.api_key_env:
        key = os.environ.get(cfg.api_key_env, "")
        if not key:
            raise FitrainError(f"llm.api_key_env: the environment variable {cfg.api_key_env} is not set (the API "
                               f"key of {cfg.base_url} is read from it)")
        return key
    return os.environ.get("OPENAI_API_KEY", cfg.api_key) if cfg.api_key == "EMPTY" else cfg.api_key


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


class ServerUnavailable(FitrainError):
    """The model server is down, unreachable or serves another model: an infrastructure failure. It fails
    the job (so that it is rerun) instead of being counted as a rejected item."""


def truncate_at_stop(text: str, stop: Iterable[str] | None) -> str:
    cut = len(text)
    for s in stop or ():
        i = text.find(s)
        if s and i != -1:
            cut = min(cut, i)
    return text[:cut]
