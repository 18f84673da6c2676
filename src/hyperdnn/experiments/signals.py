"""Ctrl-C and SIGTERM during a run: the first one asks for a checkpoint at the next step boundary."""

from __future__ import annotations

import signal
import sys
from typing import Any, Callable


class InterruptFlag:
    """While active, the first SIGINT / SIGTERM calls ``request_stop()``; the second interrupts at once.

    Args:
        request_stop: called on the first signal (sets the run context's flag).
        stopping: tells whether a stop was already requested.
    """

    def __init__(self, request_stop: Callable[[], None], stopping: Callable[[], bool]) -> None:
        self.request_stop, self.stopping = request_stop, stopping
        self.saved: dict[int, Any] = {}

    def _handler(self, signum: int, frame: Any) -> None:
        if self.stopping():
            raise KeyboardInterrupt
        self.request_stop()
        print("\ninterrupt: writing a checkpoint at the end of this step (press again to stop at once)", file=sys.stderr)

    def __enter__(self) -> "InterruptFlag":
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self.saved[sig] = signal.signal(sig, self._handler)
            except ValueError:  # not the main thread: keep default behaviour
                pass
        return self

    def __exit__(self, *exc: Any) -> None:
        for sig, old in self.saved.items():
            signal.signal(sig, old)
