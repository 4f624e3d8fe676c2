"""Batches of worker -> leader FINISHED reports.

A worker that ends hundreds of runs a second does not send hundreds of requests: ends queued
within one send (or within :data:`LINGER` seconds of the first) go to the leader together, one
``FINISHED`` carrying all of them.  A report that cannot be delivered is dropped with a log line:
the leader reads every end from the store as well, a moment later.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from .errors import DcronError
from .model import Execution

log = logging.getLogger(__name__)

#: Seconds a first queued end waits for others before it is sent.
LINGER = 0.005
#: Most ends in one report.
BATCH = 500


class FinishedNotifier:
    def __init__(self, send: Callable[[list[Execution]], None]) -> None:
        self._send = send
        self._queue: list[Execution] = []
        self._cond = threading.Condition()
        self._stopped = False
        self._thread = threading.Thread(target=self._loop, name="dcron-finished", daemon=True)
        self._thread.start()

    def add(self, execution: Execution) -> None:
        with self._cond:
            self._queue.append(execution)
            if len(self._queue) == 1:  # (woken by a first end only: the others wait out LINGER)
                self._cond.notify()

    def close(self, timeout: float = 3.0) -> None:
        """Send what is queued, then stop."""
        with self._cond:
            self._stopped = True
            self._cond.notify()
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._stopped:
                    self._cond.wait()
                if not self._queue:
                    return
                if not self._stopped:
                    self._cond.wait(LINGER)
                batch, self._queue = self._queue[:BATCH], self._queue[BATCH:]
            try:
                self._send(batch)
            except DcronError as exc:
                log.info("could not tell the leader that %d run(s) ended (it will read the store): %s", len(batch), exc)
            except Exception:
                log.exception("reporting %d ended run(s) to the leader failed", len(batch))
