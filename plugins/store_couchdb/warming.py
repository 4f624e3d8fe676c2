"""Keeping a CouchDB store's Mango indexes built while its documents are written.

CouchDB brings a JSON index up to date when a query uses it: the first query after many writes
waits until all of them are indexed.  On pouchdb-server that is about 40 s per index for 100,000
jobs, far beyond a request's timeout, so the first ``dcron list`` (or a new leader's load) after a
bulk registration failed.  Apache CouchDB 3 also indexes in the background (its ``ken`` service);
pouchdb-server does not.  So the store asks for each index of a collection it wrote to itself, in
a thread of its own, at most once per interval: the queries that follow find them (nearly) current.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from libdcron.errors import DcronError

log = logging.getLogger(__package__)

#: Seconds between two passes over a collection's indexes while it is being written.
DEFAULT_INTERVAL = 1.0


class IndexWarmer:
    """Calls ``warm(collection)`` in a thread of its own after :meth:`written`, at most once per
    ``interval`` seconds; the writes made meanwhile are taken by the next pass."""

    def __init__(self, warm: Callable[[str], None], interval: float = DEFAULT_INTERVAL, name: str = "") -> None:
        self._warm = warm
        self.interval = interval
        self._name = name
        self._dirty: set[str] = set()
        self._wake = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        #: Passes made and passes failed, by collection (for tests and diagnostics).
        self.passes: dict[str, int] = {}
        self.failures: dict[str, int] = {}

    def written(self, collection: str) -> None:
        """``collection`` was written to: warm its indexes soon (at once when idle)."""
        if self.interval <= 0:
            return
        with self._wake:
            if self._closed:
                return
            self._dirty.add(collection)
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name=f"dcron-couchdb-warm{self._name}", daemon=True)
                self._thread.start()
            self._wake.notify()

    def close(self) -> None:
        """Stop: a pass under way ends with its request; no other starts."""
        with self._wake:
            self._closed = True
            self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._dirty and not self._closed:
                    self._wake.wait()
                if self._closed:
                    return
                collections, self._dirty = sorted(self._dirty), set()
            for collection in collections:
                try:
                    self._warm(collection)
                except Exception as exc:  # the store is unreachable: the next write tries again
                    self.failures[collection] = self.failures.get(collection, 0) + 1
                    if isinstance(exc, DcronError):
                        log.info("could not bring the indexes of %s up to date: %s", collection, exc)
                    else:
                        log.exception("bringing the indexes of %s up to date failed", collection)
                self.passes[collection] = self.passes.get(collection, 0) + 1
            with self._wake:  # the writes made meanwhile wait for the next interval
                if not self._closed:
                    self._wake.wait_for(lambda: self._closed, timeout=self.interval)
