"""Start an OpenAI-compatible server (``vllm serve``) from its own environment, wait for its health check,
point the llm client at it, and stop it afterwards.

vLLM pins its own CUDA torch and transformers, so it is never imported here: it runs as a separate
process from a separate environment (``serve.command``, e.g. ``[/opt/vllm/bin/vllm, serve]``). Any
server that answers ``GET /health`` (or ``/v1/models``) works the same way (SGLang, TGI, llama.cpp).
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Iterator

from data_gen.config import ServeConfig
from fitrain.core.errors import FitrainError
from fitrain.core.llm import LLMConfig


def _healthy(base: str, timeout: float = 2.0) -> bool:
    for path in ("/health", "/v1/models"):
        try:
            with urllib.request.urlopen(base + path, timeout=timeout) as r:
                if r.status == 200:
                    return True
        except (urllib.error.URLError, OSError, TimeoutError):
            continue
    return False


@contextlib.contextmanager
def served(llm: LLMConfig, serve: ServeConfig, log_path: Path, host: str = "127.0.0.1") -> Iterator[LLMConfig]:
    """Run ``serve.command MODEL --port P [extra_args]`` for the duration; yields ``llm`` pointed at it."""
    if not llm.model:
        raise FitrainError("serve.enabled needs llm.model (the model path or hub name vLLM should serve)")
    base = f"http://{host}:{serve.port}"
    cmd = [*serve.command, llm.model, "--host", host, "--port", str(serve.port), *serve.extra_args]
    log_path.parent.mkdir(parents=True, exist_ok=True)
    with open(log_path, "ab") as logf:
        try:
            proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                    env={**os.environ, "PYTHONNOUSERSITE": "1"})
        except OSError as e:
            raise FitrainError(f"cannot start {' '.join(cmd)}: {e} (set serve.command to the server "
                               "executable of its own environment)") from None
        try:
            deadline = time.monotonic() + serve.health_timeout_s
            while not _healthy(base):
                if proc.poll() is not None:
                    raise FitrainError(f"{cmd[0]} exited with status {proc.returncode} before it was healthy; "
                                       f"see {log_path}")
                if time.monotonic() > deadline:
                    raise FitrainError(f"{cmd[0]} not healthy after {serve.health_timeout_s:.0f}s; see {log_path}")
                time.sleep(1.0)
            yield dataclasses.replace(llm, backend="openai", base_url=base + "/v1")
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGTERM)
                try:
                    proc.wait(timeout=60)
                except subprocess.TimeoutExpired:
                    os.killpg(proc.pid, signal.SIGKILL)
                    proc.wait()
