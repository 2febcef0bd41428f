"""The signals that stop a run: SIGINT (Ctrl-C) and SIGTERM, raised as `Interrupted`.

`ringfleet run` routes them for the length of one attempt, so the ranks of every
node are stopped and the record still written; during cleanup they are ignored.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Interrupted(BaseException):
    """SIGINT or SIGTERM arrived during a run (a BaseException, like KeyboardInterrupt)."""

    def __init__(self, signum: int):
        super().__init__(signum)
        self.signal = signal.Signals(signum).name


@contextmanager
def route_signals(handler) -> Iterator[None]:
    """Route SIGINT and SIGTERM to `handler` for the block (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, handler) for sig in STOP_SIGNALS}
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


def raise_interrupted(signum, frame) -> None:
    raise Interrupted(signum)
