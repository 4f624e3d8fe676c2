"""A log line that a flood of bad peers cannot turn into a flood of log lines."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any


class RateLimitedLog:
    """Log at most ``burst`` messages per ``interval`` seconds; say how many were suppressed."""

    def __init__(self, logger: logging.Logger, interval: float = 10.0, burst: int = 5) -> None:
        self._log = logger
        self._interval = interval
        self._burst = burst
        self._window = 0.0
        self._count = 0
        self._suppressed = 0
        self._lock = threading.Lock()

    def __call__(self, level: int, message: str, *args: Any) -> bool:
        """Log unless over the limit; return whether it was logged."""
        now = time.monotonic()
        with self._lock:
            if now - self._window >= self._interval:
                if self._suppressed:
                    self._log.log(
                        level,
                        "(%d similar messages suppressed in the last %.0fs)",
                        self._suppressed,
                        self._interval,
                    )
                self._window, self._count, self._suppressed = now, 0, 0
            if self._count >= self._burst:
                self._suppressed += 1
                return False
            self._count += 1
        self._log.log(level, message, *args)
        return True
