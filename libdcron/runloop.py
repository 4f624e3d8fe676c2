"""One thread that waits on many file descriptors and timers: the worker's event loop.

A worker with hundreds of runs in flight does not keep a thread per run (and one more per log):
every run's output pipe and exit (a ``pidfd``) and every timer (a fire instant, a timeout) are
watched by this loop's single thread, which calls back when one is ready.  Callbacks run in the
loop's thread and must not block; anything slow (spawning, ending a process tree, uploading a
log) is handed to a thread pool by the caller.

Thread safety: :meth:`call_soon`, :meth:`call_at` and :meth:`Timer.cancel` may be called from any
thread; :meth:`add_reader` and :meth:`remove_reader` only from the loop's thread (from a callback,
or through :meth:`call_soon`).  A callback that raises is logged; the loop goes on.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import logging
import os
import queue
import selectors
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Callback = Callable[[], object]


class Timer:
    """A call scheduled with :meth:`RunLoop.call_at`; :meth:`cancel` before it runs to drop it."""

    __slots__ = ("callback", "cancelled", "when")

    def __init__(self, when: float, callback: Callback) -> None:
        self.when = when
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class RunLoop:
    def __init__(self, name: str = "dcron-runloop") -> None:
        self._selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self._selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._timers: list[tuple[float, int, Timer]] = []
        self._seq = itertools.count()
        self._calls: deque[Callback] = deque()
        self._lock = threading.Lock()
        self._running = True
        self._closed = False
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    # -- any thread --------------------------------------------------------------------------------

    def call_soon(self, callback: Callback) -> None:
        """Run ``callback`` in the loop's thread, soon."""
        self._calls.append(callback)
        self._wake()

    def call_at(self, when: float, callback: Callback) -> Timer:
        """Run ``callback`` in the loop's thread at ``when`` (:func:`time.monotonic`) or just after."""
        timer = Timer(when, callback)
        with self._lock:
            heapq.heappush(self._timers, (when, next(self._seq), timer))
            first = self._timers[0][2] is timer
        if first:
            self._wake()
        return timer

    def in_loop(self) -> bool:
        return threading.current_thread() is self._thread

    def close(self) -> None:
        """Stop the loop's thread (watched descriptors are left to their owners).  Closing again
        does nothing: the loop's own descriptors are closed once (their numbers may belong to
        another file by then)."""
        with self._lock:
            if self._closed:
                return
            self._running = False
        self._wake()
        if not self.in_loop():
            self._thread.join(timeout=5)
        with self._lock:
            self._closed = True  # no wake-up writes to the pipe from now on
            with contextlib.suppress(OSError):
                self._selector.close()
            for fd in (self._wake_r, self._wake_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    # -- the loop's thread -------------------------------------------------------------------------

    def add_reader(self, fd: int, callback: Callback) -> None:
        """Call ``callback`` each time ``fd`` is readable (or at its end of file, or its error)."""
        self._selector.register(fd, selectors.EVENT_READ, callback)

    def remove_reader(self, fd: int) -> None:
        with contextlib.suppress(KeyError, ValueError):
            self._selector.unregister(fd)

    def _wake(self) -> None:
        with self._lock:
            if self._closed:
                return
            with contextlib.suppress(BlockingIOError, OSError):  # full pipe: a wake-up is pending anyway
                os.write(self._wake_w, b"\0")

    def _timeout(self) -> float | None:
        if self._calls:
            return 0.0
        with self._lock:
            while self._timers and self._timers[0][2].cancelled:
                heapq.heappop(self._timers)
            if not self._timers:
                return None
            return max(0.0, self._timers[0][0] - time.monotonic())

    def _due(self) -> list[Timer]:
        now = time.monotonic()
        due: list[Timer] = []
        with self._lock:
            while self._timers and self._timers[0][0] <= now:
                timer = heapq.heappop(self._timers)[2]
                if not timer.cancelled:
                    due.append(timer)
        return due

    def _loop(self) -> None:
        while self._running:
            try:
                events = self._selector.select(self._timeout())
            except OSError as exc:  # closed under us
                if self._running:
                    log.error("run loop cannot wait: %s", exc)
                return
            for key, _ in events:
                if key.data is None:
                    with contextlib.suppress(BlockingIOError, OSError):
                        while os.read(self._wake_r, 4096):
                            pass
                else:
                    self._call(key.data)
            while self._calls:
                self._call(self._calls.popleft())
            for timer in self._due():
                self._call(timer.callback)

    @staticmethod
    def _call(callback: Callback) -> None:
        try:
            callback()
        except Exception:
            log.exception("run loop callback %r failed", callback)


class Pool:
    """``size`` threads running submitted calls in order of submission: a thread pool without
    futures (:class:`concurrent.futures.ThreadPoolExecutor` costs several times more per call).
    A call that raises is logged.  :meth:`shutdown` lets the queued calls run, then ends."""

    _STOP = object()

    def __init__(self, size: int, name: str) -> None:
        self._queue: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._threads = [
            threading.Thread(target=self._work, name=f"{name}-{i}", daemon=True) for i in range(size)
        ]
        for thread in self._threads:
            thread.start()

    def submit(self, fn: Callable[..., object], *args: Any) -> None:
        self._queue.put((fn, args))

    def backlog(self) -> int:
        """Calls submitted and not taken by a thread yet (approximate)."""
        return self._queue.qsize()

    def shutdown(self) -> None:
        for _ in self._threads:
            self._queue.put(self._STOP)

    def _work(self) -> None:
        while True:
            item = self._queue.get()
            if item is self._STOP:
                return
            fn, args = item
            try:
                fn(*args)
            except Exception:
                log.exception("%r failed", fn)
