"""Request throughput of the LLM client against a local server of fixed latency and capacity, as a
fraction of that capacity: the streaming window (fitrain.core.llm_stream, what the data_gen stages use)
beside the lock-step batches data_gen sent before this change (each stage called the client on batches of
256 requests at concurrency 256: one AsyncOpenAI client per batch, ``asyncio.gather`` under a semaphore,
the server draining at every batch's tail); that former client is reproduced here as the reference.

The server (tests/helpers/llm_server.py as its own process, so it does not share the client's GIL) works
on at most ``--capacity`` requests at once, each for ``--latency-ms``; the others queue, like a model
server's batch. Its capacity is ``capacity / latency`` requests/s, the most any client can get.

    .venv/bin/python benchmarks/llm_request_throughput.py [--requests 1280] [--latency-ms 500]
        [--capacity 32] [--window 0] [--jitter 0.5]

(the defaults shown; ``--window 0`` is data_gen's own window, data_gen.config.STREAM_WINDOW).

Prints achieved requests/s and achieved/capacity for both clients, at fixed latency and again with each
request's latency drawn from latency x (1 +- jitter), as output lengths vary on a real server.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

LOCK_STEP_BATCH = 256  # the former data_gen BATCH, sent at concurrency 256 (the former recipes)


def start_server(latency_ms: float, capacity: int, jitter: float) -> tuple[subprocess.Popen, str]:
    from data_gen.serve import free_port
    from fitrain.core.llm import served_models

    port = free_port()
    proc = subprocess.Popen([sys.executable, str(REPO / "tests/helpers/llm_server.py"), "bench", "--port", str(port),
                             "--latency-ms", str(latency_ms), "--capacity", str(capacity),
                             "--latency-jitter", str(jitter), "--responder", "echo"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}/v1"
    for _ in range(200):
        try:
            if served_models(base) == ["bench"]:
                return proc, base
        except (OSError, ValueError):
            time.sleep(0.05)
    proc.kill()
    raise SystemExit("the benchmark server did not start")


def lock_step_today(base: str, reqs: list) -> list[str]:
    """The former client: per batch of 256, a new AsyncOpenAI and gather under a semaphore of 256."""
    import asyncio

    from openai import AsyncOpenAI

    async def batch(rs):
        client = AsyncOpenAI(base_url=base, api_key="EMPTY", max_retries=0, timeout=120)
        sem = asyncio.Semaphore(LOCK_STEP_BATCH)

        async def one(r):
            async with sem:
                resp = await client.chat.completions.create(model="bench", messages=r.messages, max_tokens=16)
                return resp.choices[0].message.content

        try:
            return await asyncio.gather(*(one(r) for r in rs))
        finally:
            await client.close()

    out: list[str] = []
    for s in range(0, len(reqs), LOCK_STEP_BATCH):
        out += asyncio.run(batch(reqs[s:s + LOCK_STEP_BATCH]))
    return out


def measure(base: str, n: int, window: int, lock_step: bool) -> float:
    from fitrain.core.llm import LLMConfig, OpenAIBackend, Request

    reqs = [Request(messages=[{"role": "user", "content": f"request {i}"}]) for i in range(n)]
    t0 = time.perf_counter()
    if lock_step:
        texts = lock_step_today(base, reqs)
    else:
        be = OpenAIBackend(LLMConfig(model="bench", base_url=base, max_concurrency=window, max_new_tokens=16))
        texts = [c.text for c in be.stream(reqs)]
    dt = time.perf_counter() - t0
    assert texts == [f"request {i}" for i in range(n)], "results out of order or missing"
    return n / dt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=1280)
    ap.add_argument("--latency-ms", type=float, default=500.0)
    ap.add_argument("--capacity", type=int, default=32)
    ap.add_argument("--window", type=int, default=0, help="0 = data_gen's default (config.STREAM_WINDOW)")
    ap.add_argument("--jitter", type=float, default=0.5)
    args = ap.parse_args()
    from data_gen.config import STREAM_WINDOW

    window = args.window or STREAM_WINDOW
    capacity_rps = args.capacity / (args.latency_ms / 1000)
    print(f"server: capacity {args.capacity} requests at once x {args.latency_ms:.0f} ms = {capacity_rps:.1f} "
          f"requests/s; {args.requests} requests")
    for jitter in sorted({0.0, args.jitter}):
        proc, base = start_server(args.latency_ms, args.capacity, jitter)
        try:
            measure(base, min(64, args.requests), window, False)  # warm up (imports, connections)
            lock = measure(base, args.requests, window, True)
            stream = measure(base, args.requests, window, False)
        finally:
            proc.kill()
            proc.wait()
        label = "fixed latency" if not jitter else f"latency x (1 +- {jitter:g})"
        print(f"{label:<24} streaming window {window}: {stream:7.1f} requests/s = {stream / capacity_rps:.3f} of "
              f"capacity | former lock-step batches of {LOCK_STEP_BATCH}: {lock:7.1f} requests/s = "
              f"{lock / capacity_rps:.3f} of capacity")


if __name__ == "__main__":
    main()
