"""Helpers for tests: dcron's own, and those of code that embeds libdcron.

As ``procrastinate.testing`` does for procrastinate, this module ships with the library so that an
application's test suite can exercise its dcron integration without services or subprocesses:

- :func:`wait_for` polls a predicate until it returns something truthy, or fails the test;
- :class:`InMemoryDocumentStore` is a :class:`~libdcron.abc.DocumentStore` held in memory, with the
  real stores' semantics (ids, revisions, conflicts, ``find``, the change feed); dcron's document
  store contract tests run against it as against SQLite and CouchDB;
- :class:`FakeElection` is an :class:`~libdcron.abc.Election` the test drives by hand
  (:meth:`~FakeElection.set_leader`, :meth:`~FakeElection.suspend`);
- :func:`embedded_node` starts a real embedded :class:`~libdcron.node.Node` on a free loopback
  port and waits until it leads; :func:`client_for` gives a :class:`~libdcron.client.Client`
  holding that node's keys.

Example (pytest)::

    from libdcron.testing import client_for, embedded_node, wait_for

    def test_report_runs(tmp_path):
        script = tmp_path / "report.sh"
        script.write_text("echo done\\n")
        with embedded_node(tmp_path) as node, client_for(node) as client:
            client.schedule("report", "*/1 * * * * *", "sh", script)
            runs = wait_for(lambda: client.executions("report"), timeout=10)
            assert runs[0]["job"] == "report"

The in-memory store is also a plugin for ``memory://NAME`` URLs::

    import libdcron.testing
    from libdcron.plugins import Plugins

    plugins = Plugins(extra=[libdcron.testing])
    with embedded_node(tmp_path, store="memory://app", plugins=plugins) as node:
        ...
"""

from __future__ import annotations

import hashlib
import json
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

from .abc import Change, DocumentStore, Election, Member, Scalar
from .client import Client
from .config import NodeSettings
from .errors import ConflictError, DcronError, NotFoundError, ValidationError
from .hookspecs import hookimpl
from .node import Node
from .plugins import Plugins
from .stores.base import (
    check_changes_limit,
    check_collection,
    check_doc_id,
    check_field,
    check_find_args,
    check_selector_value,
    clean_body,
    dump_json,
)
from .transport.keys import CLUSTER, LOCAL_CLIENT

__all__ = [
    "MEMORY_SCHEME",
    "FakeElection",
    "InMemoryDocumentStore",
    "client_for",
    "dcron_document_store",
    "embedded_node",
    "wait_for",
]

T = TypeVar("T")

# ---------------------------------------------------------------------------------------------
# wait_for
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# InMemoryDocumentStore
# ---------------------------------------------------------------------------------------------

#: URLs of :class:`InMemoryDocumentStore`: ``memory://NAME`` (shared by name) or ``memory://``.
MEMORY_SCHEME = "memory://"


def _next_rev(previous: str | None, body_json: str) -> str:
    """A CouchDB-like revision ``N-<md5>``: generation, then a hash of previous revision and body."""
    generation = 1
    if previous:
        head, _, _ = previous.partition("-")
        generation = int(head) + 1 if head.isdigit() else 1
    digest = hashlib.md5(f"{previous or ''}\n{body_json}".encode(), usedforsecurity=False).hexdigest()
    return f"{generation}-{digest}"


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
      broken by id in the sort's direction;
    - the change feed holds one entry per document (a write moves it to the end), so reading from
      a position reports each document written since exactly once; positions are integers in text.

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
        rev = _next_rev(None, text)
        db = self._check_open()
        with db.lock:
            docs = db.docs.setdefault(collection, {})
            if doc_id in docs:
                raise ConflictError(f"{collection} document {doc_id!r} already exists")
            docs[doc_id] = (rev, text)
            db.record(collection, doc_id)
        return rev

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
        new_rev = _next_rev(rev, text)
        db = self._check_open()
        with db.lock:
            docs = db.docs.setdefault(collection, {})
            current = docs.get(doc_id)
            if current is None:
                raise NotFoundError(f"{collection} document {doc_id!r} does not exist")
            if current[0] != rev:
                raise ConflictError(
                    f"{collection} document {doc_id!r} changed: revision {rev!r} is stale "
                    f"(now {current[0]!r}); read it again and reapply the change"
                )
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
    ) -> list[dict[str, Any]]:
        """Documents matching every ``selector`` field, sorted, then ``skip``/``limit`` applied."""
        check_collection(collection)
        for field, value in selector.items():
            check_field(field)
            if field == "_id" and not isinstance(value, str):
                raise ValidationError("a selector on _id takes a string")
            check_selector_value(field, value)
        for field, _ in sort:
            check_field(field)
        descending = check_find_args(sort, limit, skip)
        db = self._check_open()
        with db.lock:
            rows = list(db.docs.get(collection, {}).items())
        docs = [_document(doc_id, rev, text) for doc_id, (rev, text) in rows]
        docs = [d for d in docs if all(_matches(d, f, v) for f, v in selector.items())]
        docs.sort(
            key=lambda d: (*(_sort_key(d.get(f)) for f, _ in sort), d["_id"]),
            reverse=descending,
        )
        end = None if limit is None else skip + limit
        return docs[skip:end]

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

    Register this module as a plugin to run nodes on it: ``Plugins(extra=[libdcron.testing])``.
    """
    if not url.startswith(MEMORY_SCHEME):
        return None
    return InMemoryDocumentStore(url)


# ---------------------------------------------------------------------------------------------
# FakeElection
# ---------------------------------------------------------------------------------------------


class FakeElection(Election):
    """An :class:`~libdcron.abc.Election` whose outcome the test decides.

    With no ``members``, the node that starts it is its only member and leads at once.
    With ``members`` (other nodes, as :class:`~libdcron.abc.Member`), the starting node joins them,
    and ``leader`` (a node id) leads; by default the starting node does.  ``leader=""`` starts
    with no leader.  Then :meth:`set_leader` moves leadership, :meth:`suspend` and :meth:`resume`
    play a lost and regained connection, :meth:`add_member` and :meth:`remove_member` change the
    membership.

    ``on_elected`` and ``on_deposed`` are called synchronously, on the thread that caused the
    change (the test's), never under the election's lock.
    """

    def __init__(self, members: Sequence[Member] = (), leader: str | None = None) -> None:
        self._lock = threading.RLock()
        self._members: dict[str, Member] = {m.node_id: m for m in members}
        self._initial_leader = leader
        self._leader: str | None = None
        self._me: Member | None = None
        self._suspended = False
        self._on_elected: Callable[[], None] | None = None
        self._on_deposed: Callable[[], None] | None = None
        #: Every callback made, in order: ``"elected"`` or ``"deposed"``.
        self.events: list[str] = []

    # -- Election -----------------------------------------------------------------------------

    def start(self, me: Member, on_elected: Callable[[], None], on_deposed: Callable[[], None]) -> None:
        """Join as ``me``; lead now if ``leader`` was not given, or names ``me``."""
        with self._lock:
            self._me = me
            self._members[me.node_id] = me
            self._on_elected, self._on_deposed = on_elected, on_deposed
            initial = me.node_id if self._initial_leader is None else self._initial_leader
        self.set_leader(initial or None)

    def stop(self) -> None:
        """Step down (calling ``on_deposed`` if leading) and leave the membership."""
        with self._lock:
            me = self._me
        if me is None:
            return
        if self.is_leader():
            self.set_leader(None)
        with self._lock:
            self._members.pop(me.node_id, None)
            self._me = None

    def is_leader(self) -> bool:
        """Whether the started node is the leader."""
        with self._lock:
            return self._me is not None and self._leader == self._me.node_id

    def leader(self) -> Member | None:
        """The leading member, or ``None``."""
        with self._lock:
            return self._members.get(self._leader) if self._leader else None

    def members(self) -> list[Member]:
        """Members by node id."""
        with self._lock:
            return [self._members[k] for k in sorted(self._members)]

    def suspended(self) -> bool:
        """True between :meth:`suspend` and :meth:`resume`."""
        return self._suspended

    # -- controls -----------------------------------------------------------------------------

    def set_leader(self, leader: str | Member | None) -> None:
        """Make ``leader`` (a member or its node id) lead, or nobody with ``None``.

        Calls ``on_deposed`` when the started node loses leadership and ``on_elected`` when it
        gains it.  A node id that is not a member raises :class:`ValueError`.
        """
        node_id = leader.node_id if isinstance(leader, Member) else leader
        with self._lock:
            if isinstance(leader, Member):
                self._members.setdefault(leader.node_id, leader)
            if node_id is not None and node_id not in self._members:
                raise ValueError(f"{node_id!r} is not a member ({', '.join(sorted(self._members))})")
            was = self.is_leader()
            self._leader = node_id
            now = self.is_leader()
            on_elected, on_deposed = self._on_elected, self._on_deposed
        if was and not now and on_deposed is not None:
            self.events.append("deposed")
            on_deposed()
        elif now and not was and on_elected is not None:
            self.events.append("elected")
            on_elected()

    def suspend(self) -> None:
        """Play a lost connection: :meth:`suspended` is true (a leader stops dispatching)."""
        self._suspended = True

    def resume(self) -> None:
        """The connection is back: :meth:`suspended` is false."""
        self._suspended = False

    def add_member(self, member: Member) -> None:
        """Add (or replace) a live member."""
        with self._lock:
            self._members[member.node_id] = member

    def remove_member(self, node_id: str) -> None:
        """Remove a member, as when its session expires; if it led, nobody leads."""
        with self._lock:
            is_me = self._me is not None and self._me.node_id == node_id
        if is_me:
            self.stop()
            return
        with self._lock:
            self._members.pop(node_id, None)
            if self._leader == node_id:
                self._leader = None


# ---------------------------------------------------------------------------------------------
# A real node in process
# ---------------------------------------------------------------------------------------------


@contextmanager
def embedded_node(
    tmp_path: str | Path,
    *,
    timeout: float = 20.0,
    grace: float = 1.0,
    plugins: Plugins | None = None,
    **settings: Any,
) -> Iterator[Node]:
    """A real embedded :class:`~libdcron.node.Node`, started, leading; stopped on exit.

    It keeps its data in ``tmp_path/data`` (SQLite store, ``file://`` objects, file-lock election,
    CurveZMQ keys) and listens on ``tcp://127.0.0.1:0`` (a free port: see ``node.endpoint``) as
    node ``embedded``, unless ``settings`` (any :class:`~libdcron.config.NodeSettings` field) say
    otherwise.  Entering waits up to ``timeout`` seconds until the node leads and its leader has
    loaded the schedule; leaving stops the node, letting runs finish for ``grace`` seconds.
    """
    values: dict[str, Any] = {
        "data_dir": Path(tmp_path) / "data",
        "listen": "tcp://127.0.0.1:0",
        "node_id": "embedded",
    }
    values.update(settings)
    node = Node(NodeSettings(**values), plugins=plugins)
    try:
        node.start()
        wait_for(
            lambda: node.leader is not None and node.leader.ready.is_set(),
            timeout,
            message=f"embedded node {node.node_id} did not lead",
        )
        yield node
    finally:
        node.stop(grace=grace)


def client_for(node: Node, timeout: float = 10.0) -> Client:
    """A :class:`~libdcron.client.Client` of ``node`` holding the keys ``node`` made for local clients."""
    s = node.settings
    keys_dir = Path(s.keys_dir or Path(s.data_dir) / "keys")
    return Client(
        node.endpoint,
        timeout=timeout,
        data_dir=s.data_dir,
        key=str(keys_dir / f"{LOCAL_CLIENT}.key_secret"),
        server_key=str(keys_dir / f"{CLUSTER}.key"),
    )
