"""The in-memory document store, :class:`InMemoryDocumentStore`, and its plugin hook.

A :class:`~libdcron.abc.DocumentStore` held in this process's memory, with the real stores'
semantics (ids, revisions, conflicts, ``find``, the change feed); dcron's document store contract
tests run against it as against SQLite and CouchDB.  :func:`dcron_document_store` makes one for
``memory://`` URLs when :mod:`libdcron.testing` is registered as a plugin.
"""

from __future__ import annotations

import json
import threading
import weakref
from collections.abc import Mapping, Sequence
from typing import Any

from ..abc import Change, DocumentStore, Scalar
from ..document_base import (
    check_after,
    check_changes_limit,
    check_collection,
    check_doc_id,
    check_field,
    check_find_args,
    check_new_docs,
    check_selector_value,
    clean_body,
    dump_json,
    next_rev,
    stale_revision,
)
from ..errors import ConflictError, DcronError, NotFoundError, ValidationError
from ..hookspecs import hookimpl

__all__ = ["MEMORY_SCHEME", "InMemoryDocumentStore", "dcron_document_store"]

#: URLs of :class:`InMemoryDocumentStore`: ``memory://NAME`` (shared by name) or ``memory://``.
MEMORY_SCHEME = "memory://"




def _matches(doc: Mapping[str, Any], field: str, value: Scalar) -> bool:
    """``doc[field] == value`` with JSON's types: true is not 1, 1 is not "1", null is not missing."""
    if field not in doc:
        return False
    actual = doc[field]
    if value is None:
        return actual is None
    if isinstance(value, bool):
        return isinstance(actual, bool) and actual == value
    if isinstance(value, int | float):
        return isinstance(actual, int | float) and not isinstance(actual, bool) and actual == value
    return isinstance(actual, str) and actual == value


def _greater(doc: Mapping[str, Any], field: str, value: str | int | float) -> bool:
    """``doc[field] > value`` for a value of the same JSON type (a string, or a number)."""
    actual = doc.get(field)
    if isinstance(value, str):
        return isinstance(actual, str) and actual > value
    return isinstance(actual, int | float) and not isinstance(actual, bool) and actual > value


def _sort_key(value: Any) -> tuple[int, Any]:
    """CouchDB's collation of JSON types: missing/null < booleans < numbers < strings < arrays < objects."""
    if value is None:
        return (0, 0)
    if isinstance(value, bool):
        return (1, int(value))
    if isinstance(value, int | float):
        return (2, value)
    if isinstance(value, str):
        return (3, value)
    return (4 if isinstance(value, list) else 5, json.dumps(value, sort_keys=True))


class _Database:
    """What stores of one name share: documents as JSON text, and the change feed."""

    def __init__(self) -> None:
        self.lock = threading.RLock()
        #: collection -> doc id -> (rev, body as JSON text)
        self.docs: dict[str, dict[str, tuple[str, str]]] = {}
        #: (collection, doc id) -> seq of its latest write; kept in seq order (re-inserted on write)
        self.changes: dict[tuple[str, str], int] = {}
        self.seq = 0

    def record(self, collection: str, doc_id: str) -> None:
        self.seq += 1
        self.changes.pop((collection, doc_id), None)
        self.changes[(collection, doc_id)] = self.seq


#: Named databases, alive while a store object on them exists (as SQLite's shared in-memory
#: databases live while a connection to them is open).
_DATABASES: weakref.WeakValueDictionary[str, _Database] = weakref.WeakValueDictionary()
_DATABASES_LOCK = threading.Lock()


class InMemoryDocumentStore(DocumentStore):
    """A :class:`~libdcron.abc.DocumentStore` in this process's memory, for tests.

    It keeps the contract as the SQLite store does, and is checked by the same contract tests:

    - documents are stored as JSON text, so what :meth:`get` returns is a copy, and a body JSON
      cannot represent is refused with :class:`ValidationError`;
    - revisions are ``N-<hash>`` and change on every write; :meth:`create` of an existing id and
      :meth:`update` with a stale revision raise :class:`ConflictError`, :meth:`get` and
      :meth:`update` of a missing document :class:`NotFoundError`;
    - :meth:`find` compares with JSON's types and sorts with CouchDB's collation of types, ties
      broken by id in the sort's direction; ``after`` keeps values of the same type, greater;
    - :meth:`create_many` writes the whole batch under one lock, conflicts returned per document;
    - the change feed holds one entry per document (a write moves it to the end, a deletion
      removes it), so reading from a position reports each document written since, and still
      there, exactly once; positions are integers in text;
    - :meth:`delete` takes the current revision, as :meth:`update` does.

    ``url`` is ``memory://`` for a private database, or ``memory://NAME``: every store object of the
    same name in this process shares one database (as several nodes share a SQLite file), which
    lives as long as one of them does.  A store may be used from any number of threads.
    """

    def __init__(self, url: str = MEMORY_SCHEME) -> None:
        if not url.startswith(MEMORY_SCHEME):
            raise ValidationError(f"{url!r} is not a memory:// URL (e.g. memory://tests)")
        self.url = url
        self.name = url[len(MEMORY_SCHEME) :]
        if self.name:
            with _DATABASES_LOCK:
                database = _DATABASES.get(self.name)
                if database is None:
                    database = _Database()
                    _DATABASES[self.name] = database
        else:
            database = _Database()
        self._db = database
        self._closed = False

    def __repr__(self) -> str:
        return f"<InMemoryDocumentStore {self.url}>"

    def _check_open(self) -> _Database:
        if self._closed:
            raise DcronError(f"in-memory document store {self.url} is closed")
        return self._db

    # -- DocumentStore ------------------------------------------------------------------------

    def open(self) -> None:
        """Nothing to connect to or create; refuses a closed store, as the real ones do."""
        self._check_open()

    def close(self) -> None:
        """Mark this store object closed; other objects on the same database go on."""
        self._closed = True

    def create(self, collection: str, doc_id: str, body: Mapping[str, Any]) -> str:
        """Insert ``body`` as ``doc_id``; :class:`ConflictError` if the id exists."""
        check_collection(collection)
        check_doc_id(doc_id)
        text = dump_json(clean_body(body), sort_keys=True)
        rev = next_rev(None, text)
        db = self._check_open()
        with db.lock:
            docs = db.docs.setdefault(collection, {})
            if doc_id in docs:
                raise ConflictError(f"{collection} document {doc_id!r} already exists")
            docs[doc_id] = (rev, text)
            db.record(collection, doc_id)
        return rev

    def create_many(
        self, collection: str, docs: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[str | ConflictError]:
        """Insert every new ``(doc_id, body)`` under one lock; a taken id is a returned conflict."""
        check_collection(collection)
        prepared = []
        for doc_id, body in check_new_docs(docs):
            text = dump_json(body, sort_keys=True)
            prepared.append((doc_id, text, next_rev(None, text)))
        results: list[str | ConflictError] = []
        db = self._check_open()
        with db.lock:
            stored = db.docs.setdefault(collection, {})
            for doc_id, text, rev in prepared:
                if doc_id in stored:
                    results.append(ConflictError(f"{collection} document {doc_id!r} already exists"))
                    continue
                stored[doc_id] = (rev, text)
                db.record(collection, doc_id)
                results.append(rev)
        return results

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        """A copy of the document with ``_id`` and ``_rev``; :class:`NotFoundError` if absent."""
        check_collection(collection)
        db = self._check_open()
        with db.lock:
            found = db.docs.get(collection, {}).get(doc_id)
        if found is None:
            raise NotFoundError(f"{collection} document {doc_id!r} does not exist")
        return _document(doc_id, *found)

    def update(self, collection: str, doc_id: str, body: Mapping[str, Any], rev: str) -> str:
        """Replace the document if its revision is ``rev``; return the new revision."""
        check_collection(collection)
        check_doc_id(doc_id)
        text = dump_json(clean_body(body), sort_keys=True)
        new_rev = next_rev(rev, text)
        db = self._check_open()
        with db.lock:
            docs = _at_revision(db.docs.setdefault(collection, {}), collection, doc_id, rev)
            docs[doc_id] = (new_rev, text)
            db.record(collection, doc_id)
        return new_rev

    def find(
        self,
        collection: str,
        selector: Mapping[str, Scalar],
        sort: Sequence[tuple[str, bool]] = (),
        limit: int | None = None,
        skip: int = 0,
        after: tuple[str, str | int | float] | None = None,
    ) -> list[dict[str, Any]]:
        """Documents matching every ``selector`` field (and ``after``), sorted, then ``skip``/``limit``."""
        check_collection(collection)
        for field, value in selector.items():
            check_field(field)
            if field == "_id" and not isinstance(value, str):
                raise ValidationError("a selector on _id takes a string")
            check_selector_value(field, value)
        for field, _ in sort:
            check_field(field)
        descending = check_find_args(sort, limit, skip)
        after = check_after(after, sort)
        db = self._check_open()
        with db.lock:
            rows = list(db.docs.get(collection, {}).items())
        docs = [_document(doc_id, rev, text) for doc_id, (rev, text) in rows]
        docs = [d for d in docs if all(_matches(d, f, v) for f, v in selector.items())]
        if after is not None:
            docs = [d for d in docs if _greater(d, *after)]
        docs.sort(
            key=lambda d: (*(_sort_key(d.get(f)) for f, _ in sort), d["_id"]),
            reverse=descending,
        )
        end = None if limit is None else skip + limit
        return docs[skip:end]

    def delete(self, collection: str, doc_id: str, rev: str) -> None:
        """Delete the document if its revision is ``rev``, and its entry of the change feed."""
        check_collection(collection)
        db = self._check_open()
        with db.lock:
            docs = _at_revision(db.docs.setdefault(collection, {}), collection, doc_id, rev)
            del docs[doc_id]
            db.changes.pop((collection, doc_id), None)

    def changes(self, since: str | None, limit: int = 1000) -> tuple[list[Change], str]:
        """Documents written after position ``since`` (``None``: none, and the current position)."""
        check_changes_limit(limit)
        db = self._check_open()
        with db.lock:
            if since is None:
                return [], str(db.seq)
            try:
                position = int(since)
            except (TypeError, ValueError):
                raise ValidationError(
                    f"change position {since!r} was not issued by this store (expected an integer)"
                ) from None
            if position > db.seq:  # from another database: replay rather than skip
                position = 0
            found: list[Change] = []
            for (collection, doc_id), seq in db.changes.items():
                if seq > position:
                    found.append(Change(collection, doc_id))
                    position = seq
                    if len(found) >= limit:
                        break
        return found, str(position)


def _document(doc_id: str, rev: str, text: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"_id": doc_id, "_rev": rev}
    doc.update(json.loads(text))
    return doc


@hookimpl
def dcron_document_store(url: str, options: Mapping[str, Any]) -> DocumentStore | None:
    """An :class:`InMemoryDocumentStore` for ``memory://`` URLs; ``None`` for any other URL.

    Register :mod:`libdcron.testing` as a plugin to run nodes on it: ``Plugins(extra=[libdcron.testing])``.
    """
    if not url.startswith(MEMORY_SCHEME):
        return None
    return InMemoryDocumentStore(url)


def _at_revision(docs: dict[str, tuple[str, str]], collection: str, doc_id: str, rev: str) -> dict[str, tuple[str, str]]:
    """``docs``, once its ``doc_id`` is known to be at revision ``rev`` (else NotFound/Conflict)."""
    current = docs.get(doc_id)
    if current is None:
        raise NotFoundError(f"{collection} document {doc_id!r} does not exist")
    if current[0] != rev:
        raise stale_revision(collection, doc_id, rev, current[0])
    return docs
