"""The embedded document store: one SQLite file, shared by every dcron process of one host.

URL forms (see :func:`parse_url`):

- ``sqlite:///var/lib/dcron/dcron.db`` -- an absolute path;
- ``sqlite://dcron.db`` or ``sqlite://state/dcron.db`` -- relative to the ``data_dir`` option
  (else to the working directory);
- ``sqlite://:memory:`` -- a private in-memory database (tests only: nothing is shared);
- ``?timeout=SECONDS`` -- how long a write waits for another process's write (default 10).

Layout: one table per collection (``jobs``, ``executions``) holding ``id``, ``rev`` and the
document as JSON text, with expression indexes (``json_extract``) over the fields of
:data:`~libdcron.abc.INDEXED_FIELDS`; and one ``changes`` table written in the same transaction as
every document write.  ``changes`` keeps one row per document: a write replaces the document's row,
which takes a new, larger ``seq`` (``AUTOINCREMENT`` never reuses one), so the table never grows
beyond the number of documents and a reader asking "after seq N" sees every document written
since N exactly once.

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

import hashlib
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote

from ..abc import COLLECTIONS, EXECUTIONS, JOBS, Change, DocumentStore, Scalar
from ..errors import ConflictError, DcronError, NotFoundError, UnavailableError, ValidationError
from ..hookspecs import hookimpl
from ..options import parse_number
from .base import (
    check_changes_limit,
    check_collection,
    check_doc_id,
    check_field,
    check_find_args,
    check_selector_value,
    clean_body,
    dump_json,
)

log = logging.getLogger(__name__)

SCHEME = "sqlite://"
DEFAULT_TIMEOUT = 10.0
SCHEMA_VERSION = 1
MEMORY = ":memory:"

#: Expression indexes, by collection: each tuple is the fields of one index, in order.  They cover
#: the selections the leader, the worker and the CLI make (jobs by name or enabled; executions of
#: a job newest first, by status, all of them newest first).
INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    JOBS: (("name",), ("enabled", "name")),
    EXECUTIONS: (
        ("job", "fire_time", "attempt"),
        ("status", "fire_time", "attempt"),
        ("fire_time", "attempt"),
    ),
}

# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _body_json(body: Mapping[str, Any]) -> str:
    """The document as compact JSON with sorted keys, without ``_id``/``_rev``."""
    return dump_json(clean_body(body), sort_keys=True)


def _next_rev(previous: str | None, body_json: str) -> str:
    """A CouchDB-like revision ``N-<md5>``: generation number, hash of previous revision and body."""
    generation = 1
    if previous:
        head, _, _ = previous.partition("-")
        generation = int(head) + 1 if head.isdigit() else 1
    digest = hashlib.md5(f"{previous or ''}\n{body_json}".encode(), usedforsecurity=False).hexdigest()
    return f"{generation}-{digest}"


def _expr(field: str) -> str:
    """The SQL expression of a top-level field; identical text in indexes and queries."""
    if check_field(field) == "_id":
        return "id"
    return f"json_extract(body, '$.{field}')"


def _type_expr(field: str) -> str:
    return f"json_type(body, '$.{field}')"


def _condition(field: str, value: Scalar) -> tuple[str, list[Any]]:
    """SQL for ``field == value`` with JSON's types: true is not 1, 1 is not "1", null is not missing."""
    expr = _expr(field)
    if field == "_id":
        if not isinstance(value, str):
            raise ValidationError("a selector on _id takes a string")
        return "id = ?", [value]
    check_selector_value(field, value)
    if value is None:
        return f"{expr} IS NULL AND {_type_expr(field)} = 'null'", []
    if isinstance(value, bool):
        return f"{expr} = ? AND {_type_expr(field)} = ?", [int(value), "true" if value else "false"]
    if isinstance(value, int | float):
        return f"{expr} = ? AND {_type_expr(field)} IN ('integer', 'real')", [value]
    return f"{expr} = ?", [value]  # json_extract gives TEXT for JSON strings only


def parse_url(url: str, options: Mapping[str, Any] | None = None) -> tuple[str, float]:
    """``(path, timeout)`` of a ``sqlite://`` URL; a relative path is resolved against ``data_dir``."""
    if not url.startswith(SCHEME):
        raise ValidationError(f"{url!r} is not a sqlite:// URL (e.g. sqlite:///var/lib/dcron/dcron.db)")
    rest, _, query = url[len(SCHEME) :].partition("?")
    path = unquote(rest)
    if not path or path == "/":
        raise ValidationError(f"{url!r} names no database file (e.g. sqlite:///var/lib/dcron/dcron.db)")
    timeout = DEFAULT_TIMEOUT
    for key, values in parse_qs(query, keep_blank_values=True).items():
        if key != "timeout":
            raise ValidationError(f"{url!r}: unknown parameter {key!r} (known: timeout)")
        timeout = parse_number(f"{url!r}: timeout", values[-1], minimum=0)
    if path != MEMORY and not path.startswith("/"):
        base = (options or {}).get("data_dir") or os.getcwd()
        path = str(Path(str(base)) / path)
    return path, timeout


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


class SQLiteDocumentStore(DocumentStore):
    """:class:`~libdcron.abc.DocumentStore` on one SQLite file (or ``:memory:``)."""

    def __init__(self, path: str, timeout: float = DEFAULT_TIMEOUT, url: str | None = None) -> None:
        self.path = path
        self.timeout = timeout
        self.url = url or (SCHEME + path if path == MEMORY else SCHEME + os.path.abspath(path))
        self._lock = threading.RLock()
        self._conn: sqlite3.Connection | None = None
        self._pid = os.getpid()
        self._closed = False

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, Any] | None = None) -> SQLiteDocumentStore:
        path, timeout = parse_url(url, options)
        return cls(path, timeout=timeout, url=url)

    def __repr__(self) -> str:
        return f"<SQLiteDocumentStore {self.path}>"

    # -- connection ---------------------------------------------------------------------------

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
        deadline = time.monotonic() + self.timeout
        delay = 0.005
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0]).lower()
                if mode != "wal":
                    mode = str(conn.execute("PRAGMA journal_mode = WAL").fetchone()[0]).lower()
                break
            except sqlite3.OperationalError as exc:
                if ("locked" not in str(exc) and "busy" not in str(exc)) or time.monotonic() >= deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
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

    # -- DocumentStore ------------------------------------------------------------------------

    def open(self) -> None:
        with self._guard("open"):
            pass

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conn, self._conn = self._conn, None
            if conn is not None and self._pid == os.getpid():
                try:
                    conn.close()
                except sqlite3.Error as exc:
                    log.warning("SQLite document store %s: close failed: %s", self.path, exc)

    def create(self, collection: str, doc_id: str, body: Mapping[str, Any]) -> str:
        table = check_collection(collection)
        check_doc_id(doc_id)
        text = _body_json(body)
        rev = _next_rev(None, text)
        with self._write(f"create {collection}/{doc_id}") as conn:
            cursor = conn.execute(
                f"INSERT INTO {table} (id, rev, body) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (doc_id, rev, text),
            )
            if cursor.rowcount != 1:
                raise ConflictError(f"{collection} document {doc_id!r} already exists")
            _record_change(conn, collection, doc_id)
        return rev

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        table = check_collection(collection)
        with self._guard(f"get {collection}/{doc_id}") as conn:
            row = conn.execute(f"SELECT rev, body FROM {table} WHERE id = ?", (doc_id,)).fetchone()
        if row is None:
            raise NotFoundError(f"{collection} document {doc_id!r} does not exist")
        return _document(doc_id, row[0], row[1])

    def update(self, collection: str, doc_id: str, body: Mapping[str, Any], rev: str) -> str:
        table = check_collection(collection)
        check_doc_id(doc_id)
        text = _body_json(body)
        new_rev = _next_rev(rev, text)
        with self._write(f"update {collection}/{doc_id}") as conn:
            cursor = conn.execute(
                f"UPDATE {table} SET rev = ?, body = ? WHERE id = ? AND rev = ?", (new_rev, text, doc_id, rev)
            )
            if cursor.rowcount != 1:
                row = conn.execute(f"SELECT rev FROM {table} WHERE id = ?", (doc_id,)).fetchone()
                if row is None:
                    raise NotFoundError(f"{collection} document {doc_id!r} does not exist")
                raise ConflictError(
                    f"{collection} document {doc_id!r} changed: revision {rev!r} is stale "
                    f"(now {row[0]!r}); read it again and reapply the change"
                )
            _record_change(conn, collection, doc_id)
        return new_rev

    def find(
        self,
        collection: str,
        selector: Mapping[str, Scalar],
        sort: Sequence[tuple[str, bool]] = (),
        limit: int | None = None,
        skip: int = 0,
    ) -> list[dict[str, Any]]:
        table = check_collection(collection)
        where: list[str] = []
        params: list[Any] = []
        for field, value in selector.items():
            sql, values = _condition(field, value)
            where.append(sql)
            params.extend(values)
        order: list[str] = []
        suffix = " DESC" if check_find_args(sort, limit, skip) else ""
        for field, _ in sort:
            order.append(_expr(field) + suffix)
        order.append("id" + suffix)  # ties in a stable order, as CouchDB's indexes do
        sql = f"SELECT id, rev, body FROM {table}"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY " + ", ".join(order) + " LIMIT ? OFFSET ?"
        params += [-1 if limit is None else limit, skip]
        with self._guard(f"find in {collection}") as conn:
            rows = conn.execute(sql, params).fetchall()
        return [_document(row[0], row[1], row[2]) for row in rows]

    def changes(self, since: str | None, limit: int = 1000) -> tuple[list[Change], str]:
        check_changes_limit(limit)
        with self._guard("read changes") as conn:
            if since is None:
                row = conn.execute("SELECT COALESCE(MAX(seq), 0) FROM changes").fetchone()
                return [], str(row[0])
            try:
                position = int(since)
            except (TypeError, ValueError):
                raise ValidationError(
                    f"change position {since!r} was not issued by this store (expected an integer)"
                ) from None
            top = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'changes'").fetchone()
            if position > (top[0] if top else 0):
                # A position from another (or a recreated) database: start over rather than skip.
                log.warning(
                    "SQLite document store %s: change position %s is unknown; replaying", self.path, since
                )
                position = 0
            rows = conn.execute(
                "SELECT seq, collection, doc_id FROM changes WHERE seq > ? ORDER BY seq LIMIT ?",
                (position, limit),
            ).fetchall()
        if rows:
            position = rows[-1][0]
        return [Change(row[1], row[2]) for row in rows], str(position)


def _record_change(conn: sqlite3.Connection, collection: str, doc_id: str) -> None:
    # REPLACE deletes the document's previous row: a new, larger seq and still one row per document.
    conn.execute("INSERT OR REPLACE INTO changes (collection, doc_id) VALUES (?, ?)", (collection, doc_id))


def _document(doc_id: str, rev: str, text: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": doc_id, "_rev": rev}
    doc.update(json.loads(text))
    return doc


def _rollback(conn: sqlite3.Connection) -> None:
    if conn.in_transaction:
        try:
            conn.execute("ROLLBACK")
        except sqlite3.Error as exc:
            log.debug("rollback failed: %s", exc)


@hookimpl
def dcron_document_store(url: str, options: Mapping[str, Any]) -> DocumentStore | None:
    """A :class:`SQLiteDocumentStore` for ``sqlite://`` URLs; ``None`` for any other URL."""
    if not url.startswith("sqlite:"):
        return None
    if not url.startswith(SCHEME):
        raise ValidationError(f"{url!r}: write sqlite:///absolute/path.db or sqlite://relative/path.db")
    return SQLiteDocumentStore.from_url(url, options)
