"""The embedded document store: one SQLite file, shared by every dcron process of one host.

The URL forms: :mod:`dcron_plugins.store_sqlite.url`; the tables and indexes:
:mod:`dcron_plugins.store_sqlite.schema`; concurrency and error handling (the connection):
:mod:`dcron_plugins.store_sqlite.connection`.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from collections.abc import Mapping, Sequence
from typing import Any

from libdcron.abc import Change, DocumentStore, Scalar
from libdcron.document_base import (
    check_after,
    check_changes_limit,
    check_collection,
    check_doc_id,
    check_find_args,
    check_new_docs,
    dump_json,
    next_rev,
    stale_revision,
)
from libdcron.errors import ConflictError, NotFoundError, ValidationError

from .connection import _SQLiteConnection
from .schema import (
    _body_json,
    _condition,
    _document,
    _expr,
    _greater,
    _record_change,
    _record_changes,
)
from .url import DEFAULT_TIMEOUT, MEMORY, SCHEME, parse_url

log = logging.getLogger(__package__)

#: Ids per ``IN (...)`` of ``create_many``'s look-up (below SQLite's limit of bound parameters).
_IN_CHUNK = 500


class SQLiteDocumentStore(_SQLiteConnection, DocumentStore):
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
        rev = next_rev(None, text)
        with self._write(f"create {collection}/{doc_id}") as conn:
            cursor = conn.execute(
                f"INSERT INTO {table} (id, rev, body) VALUES (?, ?, ?) ON CONFLICT (id) DO NOTHING",
                (doc_id, rev, text),
            )
            if cursor.rowcount != 1:
                raise ConflictError(f"{collection} document {doc_id!r} already exists")
            _record_change(conn, collection, doc_id)
        return rev

    def create_many(
        self, collection: str, docs: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[str | ConflictError]:
        table = check_collection(collection)
        prepared = []
        for doc_id, body in check_new_docs(docs):
            text = dump_json(body, sort_keys=True)  # already cleaned
            prepared.append((doc_id, next_rev(None, text), text))
        if not prepared:
            return []
        results: list[str | ConflictError] = []
        with self._write(f"create {len(prepared)} {collection} documents") as conn:
            taken: set[str] = set()
            ids = [doc_id for doc_id, _, _ in prepared]
            for start in range(0, len(ids), _IN_CHUNK):
                chunk = ids[start : start + _IN_CHUNK]
                marks = ", ".join("?" * len(chunk))
                taken.update(row[0] for row in conn.execute(f"SELECT id FROM {table} WHERE id IN ({marks})", chunk))
            rows = []
            for doc_id, rev, text in prepared:
                if doc_id in taken:
                    results.append(ConflictError(f"{collection} document {doc_id!r} already exists"))
                    continue
                taken.add(doc_id)  # a second copy in the same batch conflicts too
                rows.append((doc_id, rev, text))
                results.append(rev)
            conn.executemany(f"INSERT INTO {table} (id, rev, body) VALUES (?, ?, ?)", rows)
            _record_changes(conn, collection, [row[0] for row in rows])
        return results

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
        new_rev = next_rev(rev, text)
        with self._write(f"update {collection}/{doc_id}") as conn:
            cursor = conn.execute(
                f"UPDATE {table} SET rev = ?, body = ? WHERE id = ? AND rev = ?", (new_rev, text, doc_id, rev)
            )
            if cursor.rowcount != 1:
                row = conn.execute(f"SELECT rev FROM {table} WHERE id = ?", (doc_id,)).fetchone()
                if row is None:
                    raise NotFoundError(f"{collection} document {doc_id!r} does not exist")
                raise stale_revision(collection, doc_id, rev, row[0])
            _record_change(conn, collection, doc_id)
        return new_rev

    def update_many(
        self, collection: str, docs: Sequence[tuple[str, Mapping[str, Any], str]]
    ) -> list[str | ConflictError | NotFoundError]:
        table = check_collection(collection)
        prepared = []
        for doc_id, body, rev in docs:
            check_doc_id(doc_id)
            text = _body_json(body)
            prepared.append((doc_id, rev, next_rev(rev, text), text))
        if not prepared:
            return []
        results: list[str | ConflictError | NotFoundError] = []
        written: list[str] = []
        with self._write(f"update {len(prepared)} {collection} documents") as conn:
            for doc_id, rev, new_rev, text in prepared:
                cursor = conn.execute(
                    f"UPDATE {table} SET rev = ?, body = ? WHERE id = ? AND rev = ?", (new_rev, text, doc_id, rev)
                )
                if cursor.rowcount == 1:
                    results.append(new_rev)
                    written.append(doc_id)
                    continue
                row = conn.execute(f"SELECT rev FROM {table} WHERE id = ?", (doc_id,)).fetchone()
                if row is None:
                    results.append(NotFoundError(f"{collection} document {doc_id!r} does not exist"))
                else:
                    results.append(stale_revision(collection, doc_id, rev, row[0]))
            _record_changes(conn, collection, written)
        return results

    def find(
        self,
        collection: str,
        selector: Mapping[str, Scalar],
        sort: Sequence[tuple[str, bool]] = (),
        limit: int | None = None,
        skip: int = 0,
        after: tuple[str, str | int | float] | None = None,
    ) -> list[dict[str, Any]]:
        table = check_collection(collection)
        where: list[str] = []
        params: list[Any] = []
        for field, value in selector.items():
            sql, values = _condition(field, value)
            where.append(sql)
            params.extend(values)
        suffix = " DESC" if check_find_args(sort, limit, skip) else ""
        after = check_after(after, sort)
        if after is not None:
            sql, values = _greater(*after)
            where.append(sql)
            params.extend(values)
        order: list[str] = []
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

    def delete(self, collection: str, doc_id: str, rev: str) -> None:
        """Delete the row and its entry of the change feed (the feed keeps one per existing document)."""
        table = check_collection(collection)
        with self._write(f"delete {collection}/{doc_id}") as conn:
            cursor = conn.execute(f"DELETE FROM {table} WHERE id = ? AND rev = ?", (doc_id, rev))
            if cursor.rowcount != 1:
                row = conn.execute(f"SELECT rev FROM {table} WHERE id = ?", (doc_id,)).fetchone()
                if row is None:
                    raise NotFoundError(f"{collection} document {doc_id!r} does not exist")
                raise stale_revision(collection, doc_id, rev, row[0])
            conn.execute("DELETE FROM changes WHERE collection = ? AND doc_id = ?", (collection, doc_id))

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
