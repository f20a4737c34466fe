"""Streaming over a bounded window of concurrent requests, results in input order.

A server such as vLLM batches whatever requests are in flight; it is kept busy only while enough
requests are queued at every moment. Sending fixed batches and waiting for each to finish (lock-step)
leaves it draining at every batch's tail, where its slowest requests run alone. :class:`WindowStream`
instead keeps up to ``window`` requests in flight and starts the next one as soon as any finishes,
across the whole input, while it still yields results in input order (so whatever is written from the
results is written in the same order as in a run without concurrency, and a resumed run is exact).

Completed results that wait for an earlier, slower one are buffered; at most ``max_buffered`` items
(in flight + waiting) are outstanding, so memory stays bounded on inputs of any length. An exception
raised by one item's work stops the stream at once: every outstanding item is cancelled and the
exception is raised to the consumer (an unreachable server must fail the job, not each item).

The coroutines run on an event loop in a helper thread owned by the stream, so synchronous callers
(the stage loops of data_gen, eval's judges) iterate results with a plain ``for``.
"""
from __future__ import annotations

import asyncio
import queue
import threading
from collections import deque
from concurrent.futures import Future
from typing import Any, Awaitable, Callable, Iterable, Iterator, TypeVar

T = TypeVar("T")
R = TypeVar("R")


class WindowStream:
    """Run ``work(context, item)`` for every item, at most ``window`` at once, yielding results in order.

    ``open_context()`` / ``close_context(ctx)`` are coroutines run on the stream's loop before the first
    and after the last item (an HTTP client that must live on that loop)."""

    def __init__(self, window: int, max_buffered: int = 0):
        self.window = max(1, int(window))
        self.max_buffered = max(self.window, int(max_buffered) or 4 * self.window)
        self._submitted = 0
        self._finished = 0
        self._lock = threading.Lock()

    @property
    def in_flight(self) -> int:
        """Items started whose work has not finished yet."""
        return self._submitted - self._finished

    def _done(self, fut: Future, signal: queue.SimpleQueue) -> None:
        with self._lock:
            self._finished += 1
        signal.put(fut)

    def run(self, items: Iterable[T], work: Callable[[Any, T], Awaitable[R]],
            open_context: Callable[[], Awaitable[Any]] | None = None,
            close_context: Callable[[Any], Awaitable[None]] | None = None) -> Iterator[R]:
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name="fitrain-llm-stream", daemon=True)
        thread.start()
        pending: deque[Future] = deque()
        ctx = None
        try:
            if open_context is not None:
                ctx = asyncio.run_coroutine_threadsafe(open_context(), loop).result()
            signal: queue.SimpleQueue = queue.SimpleQueue()
            started = threading.Semaphore(0)

            async def begin(item):
                # The next item is submitted only once the loop has begun this one. Submitting a whole
                # window at once would queue hundreds of first steps (building a request, opening a
                # connection) ahead of the first request's own continuation, so the server would sit idle
                # until all were built (measured: 2-3 s for 512 on two shared cores); paced, the first
                # requests reach the server at once and the rest are built while it works.
                started.release()
                return await work(ctx, item)

            source = iter(items)
            exhausted = False
            while True:
                while not exhausted and self.in_flight < self.window and len(pending) < self.max_buffered:
                    try:
                        item = next(source)
                    except StopIteration:
                        exhausted = True
                        break
                    fut = asyncio.run_coroutine_threadsafe(begin(item), loop)
                    self._submitted += 1
                    fut.add_done_callback(lambda f: self._done(f, signal))
                    pending.append(fut)
                    while not started.acquire(timeout=1.0) and not fut.done():
                        pass  # paced: see `begin`
                if not pending:
                    return
                if pending[0].done():
                    yield pending.popleft().result()  # raises the work's exception
                    continue
                finished = signal.get()  # some item finished (maybe an earlier one, already yielded)
                if not finished.cancelled() and finished.exception() is not None:
                    raise finished.exception()  # do not wait for it to reach the head
        finally:
            try:
                asyncio.run_coroutine_threadsafe(_cancel_all(), loop).result(timeout=60)
                if close_context is not None and ctx is not None:
                    asyncio.run_coroutine_threadsafe(close_context(ctx), loop).result(timeout=30)
            except Exception:  # noqa: BLE001 - shutting down must not hide the real outcome
                pass
            loop.call_soon_threadsafe(loop.stop)
            thread.join(timeout=30)
            if not thread.is_alive():
                loop.close()


async def _cancel_all() -> None:
    """Cancel every task of the running loop but this one, and wait until they have finished."""
    tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
