"""Ctrl-C (SIGINT) and SIGTERM stop a long command cleanly (README, "When things go wrong").

``with graceful_stop("rerun ... to resume"):`` makes the first SIGINT or SIGTERM a request: the command
prints one line, runs on to its next safe point -- where :func:`check_stop` is called: between shards,
between steps, per item of a stage (nothing unfinished is ever marked done, and what was finished or
received is kept) -- and raises :class:`Stopped` there, which the CLI reports in one line ending with how
to resume, exit status 3. A second signal stops at once (KeyboardInterrupt: ``interrupted``, status 130).
Only the main thread installs handlers; nested blocks (an experiment running data-gen) share the outer
one. Training has its own handler (fitrain.train.hooks), which takes over while it runs.
"""
from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Iterator

EXIT_STOPPED = 3
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
_state: dict = {"active": False, "signal": None, "resume": ""}


class Stopped(Exception):
    """Stopped at a safe point on request (a signal); the CLI prints it and exits with :data:`EXIT_STOPPED`."""

    exit_code = EXIT_STOPPED


@contextlib.contextmanager
def graceful_stop(resume: str) -> Iterator[None]:
    """Turn the first SIGINT/SIGTERM into a stop at the next :func:`check_stop`; ``resume`` says how to go on."""
    if _state["active"] or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in _SIGNALS}

    def restore() -> None:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)

    def handler(signum, frame) -> None:
        name = signal.Signals(signum).name
        if _state["signal"] is not None:  # the second one: stop now
            restore()
            raise KeyboardInterrupt
        _state["signal"] = name
        print(f"fitrain: {name} received: stopping at the next safe point (send it again to stop at once)",
              file=sys.stderr, flush=True)

    _state.update(active=True, signal=None, resume=resume)
    for s in _SIGNALS:
        signal.signal(s, handler)
    try:
        yield
    finally:
        restore()
        _state.update(active=False, signal=None, resume="")


def stop_requested() -> str | None:
    """The name of the signal that asked to stop, or None."""
    return _state["signal"]


def check_stop(where: str = "") -> None:
    """A safe point: raise :class:`Stopped` if a stop was requested."""
    name = _state["signal"]
    if name is not None:
        at = f" {where}" if where else ""
        raise Stopped(f"stopped by {name}{at}: nothing unfinished is marked done; {_state['resume']}")
