"""The document store on Apache CouchDB 3 (or anything speaking its API), through pycouchdb.

The URL forms: :mod:`dcron_plugins.store_couchdb.url`.

``options["couchdb_verify"]``: ``True`` (default) checks the server's TLS certificate, ``False``
does not, a path names a CA bundle.  The user needs admin rights on the two databases (``open``
creates them and their index design documents) unless an admin created them beforehand.

Only the API Apache CouchDB 3 has is used: documents (``PUT``/``GET`` with ``_rev``), Mango
``_find`` with ``sort``/``limit``/``skip``/``use_index`` (no bookmarks: pouchdb-server lacks them;
``find``'s ``after`` is a ``$gte`` on the index's sort field, the bound and the values of other
types left out here), ``POST /db/_index``,
``POST /db/_bulk_docs`` (``create_many``, :data:`PAGE` documents per request), the normal
(non-continuous) ``_changes`` feed and ``GET /db``.

Indexes: :meth:`CouchDBDocumentStore.open` creates JSON (Mango) indexes for the usual selections;
:meth:`~CouchDBDocumentStore.find` creates, once per process, the index any other combination of
selector and sort fields needs; after writes, :mod:`.warming` brings them up to date in the
background (``options["couchdb_index_warming"]``: seconds between two passes, 0 for none).  An
index on fields ``(equality fields..., sort fields...)`` holds only documents having all of them,
so ``find`` with a ``sort`` returns only documents that have the sort fields (dcron's documents
always do).  Sorted on ``_id`` alone (jobs, by name), ``find`` reads the primary index.

Change positions are a JSON object holding both databases' ``last_seq`` values, which stay opaque.

Error handling: :mod:`dcron_plugins.store_couchdb.client`.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import quote

from pycouchdb.client import Server
from pycouchdb.resource import Resource
from requests.adapters import HTTPAdapter

from libdcron.abc import COLLECTIONS, EXECUTIONS, JOBS, Change, DocumentStore, Scalar
from libdcron.document_base import (
    check_after,
    check_changes_limit,
    check_collection,
    check_doc_id,
    check_field,
    check_find_args,
    check_new_docs,
    check_selector_value,
    clean_body,
    stale_revision,
)
from libdcron.errors import ConflictError, DcronError, NotFoundError, UnavailableError, ValidationError
from libdcron.options import FALSE_WORDS, TRUE_WORDS, flag_option, number_option

from .client import _CouchDBClient, _index_name
from .url import _redact, parse_url
from .warming import DEFAULT_INTERVAL, IndexWarmer

log = logging.getLogger(__package__)

PAGE = 1000  # documents per _find request when no limit is given
#: How long a request bringing an index up to date may take (a first build of a big database).
WARM_TIMEOUT = 600.0

#: Mango indexes created by ``open``, by collection (fields in order).  ``find`` adds others.
INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    JOBS: (),  # by name: the primary index (a job's id is its name); states compared by dcron
    EXECUTIONS: (
        ("job", "fire_time", "attempt"),
        ("status",),
        ("status", "fire_time", "attempt"),
        ("fire_time", "attempt"),
        ("job", "status"),
    ),
}


class CouchDBDocumentStore(_CouchDBClient, DocumentStore):
    """:class:`~libdcron.abc.DocumentStore` on two CouchDB databases, ``<prefix>_jobs`` and
    ``<prefix>_executions``.  Thread-safe: one HTTP session with a connection pool."""

    def __init__(
        self,
        url: str,
        timeout: float | None = None,
        verify: bool | str = True,
        pool_size: int = 32,
        warm_interval: float = DEFAULT_INTERVAL,
    ) -> None:
        server_url, self.prefix, url_timeout = parse_url(url)
        self.url = url
        self.timeout = timeout if timeout is not None else url_timeout
        self._where = _redact(url)
        self._server = Server(server_url, authmethod="basic", verify=False, timeout=self.timeout)
        self._dbs: dict[str, Resource] = {c: self._server.resource(self.db_name(c)) for c in COLLECTIONS}
        # pycouchdb turns TLS verification off, and every ``resource(...)`` call turns it off again
        # on the shared session: set it after the last such call, and make none afterwards.
        session = self._server.resource.session
        session.verify = verify
        adapter = HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._indexes: set[tuple[str, tuple[str, ...]]] = set()
        self._lock = threading.Lock()
        self._opened = False
        self._closed = False
        #: Brings a written collection's indexes up to date in the background (0: never).
        self.warmer = IndexWarmer(self._warm, warm_interval, f" {self.prefix}")

    @classmethod
    def from_url(cls, url: str, options: Mapping[str, Any] | None = None) -> CouchDBDocumentStore:
        options = options or {}
        _, _, timeout = parse_url(url, options)
        verify: bool | str = options.get("couchdb_verify", True)
        if isinstance(verify, str) and verify.strip().lower() not in TRUE_WORDS | FALSE_WORDS | {""}:
            if not os.path.exists(verify):  # the path of a CA bundle
                raise ValidationError(
                    f"option couchdb_verify must be true, false or the path of a CA bundle, got {verify!r}"
                )
        else:
            verify = flag_option(options, "couchdb_verify", True)
        warm = number_option(options, "couchdb_index_warming", DEFAULT_INTERVAL)
        return cls(url, timeout=timeout, verify=verify, warm_interval=warm)

    def __repr__(self) -> str:
        return f"<CouchDBDocumentStore {self._where}>"

    def _ensure_open(self) -> None:
        if not self._opened:
            self.open()

    # -- DocumentStore ------------------------------------------------------------------------

    def open(self) -> None:
        if self._closed:
            raise DcronError(f"CouchDB document store {self._where} is closed")
        for collection in COLLECTIONS:
            name = self.db_name(collection)
            if not self._database_exists(name):
                try:
                    self._call(f"create database {name}", self._server.resource, "PUT", name)
                    log.info("CouchDB %s: created database %s", self._where, name)
                except ConflictError:
                    pass  # another node created it first
        # The indexes once every database is there: a database found missing above makes the
        # store forget the indexes it knows of (see _forget_open), a collection's made before too.
        for collection in COLLECTIONS:
            for fields in INDEXES[collection]:
                self._ensure_index(collection, fields)
        self._opened = True

    def close(self) -> None:
        self._closed = True
        self.warmer.close()
        self._server.resource.session.close()

    def _warm(self, collection: str) -> None:
        """Bring every index of ``collection`` the store knows of up to date: a query of one
        document on each (CouchDB indexes the documents written since, then answers)."""
        with self._lock:
            known = sorted(fields for c, fields in self._indexes if c == collection)
        for fields in known:
            name = _index_name(fields)
            self._call(
                f"bring index {name} of {self.db_name(collection)} up to date",
                self._dbs[collection],
                "POST",
                "_find",
                body={
                    "selector": {fields[0]: {"$gt": None}},
                    "use_index": [f"_design/{name}", name],
                    "fields": ["_id"],
                    "limit": 1,
                },
                raw=True,
                timeout=WARM_TIMEOUT,
            )

    def create(self, collection: str, doc_id: str, body: Mapping[str, Any]) -> str:
        db = self._dbs[check_collection(collection)]
        doc = {"_id": doc_id, **clean_body(body)}  # pouchdb-server wants _id in the body of a PUT
        self._ensure_open()
        try:
            result = self._call(
                f"create {collection}/{check_doc_id(doc_id)}", db, "PUT", quote(doc_id, safe=""), body=doc
            )
        except ConflictError:
            raise ConflictError(f"{collection} document {doc_id!r} already exists") from None
        self.warmer.written(collection)
        return _rev_of(result)

    def create_many(
        self, collection: str, docs: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> list[str | ConflictError]:
        db = self._dbs[check_collection(collection)]
        checked = check_new_docs(docs)
        if not checked:
            return []
        self._ensure_open()
        # An id given twice conflicts on its second occurrence without being sent: a server may
        # otherwise handle duplicates within one _bulk_docs request in any order.
        seen: set[str] = set()
        duplicate: dict[int, ConflictError] = {}
        unique: list[tuple[str, dict[str, Any]]] = []
        for index, (doc_id, body) in enumerate(checked):
            if doc_id in seen:
                duplicate[index] = ConflictError(f"{collection} document {doc_id!r} already exists")
            else:
                seen.add(doc_id)
                unique.append((doc_id, body))
        try:
            sent = self._bulk_create(db, collection, unique)
        finally:
            self.warmer.written(collection)  # (a failed request may have written some)
        written = iter(sent)
        return [duplicate[i] if i in duplicate else next(written) for i in range(len(checked))]

    def _bulk_create(
        self, db: Any, collection: str, checked: list[tuple[str, dict[str, Any]]]
    ) -> list[str | ConflictError]:
        """``_bulk_docs`` in requests of :data:`PAGE` documents; per document a revision or a conflict."""
        results: list[str | ConflictError] = []
        for start in range(0, len(checked), PAGE):
            page = checked[start : start + PAGE]
            # Ids that exist already conflict without being sent: pouchdb-server may report a
            # conflict for a new document of a request that also holds a conflicting one.
            existing = self._existing(db, collection, [doc_id for doc_id, _ in page])
            chunk = [(doc_id, body) for doc_id, body in page if doc_id not in existing]
            answers = iter(self._bulk_docs(db, collection, chunk) if chunk else [])
            for doc_id, _ in page:
                if doc_id in existing:
                    results.append(ConflictError(f"{collection} document {doc_id!r} already exists"))
                else:
                    results.append(next(answers))
        return results

    def _existing(self, db: Any, collection: str, ids: list[str]) -> set[str]:
        """Which of ``ids`` name documents that exist (one ``_all_docs`` request)."""
        answer = self._call(
            f"look up {len(ids)} {collection} ids", db, "POST", "_all_docs", body={"keys": ids}
        )
        rows = answer.get("rows") if isinstance(answer, dict) else None
        if not isinstance(rows, list):
            raise UnavailableError(f"CouchDB document store {self._where}: unexpected _all_docs answer")
        return {
            str(row["id"])
            for row in rows
            if isinstance(row, dict) and "id" in row and not (row.get("value") or {}).get("deleted")
        }

    def _bulk_docs(
        self, db: Any, collection: str, chunk: list[tuple[str, dict[str, Any]]]
    ) -> list[str | ConflictError]:
        """One ``_bulk_docs`` request; per document a revision or a conflict."""
        results: list[str | ConflictError] = []
        if chunk:
            what = f"create {len(chunk)} {collection} documents"
            answer = self._call(
                what,
                db,
                "POST",
                "_bulk_docs",
                body={"docs": [{"_id": i, **body} for i, body in chunk]},
                raw=True,
            )
            if not isinstance(answer, list) or len(answer) != len(chunk):
                raise UnavailableError(
                    f"CouchDB document store {self._where}: {what}: unexpected answer {str(answer)[:200]!r}"
                )
            # Rows are matched by id: pouchdb-server does not always answer in the request's order.
            by_id = {row.get("id"): row for row in answer if isinstance(row, dict)}
            for doc_id, _ in chunk:
                row = by_id.get(doc_id)
                error = row.get("error") if isinstance(row, dict) else "no answer"
                if error == "conflict":
                    results.append(ConflictError(f"{collection} document {doc_id!r} already exists"))
                elif error is None and row is not None and isinstance(row.get("rev"), str):
                    results.append(str(row["rev"]))
                else:
                    reason = row.get("reason") if isinstance(row, dict) else row
                    raise UnavailableError(
                        f"CouchDB document store {self._where}: {what}: document {doc_id!r} refused "
                        f"({error}: {reason}); the documents before it may have been written"
                    )
        return results

    def get(self, collection: str, doc_id: str) -> dict[str, Any]:
        db = self._dbs[check_collection(collection)]
        if not isinstance(doc_id, str) or not doc_id or doc_id.startswith("_"):
            raise NotFoundError(f"{collection} document {doc_id!r} does not exist")
        self._ensure_open()
        try:
            result = self._call(f"get {collection}/{doc_id}", db, "GET", quote(doc_id, safe=""), retry=True)
        except NotFoundError:
            raise NotFoundError(f"{collection} document {doc_id!r} does not exist") from None
        if not isinstance(result, dict) or "_rev" not in result:
            raise UnavailableError(f"CouchDB document store {self._where}: get {doc_id!r}: unexpected answer")
        return result

    def update(self, collection: str, doc_id: str, body: Mapping[str, Any], rev: str) -> str:
        db = self._dbs[check_collection(collection)]
        doc = {"_id": doc_id, **clean_body(body)}  # pouchdb-server wants _id in the body of a PUT
        doc["_rev"] = rev
        self._ensure_open()
        what = f"update {collection}/{check_doc_id(doc_id)}"
        try:
            result = self._call(what, db, "PUT", quote(doc_id, safe=""), body=doc)
        except ConflictError:
            # CouchDB answers 409 both for a stale revision and for a document that is not there.
            self.get(collection, doc_id)  # raises NotFoundError when absent
            raise stale_revision(collection, doc_id, rev) from None
        self.warmer.written(collection)
        return _rev_of(result)

    def update_many(
        self, collection: str, docs: Sequence[tuple[str, Mapping[str, Any], str]]
    ) -> list[str | ConflictError | NotFoundError]:
        db = self._dbs[check_collection(collection)]
        checked = [(check_doc_id(doc_id), {**clean_body(body), "_rev": rev}) for doc_id, body, rev in docs]
        if not checked:
            return []
        self._ensure_open()
        results: list[str | ConflictError | NotFoundError] = []
        for start in range(0, len(checked), PAGE):
            page = checked[start : start + PAGE]
            for (doc_id, body), answer in zip(page, self._bulk_docs(db, collection, page), strict=True):
                if isinstance(answer, ConflictError):
                    # 409 both for a stale revision and for a missing document: tell them apart.
                    try:
                        self.get(collection, doc_id)
                    except NotFoundError as exc:
                        results.append(exc)
                        continue
                    answer = stale_revision(collection, doc_id, body["_rev"])
                results.append(answer)
            self.warmer.written(collection)
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
        db = self._dbs[check_collection(collection)]
        direction = "desc" if check_find_args(sort, limit, skip) else "asc"
        after = check_after(after, sort)
        query_selector: dict[str, Any] = {}
        for field, value in selector.items():
            condition: dict[str, Any] = {"$eq": check_selector_value(field, value)}
            if value is None:
                condition["$exists"] = True  # pouchdb-server's $eq null also matches a missing field
            query_selector[check_field(field)] = condition
        sort_fields = tuple(check_field(f) for f, _ in sort)
        equal_fields = tuple(sorted(f for f in query_selector if f not in sort_fields))
        query: dict[str, Any] = {}
        index_fields = equal_fields + sort_fields
        if index_fields and index_fields != ("_id",):
            self._ensure_open()
            name = self._ensure_index(collection, index_fields)
            query["use_index"] = [f"_design/{name}", name]
        elif not index_fields or direction == "desc":
            # No index: CouchDB scans _all_docs, which holds the design documents too.
            query_selector.setdefault("_id", {"$regex": "^[^_]"})
        # (Sorted on _id alone, ascending: a range of the primary index; the design documents in
        # it are left out below, not by a $regex, which pouchdb-server cannot use with a limit.)
        by_id = index_fields == ("_id",) and direction == "asc"
        if after is not None:
            range_field, bound = after
            # ``$gte``: the bound's own value and values of the types collating after its own
            # (strings after numbers, arrays and objects after strings) are left out below.  Not
            # ``$type`` (pouchdb-server then reads the whole index for every page: 50 s a page at
            # 100,000 jobs), nor ``$gt`` (pouchdb-server then counts the bound's documents in the
            # page's limit before leaving them out, so its pages come short).
            query_selector.setdefault(range_field, {})["$gte"] = bound
        elif by_id:
            query_selector["_id"] = {"$gt": None}  # every id: a range still (not $exists)
        if sort_fields:
            for field in sort_fields:
                query_selector.setdefault(field, {"$exists": True})
            # Leading equality fields in the sort too: CouchDB then sorts on the index as it is.
            query["sort"] = [{f: direction} for f in index_fields]
        query["selector"] = query_selector
        self._ensure_open()
        if by_id:
            return self._find_by_id(collection, query, limit, skip)
        docs: list[dict[str, Any]] = []
        # Documents left out here cannot count in the server's skip: they are skipped here too.
        to_skip = skip if after is not None else 0
        offset = skip - to_skip
        while limit is None or len(docs) < limit:
            page = PAGE if limit is None else min(PAGE, limit - len(docs) + to_skip)
            what = f"find in {self.db_name(collection)}"
            result = self._call(
                what, db, "POST", "_find", body={**query, "limit": page, "skip": offset}, retry=True
            )
            batch = result.get("docs", []) if isinstance(result, dict) else []
            offset += len(batch)
            kept = batch
            if after is not None:
                kept = [doc for doc in kept if _beyond(doc.get(after[0]), after[1])]
            if to_skip:
                kept, to_skip = kept[to_skip:], max(0, to_skip - len(kept))
            docs.extend(kept)
            if len(batch) < page:
                break
            if after is not None and direction == "asc" and not _same_type(batch[-1].get(after[0]), after[1]):
                break  # past the bound's type: the rest is of the types after it
        return docs[:limit]

    def _find_by_id(self, collection: str, query: dict[str, Any], limit: int | None, skip: int) -> list[dict[str, Any]]:
        """``find`` sorted on ``_id`` alone, ascending: a range of the primary index, which no
        write leaves behind.  Each request starts at the last id the one before read (pouchdb-server
        counts design documents in ``skip``, not in its answers); skip and design documents
        (CouchDB may answer them) are left out here."""
        db = self._dbs[collection]
        selector = query["selector"]
        bound: str | None = selector["_id"].get("$gte")
        docs: list[dict[str, Any]] = []
        to_skip = skip
        while limit is None or len(docs) < limit:
            page = PAGE if limit is None else min(PAGE, limit - len(docs) + to_skip + 1)
            range_ = {"$gt": None} if bound is None else {"$gte": bound}
            body = {**query, "selector": {**selector, "_id": range_}, "limit": page}
            result = self._call(f"find in {self.db_name(collection)}", db, "POST", "_find", body=body, retry=True)
            batch = result.get("docs", []) if isinstance(result, dict) else []
            kept = [
                doc
                for doc in batch
                if isinstance(doc.get("_id"), str) and doc["_id"] != bound and not doc["_id"].startswith("_design/")
            ]
            if to_skip:
                kept, to_skip = kept[to_skip:], max(0, to_skip - len(kept))
            docs.extend(kept)
            if len(batch) < page:
                break
            bound = str(batch[-1].get("_id"))
        return docs[:limit]

    def delete(self, collection: str, doc_id: str, rev: str) -> None:
        """``DELETE /db/ID?rev=REV``: CouchDB keeps a tombstone, which its change feed reports."""
        db = self._dbs[check_collection(collection)]
        if not isinstance(doc_id, str) or not doc_id or doc_id.startswith("_"):
            raise NotFoundError(f"{collection} document {doc_id!r} does not exist")
        self._ensure_open()
        what = f"delete {collection}/{doc_id}"
        try:
            if not isinstance(rev, str) or not rev:
                raise ConflictError(what)  # pouchdb-server would delete whatever the revision
            self._call(what, db, "DELETE", quote(doc_id, safe=""), params={"rev": rev})
            self.warmer.written(collection)
        except (ConflictError, ValidationError, NotFoundError):
            # CouchDB answers 409 for a stale revision (and for a deleted document), 400 for a
            # malformed one; pouchdb-server 404 for both: whether the document is there decides.
            self.get(collection, doc_id)  # raises NotFoundError when absent
            raise stale_revision(collection, doc_id, str(rev)) from None

    def changes(self, since: str | None, limit: int = 1000) -> tuple[list[Change], str]:
        check_changes_limit(limit)
        self._ensure_open()
        positions: dict[str, Any] = {}
        if since is None:
            for collection in COLLECTIONS:
                info = self._call(
                    f"read {self.db_name(collection)}", self._dbs[collection], "GET", retry=True
                )
                if not isinstance(info, dict) or "update_seq" not in info:
                    raise UnavailableError(f"CouchDB document store {self._where}: no update_seq in {info!r}")
                positions[collection] = info["update_seq"]
            return [], json.dumps(positions, separators=(",", ":"))
        try:
            positions = json.loads(since)
            if not isinstance(positions, dict) or set(positions) != set(COLLECTIONS):
                raise ValueError(since)
        except ValueError:
            raise ValidationError(f"change position {since!r} was not issued by this store") from None
        changes: list[Change] = []
        for collection in COLLECTIONS:
            remaining = limit - len(changes)
            if remaining <= 0:
                break
            params = {"since": positions[collection], "limit": remaining}
            what = f"read changes of {self.db_name(collection)}"
            result = self._call(what, self._dbs[collection], "GET", "_changes", params=params, retry=True)
            if not isinstance(result, dict):
                raise UnavailableError(f"CouchDB document store {self._where}: {what}: unexpected answer")
            for row in result.get("results", []):
                doc_id = str(row.get("id", ""))
                if doc_id and not doc_id.startswith("_design/"):
                    changes.append(Change(collection, doc_id))
            positions[collection] = result.get("last_seq", positions[collection])
        return changes, json.dumps(positions, separators=(",", ":"))


def _same_type(value: Any, bound: str | int | float) -> bool:
    """Whether ``value`` is of ``bound``'s kind in CouchDB's collation (a string, or a number)."""
    if isinstance(bound, str):
        return isinstance(value, str)
    return isinstance(value, int | float) and not isinstance(value, bool)


def _beyond(value: Any, bound: str | int | float) -> bool:
    """Whether a document a ``$gte`` range found is ``after`` the bound: of its type and not equal
    (CouchDB's collation of strings is not Python's, but whatever it put after is after)."""
    return _same_type(value, bound) and value != bound


def _rev_of(result: Any) -> str:
    if not isinstance(result, dict) or not isinstance(result.get("rev"), str):
        raise UnavailableError(f"CouchDB answered a write without a revision: {result!r}")
    return str(result["rev"])
