"""W&B online only when it can work (README, "W&B"): ``wandb.mode: online`` (or ``auto`` with credentials)
without an API key, or with a key and no route to the W&B server, falls back to offline with one warning
-- the run is written to ``<run>/wandb/offline-run-*`` for a later ``wandb sync`` -- instead of a traceback
or a long wait inside ``wandb.init``. An online start that still fails (a key the server refuses) falls
back the same way."""
from __future__ import annotations

import os
import socket
import sys
from pathlib import Path
from typing import Any, Callable
from urllib.parse import urlparse

DEFAULT_BASE_URL = "https://api.wandb.ai"
PROBE_TIMEOUT_S = 5.0


def _host_port() -> tuple[str, int]:
    url = urlparse(os.environ.get("WANDB_BASE_URL") or DEFAULT_BASE_URL)
    return url.hostname or "api.wandb.ai", url.port or (80 if url.scheme == "http" else 443)


def has_api_key() -> bool:
    """``WANDB_API_KEY``, or a ``~/.netrc`` (``NETRC``) entry for the W&B host (what ``wandb login`` writes)."""
    if os.environ.get("WANDB_API_KEY", "").strip():
        return True
    netrc = Path(os.environ.get("NETRC", Path.home() / ".netrc"))
    try:
        return netrc.is_file() and _host_port()[0] in netrc.read_text()
    except OSError:
        return False


def online_problem(timeout_s: float = PROBE_TIMEOUT_S) -> str | None:
    """Why an online W&B run cannot start here (no API key, the server unreachable), or None."""
    if not has_api_key():
        return "no W&B API key (set WANDB_API_KEY or run `wandb login`)"
    host, port = _host_port()
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as e:
        return f"the W&B server {host}:{port} cannot be reached ({e.strerror or e})"


def _warn(reason: str, run_dir: Any) -> None:
    print(f"fitrain train: warning: W&B online is not possible: {reason}; logging offline to {run_dir}/wandb "
          "(upload later with `wandb sync`)", file=sys.stderr, flush=True)


def start_run(init: Callable[..., Any], **kwargs: Any) -> Any:
    """``init(**kwargs)`` (``wandb.init``), with an online ``mode`` turned offline, with one warning, when
    :func:`online_problem` finds one or the online start fails."""
    if kwargs.get("mode") != "online":
        return init(**kwargs)
    problem = online_problem()
    if problem is None:
        try:
            return init(**kwargs)
        except Exception as e:  # wandb's own errors (a refused key, a server error) have no common base
            problem = f"wandb.init failed ({type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''})"
    _warn(problem, kwargs.get("dir", "."))
    return init(**{**kwargs, "mode": "offline"})
