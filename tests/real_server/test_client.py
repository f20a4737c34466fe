"""The client layer against the real server (README "Tests against a real server" documents each outcome):

* no logprobs: transformers serve ignores ``logprobs``/``top_logprobs`` in chat completions; the reply text
  comes back and ``Completion.logprobs`` is None (callers then take their documented fallback);
* a model id with ':' and '/' (``<dir>:<file>.gguf``): listed, identity-checked and sent verbatim;
* the first answer: the lifecycle waits until the model is loaded (transformers serve loads a model named on
  its command line before it listens), so the first request is answered within the normal deadline;
* a prompt longer than the model's context (8192 tokens): the server answers HTTP 400 naming the limit; the
  request is counted ``<what>_failed`` with that detail, not retried and not an infrastructure failure.
"""
from __future__ import annotations

from fitrain.core.accounting import Rejects
from fitrain.core.llm import OpenAIBackend, Request, check_served, served_models, stream_parsed


def _ask(text: str, **kw) -> Request:
    return Request(messages=[{"role": "user", "content": text}], max_new_tokens=16, temperature=0.0, **kw)


def test_the_model_id_with_colon_and_slashes_is_listed_and_checked_verbatim(smol_server):
    assert ":" in smol_server.model and "/" in smol_server.model
    assert served_models(smol_server.base_url) == [smol_server.model]
    check_served(smol_server, check_model=True)


def test_a_chat_reply_without_logprobs_gives_text_and_none(smol_server):
    (c,) = OpenAIBackend(smol_server).complete([_ask("What is the capital of France?", logprobs=5)])
    assert c.error is None and c.attempts == 1 and "Paris" in c.text
    assert c.logprobs is None


def test_a_prompt_longer_than_the_context_is_counted_failed_not_an_infrastructure_error(smol_server):
    rejects = Rejects()
    long = _ask("word " * 9000, meta={"id": "long"})
    short = _ask("Say hello.", meta={"id": "short"})
    with stream_parsed(OpenAIBackend(smol_server), [long, short], lambda t: t, rejects) as s:
        out = {r.meta["id"]: v for r, v in s}
    assert out["long"] is None and out["short"]
    assert rejects.counts == {"reply_failed": 1}
    detail = " ".join(str(x) for x in rejects.examples.get("reply_failed", []))
    assert "400" in detail and "8192" in detail
