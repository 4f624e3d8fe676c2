"""The SQLite connection of the embedded document store: opening the file (WAL mode, schema),
one connection per process under a lock, and :mod:`sqlite3` errors turned into dcron's.

Concurrency: the database runs in WAL mode with ``synchronous=NORMAL`` (a commit is durable against
a process crash, and against a power loss up to the last checkpoint).  Several processes share the
file; SQLite serialises their writes, and a write waits up to ``timeout`` seconds for the others
before failing with :class:`~libdcron.errors.UnavailableError`.  Inside one process the store holds
a single connection guarded by a lock, so one store object may be used from any number of threads
(each call is short; calls of one process run one at a time).  A store inherited through ``fork``
reopens its own connection in the child.

Error handling: a write that waits longer than the timeout, a disk that is full or failing, a path
that cannot be created -- every :mod:`sqlite3` error becomes :class:`UnavailableError` naming the
file.  After an error other than "locked" the connection is dropped and reopened on the next call.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress

from libdcron.abc import COLLECTIONS
from libdcron.backoff import Backoff, retry
from libdcron.errors import DcronError, UnavailableError

from .schema import INDEXES, SCHEMA_VERSION, _expr
from .url import MEMORY

log = logging.getLogger(__package__)  # one logger for the whole plugin, named after the package


class _Busy(Exception):
    """SQLite said "database is locked" or "busy" before its busy handler could wait."""


class _SQLiteConnection:
    """The store's connection; the store's ``__init__`` sets these attributes."""

    path: str
    timeout: float
    _lock: threading.RLock
    _conn: sqlite3.Connection | None
    _pid: int  # the process that opened ``_conn``
    _closed: bool

    def _connect(self) -> sqlite3.Connection:
        if self.path != MEMORY:
            directory = os.path.dirname(os.path.abspath(self.path))
            try:
                os.makedirs(directory, exist_ok=True)
            except OSError as exc:
                raise UnavailableError(
                    f"SQLite document store {self.path}: cannot create directory {directory}: {exc}"
                ) from exc
        conn = sqlite3.connect(self.path, timeout=self.timeout, isolation_level=None, check_same_thread=False)
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.timeout * 1000)}")
            if self.path != MEMORY:
                self._enable_wal(conn)
            conn.execute("PRAGMA synchronous = NORMAL")
            self._create_schema(conn)
        except BaseException:
            conn.close()
            raise
        return conn

    def _enable_wal(self, conn: sqlite3.Connection) -> None:
        """Switch to WAL mode (persistent: done once per file).  The switch can fail at once with
        "database is locked", without SQLite's busy handler, while another process opens or
        switches the same fresh file: retry until ``timeout``."""
        def switch() -> str:
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if mode != "wal":
                    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
                return mode
            except sqlite3.OperationalError as exc:
                if "locked" in str(exc) or "busy" in str(exc):
                    raise _Busy(str(exc)) from exc
                raise

        try:
            mode = retry(switch, (_Busy,), backoff=Backoff(0.005, 0.1), deadline=self.timeout)
        except _Busy as exc:
            raise sqlite3.OperationalError(str(exc)) from None
        if mode != "wal":
            log.warning("SQLite document store %s: journal mode is %s, not wal", self.path, mode)

    def _create_schema(self, conn: sqlite3.Connection) -> None:
        conn.execute("BEGIN IMMEDIATE")
        try:
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            if version > SCHEMA_VERSION:
                raise UnavailableError(
                    f"SQLite document store {self.path} has schema version {version}, newer than this "
                    f"dcron's ({SCHEMA_VERSION}): upgrade dcron"
                )
            for collection in COLLECTIONS:
                conn.execute(
                    f"CREATE TABLE IF NOT EXISTS {collection} ("
                    "id TEXT NOT NULL PRIMARY KEY, rev TEXT NOT NULL, body TEXT NOT NULL)"
                )
                for fields in INDEXES[collection]:
                    name = f"{collection}_by_{'_'.join(fields)}"
                    columns = ", ".join(_expr(f) for f in fields)
                    conn.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {collection} ({columns})")
            conn.execute(
                "CREATE TABLE IF NOT EXISTS changes ("
                "seq INTEGER PRIMARY KEY AUTOINCREMENT, collection TEXT NOT NULL, doc_id TEXT NOT NULL, "
                "UNIQUE (collection, doc_id))"
            )
            if version < SCHEMA_VERSION:
                conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
            conn.execute("COMMIT")
        except BaseException:
            _rollback(conn)
            raise

    @contextmanager
    def _guard(self, what: str) -> Iterator[sqlite3.Connection]:
        """The connection, under the lock, with sqlite3 errors turned into UnavailableError."""
        if self._pid != os.getpid():  # forked: the parent's connection and lock are not ours
            self._pid = os.getpid()
            self._lock = threading.RLock()
            self._conn = None
        with self._lock:
            if self._closed:
                raise DcronError(f"SQLite document store {self.path} is closed")
            try:
                if self._conn is None:
                    self._conn = self._connect()
                yield self._conn
            except sqlite3.Error as exc:
                raise self._unavailable(what, exc) from exc

    def _unavailable(self, what: str, exc: sqlite3.Error) -> UnavailableError:
        text = str(exc)
        if "locked" in text or "busy" in text:
            return UnavailableError(
                f"SQLite document store {self.path}: {what}: the database is locked by another "
                f"process's write (waited up to {self.timeout:g} s: {text}); retry later"
            )
        # Disk full, I/O error, file removed or corrupt: reopen on the next call.
        if self._conn is not None:
            with suppress(sqlite3.Error):
                self._conn.close()
            self._conn = None
        return UnavailableError(f"SQLite document store {self.path}: {what} failed: {text}")

    @contextmanager
    def _write(self, what: str) -> Iterator[sqlite3.Connection]:
        """A write transaction (taking SQLite's write lock at once, waiting up to ``timeout``)."""
        with self._guard(what) as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
                conn.execute("COMMIT")
            except BaseException:
                _rollback(conn)
                raise


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.debug("rollback failed: %s", exc)
