"""Judge requests/s against the local scripted OpenAI-compatible server (tests/helpers/llm_server.py), at
the configured concurrency vs concurrency 1, through fitrain_eval's Judge (fitrain.core.llm's async client,
parse + retry bookkeeping included; no cache).

    .venv/bin/python benchmarks/judge_throughput.py [--requests 200] [--latency-ms 50] [--concurrency 16]

The server answers every judgment after ``--latency-ms`` (standing in for a judge model's latency).
Prints both rates and their ratio.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--requests", type=int, default=200)
    ap.add_argument("--latency-ms", type=float, default=50.0)
    ap.add_argument("--concurrency", type=int, default=0, help="0 = LLMConfig's default max_concurrency")
    args = ap.parse_args()

    from fitrain.core.accounting import Rejects
    from fitrain.core.llm import LLMConfig, Request
    from fitrain_eval.judges.common import Judge, JudgeConfig
    from fitrain_eval.judges.mtbench101 import parse_score
    from tests.helpers.llm_server import Reply, ScriptedLLMServer

    configured = args.concurrency or LLMConfig().max_concurrency
    reqs = [Request(messages=[{"role": "user", "content": f"Rate answer {i}."}], meta={"id": i})
            for i in range(args.requests)]
    with ScriptedLLMServer(lambda kind, body: Reply(text="Fine. [[7]]", delay_s=args.latency_ms / 1000)) as srv:
        rates = {}
        for conc in (1, configured):
            judge = Judge(JudgeConfig(llm=LLMConfig(model="scripted", base_url=srv.base_url, max_concurrency=conc),
                                      cache=False))
            rejects = Rejects()
            t0 = time.perf_counter()
            out = judge.judge(reqs, parse_score, rejects, "bench")
            dt = time.perf_counter() - t0
            assert rejects.total == 0 and all(o.value == 7 for o in out)
            rates[conc] = args.requests / dt
            print(f"concurrency {conc:3d}: {rates[conc]:8.1f} requests/s ({dt:.2f} s for {args.requests})")
    print(f"server latency {args.latency_ms:.0f} ms; ratio concurrency {configured} / 1: "
          f"{rates[configured] / rates[1]:.2f}")


if __name__ == "__main__":
    main()
