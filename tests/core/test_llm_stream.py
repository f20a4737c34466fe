"""The streaming window: results in input order, at most `window` in flight and refilled as each item
finishes (not in lock-step batches), an error stops the stream; infrastructure failures of the OpenAI
backend raise ServerUnavailable instead of being counted as rejects."""
import asyncio
import threading
import time

import pytest

from fitrain.core.accounting import Rejects
from fitrain.core.llm import LLMConfig, Request, ServerUnavailable, make_backend, stream_parsed
from fitrain.core.llm_stream import WindowStream
from tests.helpers.llm_server import Reply, ScriptedLLMServer, last_user_message


def test_results_in_input_order_with_a_bounded_window_refilled_continuously():
    durations = [0.3 if i % 5 == 0 else 0.02 for i in range(40)]  # one slow item in five
    active, peak, lock = [0], [0], threading.Lock()

    async def work(ctx, i):
        with lock:
            active[0] += 1
            peak[0] = max(peak[0], active[0])
        await asyncio.sleep(durations[i])
        with lock:
            active[0] -= 1
        return i * i

    stream = WindowStream(window=8)
    t0 = time.perf_counter()
    out = list(stream.run(range(40), work))
    dt = time.perf_counter() - t0
    assert out == [i * i for i in range(40)]
    assert peak[0] == 8 and stream.in_flight == 0
    # lock-step batches of 8 would wait for each batch's slow items: 5 x 0.3 s; the window overlaps them
    assert dt < 5 * 0.3


def test_an_error_stops_the_stream_and_cancels_the_rest():
    started = []

    async def work(ctx, i):
        started.append(i)
        if i == 3:
            raise RuntimeError("boom")
        await asyncio.sleep(5)
        return i

    with pytest.raises(RuntimeError, match="boom"):
        t0 = time.perf_counter()
        list(WindowStream(window=4).run(range(100), work))
    assert time.perf_counter() - t0 < 4  # not after the sleeping items finished
    assert max(started) < 8


def test_buffered_results_are_bounded():
    async def work(ctx, i):
        await asyncio.sleep(1.0 if i == 0 else 0.0)  # the head is slow: the others wait to be yielded
        return i

    stream = WindowStream(window=4, max_buffered=10)
    seen = []
    for x in stream.run(range(50), work):
        seen.append(x)
        if x == 0:
            assert stream._submitted <= 10
    assert seen == list(range(50))


def _llm(srv, **kw):
    return LLMConfig(model="scripted", base_url=srv.base_url, max_retries=1, backoff_s=0.01, timeout_s=5, **kw)


def test_a_server_that_goes_away_raises_server_unavailable_not_rejects():
    srv = ScriptedLLMServer(lambda k, b: Reply(text="ok", delay_s=0.2)).start()
    be = make_backend(_llm(srv, max_concurrency=4))
    reqs = [Request(messages=[{"role": "user", "content": str(i)}], meta={"id": i}) for i in range(40)]
    rejects = Rejects()
    got = []
    with pytest.raises(ServerUnavailable, match="is not usable"):
        with stream_parsed(be, reqs, str, rejects) as stream:
            for _, v in stream:
                got.append(v)
                if len(got) == 5:
                    srv.__exit__()  # the server dies mid-stream
    assert rejects.total == 0 and 5 <= len(got) < 40


def test_a_server_that_serves_another_model_raises_server_unavailable():
    with ScriptedLLMServer(lambda k, b: Reply(text="ok"), model="other") as srv:
        be = make_backend(_llm(srv))  # asks for "scripted"; the server answers 404 for it
        rejects = Rejects()
        with pytest.raises(ServerUnavailable, match=r"it serves \['other'\], not 'scripted'"):
            list(stream_parsed(be, [Request(messages=[{"role": "user", "content": "q"}])], str, rejects))
        assert rejects.total == 0


def test_a_request_the_healthy_server_fails_is_counted():
    def respond(kind, body):
        return Reply(status=500) if last_user_message(body) == "bad" else Reply(text="ok")

    with ScriptedLLMServer(respond) as srv:
        rejects = Rejects()
        reqs = [Request(messages=[{"role": "user", "content": q}], meta={"id": q}) for q in ("a", "bad", "c")]
        out = [v for _, v in stream_parsed(make_backend(_llm(srv)), reqs, str, rejects, what="judge")]
        assert out == ["ok", None, "ok"] and rejects.counts == {"judge_failed": 1}
