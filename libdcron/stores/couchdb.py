"""The document store on Apache CouchDB 3 (or anything speaking its API), through pycouchdb.

URL forms (see :func:`parse_url`):

- ``http://127.0.0.1:5984/dcron`` -- the last path segment is a database-name *prefix*: the store
  uses the databases ``dcron_jobs`` and ``dcron_executions``;
- ``http://127.0.0.1:5984`` or ``http://127.0.0.1:5984/`` -- the default prefix, ``dcron``;
- ``https://user:secret@couch.example.org/couchdb/prod`` -- credentials in the userinfo (HTTP basic
  authentication; percent-encode ``@`` and ``:`` in them), a server behind a reverse proxy under a
  path (``/couchdb``), prefix ``prod``;
- ``?timeout=SECONDS`` -- the per-request timeout (default 5); ``options["couchdb_timeout"]`` too.

``options["couchdb_verify"]``: ``True`` (default) checks the server's TLS certificate, ``False``
does not, a path names a CA bundle.  The user needs admin rights on the two databases (``open``
creates them and their index design documents) unless an admin created them beforehand.

Only the API Apache CouchDB 3 has is used: documents (``PUT``/``GET`` with ``_rev``), Mango
``_find`` with ``sort``/``limit``/``skip``/``use_index`` (no bookmarks: pouchdb-server lacks them),
``POST /db/_index``, the normal (non-continuous) ``_changes`` feed and ``GET /db``.

Indexes: :meth:`CouchDBDocumentStore.open` creates JSON (Mango) indexes for the usual selections;
:meth:`~CouchDBDocumentStore.find` creates, once per process, the index any other combination of
selector and sort fields needs.  An index on fields ``(equality fields..., sort fields...)`` holds
only documents having all of them, so ``find`` with a ``sort`` returns only documents that have the
sort fields (dcron's documents always do).

Change positions are a JSON object holding both databases' ``last_seq`` values, which stay opaque.

Error handling: connection refused, timeouts, 5xx answers, rejected credentials -> every one
becomes :class:`~libdcron.errors.UnavailableError` naming the URL (password masked).  Reads that
fail to connect are tried once more at once (a keep-alive connection the server just closed);
writes are never retried here, since the first try may have been applied.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any
from urllib.parse import parse_qs, quote, urlsplit, urlunsplit

import requests
from pycouchdb import exceptions as couch_errors
from pycouchdb.client import Server
from pycouchdb.resource import Resource
from requests.adapters import HTTPAdapter

from ..abc import COLLECTIONS, EXECUTIONS, JOBS, Change, DocumentStore, Scalar
from ..errors import ConflictError, DcronError, NotFoundError, UnavailableError, ValidationError
from ..hookspecs import hookimpl
from ..options import FALSE_WORDS, TRUE_WORDS, flag_option, number_option, parse_number
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

DEFAULT_PREFIX = "dcron"
DEFAULT_TIMEOUT = 5.0
PAGE = 1000  # documents per _find request when no limit is given

#: Mango indexes created by ``open``, by collection (fields in order).  ``find`` adds others.
INDEXES: dict[str, tuple[tuple[str, ...], ...]] = {
    JOBS: (("name",), ("enabled",), ("enabled", "name")),
    EXECUTIONS: (
        ("job", "fire_time", "attempt"),
        ("status",),
        ("status", "fire_time", "attempt"),
        ("fire_time", "attempt"),
        ("job", "status"),
    ),
}

_PREFIX_RE = re.compile(r"^[a-z][a-z0-9_$()+-]*$")


class _MissingDatabase(UnavailableError):
    """A database of the store is not there (deleted after ``open``, or not created yet)."""


# ---------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------


def _index_name(fields: Sequence[str]) -> str:
    name = "dcron-" + "-".join(f.lstrip("_") for f in fields)
    if len(name) > 100:
        name = "dcron-" + hashlib.sha1("/".join(fields).encode(), usedforsecurity=False).hexdigest()
    return name


def _redact(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")[2]
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc}"))


def parse_url(url: str, options: Mapping[str, Any] | None = None) -> tuple[str, str, float]:
    """``(server URL, database prefix, timeout)`` of an ``http(s)://`` store URL."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationError(f"{url!r} is not an http(s):// CouchDB URL (e.g. http://127.0.0.1:5984/dcron)")
    try:
        parts.port  # noqa: B018 -- raises ValueError on a malformed port
    except ValueError:
        raise ValidationError(f"{url!r}: the port is not a number") from None
    segments = [s for s in parts.path.split("/") if s]
    prefix = segments.pop() if segments else DEFAULT_PREFIX
    if not _PREFIX_RE.match(prefix):
        raise ValidationError(
            f"{url!r}: database prefix {prefix!r} must start with a lowercase letter and hold only "
            "lowercase letters, digits and _$()+-"
        )
    timeout = number_option(options or {}, "couchdb_timeout", DEFAULT_TIMEOUT, greater_than=0)
    for key, values in parse_qs(parts.query, keep_blank_values=True).items():
        if key != "timeout":
            raise ValidationError(f"{_redact(url)}: unknown parameter {key!r} (known: timeout)")
        timeout = parse_number(f"{_redact(url)}: timeout", values[-1], greater_than=0)
    server = urlunsplit((parts.scheme, parts.netloc, "/".join(segments), "", ""))
    return server, prefix, timeout


# ---------------------------------------------------------------------------------------------
# The store
# ---------------------------------------------------------------------------------------------


class CouchDBDocumentStore(DocumentStore):
    """:class:`~libdcron.abc.DocumentStore` on two CouchDB databases, ``<prefix>_jobs`` and
    ``<prefix>_executions``.  Thread-safe: one HTTP session with a connection pool."""

    def __init__(
        self, url: str, timeout: float | None = None, verify: bool | str = True, pool_size: int = 32
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
        return cls(url, timeout=timeout, verify=verify)

    def __repr__(self) -> str:
        return f"<CouchDBDocumentStore {self._where}>"

    def db_name(self, collection: str) -> str:
        return f"{self.prefix}_{collection}"

    # -- HTTP plumbing ------------------------------------------------------------------------

    @contextmanager
    def _errors(self, what: str) -> Iterator[None]:
        """Turn pycouchdb and requests exceptions into dcron's."""
        if self._closed:
            raise DcronError(f"CouchDB document store {self._where} is closed")
        try:
            yield
        except couch_errors.Conflict as exc:
            raise ConflictError(f"{what}: conflict ({exc})") from None
        except couch_errors.NotFound as exc:
            reason = str(exc)
            if "database" in reason.lower() or "no_db_file" in reason:
                self._forget_open()
                raise _MissingDatabase(
                    f"CouchDB document store {self._where}: {what}: the database is missing ({reason}); "
                    "it was deleted after the store opened; the next call creates it again"
                ) from None
            raise NotFoundError(f"{what}: does not exist ({reason})") from None
        except couch_errors.BadRequest as exc:
            raise ValidationError(
                f"CouchDB document store {self._where}: {what}: bad request ({exc})"
            ) from None
        except couch_errors.GenericError as exc:
            detail = exc.args[0] if exc.args else exc
            if isinstance(detail, dict) and detail.get("error") in ("unauthorized", "forbidden"):
                raise UnavailableError(
                    f"CouchDB document store {self._where}: {what}: access refused ({detail.get('reason')}); "
                    "check the credentials in the URL"
                ) from None
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: server error {detail}"
            ) from None
        except couch_errors.Error as exc:
            raise UnavailableError(f"CouchDB document store {self._where}: {what}: {exc!r}") from None
        except requests.Timeout as exc:
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: no answer within {self.timeout:g} s ({exc})"
            ) from None
        except requests.RequestException as exc:
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: cannot reach the server ({exc})"
            ) from None
        except (ValueError, KeyError) as exc:  # not JSON, or no content-type: not a CouchDB answer
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: unexpected answer ({exc!r})"
            ) from None

    def _call(
        self,
        what: str,
        resource: Resource,
        method: str,
        path: str | None = None,
        params: Mapping[str, Any] | None = None,
        body: Any = None,
        retry: bool = False,
    ) -> Any:
        """One request; its JSON answer.  With ``retry`` (reads only) a request that failed to
        connect (not one that timed out) is tried once more at once."""
        data = None if body is None else dump_json(body).encode()
        with self._errors(what):
            for attempt in (1, 2):
                try:
                    response, result = resource.request(method, path, params=dict(params or {}), data=data)
                    break
                except requests.ConnectionError as exc:
                    if not retry or attempt == 2 or isinstance(exc, requests.Timeout):
                        raise
                    log.debug("CouchDB %s: %s failed (%s); trying once more", self._where, what, exc)
        # pycouchdb checks JSON answers only; an error page in HTML or text passes through it.
        if response.status_code >= 400:
            error = UnavailableError
            if response.status_code == 404:
                self._forget_open()
                error = _MissingDatabase
            raise error(
                f"CouchDB document store {self._where}: {what}: HTTP {response.status_code} "
                f"{response.reason} ({response.text[:200]!r})"
            )
        if not isinstance(result, dict | list):
            content_type = response.headers.get("content-type")
            raise UnavailableError(
                f"CouchDB document store {self._where}: {what}: unexpected answer, not CouchDB's JSON "
                f"(HTTP {response.status_code}, {content_type}: {response.text[:100]!r})"
            )
        return result

    def _database_exists(self, name: str) -> bool:
        what = f"look up database {name}"
        try:
            self._call(what, self._server.resource, "GET", name, retry=True)
        except (NotFoundError, _MissingDatabase):
            return False
        return True

    def _forget_open(self) -> None:
        """Make the next call run ``open`` again (a database vanished: CouchDB was reset)."""
        with self._lock:
            self._opened = False
            self._indexes.clear()

    def _ensure_open(self) -> None:
        if not self._opened:
            self.open()

    def _ensure_index(self, collection: str, fields: tuple[str, ...]) -> str:
        key = (collection, fields)
        name = _index_name(fields)
        if key in self._indexes:
            return name
        spec = {"index": {"fields": list(fields)}, "ddoc": name, "name": name, "type": "json"}
        what = f"create index {name} in {self.db_name(collection)}"
        self._call(what, self._dbs[collection], "POST", "_index", body=spec, retry=True)
        with self._lock:
            self._indexes.add(key)
        return name

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
            for fields in INDEXES[collection]:
                self._ensure_index(collection, fields)
        self._opened = True

    def close(self) -> None:
        self._closed = True
        self._server.resource.session.close()

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
        return _rev_of(result)

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
            raise ConflictError(
                f"{collection} document {doc_id!r} changed: revision {rev!r} is stale; "
                "read it again and reapply the change"
            ) from None
        return _rev_of(result)

    def find(
        self,
        collection: str,
        selector: Mapping[str, Scalar],
        sort: Sequence[tuple[str, bool]] = (),
        limit: int | None = None,
        skip: int = 0,
    ) -> list[dict[str, Any]]:
        db = self._dbs[check_collection(collection)]
        direction = "desc" if check_find_args(sort, limit, skip) else "asc"
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
        else:
            # No index: CouchDB scans _all_docs, which holds the design documents too.
            query_selector.setdefault("_id", {"$regex": "^[^_]"})
        if sort_fields:
            for field in sort_fields:
                query_selector.setdefault(field, {"$exists": True})
            # Leading equality fields in the sort too: CouchDB then sorts on the index as it is.
            query["sort"] = [{f: direction} for f in index_fields]
        query["selector"] = query_selector
        self._ensure_open()
        docs: list[dict[str, Any]] = []
        offset = skip
        while limit is None or len(docs) < limit:
            page = PAGE if limit is None else min(PAGE, limit - len(docs))
            what = f"find in {self.db_name(collection)}"
            result = self._call(
                what, db, "POST", "_find", body={**query, "limit": page, "skip": offset}, retry=True
            )
            batch = result.get("docs", []) if isinstance(result, dict) else []
            docs.extend(batch)
            offset += len(batch)
            if len(batch) < page:
                break
        return docs

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


def _rev_of(result: Any) -> str:
    if not isinstance(result, dict) or not isinstance(result.get("rev"), str):
        raise UnavailableError(f"CouchDB answered a write without a revision: {result!r}")
    return str(result["rev"])


@hookimpl
def dcron_document_store(url: str, options: Mapping[str, Any]) -> DocumentStore | None:
    """A :class:`CouchDBDocumentStore` for ``http://`` and ``https://`` URLs; else ``None``."""
    if not url.startswith(("http://", "https://")):
        return None
    return CouchDBDocumentStore.from_url(url, options)
