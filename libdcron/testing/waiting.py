"""Waiting in tests: :func:`wait_for` polls a predicate until it holds, or fails the test."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

__all__ = ["wait_for"]

T = TypeVar("T")


def wait_for(
    predicate: Callable[[], T | None],
    timeout: float = 10.0,
    interval: float = 0.05,
    message: str | None = None,
) -> T:
    """Call ``predicate`` every ``interval`` seconds until it returns a truthy value; return it.

    The predicate is called at least once, and once more at the deadline, so a ``timeout`` of 0
    checks exactly once.  After ``timeout`` seconds without a truthy value, raise
    :class:`AssertionError` with ``message`` (default ``"condition not met"``), the timeout and
    the last value the predicate returned.  Exceptions raised by the predicate propagate at once:
    catch inside the predicate what means "not yet".
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(
                f"{message or 'condition not met'} within {timeout:g}s (last value: {value!r})"
            )
        time.sleep(min(interval, remaining))
