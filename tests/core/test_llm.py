import time

from fitrain.core.accounting import Rejects
from fitrain.core.llm import CachedBackend, LLMConfig, Request, complete_parsed, make_backend
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message


def test_openai_backend_retries_parses_and_caches(tmp_path):
    calls: dict[str, int] = {}

    def responder(kind, body):
        q = last_user_message(body)
        calls[q] = calls.get(q, 0) + 1
        if q == "flaky" and calls[q] == 1:
            return Reply(status=500)
        if q == "slow" and calls[q] == 1:
            return Reply(text="late", delay_s=1.5)
        if q == "garbage":
            return Reply(text="not a number")
        if q == "broken":
            return Reply(raw=b"{not json", status=200)
        return Reply(text=f"{len(q)}")

    with ScriptedLLMServer(responder) as srv:
        cfg = LLMConfig(backend="openai", model="scripted", base_url=srv.base_url, max_retries=2,
                        backoff_s=0.01, timeout_s=1.0, cache=str(tmp_path / "cache.jsonl"))
        b = make_backend(cfg)
        assert isinstance(b, CachedBackend)
        reqs = [Request(messages=[{"role": "user", "content": q}], meta={"id": q})
                for q in ["abc", "flaky", "slow", "garbage", "broken"]]
        rejects = Rejects()
        t0 = time.perf_counter()
        out = complete_parsed(b, reqs, lambda s: int(s), rejects, max_parse_retries=1, what="judge")
        assert out[:3] == [3, 5, 4] and out[3] is None and out[4] is None
        assert rejects.counts == {"judge_unparsable": 1, "judge_failed": 1}
        assert calls["garbage"] == 2  # asked again once, then counted
        assert time.perf_counter() - t0 < 10
        n_before = len(srv.requests)
        again = complete_parsed(make_backend(cfg), reqs[:3], int, Rejects())
        assert again == [3, 5, 4] and len(srv.requests) == n_before  # served from the cache


def test_raw_prompt_goes_to_completions():
    with ScriptedLLMServer(lambda kind, body: Reply(text=f"{kind}:{body.get('prompt')} STOP more")) as srv:
        b = make_backend(LLMConfig(model="scripted", base_url=srv.base_url))
        [c] = b.complete([Request(prompt="Instruction: hi\n\nAnswer:", stop=["STOP"])])
        assert c.text == "completions:Instruction: hi\n\nAnswer: "


def test_cache_key_includes_backend_decoding_defaults(tmp_path):
    with ScriptedLLMServer(lambda kind, body: Reply(text=str(body.get("max_tokens")))) as srv:
        def ask(max_new):
            cfg = LLMConfig(model="scripted", base_url=srv.base_url, max_new_tokens=max_new,
                            cache=str(tmp_path / "c.jsonl"))
            return make_backend(cfg).complete([Request(messages=[{"role": "user", "content": "q"}])])[0]
        first, again, changed = ask(16), ask(16), ask(32)
        assert (first.text, first.cached, again.text, again.cached) == ("16", False, "16", True)
        assert (changed.text, changed.cached) == ("32", False)  # a new limit is never served the old reply
