"""Exponential backoff, written once: every retry loop of dcron waits through :class:`Backoff`.

``Backoff(initial=0.5, maximum=10)`` yields 0.5, 1, 2, 4, 8, 10, 10, ... seconds; :meth:`reset`
starts over after a success.  :func:`retry` calls a function until it stops raising one of the
given errors, waiting on an :class:`threading.Event` (so a stopping node does not sleep out its
backoff) and giving up after ``tries`` calls or ``deadline`` seconds.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class Backoff:
    def __init__(self, initial: float = 0.5, maximum: float = 10.0, factor: float = 2.0) -> None:
        if not 0 < initial <= maximum or factor < 1:
            raise ValueError("backoff needs 0 < initial <= maximum and factor >= 1")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.current = initial

    def next(self) -> float:
        """The delay to wait now; the following one grows."""
        delay = self.current
        self.current = min(self.current * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        self.current = self.initial


def retry(
    call: Callable[[], T],
    errors: tuple[type[BaseException], ...],
    *,
    backoff: Backoff | None = None,
    tries: int | None = None,
    deadline: float | None = None,
    stop: threading.Event | None = None,
    log: logging.Logger | None = None,
    what: str = "call",
) -> T:
    """``call()`` until it returns; re-raise its error after ``tries`` calls, past ``deadline``
    seconds, or once ``stop`` is set."""
    backoff = backoff or Backoff()
    stop = stop or threading.Event()
    until = None if deadline is None else time.monotonic() + deadline
    attempt = 0
    while True:
        attempt += 1
        try:
            return call()
        except errors as exc:
            out_of_time = until is not None and time.monotonic() > until
            if stop.is_set() or out_of_time or (tries is not None and attempt >= tries):
                raise
            delay = backoff.next()
            if log is not None:
                log.warning("%s failed, retrying in %.1fs: %s", what, delay, exc)
            if stop.wait(delay):
                raise
