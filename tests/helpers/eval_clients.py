"""Shared pieces of the eval tests: a judge and a generator talking to the scripted local server."""
from __future__ import annotations

from fitrain.core.llm import LLMConfig
from fitrain_eval.generate import GenerationConfig, Generator
from fitrain_eval.judges.common import Judge, JudgeConfig
from tests.helpers.paths import FIXTURES

DATA = FIXTURES  # the eval tests' benchmark files (subsets, tests/fixtures/PROVENANCE.md)


def judge_for(srv, cache_dir, **kw) -> Judge:
    llm = LLMConfig(backend="openai", model="scripted", base_url=srv.base_url, max_retries=1, backoff_s=0.01,
                    timeout_s=5.0, max_concurrency=4)
    return Judge(JudgeConfig(llm=llm, **kw), cache_dir=cache_dir)


def generator_for(srv, prompt_format: str = "raw") -> Generator:
    llm = LLMConfig(backend="openai", model="scripted", base_url=srv.base_url, max_retries=1, backoff_s=0.01,
                    timeout_s=5.0)
    return Generator(GenerationConfig(llm=llm, prompt_format=prompt_format, max_new_tokens=32))
