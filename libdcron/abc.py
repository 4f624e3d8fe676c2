"""The pluggable roles of dcron, one abstract class each, with their contracts.

The leader and the worker depend on these classes only.  One rule places the implementations:
every implementation of a pluggable role is a plugin in ``plugins/`` (the ``dcron_plugins``
package), named ``ROLE_IMPLEMENTATION``: ``store_sqlite``, ``store_couchdb``, ``election_file``,
``election_zookeeper``, ``storage_local``, ``storage_s3``, ``storage_swift``, ``interpreters``
("store" is the document store, "storage" the object storage).  They are found through the pluggy
hooks in :mod:`libdcron.hookspecs`, built-in and external plugins alike; what several of them
share is in :mod:`libdcron.document_base` and :mod:`libdcron.object_base`.  The transport is not
pluggable: it is ZeroMQ, in :mod:`libdcron.transport`.

Every method of every role raises :class:`~libdcron.errors.UnavailableError` when its backing
service cannot be reached; callers retry with backoff.  No method raises a bare library exception.
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from .errors import ConflictError, NotFoundError

# ---------------------------------------------------------------------------------------------
# Document store
# ---------------------------------------------------------------------------------------------

JOBS = "jobs"
EXECUTIONS = "executions"
COLLECTIONS = (JOBS, EXECUTIONS)

#: The fields a store must be able to select on and sort by efficiently (indexes or views).
INDEXED_FIELDS: dict[str, tuple[str, ...]] = {
    JOBS: ("name", "enabled"),
    EXECUTIONS: ("job", "status", "fire_time", "attempt"),
}

Scalar = str | int | bool | None


@dataclass(frozen=True)
class Change:
    """One entry of a store's change feed: the document ``doc_id`` of ``collection`` changed."""

    collection: str
    doc_id: str


class DocumentStore(ABC):
    """A JSON document database with CouchDB's semantics: ids, revisions, conflicts.

    There are two collections, :data:`JOBS` and :data:`EXECUTIONS`.  A document is a JSON object;
    the store adds ``_id`` and ``_rev`` to what it returns and ignores them in what it is given.
    Revisions are opaque strings that change on every write.
    """

    url: str

    @abstractmethod
    def open(self) -> None:
        """Connect and create what is missing (databases, tables, indexes).  Idempotent."""

    @abstractmethod
    def close(self) -> None:
        """Release connections.  The store may not be used afterwards."""

    @abstractmethod
    def create(self, collection: str, doc_id: str, body: Mapping[str, Any]) -> str:
        """Insert a new document and return its revision.

        Raises :class:`ConflictError` when ``doc_id`` already exists in ``collection``: this is
        what makes a second insert of the same execution attempt a conflict, not a duplicate run.
        """

    @abstractmethod
    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        """Return the document with ``_id`` and ``_rev``; :class:`NotFoundError` if absent."""

    @abstractmethod
    def update(self, collection: str, doc_id: str, body: Mapping[str, Any], rev: str) -> str:
        """Replace the document if its current revision is ``rev``; return the new revision.

        Raises :class:`ConflictError` when ``rev`` is stale and :class:`NotFoundError` when the
        document does not exist.
        """

    @abstractmethod
    def delete(self, collection: str, doc_id: str, rev: str) -> None:
        """Delete the document if its current revision is ``rev``.

        Raises :class:`ConflictError` when ``rev`` is stale (the document changed since it was
        read: read it again and decide again) and :class:`NotFoundError` when the document does
        not exist (never created, or deleted already).  Afterwards :meth:`get` raises
        :class:`NotFoundError`, :meth:`find` no longer returns it, and :meth:`create` may insert the
        id again.  CouchDB keeps a tombstone (``DELETE`` with the revision), SQLite and the
        in-memory store drop the row.  See :meth:`changes` for what the feed says of a deletion.
        """

    @abstractmethod
    def find(
        self,
        collection: str,
        selector: Mapping[str, Scalar],
        sort: Sequence[tuple[str, bool]] = (),
        limit: int | None = None,
        skip: int = 0,
        after: tuple[str, str | int | float] | None = None,
    ) -> list[dict[str, Any]]:
        """Documents whose top-level fields equal every value in ``selector``.

        ``sort`` is a list of ``(field, descending)``; every entry has the same direction.
        Selector and sort fields are taken from :data:`INDEXED_FIELDS`.

        ``after=(field, value)`` is a range condition, for paging with a cursor instead of
        ``skip``: only documents whose ``field`` holds a value of the same JSON type as ``value``
        (a string, or a number) that is strictly greater than it.  ``field`` must be the first
        field of ``sort`` (so the store walks one index from the cursor on: an indexed SQL ``>``
        on SQLite, Mango ``$gt`` on CouchDB); :class:`ValidationError` otherwise.  Strings compare
        in the store's own collation, the same one its ``sort`` uses (code points on SQLite and in
        memory, CouchDB's collation on CouchDB), so a page that ends at the value ``v`` is followed
        by ``find(..., after=(field, v))`` without repeating or skipping a document as long as the
        values of ``field`` are unique (jobs' ``name``).
        """

    @abstractmethod
    def create_many(
        self, collection: str, docs: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[str | ConflictError]:
        """Insert many new documents ``(doc_id, body)`` in one bulk operation.

        Returns one result per document, in order: its revision, or a :class:`ConflictError`
        (returned, not raised) when the id already exists, or appears earlier in ``docs``; the
        other documents are created regardless.  Every id and body is checked first, as
        :meth:`create` does: one invalid document raises :class:`ValidationError` and nothing is
        written.  SQLite writes the whole batch in one transaction; CouchDB posts ``_bulk_docs``
        (in requests of at most 1,000 documents), which is not atomic: after an
        :class:`UnavailableError` some documents may exist, and a retry reports them as conflicts.
        """

    def update_many(
        self, collection: str, docs: Sequence[tuple[str, Mapping[str, Any], str]]
    ) -> list[str | ConflictError | NotFoundError]:
        """Replace many documents ``(doc_id, body, rev)`` at once, each only if its revision is
        still ``rev``.

        Returns one result per document, in order: its new revision, or a :class:`ConflictError`
        (stale revision) or :class:`NotFoundError` (no such document), returned, not raised; the
        other documents are written regardless.  :class:`UnavailableError` is raised when the store
        cannot be reached; some documents may have been written by then (a retry of those reports
        conflicts).  SQLite writes the batch in one transaction, CouchDB posts ``_bulk_docs``.
        This default calls :meth:`update` once per document; stores override it.
        """
        results: list[str | ConflictError | NotFoundError] = []
        for doc_id, body, rev in docs:
            try:
                results.append(self.update(collection, doc_id, body, rev))
            except (ConflictError, NotFoundError) as exc:
                results.append(exc)
        return results

    @abstractmethod
    def changes(self, since: str | None, limit: int = 1000) -> tuple[list[Change], str]:
        """Documents changed after the position ``since``, and the position to ask from next.

        ``since=None`` means "from now": no changes, and the current position.  Delivery is at
        least once: a change may be reported again, never skipped.  Positions are opaque.

        Deletions: a deleted document may be reported (CouchDB's feed reports its tombstone) or
        not (SQLite and the in-memory store drop it from their feed, which so holds one entry per
        existing document and shrinks as documents are deleted).  A reader must cope with both:
        looking up a reported document that was deleted raises :class:`NotFoundError`.
        """


# ---------------------------------------------------------------------------------------------
# Object store
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ObjectInfo:
    """What a store knows of an object: its size and a token that changes when it is rewritten."""

    size: int
    version: str


class ObjectStore(ABC):
    """Objects (scripts and logs) addressed by URL: ``file:///p``, ``s3://bucket/k``, ``swift://c/o``.

    ``base_url`` is where this store writes new objects (``url_for``); any URL of the same scheme
    may be read.  Reads and writes stream through files: a store never holds a whole object in
    memory unless asked for bytes.
    """

    base_url: str

    def url_for(self, key: str) -> str:
        """The URL of ``key`` under this store's base URL."""
        return self.base_url.rstrip("/") + "/" + key.lstrip("/")

    @abstractmethod
    def owns(self, url: str) -> bool:
        """Whether this store can read and write ``url`` (its scheme matches)."""

    @abstractmethod
    def put_file(self, local_path: str, url: str) -> None:
        """Upload a local file, streaming it; creates buckets or containers when missing."""

    def move_file(self, local_path: str, url: str) -> None:
        """Upload a local file that is not needed afterwards, and remove it (a log, say).

        The same contract as :meth:`put_file`, then ``local_path`` is gone; a store may move the
        file instead of copying it (the local folder store renames it when it can).  On an error
        the local file is kept.
        """
        self.put_file(local_path, url)
        os.unlink(local_path)

    def sync(self) -> None:
        """Make every file that :meth:`move_file` moved so far durable.

        A store whose moves are durable when they return (an upload is) has nothing to do: the
        default.  The local folder store renames a log into place and defers the ``fsync``: its
        ``sync`` flushes all of them at once, and the recorder calls it before it writes the
        execution documents that name those logs.
        """
        return None

    @abstractmethod
    def put_bytes(self, data: bytes, url: str) -> None:
        """Upload a small object held in memory."""

    @abstractmethod
    def get_file(self, url: str, local_path: str) -> None:
        """Download to ``local_path``, streaming it; :class:`NotFoundError` if absent."""

    @abstractmethod
    def read_range(self, url: str, offset: int, length: int) -> bytes:
        """Up to ``length`` bytes from ``offset``; fewer (or none) past the end."""

    @abstractmethod
    def stat(self, url: str) -> ObjectInfo:
        """Size and version token; :class:`NotFoundError` if absent."""

    @abstractmethod
    def delete(self, url: str) -> None:
        """Delete the object (all its parts or segments); a missing object is no error.

        Idempotent, so a delete that was interrupted can simply be made again.  Raises
        :class:`ValidationError` for a URL that names no object of this store and
        :class:`UnavailableError` when the service cannot be reached or refuses.
        """

    def exists(self, url: str) -> bool:
        from .errors import NotFoundError

        try:
            self.stat(url)
        except NotFoundError:
            return False
        return True


# ---------------------------------------------------------------------------------------------
# Interpreter
# ---------------------------------------------------------------------------------------------


class Interpreter(ABC):
    """How to run a script of one language."""

    #: The name jobs use (``python``, ``ruby``, ``sh``).
    name: str
    #: File suffix given to the cached script (some interpreters care).
    suffix: str = ""

    @abstractmethod
    def command(self, script_path: str) -> list[str]:
        """The argv that runs ``script_path``."""

    def unavailable_reason(self) -> str | None:
        """``None`` when this host can run the interpreter, else why not (shown to the user)."""
        return None


# ---------------------------------------------------------------------------------------------
# Election
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Member:
    """A node as the cluster sees it."""

    node_id: str
    endpoint: str  # ZeroMQ endpoint other nodes and clients connect to
    capacity: int = 1
    labels: Mapping[str, str] = field(default_factory=dict)

    def to_wire(self) -> dict[str, Any]:
        return {
            "node_id": self.node_id,
            "endpoint": self.endpoint,
            "capacity": self.capacity,
            "labels": dict(self.labels),
        }

    @classmethod
    def from_wire(cls, data: Mapping[str, Any]) -> Member:
        return cls(
            node_id=str(data["node_id"]),
            endpoint=str(data["endpoint"]),
            capacity=int(data.get("capacity", 1)),
            labels=dict(data.get("labels") or {}),
        )


class Election(ABC):
    """Leader election and live membership.

    Error handling: while the connection to the coordination service is interrupted, ``suspended``
    is true and the leader must not dispatch.  When leadership is lost (session expired, lock
    released) ``on_deposed`` is called and the leader discards its in-memory schedule.  The
    election then campaigns again by itself; ``on_elected`` is called each time this node wins.
    Callbacks run on the election's own thread and must return quickly.
    """

    @abstractmethod
    def start(self, me: Member, on_elected: Callable[[], None], on_deposed: Callable[[], None]) -> None:
        """Publish ``me`` as a live member and start campaigning."""

    @abstractmethod
    def stop(self) -> None:
        """Step down (calling ``on_deposed`` if leading) and leave the membership."""

    @abstractmethod
    def is_leader(self) -> bool:
        """Whether this node holds leadership right now."""

    @abstractmethod
    def leader(self) -> Member | None:
        """The current leader, or ``None`` while there is none."""

    @abstractmethod
    def members(self) -> list[Member]:
        """Live members, this node included, in a stable order (by ``node_id``)."""

    def suspended(self) -> bool:
        """True while the election cannot tell whether this node still leads."""
        return False


# ---------------------------------------------------------------------------------------------
# Transport
# ---------------------------------------------------------------------------------------------

#: A request handler: (command name, validated body) -> reply body.  It raises DcronError subclasses
#: for errors; the transport turns them into error replies.
Handler = Callable[[str, dict[str, Any]], dict[str, Any]]


class Transport(ABC):
    """Request/reply messaging between clients and nodes, and between nodes."""

    @abstractmethod
    def serve(self, bind: str, handler: Handler) -> str:
        """Start answering requests on ``bind`` in the background; return the bound endpoint."""

    @abstractmethod
    def request(
        self, endpoint: str, command: str, body: Mapping[str, Any], timeout: float = 5.0, retries: int = 2
    ) -> dict[str, Any]:
        """Send one request and wait for its reply.

        Raises :class:`UnavailableError` when no reply came after ``retries`` further tries, and
        the error class named in an error reply (:class:`ValidationError`, :class:`NotFoundError`,
        ...) otherwise.  Retried requests must be idempotent.
        """

    @abstractmethod
    def close(self) -> None:
        """Stop serving and close every socket."""
