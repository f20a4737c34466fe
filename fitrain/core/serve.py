"""Start an OpenAI-compatible server (``vllm serve``) from its own environment for one stage of one job (data_gen's
LLM stages, its generated baselines, and ``fitrain eval``'s local judge: one lifecycle for all), check that it is the server we asked for, point the llm client at it, and stop it afterwards.

vLLM pins its own CUDA torch and transformers, so it is never imported here: it runs as a separate
process from a separate environment (``serve.command``, e.g. ``[/opt/vllm/bin/vllm, serve]``). Any
server that lists its model at ``GET /v1/models`` works the same way (SGLang, TGI, llama.cpp).

The lifecycle is built so that two jobs on one node can never talk to each other's server:

* **a free port per job** (``serve.port: 0``): the kernel picks an unused port; if another process takes
  it before our server binds, the server exits and is started again on another port;
* **health and identity of our own process**: we wait until *the process we started* is alive,
  ``/v1/models`` lists the model we asked for, and (where /proc tells) the listening socket belongs to our
  process group; a process that exits, a port that answers with another model, or another process's
  server on our port is a clear error, never a silent fallback to whatever listens there;
* **clean shutdown**: SIGTERM to the server's process group, SIGKILL after ``serve.stop_timeout_s``.

If the server dies while a stage runs, the client raises ServerUnavailable (fitrain.core.llm_openai): the
job fails with that message and nothing of the unfinished shard is marked done.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from fitrain.core.checks import above, at_least, check_fields, integer, interval
from fitrain.core.errors import FitrainError
from fitrain.core.llm import LLMConfig, check_reachable, served_models
from fitrain.core.llm_openai import BadModelList, identity_problem


@dataclass
class ServeConfig:
    """Start ``vllm serve`` from its own environment, once per LLM stage of a job (data_gen: the job's whole
    range of shards; eval: the judge, for the whole job); the lifecycle is this module's (free port, health
    and identity, clean shutdown)."""

    enabled: bool = False
    command: list[str] = field(default_factory=lambda: ["vllm", "serve"])  # e.g. [/opt/vllm-env/bin/vllm, serve]
    port: int = 0                      # 0 = a free port per job (two jobs on one node never share a server)
    extra_args: list[str] = field(default_factory=list)
    health_timeout_s: float = 900.0    # until the process we started serves the model
    poll_s: float = 1.0                # health poll interval
    stop_timeout_s: float = 60.0       # SIGTERM, then SIGKILL after this long
    log: str = ""                      # '' = <run_dir>/data_gen/vllm-<stage>[.shard-N].log (eval: <out>/judge-server.log)

    def __post_init__(self) -> None:
        check_fields(self, port=integer(interval("[0, 65535]")), health_timeout_s=above(0), poll_s=above(0),
                     stop_timeout_s=at_least(0))


PORT_ATTEMPTS = 3    # a free port can be taken by another process before our server binds it


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _log_tail(path: Path, n: int = 2000, start: int = 0) -> str:
    """The last ``n`` bytes the log got since offset ``start`` (this attempt's output, not an earlier one's)."""
    try:
        return path.read_bytes()[start:][-n:].decode("utf-8", "replace").strip()
    except OSError:
        return ""


def _stop(proc: subprocess.Popen, timeout_s: float) -> None:
    if proc.poll() is not None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        proc.wait(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def _listening_inodes(port: int) -> set[str]:
    """Socket inodes listening on ``port`` (Linux /proc/net/tcp{,6}; state 0A = LISTEN)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            f = line.split()
            if len(f) > 9 and f[3] == "0A" and int(f[1].rsplit(":", 1)[1], 16) == port:
                inodes.add(f[9])
    return inodes


def _listener_owner(base: str, proc: subprocess.Popen) -> bool | None:
    """Whether the process listening on ``base``'s port is ``proc`` or one of its process group (the server
    we started); None where that cannot be told (no /proc). Another job's server with the same model name on
    a port that was free a moment ago would otherwise pass the identity check."""
    port = int(base.rsplit(":", 1)[1])
    inodes = _listening_inodes(port)
    if not inodes or not Path("/proc/self/fd").is_dir():
        return None
    for pid_dir in Path("/proc").glob("[0-9]*"):
        try:
            if os.getpgid(int(pid_dir.name)) != proc.pid:
                continue
            for fd in (pid_dir / "fd").iterdir():
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    return True
        except (OSError, ValueError):
            continue
    return False


def _wait_ready(proc: subprocess.Popen, base: str, model: str, serve: ServeConfig, log_path: Path,
                log_start: int = 0) -> str | None:
    """Poll until our process serves ``model``. Returns None when ready, 'port_taken' when the process exited
    because its port was taken; raises FitrainError otherwise."""
    deadline = time.monotonic() + serve.health_timeout_s
    while True:
        code = proc.poll()
        if code is not None:
            tail = _log_tail(log_path, start=log_start)
            if "address already in use" in tail.lower():
                return "port_taken"
            raise FitrainError(f"{serve.command[0]} exited with status {code} before it served '{model}'; "
                               f"see {log_path}" + (f":\n{tail[-600:]}" if tail else ""))
        try:
            models = served_models(base + "/v1", timeout_s=2.0)
        except BadModelList as e:
            raise FitrainError(f"the server on {base} is not an OpenAI-compatible one: {e}; see {log_path}") from None
        except (OSError, ValueError):
            models = None  # not listening yet
        if models is not None:
            problem = identity_problem(model, models)
            if problem is None:
                if _listener_owner(base, proc) is not False:  # ours, or /proc cannot tell
                    return None
                problem = "the port is held by another process (not the one this job started)"
            raise FitrainError(f"the server on {base} is not the one this job started: {problem}; another "
                               f"process holds the port, or the server was started with another served model "
                               f"name (serve.extra_args); see {log_path}")
        if time.monotonic() > deadline:
            raise FitrainError(f"{serve.command[0]} did not serve '{model}' within {serve.health_timeout_s:.0f}s; "
                               f"see {log_path}")
        time.sleep(serve.poll_s)


@contextlib.contextmanager
def served(llm: LLMConfig, serve: ServeConfig, log_path: Path, host: str = "127.0.0.1") -> Iterator[LLMConfig]:
    """Run ``serve.command MODEL --host H --port P [extra_args]`` for the duration; yields ``llm`` pointed
    at it. ``serve.port`` 0 picks a free port (retried when another process takes it first)."""
    if not llm.model:
        raise FitrainError("serve.enabled needs llm.model (the model path, hub name or GGUF id the server should serve)")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, PORT_ATTEMPTS + 1):
        port = serve.port or free_port(host)
        base = f"http://{host}:{port}"
        cmd = [*serve.command, llm.model, "--host", host, "--port", str(port), *serve.extra_args]
        with open(log_path, "ab") as logf:
            log_start = logf.tell()
            logf.write(f"[fitrain] starting {' '.join(cmd)}\n".encode())
            logf.flush()
            try:
                proc = subprocess.Popen(cmd, stdout=logf, stderr=subprocess.STDOUT, start_new_session=True,
                                        env={**os.environ, "PYTHONNOUSERSITE": "1"})
            except OSError as e:
                raise FitrainError(f"cannot start {' '.join(cmd)}: {e} (set serve.command to the server "
                                   "executable of its own environment)") from None
            try:
                state = _wait_ready(proc, base, llm.model, serve, log_path, log_start)
                if state == "port_taken" and not serve.port and attempt < PORT_ATTEMPTS:
                    continue
                if state == "port_taken":
                    raise FitrainError(f"{cmd[0]} could not bind port {port} (address already in use); see "
                                       f"{log_path}")
                yield dataclasses.replace(llm, backend="openai", base_url=base + "/v1")
                return
            finally:
                _stop(proc, serve.stop_timeout_s)


@contextlib.contextmanager
def serving(llm: LLMConfig | None, serve: ServeConfig, log_path: Path) -> Iterator[LLMConfig | None]:
    """The LLMConfig a stage sends its requests with: behind our own ``vllm serve`` when ``serve.enabled``
    and the backend is ``openai``, else as given. Either way an OpenAI-compatible server (ours or an
    external one) must answer and list the configured model before any request is sent."""
    if llm is None or llm.backend != "openai" or not serve.enabled:
        if llm is not None:
            check_reachable(llm, check_model=True)
        yield llm
        return
    with served(llm, serve, log_path) as pointed:
        check_reachable(pointed, check_model=True)
        yield pointed
