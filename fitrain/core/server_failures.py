"""Requests that failed at the model server, told apart from rejected items (README, "Exit codes").

A request that failed every attempt with a server error (HTTP 5xx, 408, 429, a timeout or a lost
connection while the server is up) says nothing about its item: beyond a small share of a shard's (or a
judge call's) requests it is an infrastructure failure, so the shard is not marked done and the command
exits 2 naming the server and the share; a rerun against a healthy server redoes it (the replies already
received are cached). Below the share they stay counted rejects (``<what>_failed``). A client error (a
400 for a prompt too long) is the item's own fault and always a reject.
"""
from __future__ import annotations

import re
from dataclasses import dataclass

from fitrain.core.accounting import Rejects
from fitrain.core.errors import FitrainError

# how fitrain.core.llm_openai words a failure that is the server's, not the request's
_SERVER_ERROR = re.compile(r"^(APITimeoutError|APIConnectionError|\w+ (5\d\d|408|429):)")


class InfrastructureFailure(FitrainError):
    """Too many requests failed at the server: nothing of the unit is marked done (exit 2)."""


def is_server_error(detail: str) -> bool:
    """Whether a failed request's error text (a ``Completion.error``) names a server-side failure."""
    return bool(_SERVER_ERROR.match(detail or ""))


@dataclass
class TrackedRejects(Rejects):
    """:class:`Rejects` that also counts the ``*_failed`` requests whose error is the server's."""

    server_failed: int = 0

    def add(self, reason: str, where: str = "", detail: str = "", n: int = 1) -> None:
        super().add(reason, where, detail, n)
        if reason.endswith("_failed") and is_server_error(detail):
            self.server_failed += n


def server_of(backend) -> str:
    """The server a backend talks to (its base URL), or its name for a local backend."""
    inner = getattr(backend, "inner", backend)
    url = getattr(getattr(inner, "cfg", None), "base_url", "")
    return url if getattr(inner, "name", "") == "openai" and url else str(getattr(inner, "name", "backend"))


def check_share(rejects: Rejects, requests: int, max_share: float, server: str, where: str) -> None:
    """Raise :class:`InfrastructureFailure` when more than ``max_share`` of ``requests`` failed at the server."""
    failed = getattr(rejects, "server_failed", 0)
    if not requests or not failed or failed / requests <= max_share:
        return
    raise InfrastructureFailure(
        f"{where}: {failed} of {requests} requests ({failed / requests:.0%}) failed at the LLM server {server} "
        f"(more than max_failed_share={max_share:g}); nothing of it is marked done: fix the server and rerun "
        "(replies already received are cached)")

